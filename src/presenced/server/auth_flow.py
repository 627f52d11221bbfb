"""Authentication of a connection: identify the user, then open a session or resume one.

A resume within grace restores the session on the new connection (rooms, subscriptions,
status) with nothing seen by others, then replays what each room's stream moved on by. A
failed resume (unknown or spent token, another user) opens a fresh session and says why.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from presenced.auth import Identity, insecure_identity
from presenced.errors import AuthError, ProtocolError
from presenced.presence.session import Session, SessionState
from presenced.protocol.codes import SUPPORTED_PROTOCOLS, CloseCode, ErrorCode
from presenced.protocol.messages import Auth, DeviceBack, Welcome
from presenced.server.fanout import node_channel
from presenced.typing import DeviceId, SessionId

if TYPE_CHECKING:
    from presenced.server.connection import Connection
    from presenced.server.node import Node

__all__ = ["authenticate"]


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
    now = node.clock.monotonic()
    resume_error: str | None = None
    if msg.resume is not None:
        if await _resume(node, conn, identity, msg, now):
            return
        resume_error = "resume token unknown or grace expired: a new session was opened"
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
    await node.attach_session(conn, session)
    backplane = node.backplane
    change = await backplane.presence.set(
        session.user, session.id, session.effective_status, None, node.clock.wall()
    )
    await node.save(session)
    conn.send(_welcome(node, session, msg, resumed=False, resume_error=resume_error))
    await node.events.presence_changed(session.user, change)


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
        session = await _take_from_another_node(node, msg.resume, now)
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
    await node.attach_session(conn, session)
    if session.auto_away:  # coming back is activity
        session.auto_away = False
        await node.set_status(session)
    for room, options in session.rooms.items():
        await node.fanout.join_room(conn, room, options.device_events)
    for user in session.subscriptions:
        await node.fanout.watchers.add(user, conn)
    await node.save(session)
    conn.send(_welcome(node, session, msg, resumed=True))
    from presenced.server.messaging import recover

    positions = msg.positions or {}
    for room in session.rooms:
        await recover(node, conn, session, room, positions.get(room))
    session.marks.clear()
    await node.publish_device(session, DeviceBack)
    return True


async def _take_from_another_node(node: Node, token: str, now: float) -> Session | None:
    """Resume anywhere: a session owned by another node (alive, or dead and not yet reaped)
    moves here if it is still live; its old owner is told to let it go."""
    sessions = node.backplane.sessions
    record = await sessions.by_resume_token(token)
    if record is None or record.state is SessionState.CLOSED or record.node == node.node_id:
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
