"""Room messaging requests: send, edit, delete, receipts, read state, history, typing, and
the recovery of what a returning session missed.

Messages go out once per room on the room channel (the sending session gets the ack, not a
copy); receipts go to their authors on per-user channels; typing changes go to the room when
the set of typing users changes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from presenced.errors import ProtocolError
from presenced.presence.history import MessageState
from presenced.presence.liveness import DeadlineKind
from presenced.presence.session import Session
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
from presenced.protocol.codec import encode
from presenced.protocol.codes import ErrorCode
from presenced.server.connection import Connection
from presenced.server.fanout import room_channel, user_channel
from presenced.server.node import Node
from presenced.server.wire import wire_event
from presenced.typing import RoomId, UserId

__all__ = [
    "HANDLERS",
    "clear_typing",
    "publish_typing",
    "recover",
    "typing_expired",
    "wire_event",
]

_body_encoder = msgspec.json.Encoder()
ReceiptKind = Literal["delivered", "seen"]


def _member_room(session: Session, room: str) -> RoomId:
    if room not in session.rooms:
        raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"not a member of room {room!r}", field="room")
    return RoomId(room)


def _check_body(node: Node, body: Any, field: str = "body") -> None:
    size = len(_body_encoder.encode(body))
    limit = node.settings.max_message_bytes
    if size > limit:
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"message body of {size} bytes is over the limit of {limit}",
            field=field,
        )


async def _send(node: Node, conn: Connection, session: Session, msg: MessageSend) -> None:
    room = _member_room(session, msg.room)
    _check_body(node, msg.body)
    if not conn.message_bucket.take(node.clock.monotonic()):
        raise ProtocolError(
            ErrorCode.MESSAGE_RATE_LIMITED,
            f"over {node.settings.message_rate:g} messages/s: message not delivered",
        )
    result = await node.backplane.messages.append(
        room,
        session.user,
        session.device,
        msg.temp_id,
        msg.body,
        node.clock.wall(),
        secrets.token_urlsafe(12),
    )
    event = result.event
    if not result.duplicate:
        await node.backplane.broker.publish(
            room_channel(room), encode(wire_event(event)), session.id
        )
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
    await clear_typing(node, session, room)
    if not result.duplicate and result.seen_before < event.offset - 1:
        # Writing in a room means having read it: the store marked it seen up to this
        # message; the authors of what that covered get their receipts.
        await _notify_authors(node, session, room, "seen", result.seen_before, event.offset)


async def _amend(
    node: Node,
    conn: Connection,
    session: Session,
    room_name: str,
    message_id: str,
    body: Any,
    ref: Any,
) -> None:
    room = _member_room(session, room_name)
    if body is not None:
        _check_body(node, body)
    messages = node.backplane.messages
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
    event = await messages.amend(room, message_id, session.user, body, node.clock.wall())
    if event is None:  # deleted or trimmed in between
        raise ProtocolError(
            ErrorCode.MESSAGE_NOT_FOUND, f"message {message_id!r} is gone", field="id"
        )
    wire = wire_event(event)
    await node.backplane.broker.publish(room_channel(room), encode(wire), session.id)
    assert isinstance(wire, MessageEdited | MessageDeleted)
    wire.ref = ref  # the editor's own copy doubles as the reply
    conn.send(wire)


async def _edit(node: Node, conn: Connection, session: Session, msg: MessageEdit) -> None:
    await _amend(node, conn, session, msg.room, msg.id, msg.body, msg.ref)


async def _delete(node: Node, conn: Connection, session: Session, msg: MessageDelete) -> None:
    await _amend(node, conn, session, msg.room, msg.id, None, msg.ref)


async def _receipt(
    node: Node, session: Session, room_name: str, kind: ReceiptKind, offset: int
) -> None:
    room = _member_room(session, room_name)
    messages = node.backplane.messages
    old, new = await messages.mark(room, session.user, kind, offset)
    if new > old:
        await _notify_authors(node, session, room, kind, old, new)


async def _notify_authors(
    node: Node, session: Session, room: RoomId, kind: ReceiptKind, old: int, new: int
) -> None:
    """``session``'s user has ``kind`` up to ``new`` (from ``old``): tell those authors."""
    authors = await node.backplane.messages.authors_between(room, old, new)
    authors.discard(session.user)
    if not authors:
        return
    payload = encode(Receipt(room=room, kind=kind, user=session.user, offset=new))
    for author in sorted(authors):
        await node.backplane.broker.publish(user_channel(author), payload)


async def _delivered(node: Node, conn: Connection, session: Session, msg: ReceiptDelivered) -> None:
    await _receipt(node, session, msg.room, "delivered", msg.offset)


async def _seen(node: Node, conn: Connection, session: Session, msg: ReceiptSeen) -> None:
    await _receipt(node, session, msg.room, "seen", msg.offset)


async def _read(node: Node, conn: Connection, session: Session, msg: RoomRead) -> None:
    room = _member_room(session, msg.room)
    messages = node.backplane.messages
    epoch, offset = await messages.position(room)
    last_read, unread = await messages.read_state(room, session.user)
    conn.send(
        RoomReadReply(
            room=room, epoch=epoch, offset=offset, last_read=last_read, unread=unread, ref=msg.ref
        )
    )


async def _history(node: Node, conn: Connection, session: Session, msg: RoomHistory) -> None:
    room = _member_room(session, msg.room)
    messages = node.backplane.messages
    epoch, offset = await messages.position(room)
    kept = await messages.last_messages(room, msg.limit, msg.before, node.clock.wall())
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


def _typing_key(session: Session, room: RoomId) -> str:
    return f"{session.id}\x1f{room}"


async def _typing_start(node: Node, conn: Connection, session: Session, msg: TypingStart) -> None:
    room = _member_room(session, msg.room)
    now = node.clock.monotonic()
    key = _typing_key(session, room)
    last = node.typing_renewed.get(key)
    if last is not None and now - last < node.settings.typing_throttle:
        return  # throttled: the indicator is already on and was renewed just now
    node.typing_renewed[key] = now
    node.registry.arm(DeadlineKind.TYPING, key, now + node.settings.typing_timeout)
    users = await node.backplane.typing.start(room, session.user)
    if users is not None:
        await publish_typing(node, room, users, session.id)


async def _typing_stop(node: Node, conn: Connection, session: Session, msg: TypingStop) -> None:
    room = _member_room(session, msg.room)
    await clear_typing(node, session, room)


async def clear_typing(node: Node, session: Session, room: RoomId) -> None:
    """Stop this session's typing indicator in a room, if it has one."""
    key = _typing_key(session, room)
    if node.typing_renewed.pop(key, None) is None:
        return
    node.registry.disarm(DeadlineKind.TYPING, key)
    users = await node.backplane.typing.stop(room, session.user)
    if users is not None:
        await publish_typing(node, room, users, session.id)


async def typing_expired(node: Node, key: str) -> None:
    """A TYPING deadline fired: the session stopped renewing."""
    session_id, _, room = key.partition("\x1f")
    node.typing_renewed.pop(key, None)
    session = node.registry.get(session_id)  # type: ignore[arg-type]
    if session is None:
        return
    users = await node.backplane.typing.stop(RoomId(room), session.user)
    if users is not None:
        await publish_typing(node, RoomId(room), users, None)


async def publish_typing(
    node: Node, room: RoomId, users: Iterable[UserId], origin: str | None
) -> None:
    event = TypingEvent(room=room, users=list(users))
    await node.backplane.broker.publish(room_channel(room), encode(event), origin)


# --- recovery ----------------------------------------------------------------------------


async def recover(
    node: Node, conn: Connection, session: Session, room: RoomId, since: Position | None
) -> None:
    """Send the events of ``room`` after ``since`` (or after the session's mark)."""
    if since is None:
        mark = session.marks.get(room)
        if mark is None:
            return
        since = Position(epoch=mark[0], offset=mark[1])
    found = await node.backplane.messages.since(room, since.epoch, since.offset, node.clock.wall())
    conn.send(
        RoomRecovered(
            room=room,
            epoch=found.epoch,
            offset=found.offset,
            recovered=found.recovered,
            events=[wire_event(e) for e in found.events],
        )
    )


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
