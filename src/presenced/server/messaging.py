"""Room messaging requests: send, edit, delete, receipts, read state, history and typing.

Messages go out once per room on the room channel (the sending session gets the ack, not a
copy); receipts go to their authors on per-user channels. Typing indicators are session
state, kept by the :class:`~presenced.server.lifecycle.Lifecycle`; these handlers only
validate and hand them over.

The steps a message takes once its request is checked (:func:`post_message`,
:func:`amend_message`, :func:`notify_seen`) are shared with the backend's messages
(:mod:`presenced.server.admin`), so both reach every member through the same path.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from presenced.errors import ProtocolError
from presenced.presence.history import AppendResult, MessageState
from presenced.presence.session import Session
from presenced.protocol.chat import (
    MessageAck,
    MessageDelete,
    MessageDeleted,
    MessageEdit,
    MessageEdited,
    MessageEvent,
    MessageSend,
    Receipt,
    ReceiptDelivered,
    ReceiptSeen,
    RoomHistory,
    RoomHistoryReply,
    RoomRead,
    RoomReadReply,
    TypingStart,
    TypingStop,
)
from presenced.protocol.codec import encode
from presenced.protocol.codes import ErrorCode
from presenced.server.fanout import room_channel, user_channel
from presenced.server.lifecycle import Lifecycle
from presenced.server.wire import wire_event
from presenced.typing import RoomId, UserId

if TYPE_CHECKING:
    from presenced.server.connection import Connection

__all__ = [
    "HANDLERS",
    "amend_message",
    "check_body",
    "member_room",
    "notify_seen",
    "post_message",
]

_body_encoder = msgspec.json.Encoder()
ReceiptKind = Literal["delivered", "seen"]


def member_room(session: Session, room: str) -> RoomId:
    if room not in session.rooms:
        raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"not a member of room {room!r}", field="room")
    return RoomId(room)


def check_body(lc: Lifecycle, body: Any, field: str = "body") -> None:
    """Refuse a body over ``max_message_bytes`` (its compact JSON encoding)."""
    size = len(_body_encoder.encode(body))
    limit = lc.settings.max_message_bytes
    if size > limit:
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"message body of {size} bytes is over the limit of {limit}",
            field=field,
        )


async def post_message(
    lc: Lifecycle,
    room: RoomId,
    user: UserId,
    device: str,
    temp_id: str | None,
    body: Any,
    origin: str | None,
) -> AppendResult:
    """Store a (checked) message and publish it once on the room's channel, skipping the
    ``origin`` session (it gets an ack instead); a re-sent ``temp_id`` is stored and
    published no more (``duplicate``)."""
    result = await lc.backplane.messages.append(
        room, user, device, temp_id, body, lc.clock.wall(), secrets.token_urlsafe(12)
    )
    if not result.duplicate:
        wire = wire_event(result.event)
        if lc.export.enabled:
            lc.export.emit("message.created", room=room, user=user, data=_exported(wire))
        await lc.backplane.broker.publish(room_channel(room), encode(wire), origin)
    return result


async def notify_seen(lc: Lifecycle, user: UserId, room: RoomId, result: AppendResult) -> None:
    """Writing in a room means having read it: the store marked it seen by ``user`` up to
    the message; the authors of what that covered get their receipts."""
    if not result.duplicate and result.seen_before < result.event.offset:
        data = {"offset": result.event.offset, "previous": result.seen_before}
        lc.export.emit("receipt.seen", room=room, user=user, data=data)
    if not result.duplicate and result.seen_before < result.event.offset - 1:
        await _notify_authors(lc, user, room, "seen", result.seen_before, result.event.offset)


async def amend_message(
    lc: Lifecycle,
    room: RoomId,
    message_id: str,
    editor: UserId,
    body: Any,
    origin: str | None,
) -> MessageEdited | MessageDeleted | None:
    """Edit (``body`` given) or delete (None) a kept message, whoever's it is (the caller
    checked who may), and publish the change on the room's channel, skipping ``origin``.
    None when the message is not kept (unknown, trimmed or deleted)."""
    event = await lc.backplane.messages.amend(room, message_id, editor, body, lc.clock.wall())
    if event is None:
        return None
    wire = wire_event(event)
    assert isinstance(wire, MessageEdited | MessageDeleted)
    if lc.export.enabled:
        kind = "message.edited" if isinstance(wire, MessageEdited) else "message.deleted"
        lc.export.emit(kind, room=room, user=editor, data=_exported(wire))
    await lc.backplane.broker.publish(room_channel(room), encode(wire), origin)
    return wire


async def _send(lc: Lifecycle, conn: Connection, session: Session, msg: MessageSend) -> None:
    room = member_room(session, msg.room)
    check_body(lc, msg.body)
    if not conn.message_bucket.take(lc.clock.monotonic()):
        raise ProtocolError(
            ErrorCode.MESSAGE_RATE_LIMITED,
            f"over {lc.settings.message_rate:g} messages/s: message not delivered",
        )
    result = await post_message(
        lc, room, session.user, session.device, msg.temp_id, msg.body, session.id
    )
    event = result.event
    conn.send(
        MessageAck(
            room=room,
            epoch=event.epoch,
            offset=event.offset,
            id=event.message_id,
            duplicate=result.duplicate,
            temp_id=msg.temp_id,
            ref=msg.ref,
        )
    )
    await lc.clear_typing(session, room)
    await notify_seen(lc, session.user, room, result)


async def _amend(
    lc: Lifecycle,
    conn: Connection,
    session: Session,
    room_name: str,
    message_id: str,
    body: Any,
    ref: Any,
) -> None:
    room = member_room(session, room_name)
    if body is not None:
        check_body(lc, body)
    messages = lc.backplane.messages
    state: MessageState | None = await messages.message(room, message_id)
    if state is None:
        raise ProtocolError(
            ErrorCode.MESSAGE_NOT_FOUND,
            f"no message {message_id!r} in the kept history of {room!r}",
            field="id",
        )
    if state.author != session.user and not session.moderator:
        action = "edit" if body is not None else "delete"
        raise ProtocolError(
            ErrorCode.NOT_AUTHOR,
            f"only the author or a moderator may {action} this message",
            field="id",
        )
    wire = await amend_message(lc, room, message_id, session.user, body, session.id)
    if wire is None:  # deleted or trimmed in between
        raise ProtocolError(
            ErrorCode.MESSAGE_NOT_FOUND, f"message {message_id!r} is gone", field="id"
        )
    wire.ref = ref  # the editor's own copy doubles as the reply
    conn.send(wire)


async def _edit(lc: Lifecycle, conn: Connection, session: Session, msg: MessageEdit) -> None:
    await _amend(lc, conn, session, msg.room, msg.id, msg.body, msg.ref)


async def _delete(lc: Lifecycle, conn: Connection, session: Session, msg: MessageDelete) -> None:
    await _amend(lc, conn, session, msg.room, msg.id, None, msg.ref)


async def _receipt(
    lc: Lifecycle, session: Session, room_name: str, kind: ReceiptKind, offset: int
) -> None:
    room = member_room(session, room_name)
    messages = lc.backplane.messages
    old, new = await messages.mark(room, session.user, kind, offset)
    if new > old and kind == "seen":
        data = {"offset": new, "previous": old}
        lc.export.emit("receipt.seen", room=room, user=session.user, data=data)
    if new > old:
        await _notify_authors(lc, session.user, room, kind, old, new)


async def _notify_authors(
    lc: Lifecycle, user: UserId, room: RoomId, kind: ReceiptKind, old: int, new: int
) -> None:
    """``user`` has ``kind`` up to ``new`` (from ``old``): tell those authors."""
    authors = await lc.backplane.messages.authors_between(room, old, new)
    authors.discard(user)
    if not authors:
        return
    payload = encode(Receipt(room=room, kind=kind, user=user, offset=new))
    for author in sorted(authors):
        await lc.backplane.broker.publish(user_channel(author), payload)


async def _delivered(
    lc: Lifecycle, conn: Connection, session: Session, msg: ReceiptDelivered
) -> None:
    await _receipt(lc, session, msg.room, "delivered", msg.offset)


async def _seen(lc: Lifecycle, conn: Connection, session: Session, msg: ReceiptSeen) -> None:
    await _receipt(lc, session, msg.room, "seen", msg.offset)


async def _read(lc: Lifecycle, conn: Connection, session: Session, msg: RoomRead) -> None:
    room = member_room(session, msg.room)
    messages = lc.backplane.messages
    epoch, offset = await messages.position(room)
    last_read, unread = await messages.read_state(room, session.user)
    conn.send(
        RoomReadReply(
            room=room, epoch=epoch, offset=offset, last_read=last_read, unread=unread, ref=msg.ref
        )
    )


async def _history(lc: Lifecycle, conn: Connection, session: Session, msg: RoomHistory) -> None:
    room = member_room(session, msg.room)
    messages = lc.backplane.messages
    epoch, offset = await messages.position(room)
    kept = await messages.last_messages(room, msg.limit, msg.before, lc.clock.wall())
    conn.send(
        RoomHistoryReply(
            room=room,
            epoch=epoch,
            offset=offset,
            messages=[_current(room, epoch, m) for m in kept],
            ref=msg.ref,
        )
    )


def _current(room: RoomId, epoch: str, m: MessageState) -> MessageEvent:
    assert m.body is not None
    return MessageEvent(
        room=room,
        epoch=epoch,
        offset=m.offset,
        id=m.id,
        user=m.author,
        device=m.device,
        body=m.body,
        time=m.time,
        temp_id=m.temp_id,
    )


# --- typing ----------------------------------------------------------------------------------


async def _typing_start(
    lc: Lifecycle, conn: Connection, session: Session, msg: TypingStart
) -> None:
    await lc.start_typing(session, member_room(session, msg.room))


async def _typing_stop(lc: Lifecycle, conn: Connection, session: Session, msg: TypingStop) -> None:
    await lc.clear_typing(session, member_room(session, msg.room))


HANDLERS: dict[type[Any], Any] = {
    MessageSend: _send,
    MessageEdit: _edit,
    MessageDelete: _delete,
    ReceiptDelivered: _delivered,
    ReceiptSeen: _seen,
    RoomRead: _read,
    RoomHistory: _history,
    TypingStart: _typing_start,
    TypingStop: _typing_stop,
}


def _exported(wire: Any) -> dict[str, Any]:
    """A message event's fields as the export's ``data`` (the envelope has type and room)."""
    data: dict[str, Any] = msgspec.structs.asdict(wire)
    data.pop("room", None)
    data.pop("ref", None)  # the editor's request, not the message's
    return data
