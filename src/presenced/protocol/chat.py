"""The messaging part of the wire protocol: room messages, edits, deletes, receipts, typing,
history and recovery.

Every room has an event stream: each message, edit and delete gets the next ``offset`` in the
room, within an ``epoch`` (a name for the stream's current life; a new epoch means earlier
offsets mean nothing). A client that remembers ``(epoch, offset)`` can ask for exactly what
it missed.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from presenced.protocol.fields import ClientBase, Name, Ref, ServerBase

__all__ = [
    "API_DEVICE",
    "SYSTEM_USER",
    "Body",
    "MessageAck",
    "MessageDelete",
    "MessageDeleted",
    "MessageEdit",
    "MessageEdited",
    "MessageEvent",
    "MessageSend",
    "Position",
    "Receipt",
    "ReceiptDelivered",
    "ReceiptSeen",
    "RoomEvent",
    "RoomHistory",
    "RoomHistoryReply",
    "RoomRead",
    "RoomReadReply",
    "RoomRecovered",
    "TypingEvent",
    "TypingStart",
    "TypingStop",
]

Body = str | dict[str, object]
"""A message body: text, or a JSON object (size bounded by max_message_bytes)."""

SYSTEM_USER = "system"
"""The author of a message the app's backend publishes in no user's name (a system
message); also the editor named by an edit or delete the backend makes. Reserved: no client
may authenticate as this user."""

API_DEVICE = "api"
"""The device of every message the app's backend publishes (as a user or as the system)."""

Offset = Annotated[int, Meta(ge=0)]


class Position(Struct, kw_only=True):
    """Where a client is in a room's stream: the last offset it saw, in which epoch."""

    epoch: str
    offset: Offset


# --- client -> server --------------------------------------------------------------------


class MessageSend(ClientBase, tag="message.send"):
    """Send a message; ``temp_id`` is the client's own id for it: re-sending the same
    temp_id (after a reconnect) returns the first ack instead of a duplicate."""

    room: Name
    body: Body
    temp_id: Name | None = None


class MessageEdit(ClientBase, tag="message.edit"):
    room: Name
    id: Name
    body: Body


class MessageDelete(ClientBase, tag="message.delete"):
    room: Name
    id: Name


class ReceiptDelivered(ClientBase, tag="receipt.delivered"):
    """Messages up to ``offset`` reached this device (the SDK sends it on receipt)."""

    room: Name
    offset: Offset


class ReceiptSeen(ClientBase, tag="receipt.seen"):
    """The user has read the room up to ``offset``."""

    room: Name
    offset: Offset


class RoomRead(ClientBase, tag="room.read"):
    """Ask for this user's read position and unread count in a room."""

    room: Name


class RoomHistory(ClientBase, tag="room.history"):
    """The last ``limit`` messages of a room (before ``before`` when given)."""

    room: Name
    limit: Annotated[int, Meta(ge=1, le=1000)] = 50
    before: Offset | None = None


class TypingStart(ClientBase, tag="typing.start"):
    room: Name


class TypingStop(ClientBase, tag="typing.stop"):
    room: Name


# --- server -> client --------------------------------------------------------------------


class MessageEvent(ServerBase, tag="message"):
    room: str
    epoch: str
    offset: int
    id: str
    user: str
    device: str
    body: Body
    time: float
    temp_id: str | None = None


class MessageEdited(ServerBase, tag="message.edited"):
    room: str
    epoch: str
    offset: int
    id: str
    user: str  # who edited
    body: Body
    time: float
    ref: Ref = None


class MessageDeleted(ServerBase, tag="message.deleted"):
    room: str
    epoch: str
    offset: int
    id: str
    user: str  # who deleted
    time: float
    ref: Ref = None


RoomEvent = MessageEvent | MessageEdited | MessageDeleted


class MessageAck(ServerBase, tag="message.ack"):
    """The message is stored and on its way: ``temp_id`` now has ``id`` and ``offset``."""

    room: str
    epoch: str
    offset: int
    id: str
    duplicate: bool
    temp_id: str | None = None
    ref: Ref = None


class Receipt(ServerBase, tag="receipt"):
    """To a message's author: ``user`` has had messages up to ``offset`` delivered / seen."""

    room: str
    kind: Literal["delivered", "seen"]
    user: str
    offset: int


class RoomReadReply(ServerBase, tag="room.read"):
    room: str
    epoch: str
    offset: int  # the room's latest offset
    last_read: int
    unread: int
    ref: Ref = None


class RoomHistoryReply(ServerBase, tag="room.history"):
    room: str
    epoch: str
    offset: int
    messages: list[MessageEvent]
    ref: Ref = None


class RoomRecovered(ServerBase, tag="room.recovered"):
    """What a resumed or rejoining session missed in a room, in order; ``recovered`` false
    means the gap is beyond the kept history (or the epoch changed): reload the room."""

    room: str
    epoch: str
    offset: int
    recovered: bool
    events: list[RoomEvent] = msgspec.field(default_factory=list)


class TypingEvent(ServerBase, tag="typing"):
    """The users typing in a room now (sent when the set changes); ``seq`` numbers the room's
    changes: a greater one is newer."""

    room: str
    users: list[str]
    seq: int
