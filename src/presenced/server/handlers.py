"""What each authenticated request does: one small coroutine per message type.

Handlers check what only the server can check (room patterns, per-session limits,
membership), ask the backplane for the transition, publish it through the node, then reply.
A :class:`ProtocolError` raised here becomes an ``error`` reply with the request's ref.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from presenced.auth import room_allowed
from presenced.errors import ProtocolError
from presenced.presence.session import RoomOptions, Session
from presenced.protocol.codes import ErrorCode, LeaveReason
from presenced.protocol.messages import (
    Activity,
    Auth,
    ClientMessage,
    Heartbeat,
    HeartbeatAck,
    Logout,
    PresenceSubscribe,
    PresenceSubscribed,
    PresenceUnsubscribe,
    PresenceUnsubscribed,
    RoomCount,
    RoomCountReply,
    RoomJoin,
    RoomJoined,
    RoomLeave,
    RoomLeft,
    RoomMembers,
    RoomMembersReply,
    RoomMeta,
    RoomMetaUpdated,
    StatusSet,
    StatusUpdated,
)
from presenced.server.connection import Connection
from presenced.server.node import Node
from presenced.typing import RoomId, UserId

__all__ = ["dispatch"]

log = logging.getLogger(__name__)

Handler = Callable[[Node, Connection, Session, Any], Awaitable[None]]


async def dispatch(node: Node, conn: Connection, message: ClientMessage) -> None:
    """Route an authenticated request to its handler."""
    session = conn.session
    assert session is not None
    handler = _HANDLERS.get(type(message))
    if handler is None:
        from presenced.server.messaging import HANDLERS

        handler = HANDLERS[type(message)]
    await handler(node, conn, session, message)


def _check_room(session: Session, room: str) -> RoomId:
    if not room_allowed(session.room_patterns, room):
        raise ProtocolError(
            ErrorCode.ROOM_FORBIDDEN, f"your token does not allow room {room!r}", field="room"
        )
    return RoomId(room)


def _member_room(session: Session, room: str) -> RoomId:
    if room not in session.rooms:
        raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"not a member of room {room!r}", field="room")
    return RoomId(room)


async def _auth(node: Node, conn: Connection, session: Session, msg: Auth) -> None:
    raise ProtocolError(ErrorCode.ALREADY_AUTHENTICATED, "this connection is authenticated")


async def _heartbeat(node: Node, conn: Connection, session: Session, msg: Heartbeat) -> None:
    conn.send(HeartbeatAck(time=node.clock.wall(), ref=msg.ref))


async def _activity(node: Node, conn: Connection, session: Session, msg: Activity) -> None:
    """Activity itself was recorded on arrival; here only an auto-away is lifted."""


async def _join(node: Node, conn: Connection, session: Session, msg: RoomJoin) -> None:
    room = _check_room(session, msg.room)
    limit = node.settings.max_rooms_per_session
    if room not in session.rooms and len(session.rooms) >= limit:
        raise ProtocolError(
            ErrorCode.TOO_MANY_ROOMS, f"a session may be in at most {limit} rooms", field="room"
        )
    backplane = node.backplane
    previous = session.rooms.get(room)
    meta = msg.meta if msg.meta is not None else (previous.meta if previous else None)
    session.rooms[room] = RoomOptions(meta=meta, device_events=msg.device_events)
    # The record first: whatever crashes next, no room holds a member its record does not list.
    try:
        if not await node.save(session):
            return
        private = await backplane.presence.get_private(session.user)
        change = await backplane.rooms.add(
            room, session.user, session.id, msg.meta, private.status == "invisible"
        )
    except BaseException:
        await _undo_join(node, session, room, previous)
        raise
    await node.fanout.join_room(conn, room, msg.device_events)
    await node.events.publish_change(change, origin=session.id)
    snapshot = await backplane.rooms.snapshot(room)
    conn.send(
        RoomJoined(
            room=room,
            version=snapshot.version,
            members=await node.events.members(snapshot),
            ref=msg.ref,
        )
    )
    if msg.since is not None:
        from presenced.server.messaging import recover

        await recover(node, conn, session, room, msg.since)


async def _undo_join(
    node: Node, session: Session, room: RoomId, previous: RoomOptions | None
) -> None:
    """The room add failed: the session's rooms become what they were, and are saved again.

    A first join whose add may have landed anyway (a store that failed after applying it) is
    taken out of the room too, with the member.left that pairs any member.joined seen."""
    if previous is not None:
        session.rooms[room] = previous
    else:
        session.rooms.pop(room, None)
    try:
        if previous is None:
            change = await node.backplane.rooms.remove(room, session.user, session.id)
            await node.events.publish_change(change, reason=LeaveReason.LEFT, origin=session.id)
        await node.save(session)
    except Exception:
        log.exception("undoing a failed room.join of %s", room)


async def _leave(node: Node, conn: Connection, session: Session, msg: RoomLeave) -> None:
    room = _member_room(session, msg.room)
    from presenced.server.messaging import clear_typing

    await clear_typing(node, session, room)
    change = await node.backplane.rooms.remove(room, session.user, session.id)
    del session.rooms[room]
    node.fanout.leave_room(conn, room)
    await node.events.publish_change(change, reason=LeaveReason.LEFT, origin=session.id)
    await node.save(session)
    conn.send(RoomLeft(room=room, ref=msg.ref))


async def _members(node: Node, conn: Connection, session: Session, msg: RoomMembers) -> None:
    room = _check_room(session, msg.room)
    snapshot = await node.backplane.rooms.snapshot(room)
    conn.send(
        RoomMembersReply(
            room=room,
            version=snapshot.version,
            members=await node.events.members(snapshot),
            ref=msg.ref,
        )
    )


async def _count(node: Node, conn: Connection, session: Session, msg: RoomCount) -> None:
    room = _check_room(session, msg.room)
    count, version = await node.backplane.rooms.count(room)
    conn.send(RoomCountReply(room=room, version=version, count=count, ref=msg.ref))


async def _meta(node: Node, conn: Connection, session: Session, msg: RoomMeta) -> None:
    room = _member_room(session, msg.room)
    change = await node.backplane.rooms.set_meta(room, session.user, msg.meta)
    session.rooms[room].meta = msg.meta
    await node.events.publish_change(change, origin=session.id)
    await node.save(session)
    conn.send(RoomMetaUpdated(room=room, version=change.version, meta=msg.meta, ref=msg.ref))


async def _status(node: Node, conn: Connection, session: Session, msg: StatusSet) -> None:
    session.status = msg.status
    session.text = msg.text
    session.auto_away = False
    change = await node.set_status(session)
    conn.send(
        StatusUpdated(status=msg.status, aggregate=change.aggregate, text=msg.text, ref=msg.ref)
    )


async def _subscribe(
    node: Node, conn: Connection, session: Session, msg: PresenceSubscribe
) -> None:
    users = [UserId(u) for u in dict.fromkeys(msg.users)]
    new = [u for u in users if u not in session.subscriptions]
    limit = node.settings.max_subscriptions_per_session
    if len(session.subscriptions) + len(new) > limit:
        raise ProtocolError(
            ErrorCode.TOO_MANY_SUBSCRIPTIONS,
            f"a session may watch at most {limit} users "
            f"({len(session.subscriptions)} watched, {len(new)} more asked)",
            field="users",
        )
    for user in new:
        session.subscriptions.add(user)
        await node.fanout.watchers.add(user, conn)
    await node.save(session)
    conn.send(PresenceSubscribed(users=await node.events.presence_of(users), ref=msg.ref))


async def _unsubscribe(
    node: Node, conn: Connection, session: Session, msg: PresenceUnsubscribe
) -> None:
    users = [UserId(u) for u in dict.fromkeys(msg.users)]
    for user in users:
        if user in session.subscriptions:
            session.subscriptions.discard(user)
            node.fanout.watchers.discard(user, conn)
    await node.save(session)
    conn.send(PresenceUnsubscribed(users=list(users), ref=msg.ref))


async def _logout(node: Node, conn: Connection, session: Session, msg: Logout) -> None:
    await node.logout(conn, session)


_HANDLERS: dict[type[Any], Handler] = {
    Auth: _auth,
    Heartbeat: _heartbeat,
    Activity: _activity,
    RoomJoin: _join,
    RoomLeave: _leave,
    RoomMembers: _members,
    RoomCount: _count,
    RoomMeta: _meta,
    StatusSet: _status,
    PresenceSubscribe: _subscribe,
    PresenceUnsubscribe: _unsubscribe,
    Logout: _logout,
}
