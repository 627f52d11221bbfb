"""Authentication of a connection: identify the user, then open a session or resume one.

A resume within grace restores the session on the new connection (rooms, subscriptions,
status) with nothing seen by others, then replays what each room's stream moved on by. A
failed resume (unknown or spent token, another user) opens a fresh session and says why.

All or nothing: the request was validated by the codec before it got here; ownership of a
resumed session is checked before it is taken from another node; a new session's record is
written before its presence (so no presence entry is ever without a session behind it); and a
step that fails undoes the ones before it, leaving the connection unauthenticated (it may try
again) and nothing of the session behind. A resume takes its rights (room patterns,
moderator) from the credentials presented now and leaves the rooms they no longer allow.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from presenced.auth import Identity, insecure_identity, room_allowed
from presenced.errors import AuthError, ProtocolError
from presenced.presence.session import Session, SessionState
from presenced.protocol.codes import SUPPORTED_PROTOCOLS, CloseCode, ErrorCode, LeaveReason
from presenced.protocol.messages import Auth, DeviceBack, Welcome
from presenced.server.fanout import node_channel
from presenced.typing import DeviceId, SessionId, UserId

if TYPE_CHECKING:
    from presenced.server.connection import Connection
    from presenced.server.node import Node

__all__ = ["authenticate"]

log = logging.getLogger(__name__)


async def authenticate(node: Node, conn: Connection, msg: Auth) -> None:
    """Answer an ``auth`` request with ``welcome``, or raise the error that explains why not."""
    if msg.protocol not in SUPPORTED_PROTOCOLS:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_PROTOCOL,
            f"protocol {msg.protocol} is not supported; this server speaks "
            f"{sorted(SUPPORTED_PROTOCOLS)}",
            field="protocol",
            fatal=True,
        )
    identity = _identify(node, msg)
    node.authenticated(conn)
    try:
        now = node.clock.monotonic()
        resume_error: str | None = None
        if msg.resume is not None:
            if await _resume(node, conn, identity, msg, now):
                return
            resume_error = "resume token unknown or grace expired: a new session was opened"
        await _open(node, conn, identity, msg, now, resume_error)
    except BaseException:
        if conn.session is None:  # undone: the connection may authenticate again
            node.unauthenticated(conn)
        raise


async def _open(
    node: Node,
    conn: Connection,
    identity: Identity,
    msg: Auth,
    now: float,
    resume_error: str | None,
) -> None:
    """A fresh session: record first, then presence; undone whole if a step fails."""
    session = Session(
        id=SessionId(secrets.token_urlsafe(12)),
        user=identity.user,
        device=DeviceId(msg.device),
        resume_token=secrets.token_urlsafe(24),
        device_info=msg.device_info,
        moderator=identity.moderator,
        room_patterns=identity.rooms,
        node=node.node_id,
    )
    node.registry.add(session, now)
    try:
        await node.attach_session(conn, session)
        # The record first: whatever crashes next, a presence entry has a session behind it
        # (a record whose node dies is reaped with it).
        if not await node.save(session):
            return  # not reached: a fresh id has no other owner (``save`` let it go)
        change = await node.backplane.presence.set(
            session.user, session.id, session.effective_status, None, node.clock.wall()
        )
    except BaseException:
        await _undo_open(node, conn, session)
        raise
    conn.send(_welcome(node, session, msg, resumed=False, resume_error=resume_error))
    await node.events.presence_changed(session.user, change)


async def _undo_open(node: Node, conn: Connection, session: Session) -> None:
    """Take back a session that failed half way: the registry entry and the fan-out binding,
    then its presence entry, then its record. The record stays if the presence entry could
    not be removed (the store is failing): never a presence entry without a record. What a
    failing store keeps is left to its failsafe ttls (nothing here refreshes it)."""
    node.registry.release(session.id)
    node.detach(conn, session)
    backplane = node.backplane
    if await _undo_step(backplane.presence.remove(session.user, session.id, node.clock.wall())):
        await _undo_step(backplane.sessions.delete(session.id, owner=node.node_id))
    node.rearm()


async def _undo_step(step: Awaitable[Any]) -> bool:
    try:
        await step
    except Exception:
        log.exception("undoing a failed authentication")
        return False
    return True


def _identify(node: Node, msg: Auth) -> Identity:
    if node.insecure:
        if msg.user is None:
            if msg.token is not None:
                raise AuthError(
                    ErrorCode.AUTH_FAILED,
                    "this server runs in insecure development mode: send `user`, not a token",
                    field="user",
                    fatal=True,
                )
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, "missing required field `user`", field="user"
            )
        return insecure_identity(msg.user)
    if msg.token is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "missing required field `token`", field="token")
    assert node.verifier is not None
    return node.verifier.verify(msg.token, node.clock.wall())


async def _resume(node: Node, conn: Connection, identity: Identity, msg: Auth, now: float) -> bool:
    assert msg.resume is not None
    registry = node.registry
    session = registry.by_resume_token(msg.resume)
    if session is None:
        session = await _take_from_another_node(node, msg.resume, identity.user, now)
    if session is None or session.user != identity.user:
        return False
    old = node.connection_of(session.id)
    if old is not None:
        # Resumed while the old transport still looks alive (half-open): the new one wins.
        node.detach(old, session)
        old.close(CloseCode.SESSION_REPLACED, "session resumed on another connection")
        registry.transport_lost(session.id, now)
        await node.entered_grace(session)
    registry.resume(session.id, now, secrets.token_urlsafe(24))
    try:
        await node.attach_session(conn, session)
        # The rights are the credentials' presented now, not the first token's.
        session.room_patterns = identity.rooms
        session.moderator = identity.moderator
        await _leave_forbidden_rooms(node, session)
        if session.auto_away:  # coming back is activity
            session.auto_away = False
            await node.set_status(session)
        for room, options in session.rooms.items():
            await node.fanout.join_room(conn, room, options.device_events)
        for user in session.subscriptions:
            await node.fanout.watchers.add(user, conn)
        if not await node.save(session):
            return True  # taken by another node meanwhile: ``save`` closed this connection
    except BaseException:
        _back_to_grace(node, conn, session)
        raise
    conn.send(_welcome(node, session, msg, resumed=True))
    from presenced.server.messaging import recover

    positions = msg.positions or {}
    for room in session.rooms:
        await recover(node, conn, session, room, positions.get(room))
    session.marks.clear()
    await node.publish_device(session, DeviceBack)
    return True


async def _leave_forbidden_rooms(node: Node, session: Session) -> None:
    """Leave (with the usual member.left) each room the session's patterns no longer allow.

    Membership goes before the record (saved by the caller), as in ``room.leave``."""
    from presenced.server.messaging import clear_typing

    for room in [r for r in session.rooms if not room_allowed(session.room_patterns, r)]:
        await clear_typing(node, session, room)
        change = await node.backplane.rooms.remove(room, session.user, session.id)
        del session.rooms[room]
        session.marks.pop(room, None)
        await node.events.publish_change(change, reason=LeaveReason.LEFT, origin=session.id)


def _back_to_grace(node: Node, conn: Connection, session: Session) -> None:
    """A resume failed half way: the session goes back to grace (it ends when grace does)."""
    if conn.session is session:
        node.detach(conn, session)
    if node.registry.get(session.id) is session and session.state is SessionState.ACTIVE:
        node.registry.transport_lost(session.id, node.clock.monotonic())
        node.spawn(node.entered_grace(session))
    node.rearm()


async def _take_from_another_node(
    node: Node, token: str, user: UserId, now: float
) -> Session | None:
    """Resume anywhere: a session of ``user`` owned by another node (alive, or dead and not
    yet reaped) moves here if it is still live; its old owner is told to let it go.

    Ownership is checked first: another user's token takes nothing from anyone."""
    sessions = node.backplane.sessions
    record = await sessions.by_resume_token(token)
    if (
        record is None
        or record.user != user
        or record.state is SessionState.CLOSED
        or record.node == node.node_id
    ):
        return None
    previous = record.node
    if not await sessions.take(record.id, previous, node.node_id):
        return None
    record.node = node.node_id
    record.state = SessionState.GRACE
    node.registry.adopt_in_grace(record, now)
    await node.backplane.broker.publish(node_channel(previous), b"moved " + record.id.encode())
    return record


def _welcome(
    node: Node, session: Session, msg: Auth, *, resumed: bool, resume_error: str | None = None
) -> Welcome:
    s = node.settings
    return Welcome(
        session=session.id,
        resume_token=session.resume_token,
        user=session.user,
        device=session.device,
        protocol=msg.protocol,
        heartbeat_interval=s.heartbeat_interval,
        heartbeat_timeout=s.heartbeat_timeout,
        grace=s.grace,
        inactivity_timeout=s.inactivity_timeout,
        resumed=resumed,
        rooms=list(session.rooms),
        subscriptions=sorted(session.subscriptions),
        status=session.status,
        text=session.text,
        resume_error=resume_error,
        node=node.node_id,
        ref=msg.ref,
    )
