"""What each authenticated request does: one small coroutine per message type.

Handlers are adapters: they check what only the server can check about the request (room
patterns, per-session limits, membership), hand the transition to the node's
:class:`~presenced.server.lifecycle.Lifecycle`, then reply. A :class:`ProtocolError` raised
here becomes an ``error`` reply with the request's ref. Room messaging requests are in
:mod:`messaging`; :func:`dispatch` routes to both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from presenced.auth import room_allowed
from presenced.errors import ProtocolError
from presenced.presence.session import Session
from presenced.protocol.codes import ErrorCode
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
    Refresh,
    Refreshed,
    RoomCount,
    RoomCountReply,
    RoomJoin,
    RoomLeave,
    RoomLeft,
    RoomMembers,
    RoomMembersReply,
    RoomMeta,
    RoomMetaUpdated,
    StatusSet,
    StatusUpdated,
)
from presenced.server.lifecycle import Lifecycle
from presenced.server.messaging import HANDLERS as MESSAGING_HANDLERS
from presenced.server.messaging import member_room
from presenced.typing import RoomId, UserId

if TYPE_CHECKING:
    from presenced.server.connection import Connection

__all__ = ["dispatch"]

Handler = Callable[[Lifecycle, "Connection", Session, Any], Awaitable[None]]


async def dispatch(lc: Lifecycle, conn: Connection, message: ClientMessage) -> None:
    """Route an authenticated request to its handler."""
    session = conn.session
    assert session is not None
    await _ALL[type(message)](lc, conn, session, message)


def _check_room(session: Session, room: str) -> RoomId:
    if not room_allowed(session.room_patterns, room):
        raise ProtocolError(
            ErrorCode.ROOM_FORBIDDEN, f"your token does not allow room {room!r}", field="room"
        )
    return RoomId(room)


async def _auth(lc: Lifecycle, conn: Connection, session: Session, msg: Auth) -> None:
    raise ProtocolError(ErrorCode.ALREADY_AUTHENTICATED, "this connection is authenticated")


async def _heartbeat(lc: Lifecycle, conn: Connection, session: Session, msg: Heartbeat) -> None:
    conn.send(HeartbeatAck(time=lc.clock.wall(), ref=msg.ref))


async def _activity(lc: Lifecycle, conn: Connection, session: Session, msg: Activity) -> None:
    """Activity itself was recorded on arrival; here only an auto-away is lifted."""


async def _join(lc: Lifecycle, conn: Connection, session: Session, msg: RoomJoin) -> None:
    room = _check_room(session, msg.room)
    limit = lc.settings.max_rooms_per_session
    if room not in session.rooms and len(session.rooms) >= limit:
        raise ProtocolError(
            ErrorCode.TOO_MANY_ROOMS, f"a session may be in at most {limit} rooms", field="room"
        )
    await lc.join(conn, session, room, msg.meta, msg.device_events, msg.ref)
    if msg.since is not None and room in session.rooms:
        await lc.recover(conn, session, room, msg.since)


async def _leave(lc: Lifecycle, conn: Connection, session: Session, msg: RoomLeave) -> None:
    room = member_room(session, msg.room)
    await lc.leave(conn, session, room)
    conn.send(RoomLeft(room=room, ref=msg.ref))


async def _members(lc: Lifecycle, conn: Connection, session: Session, msg: RoomMembers) -> None:
    room = _check_room(session, msg.room)
    snapshot = await lc.backplane.rooms.snapshot(room)
    conn.send(
        RoomMembersReply(
            room=room,
            version=snapshot.version,
            members=await lc.events.members(snapshot),
            ref=msg.ref,
        )
    )


async def _count(lc: Lifecycle, conn: Connection, session: Session, msg: RoomCount) -> None:
    room = _check_room(session, msg.room)
    count, version = await lc.backplane.rooms.count(room)
    conn.send(RoomCountReply(room=room, version=version, count=count, ref=msg.ref))


async def _meta(lc: Lifecycle, conn: Connection, session: Session, msg: RoomMeta) -> None:
    room = member_room(session, msg.room)
    version = await lc.set_meta(session, room, msg.meta)
    conn.send(RoomMetaUpdated(room=room, version=version, meta=msg.meta, ref=msg.ref))


async def _status(lc: Lifecycle, conn: Connection, session: Session, msg: StatusSet) -> None:
    session.status = msg.status
    session.text = msg.text
    session.auto_away = False
    change = await lc.set_status(session)
    conn.send(
        StatusUpdated(status=msg.status, aggregate=change.aggregate, text=msg.text, ref=msg.ref)
    )


async def _subscribe(
    lc: Lifecycle, conn: Connection, session: Session, msg: PresenceSubscribe
) -> None:
    users = [UserId(u) for u in dict.fromkeys(msg.users)]
    for index, user in enumerate(msg.users):
        if not lc.may_watch(session, UserId(user)):
            raise ProtocolError(
                ErrorCode.WATCH_FORBIDDEN,
                f"this session's credentials do not allow watching {user!r} (the token's "
                "`watch` claim, or the server's watch_without_claim); nothing subscribed",
                field=f"users[{index}]",
            )
    new = [u for u in users if u not in session.subscriptions]
    limit = lc.settings.max_subscriptions_per_session
    if len(session.subscriptions) + len(new) > limit:
        raise ProtocolError(
            ErrorCode.TOO_MANY_SUBSCRIPTIONS,
            f"a session may watch at most {limit} users "
            f"({len(session.subscriptions)} watched, {len(new)} more asked)",
            field="users",
        )
    presence = await lc.watch(conn, session, users)
    conn.send(PresenceSubscribed(users=presence, ref=msg.ref))


async def _unsubscribe(
    lc: Lifecycle, conn: Connection, session: Session, msg: PresenceUnsubscribe
) -> None:
    users = [UserId(u) for u in dict.fromkeys(msg.users)]
    await lc.unwatch(conn, session, users)
    conn.send(PresenceUnsubscribed(users=list(users), ref=msg.ref))


async def _refresh(lc: Lifecycle, conn: Connection, session: Session, msg: Refresh) -> None:
    conn.send(Refreshed(expires_at=await lc.refresh(session, msg.token), ref=msg.ref))


async def _logout(lc: Lifecycle, conn: Connection, session: Session, msg: Logout) -> None:
    await lc.logout(conn, session)


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
    Refresh: _refresh,
}
_ALL: dict[type[Any], Handler] = {**_HANDLERS, **MESSAGING_HANDLERS}
