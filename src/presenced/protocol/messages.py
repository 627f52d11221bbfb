"""Every message of the wire protocol, as typed structs.

Client requests and server messages are two tagged unions keyed on ``type``. Field limits that
the decoder can check on its own (lengths, enums) are declared here with ``Meta`` so a bad
field is rejected before any handler runs; limits that come from configuration (rooms per
session, subscriptions per session) are checked by the server. docs/protocol.md is the prose
of this file.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from presenced.protocol.chat import (
    MessageAck,
    MessageDelete,
    MessageDeleted,
    MessageEdit,
    MessageEdited,
    MessageEvent,
    MessageSend,
    Position,
    Receipt,
    ReceiptDelivered,
    ReceiptSeen,
    RoomHistory,
    RoomHistoryReply,
    RoomRead,
    RoomReadReply,
    RoomRecovered,
    TypingEvent,
    TypingStart,
    TypingStop,
)
from presenced.protocol.fields import (
    CLIENT_STATUSES,
    ClientBase,
    ClientStatus,
    MetaObject,
    Name,
    Ref,
    ServerBase,
    StatusText,
)

__all__ = [
    "CLIENT_STATUSES",
    "Activity",
    "Auth",
    "ClientMessage",
    "DeviceBack",
    "DeviceDropped",
    "DeviceGone",
    "Error",
    "ForceLeave",
    "Heartbeat",
    "HeartbeatAck",
    "Logout",
    "Member",
    "MemberJoined",
    "MemberLeft",
    "MemberUpdated",
    "Presence",
    "PresenceSubscribe",
    "PresenceSubscribed",
    "PresenceUnsubscribe",
    "PresenceUnsubscribed",
    "Ref",
    "Refresh",
    "Refreshed",
    "RoomBatch",
    "RoomCount",
    "RoomCountReply",
    "RoomDeleted",
    "RoomJoin",
    "RoomJoined",
    "RoomLeave",
    "RoomLeft",
    "RoomMembers",
    "RoomMembersReply",
    "RoomMeta",
    "RoomMetaUpdated",
    "RoomRemoved",
    "RoomSummary",
    "ServerMessage",
    "StatusSet",
    "StatusUpdated",
    "Welcome",
]

# --- client -> server --------------------------------------------------------------------


class Auth(ClientBase, tag="auth"):
    """First message when the credentials were not given in the connect URL.

    ``token`` is a JWT; ``user`` names the user in insecure development mode only. ``resume``
    is the resume token of a session in grace: when valid, the session is restored.
    """

    device: Name
    token: str | None = None
    user: Name | None = None
    device_info: MetaObject | None = None
    resume: str | None = None
    protocol: int = 1
    positions: dict[str, Position] | None = None  # per room, what the client saw last


class Heartbeat(ClientBase, tag="heartbeat"):
    """Application heartbeat: refreshes the session and counts as activity; acknowledged."""


class Activity(ClientBase, tag="activity"):
    """Explicit activity (user interaction) that resets the idle clock; not acknowledged."""


class RoomJoin(ClientBase, tag="room.join"):
    """Join a room; ``device_events`` asks for device.dropped / device.back / device.gone."""

    room: Name
    meta: MetaObject | None = None
    device_events: bool = False
    since: Position | None = None  # recover what was missed since this position


class RoomLeave(ClientBase, tag="room.leave"):
    room: Name


class RoomMembers(ClientBase, tag="room.members"):
    room: Name


class RoomCount(ClientBase, tag="room.count"):
    room: Name


class RoomMeta(ClientBase, tag="room.meta"):
    """Replace this session's member metadata in a room; others get member.updated."""

    room: Name
    meta: MetaObject


class StatusSet(ClientBase, tag="status.set"):
    status: ClientStatus
    text: StatusText | None = None


class PresenceSubscribe(ClientBase, tag="presence.subscribe"):
    users: Annotated[list[Name], Meta(min_length=1, max_length=1000)]


class PresenceUnsubscribe(ClientBase, tag="presence.unsubscribe"):
    users: Annotated[list[Name], Meta(min_length=1, max_length=1000)]


class Logout(ClientBase, tag="logout"):
    """End the session now: every room sees it leave at once (no grace)."""


class Refresh(ClientBase, tag="refresh"):
    """A fresh token for this session, before the one it authenticated with expires (the
    JWT mode only; the same user). Answered with ``refreshed``."""

    token: str


ClientMessage = (
    Auth
    | Heartbeat
    | Activity
    | RoomJoin
    | RoomLeave
    | RoomMembers
    | RoomCount
    | RoomMeta
    | StatusSet
    | PresenceSubscribe
    | PresenceUnsubscribe
    | Logout
    | Refresh
    | MessageSend
    | MessageEdit
    | MessageDelete
    | ReceiptDelivered
    | ReceiptSeen
    | RoomRead
    | RoomHistory
    | TypingStart
    | TypingStop
)

# --- server -> client --------------------------------------------------------------------


class Member(Struct, kw_only=True, omit_defaults=True):
    """One user as a room sees it: aggregated status, device count, metadata, and when its
    first session joined (``joined_at``, Unix seconds; absent when the server does not know)."""

    user: str
    status: str
    devices: int
    text: str | None = None
    meta: MetaObject | None = None
    joined_at: float | None = None


class Welcome(ServerBase, tag="welcome"):
    """Authentication succeeded. On a resume, ``resumed`` is true and ``rooms`` lists the
    rooms restored; when a resume was asked for and failed, ``resume_error`` says why and a
    fresh session was opened instead."""

    session: str
    resume_token: str
    user: str
    device: str
    protocol: int
    heartbeat_interval: float
    heartbeat_timeout: float
    grace: float
    resumed: bool
    status: str
    inactivity_timeout: float | None = None
    rooms: list[str] = msgspec.field(default_factory=list)
    subscriptions: list[str] = msgspec.field(default_factory=list)
    text: str | None = None
    resume_error: str | None = None
    node: str | None = None  # the gateway node serving this connection
    expires_at: float | None = None  # the token's exp: send refresh before, or be closed
    ref: Ref = None

    def __repr__(self) -> str:
        # The resume token takes over the session: it must not reach a log or a print of
        # the event (the README's example prints every event).
        fields = ", ".join(
            f"{name}={'<hidden>' if name == 'resume_token' else repr(getattr(self, name))}"
            for name in self.__struct_fields__
        )
        return f"Welcome({fields})"


class HeartbeatAck(ServerBase, tag="heartbeat.ack"):
    time: float
    ref: Ref = None


class Refreshed(ServerBase, tag="refreshed"):
    """The session now runs on the refreshed token, until ``expires_at`` (None: no exp)."""

    expires_at: float | None = None
    ref: Ref = None


class RoomJoined(ServerBase, tag="room.joined"):
    room: str
    version: int
    members: list[Member]
    ref: Ref = None


class RoomLeft(ServerBase, tag="room.left"):
    room: str
    ref: Ref = None


class RoomMembersReply(ServerBase, tag="room.members"):
    room: str
    version: int
    members: list[Member]
    ref: Ref = None


class RoomCountReply(ServerBase, tag="room.count"):
    room: str
    version: int
    count: int
    ref: Ref = None


class RoomMetaUpdated(ServerBase, tag="room.meta"):
    """Reply to room.meta: the metadata now in force and the room version."""

    room: str
    version: int
    meta: MetaObject
    ref: Ref = None


class StatusUpdated(ServerBase, tag="status.updated"):
    """This session's status was set; ``aggregate`` is the user's status over all devices."""

    status: str
    aggregate: str
    text: str | None = None
    ref: Ref = None


class Presence(ServerBase, tag="presence"):
    """A watched user's presence, now or after a change. Invisible users appear offline.

    ``seq`` is the number of the change (PresenceChange.seq; greater is newer), on every
    ``presence`` event; a presence read for ``presence.subscribed`` has none."""

    user: str
    online: bool
    status: str
    devices: int
    text: str | None = None
    last_seen: float | None = None
    seq: int | None = None


class PresenceSubscribed(ServerBase, tag="presence.subscribed"):
    users: list[Presence]
    ref: Ref = None


class PresenceUnsubscribed(ServerBase, tag="presence.unsubscribed"):
    users: list[str]
    ref: Ref = None


class MemberJoined(ServerBase, tag="member.joined"):
    """A user became visible in a room; ``joined_at`` as in :class:`Member` (a member that
    stops being invisible keeps the time its first session joined)."""

    room: str
    version: int
    user: str
    status: str
    devices: int
    text: str | None = None
    meta: MetaObject | None = None
    joined_at: float | None = None


class MemberLeft(ServerBase, tag="member.left"):
    room: str
    version: int
    user: str
    reason: str


class MemberUpdated(ServerBase, tag="member.updated"):
    room: str
    version: int
    user: str
    status: str
    devices: int
    text: str | None = None
    meta: MetaObject | None = None


class RoomBatch(ServerBase, tag="room.batch"):
    """Membership events of one room that happened within a short window, in order, in one
    frame (each keeps its own version). Sent instead of the separate events when a room's
    membership changes faster than presence_batch_window."""

    room: str
    events: list[MemberJoined | MemberLeft | MemberUpdated]


class RoomSummary(ServerBase, tag="room.summary"):
    """A large room's size, instead of its member events (rooms above room_summary_above):
    at most one per room_summary_interval, always the latest. Ask room.members for names."""

    room: str
    count: int
    version: int


class RoomDeleted(ServerBase, tag="room.deleted"):
    """The room was deleted (by the app's backend): every member left it at once, its
    history is gone. The session is no longer in the room; joining it again makes a new one."""

    room: str
    version: int
    reason: str = "deleted"


class RoomRemoved(ServerBase, tag="room.removed"):
    """The app's backend took this session out of the room (a kick from the room): the
    connection stays up, the session is no longer in the room; joining it again is allowed
    (the backend decides whether its rights still do)."""

    room: str
    reason: str  # a leave reason: "kicked"
    message: str | None = None


class DeviceDropped(ServerBase, tag="device.dropped"):
    """A device of a member lost its transport and is in grace (rooms that asked only)."""

    room: str
    user: str
    device: str
    grace: float


class DeviceBack(ServerBase, tag="device.back"):
    room: str
    user: str
    device: str


class DeviceGone(ServerBase, tag="device.gone"):
    room: str
    user: str
    device: str
    reason: str


class ForceLeave(ServerBase, tag="force_leave"):
    """The server ended this session (inactivity, kick); the connection closes next."""

    reason: str
    message: str


class Error(ServerBase, tag="error"):
    code: str
    message: str
    field: str | None = None
    ref: Ref = None


ServerMessage = (
    Welcome
    | HeartbeatAck
    | Refreshed
    | RoomJoined
    | RoomLeft
    | RoomMembersReply
    | RoomCountReply
    | RoomMetaUpdated
    | StatusUpdated
    | Presence
    | PresenceSubscribed
    | PresenceUnsubscribed
    | MemberJoined
    | MemberLeft
    | MemberUpdated
    | RoomBatch
    | RoomSummary
    | RoomDeleted
    | RoomRemoved
    | DeviceDropped
    | DeviceBack
    | DeviceGone
    | ForceLeave
    | Error
    | MessageAck
    | MessageEvent
    | MessageEdited
    | MessageDeleted
    | Receipt
    | RoomReadReply
    | RoomHistoryReply
    | RoomRecovered
    | TypingEvent
)
