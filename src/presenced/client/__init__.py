"""presenced's Python client SDK.

::

    async with Client("ws://127.0.0.1:8080/ws", device="laptop", token=jwt) as client:
        await client.join("doc:42", meta={"cursor": 0})
        async for event in client.events():
            ...

:class:`Client` keeps one session alive across connection losses (resuming it, or restoring
rooms, subscriptions and status when it cannot); :mod:`presenced.client.policy` holds its
pure reconnect, backoff and restore rules; :mod:`presenced.client.events` the events and
exceptions it surfaces.
"""

from presenced.client.client import Callback, Client, TokenSource
from presenced.client.events import (
    ClientError,
    Connected,
    ConnectionClosed,
    Disconnected,
    Event,
    ForcedLeave,
    ForceLeaveError,
    event_type,
)
from presenced.client.policy import (
    Backoff,
    Decision,
    Restore,
    ResumeState,
    RoomState,
    auth_failure_decision,
    reconnect_decision,
    retry_delay,
)

__all__ = [
    "Backoff",
    "Callback",
    "Client",
    "ClientError",
    "Connected",
    "ConnectionClosed",
    "Decision",
    "Disconnected",
    "Event",
    "ForceLeaveError",
    "ForcedLeave",
    "Restore",
    "ResumeState",
    "RoomState",
    "TokenSource",
    "auth_failure_decision",
    "event_type",
    "reconnect_decision",
    "retry_delay",
]
