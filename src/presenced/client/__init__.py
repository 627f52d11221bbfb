"""presenced's Python client SDK.

::

    async with Client("ws://127.0.0.1:8080/ws", device="laptop", token=jwt) as client:
        await client.join("doc:42", meta={"cursor": 0})
        ack = await client.send("doc:42", "hello")
        async for event in client.events():
            ...

:class:`Client` keeps one session alive across connection losses (resuming it, or restoring
rooms, subscriptions and status when it cannot) and recovers the room messages missed
meanwhile exactly; :mod:`presenced.client.policy` holds its pure reconnect, backoff, restore
and stream-position rules; :mod:`presenced.client.messaging` the messaging requests;
:mod:`presenced.client.events` the events and exceptions it surfaces;
:mod:`presenced.client.streams` and :mod:`presenced.client.members` the pure per-room rules
(offset gaps and recovery, member lists and versions) behind ``Client.member_list``.
"""

from presenced.client.client import Client, TokenSource
from presenced.client.events import (
    Callback,
    ClientError,
    Connected,
    ConnectionClosed,
    Disconnected,
    Event,
    EventHub,
    ForcedLeave,
    ForceLeaveError,
    event_type,
)
from presenced.client.members import MemberList, MembersResynced, MemberViews
from presenced.client.messaging import new_temp_id
from presenced.client.policy import (
    UNKNOWN_EPOCH,
    Backoff,
    Decision,
    DeliveredReceipts,
    Restore,
    ResumeState,
    RoomState,
    StreamPositions,
    TypingThrottle,
    auth_failure_decision,
    delivered_receipt,
    reconnect_decision,
    retry_delay,
)
from presenced.client.streams import RecoveryFailed, Step, classify

__all__ = [
    "UNKNOWN_EPOCH",
    "Backoff",
    "Callback",
    "Client",
    "ClientError",
    "Connected",
    "ConnectionClosed",
    "Decision",
    "DeliveredReceipts",
    "Disconnected",
    "Event",
    "EventHub",
    "ForceLeaveError",
    "ForcedLeave",
    "MemberList",
    "MemberViews",
    "MembersResynced",
    "RecoveryFailed",
    "Restore",
    "ResumeState",
    "RoomState",
    "Step",
    "StreamPositions",
    "TokenSource",
    "TypingThrottle",
    "auth_failure_decision",
    "classify",
    "delivered_receipt",
    "event_type",
    "new_temp_id",
    "reconnect_decision",
    "retry_delay",
]
