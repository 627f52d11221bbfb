"""The HTTP API's request and response bodies, as msgspec Structs.

One set of types serves both ends: the admin server (:mod:`presenced.http`) decodes requests
into them and derives its OpenAPI schema from them, and the typed client
(:mod:`presenced.api.client`) decodes responses into them. Times are Unix seconds (wall
clock); ids follow the protocol's rule (1-256 characters, no white space).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from presenced.events.export import DeadLetter
from presenced.protocol.fields import MetaObject, Name

__all__ = [
    "Body",
    "CleanupReport",
    "Count",
    "Cursor",
    "DeadLetterList",
    "DeletedRoom",
    "DevicePresence",
    "DisconnectRequest",
    "EditRequest",
    "ErrorDetail",
    "ErrorReply",
    "HealthReply",
    "HistoryMessage",
    "HistoryReply",
    "KickRequest",
    "Limit",
    "MemberInfo",
    "MemberList",
    "MessageAmended",
    "NodeInfo",
    "NodeList",
    "PresenceDetail",
    "PresenceInfo",
    "PresenceList",
    "PresenceQuery",
    "PublishReply",
    "PublishRequest",
    "Replayed",
    "RoomDetail",
    "RoomInfo",
    "RoomList",
    "RoomRemoveRequest",
    "SessionInfo",
    "SessionList",
    "SinkInfo",
    "SinkList",
    "Stats",
    "SubscribeReply",
    "SubscribeRequest",
    "Targeted",
    "UserList",
]

Body = str | dict[str, Any]
"""A message body: text, or a JSON object (bounded by the server's max_message_bytes)."""

Limit = Annotated[int, Meta(ge=1, le=1000)]
"""A page size: 1 to 1000 (default 100)."""

Cursor = Annotated[str, Meta(min_length=1, max_length=256)]
"""A position from a previous page's ``next_cursor`` (treat it as opaque)."""

IdempotencyKey = Name
"""1-256 characters, no white space (it becomes the message's temp_id)."""
Reason = Annotated[str, Meta(min_length=1, max_length=1024)]


class _Model(Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every body: unknown fields in a request are a 400 naming the field."""


# --- errors and health ------------------------------------------------------------------


class ErrorDetail(_Model):
    code: str
    """``UNAUTHORIZED``, ``FORBIDDEN``, ``BAD_REQUEST``, ``NOT_FOUND``, ``CONFLICT``,
    ``PAYLOAD_TOO_LARGE``, ``METHOD_NOT_ALLOWED``, ``UNAVAILABLE`` or ``INTERNAL``."""
    message: str
    field: str | None = None
    """The offending input, e.g. ``limit``, ``body.users[3]``, ``path.room``."""


class ErrorReply(_Model):
    """Every 4xx and 5xx answer."""

    error: ErrorDetail


class HealthReply(_Model):
    """``/health`` (liveness) and ``/ready`` (readiness) of one node."""

    status: Literal["ok", "degraded", "draining"]
    ready: bool
    node: str
    pid: int
    version: str
    store: str
    connections: int
    sessions: int
    checks: dict[str, bool]
    """``store`` (the last lease renewal reached it), ``subscribed`` (the broker link is up
    and the node re-synced after its last drop), ``accepting`` (not draining)."""


# --- presence ---------------------------------------------------------------------------


class PresenceInfo(_Model):
    """A user's presence as other users see it (invisible users appear offline)."""

    user: str
    online: bool
    status: str
    devices: int
    text: str | None = None
    last_seen: float | None = None


class DevicePresence(_Model):
    """One of a user's sessions, as its presence."""

    session: str
    device: str
    status: str
    state: str
    node: str


class PresenceDetail(PresenceInfo, kw_only=True):
    """One user's presence with each live session (the real status, invisible included)."""

    private_status: str
    sessions: list[DevicePresence]


class PresenceQuery(_Model):
    users: Annotated[list[Name], Meta(min_length=1, max_length=1000)]


class PresenceList(_Model):
    users: list[PresenceInfo]


# --- sessions ---------------------------------------------------------------------------


class SessionInfo(_Model):
    id: str
    user: str
    device: str
    device_info: MetaObject | None
    node: str
    state: str
    """``active`` (connected) or ``grace`` (connection lost, may resume)."""
    status: str
    text: str | None
    connected_at: float
    last_active: float
    rooms: list[str]
    subscriptions: list[str]


class SessionList(_Model):
    sessions: list[SessionInfo]
    next_cursor: str | None = None


class UserList(_Model):
    users: list[str]
    next_cursor: str | None = None


class SubscribeRequest(_Model):
    users: Annotated[list[Name], Meta(min_length=1, max_length=1000)]


class SubscribeReply(_Model):
    sessions: int
    """How many live sessions of the user were told."""


# --- rooms ------------------------------------------------------------------------------


class RoomInfo(_Model):
    room: str
    members: int
    version: int


class RoomList(_Model):
    rooms: list[RoomInfo]
    next_cursor: str | None = None


class RoomDetail(_Model):
    room: str
    members: int
    """Visible members."""
    version: int
    typing: list[str]
    epoch: str
    """The room's message stream: its epoch and latest offset."""
    offset: int


class Count(_Model):
    room: str
    members: int
    version: int


class MemberInfo(_Model):
    user: str
    devices: int
    sessions: list[str]
    joined_at: float
    hidden: bool
    status: str
    text: str | None = None
    meta: MetaObject | None = None


class MemberList(_Model):
    room: str
    version: int
    members: list[MemberInfo]
    next_cursor: str | None = None


class DeletedRoom(_Model):
    room: str
    version: int
    members: int
    """How many users were members (hidden ones included)."""


# --- messages ---------------------------------------------------------------------------


class PublishRequest(_Model):
    body: Body
    user: Name | None = None
    """Publish as this user; without one, the message is the system's (user ``system``)."""
    idempotency_key: IdempotencyKey | None = None
    """The same key again (for the same author, while the message is in history) returns
    the first publish's message instead of sending another."""


class PublishReply(_Model):
    id: str
    room: str
    epoch: str
    offset: int
    duplicate: bool


class EditRequest(_Model):
    body: Body


class MessageAmended(_Model):
    id: str
    room: str
    epoch: str
    offset: int


class HistoryMessage(_Model):
    id: str
    user: str
    device: str
    body: Body
    time: float
    offset: int
    temp_id: str | None = None


class HistoryReply(_Model):
    room: str
    epoch: str
    offset: int
    messages: list[HistoryMessage]
    """Oldest first; ``before`` pages further back."""


# --- moderation ---------------------------------------------------------------------------


class KickRequest(_Model):
    session: Name | None = None
    """Only this session of the user (default: all of them)."""
    message: Reason = "removed by the server"


class RoomRemoveRequest(_Model):
    user: Name
    session: Name | None = None
    message: Reason = "removed from the room"


class DisconnectRequest(_Model):
    session: Name | None = None
    """Only this session of the user (default: all of them)."""


class Targeted(_Model):
    sessions: int
    """How many live sessions the action reached (on every node)."""
    session_ids: list[str]


class CleanupReport(_Model):
    """What one ``POST /v1/cleanup`` did (docs/api.md, "Cleanup")."""

    nodes_reaped: list[str]
    """Dead nodes (lease expired, not yet reaped by another node) this call reaped, sorted."""
    sessions_reaped: int
    """Their sessions: taken into grace on the node that answered (they may still resume;
    those that do not leave when that grace runs out, reason ``node_lost``), and the ones a
    dead node was in the middle of ending, finished there. Not in the two counts below."""
    members_removed: int
    """(room, session) pairs removed because no session record backs them (a CLOSED record
    is left to whoever is ending it), hidden members included: a user with two such sessions
    in a room counts 2, one ghost session in two rooms counts 2. The room sees
    ``member.left`` (``node_lost``) only where it was the user's last session."""
    presence_removed: int
    """(user, session) presence entries removed for the same reason; the user goes offline
    where it was the last."""


# --- cluster ------------------------------------------------------------------------------


class NodeInfo(_Model):
    node: str
    alive: bool
    status: str
    version: str | None = None
    connections: int = 0
    sessions: int = 0
    rooms: int = 0
    started_at: float | None = None
    reported_at: float | None = None


class NodeList(_Model):
    nodes: list[NodeInfo]


class Stats(_Model):
    nodes: int
    nodes_alive: int
    connections: int
    sessions: int
    rooms: int
    users_online: int


# --- the event export ---------------------------------------------------------------------


class SinkInfo(_Model):
    """One sink of the answering node's event export, with its counters."""

    sink: str
    queued: int
    delivered: int
    batches: int
    failures: int
    dead: int
    dropped: int


class SinkList(_Model):
    node: str
    dispatching: bool
    """Whether this node feeds the sinks (always on the memory store; with Valkey/Redis, one
    node at a time: the counters of the others show no deliveries)."""
    sinks: list[SinkInfo]


class DeadLetterList(_Model):
    """The answering node's dead letters (batches a sink refused every try), oldest first."""

    node: str
    dead_letters: list[DeadLetter]
    next_cursor: str | None = None


class Replayed(_Model):
    id: str
    sink: str
    events: int
