"""Room messaging requests: send, edit, delete, receipts, read state, history and typing.

Messages go out once per room on the room channel (the sending session gets the ack, not a
copy); receipts go to their authors on per-user channels. Typing indicators are session
state, kept by the :class:`~presenced.server.lifecycle.Lifecycle`; these handlers only
validate and hand them over.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from presenced.errors import ProtocolError
from presenced.presence.history import MessageState
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
from presenced.typing import RoomId

if TYPE_CHECKING:
    from presenced.server.connection import Connection

__all__ = ["HANDLERS", "member_room"]

_body_encoder = msgspec.json.Encoder()
ReceiptKind = Literal["delivered", "seen"]


def member_room(session: Session, room: str) -> RoomId:
    if room not in session.rooms:
        raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"not a member of room {room!r}", field="room")
    return RoomId(room)


def _check_body(lc: Lifecycle, body: Any, field: str = "body") -> None:
    size = len(_body_encoder.encode(body))
    limit = lc.settings.max_message_bytes
    if size > limit:
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"message body of {size} bytes is over the limit of {limit}",
            field=field,
        )


async def _send(lc: Lifecycle, conn: Connection, session: Session, msg: MessageSend) -> None:
    room = member_room(session, msg.room)
    _check_body(lc, msg.body)
    if not conn.message_bucket.take(lc.clock.monotonic()):
        raise ProtocolError(
            ErrorCode.MESSAGE_RATE_LIMITED,
            f"over {lc.settings.message_rate:g} messages/s: message not delivered",
        )
    result = await lc.backplane.messages.append(
        room,
        session.user,
        session.device,
        msg.temp_id,
        msg.body,
        lc.clock.wall(),
        secrets.token_urlsafe(12),
    )
    event = result.event
    if not result.duplicate:
        await lc.backplane.broker.publish(room_channel(room), encode(wire_event(event)), session.id)
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
    if not result.duplicate and result.seen_before < event.offset - 1:
        # Writing in a room means having read it: the store marked it seen up to this
        # message; the authors of what that covered get their receipts.
        await _notify_authors(lc, session, room, "seen", result.seen_before, event.offset)


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
        _check_body(lc, body)
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
    event = await messages.amend(room, message_id, session.user, body, lc.clock.wall())
    if event is None:  # deleted or trimmed in between
        raise ProtocolError(
            ErrorCode.MESSAGE_NOT_FOUND, f"message {message_id!r} is gone", field="id"
        )
    wire = wire_event(event)
    await lc.backplane.broker.publish(room_channel(room), encode(wire), session.id)
    assert isinstance(wire, MessageEdited | MessageDeleted)
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
    if new > old:
        await _notify_authors(lc, session, room, kind, old, new)


async def _notify_authors(
    lc: Lifecycle, session: Session, room: RoomId, kind: ReceiptKind, old: int, new: int
) -> None:
    """``session``'s user has ``kind`` up to ``new`` (from ``old``): tell those authors."""
    authors = await lc.backplane.messages.authors_between(room, old, new)
    authors.discard(session.user)
    if not authors:
        return
    payload = encode(Receipt(room=room, kind=kind, user=session.user, offset=new))
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
