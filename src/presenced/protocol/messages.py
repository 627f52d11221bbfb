"""Every message of the wire protocol, as typed structs.

Client requests and server messages are two tagged unions keyed on ``type``. Field limits that
the decoder can check on its own (lengths, enums) are declared here with ``Meta`` so a bad
field is rejected before any handler runs; limits that come from configuration (rooms per
session, subscriptions per session) are checked by the server. docs/protocol.md is the prose
of this file.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

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
    "RoomCount",
    "RoomCountReply",
    "RoomJoin",
    "RoomJoined",
    "RoomLeave",
    "RoomLeft",
    "RoomMembers",
    "RoomMembersReply",
    "RoomMeta",
    "RoomMetaUpdated",
    "ServerMessage",
    "StatusSet",
    "StatusUpdated",
    "Welcome",
]

# --- field types -------------------------------------------------------------------------

Ref = str | int | None
"""Client-chosen request id, echoed in the reply or error."""

Name = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[^\s]+\Z")]
"""A room, user or device id: 1-256 characters, no white space."""

StatusText = Annotated[str, Meta(max_length=256)]
ClientStatus = Literal["online", "away", "busy", "dnd", "invisible"]
CLIENT_STATUSES: tuple[str, ...] = ("online", "away", "busy", "dnd", "invisible")
Meta_ = dict[str, Any]
"""Free-form JSON object (member metadata, device info); size bounded by the frame limit."""


class _Client(Struct, tag_field="type", kw_only=True, forbid_unknown_fields=False):
    """Base of client requests: every one may carry ``ref``."""

    ref: Ref = None


class _Server(Struct, tag_field="type", kw_only=True, omit_defaults=True):
    """Base of server messages: fields left at their default are not sent."""


# --- client -> server --------------------------------------------------------------------


class Auth(_Client, tag="auth"):
    """First message when the credentials were not given in the connect URL.

    ``token`` is a JWT; ``user`` names the user in insecure development mode only. ``resume``
    is the resume token of a session in grace: when valid, the session is restored.
    """

    device: Name
    token: str | None = None
    user: Name | None = None
    device_info: Meta_ | None = None
    resume: str | None = None
    protocol: int = 1


class Heartbeat(_Client, tag="heartbeat"):
    """Application heartbeat: refreshes the session and counts as activity; acknowledged."""


class Activity(_Client, tag="activity"):
    """Explicit activity (user interaction) that resets the idle clock; not acknowledged."""


class RoomJoin(_Client, tag="room.join"):
    """Join a room; ``device_events`` asks for device.dropped / device.back / device.gone."""

    room: Name
    meta: Meta_ | None = None
    device_events: bool = False


class RoomLeave(_Client, tag="room.leave"):
    room: Name


class RoomMembers(_Client, tag="room.members"):
    room: Name


class RoomCount(_Client, tag="room.count"):
    room: Name


class RoomMeta(_Client, tag="room.meta"):
    """Replace this session's member metadata in a room; others get member.updated."""

    room: Name
    meta: Meta_


class StatusSet(_Client, tag="status.set"):
    status: ClientStatus
    text: StatusText | None = None


class PresenceSubscribe(_Client, tag="presence.subscribe"):
    users: Annotated[list[Name], Meta(min_length=1, max_length=1000)]


class PresenceUnsubscribe(_Client, tag="presence.unsubscribe"):
    users: Annotated[list[Name], Meta(min_length=1, max_length=1000)]


class Logout(_Client, tag="logout"):
    """End the session now: every room sees it leave at once (no grace)."""


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
)

# --- server -> client --------------------------------------------------------------------


class Member(Struct, kw_only=True, omit_defaults=True):
    """One user as a room sees it: aggregated status, device count, metadata."""

    user: str
    status: str
    devices: int
    text: str | None = None
    meta: Meta_ | None = None


class Welcome(_Server, tag="welcome"):
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
    ref: Ref = None


class HeartbeatAck(_Server, tag="heartbeat.ack"):
    time: float
    ref: Ref = None


class RoomJoined(_Server, tag="room.joined"):
    room: str
    version: int
    members: list[Member]
    ref: Ref = None


class RoomLeft(_Server, tag="room.left"):
    room: str
    ref: Ref = None


class RoomMembersReply(_Server, tag="room.members"):
    room: str
    version: int
    members: list[Member]
    ref: Ref = None


class RoomCountReply(_Server, tag="room.count"):
    room: str
    version: int
    count: int
    ref: Ref = None


class RoomMetaUpdated(_Server, tag="room.meta"):
    """Reply to room.meta: the metadata now in force and the room version."""

    room: str
    version: int
    meta: Meta_
    ref: Ref = None


class StatusUpdated(_Server, tag="status.updated"):
    """This session's status was set; ``aggregate`` is the user's status over all devices."""

    status: str
    aggregate: str
    text: str | None = None
    ref: Ref = None


class Presence(_Server, tag="presence"):
    """A watched user's presence, now or after a change. Invisible users appear offline."""

    user: str
    online: bool
    status: str
    devices: int
    text: str | None = None
    last_seen: float | None = None


class PresenceSubscribed(_Server, tag="presence.subscribed"):
    users: list[Presence]
    ref: Ref = None


class PresenceUnsubscribed(_Server, tag="presence.unsubscribed"):
    users: list[str]
    ref: Ref = None


class MemberJoined(_Server, tag="member.joined"):
    room: str
    version: int
    user: str
    status: str
    devices: int
    text: str | None = None
    meta: Meta_ | None = None


class MemberLeft(_Server, tag="member.left"):
    room: str
    version: int
    user: str
    reason: str


class MemberUpdated(_Server, tag="member.updated"):
    room: str
    version: int
    user: str
    status: str
    devices: int
    text: str | None = None
    meta: Meta_ | None = None


class DeviceDropped(_Server, tag="device.dropped"):
    """A device of a member lost its transport and is in grace (rooms that asked only)."""

    room: str
    user: str
    device: str
    grace: float


class DeviceBack(_Server, tag="device.back"):
    room: str
    user: str
    device: str


class DeviceGone(_Server, tag="device.gone"):
    room: str
    user: str
    device: str
    reason: str


class ForceLeave(_Server, tag="force_leave"):
    """The server ended this session (inactivity, kick); the connection closes next."""

    reason: str
    message: str


class Error(_Server, tag="error"):
    code: str
    message: str
    field: str | None = None
    ref: Ref = None


ServerMessage = (
    Welcome
    | HeartbeatAck
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
    | DeviceDropped
    | DeviceBack
    | DeviceGone
    | ForceLeave
    | Error
)
