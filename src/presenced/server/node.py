"""The gateway node: wires the presence core, the backplane and the connections.

The node owns the sessions of its own connections (a :class:`SessionRegistry`), one timer
armed at the registry's next deadline, and the local fan-out tables: which connections are in
which room, want device events, or watch which user. Every shared change goes through the
backplane (which returns the transition), and every event is encoded once, published once
per room, and written as the same bytes to each local socket.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
from collections.abc import Coroutine, Iterable
from typing import Any

from presenced.auth import Identity, TokenVerifier, insecure_identity
from presenced.clock import Clock
from presenced.config import Settings
from presenced.errors import AuthError, ProtocolError
from presenced.presence.liveness import Deadline, DeadlineKind, LivenessPolicy, SessionRegistry
from presenced.presence.roster import ChangeKind, RoomChange, RoomSnapshot
from presenced.presence.session import Session, SessionEvent, SessionState
from presenced.presence.status import PresenceChange, UserPresence
from presenced.protocol.codec import encode
from presenced.protocol.codes import SUPPORTED_PROTOCOLS, CloseCode, ErrorCode, LeaveReason
from presenced.protocol.messages import (
    Auth,
    ClientMessage,
    DeviceBack,
    DeviceDropped,
    DeviceGone,
    ForceLeave,
    Member,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    Presence,
    Welcome,
)
from presenced.server.connection import Connection
from presenced.server.transport import ConnectRequest
from presenced.store.base import Backplane
from presenced.typing import DeviceId, NodeId, RoomId, SessionId, UserId

__all__ = ["Node"]

log = logging.getLogger(__name__)

_FATAL_CLOSE = {
    ErrorCode.AUTH_FAILED: CloseCode.AUTH_FAILED,
    ErrorCode.AUTH_TIMEOUT: CloseCode.AUTH_TIMEOUT,
    ErrorCode.UNSUPPORTED_PROTOCOL: CloseCode.UNSUPPORTED_PROTOCOL,
    ErrorCode.SLOW_CONSUMER: CloseCode.SLOW_CONSUMER,
}


def room_channel(room: RoomId) -> str:
    return f"room:{room}"


def device_channel(room: RoomId) -> str:
    return f"devices:{room}"


def presence_channel(user: UserId) -> str:
    return f"presence:{user}"


def user_channel(user: UserId) -> str:
    """Events for every session of one user (receipts of its messages)."""
    return f"user:{user}"


class Node:
    """One gateway process's view of the world, and the place where requests take effect."""

    def __init__(
        self,
        settings: Settings,
        backplane: Backplane,
        *,
        clock: Clock,
        node_id: NodeId,
        rng: random.Random | None = None,
        verifier: TokenVerifier | None = None,
    ) -> None:
        self.settings = settings
        self.backplane = backplane
        self.clock = clock
        self.node_id = node_id
        self.verifier = verifier
        self.insecure = settings.effective_auth_mode == "insecure"
        self.registry = SessionRegistry(
            LivenessPolicy(
                heartbeat_interval=settings.heartbeat_interval,
                heartbeat_timeout=settings.heartbeat_timeout,
                grace=settings.grace,
                auth_timeout=settings.auth_timeout,
                away_after=settings.away_after,
                inactivity_timeout=settings.inactivity_timeout,
            ),
            (rng or random.Random()).random,
        )
        self.draining = False
        self._conn_seq = 0
        self._pending: dict[str, Connection] = {}  # not yet authenticated, by connection id
        self._by_session: dict[SessionId, Connection] = {}
        self._room_conns: dict[RoomId, dict[Connection, None]] = {}
        self._device_conns: dict[RoomId, dict[Connection, None]] = {}
        self._watchers: dict[UserId, dict[Connection, None]] = {}
        self._user_conns: dict[UserId, dict[Connection, None]] = {}
        # When each (session, room) typing indicator was last renewed, for throttling.
        self.typing_renewed: dict[str, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- introspection ---------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._pending) + len(self._by_session)

    @property
    def session_count(self) -> int:
        return len(self.registry)

    def local_connections(self) -> list[Connection]:
        return [*self._pending.values(), *self._by_session.values()]

    # --- connection lifecycle --------------------------------------------------------------

    def new_connection(self, request: ConnectRequest) -> Connection | None:
        """A handler for an incoming upgrade, or None while draining (refused with 503)."""
        if self.draining:
            return None
        self._conn_seq += 1
        return Connection(self, request, f"c{self._conn_seq}")

    def connection_opened(self, conn: Connection) -> None:
        self._pending[conn.id] = conn
        query = conn.request.query
        header = conn.request.headers.get("authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else ""
        token = query.get("token") or bearer
        if token or "user" in query or "resume" in query:
            fields: dict[str, Any] = {"type": "auth", **query}
            if token:
                fields["token"] = token
            if "device_info" in query:
                fields["device_info"] = _parse_json_object(query["device_info"], "device_info")
            try:
                from presenced.protocol.codec import convert_auth

                conn.start(convert_auth(fields))
            except ProtocolError as exc:
                conn.send_error(exc)
        if conn.session is None and not conn.closing:
            self.registry.arm(
                DeadlineKind.AUTH, conn.id, self.clock.monotonic() + self.settings.auth_timeout
            )
        self.rearm()

    def connection_closed(self, conn: Connection) -> None:
        self._pending.pop(conn.id, None)
        self.registry.disarm(DeadlineKind.AUTH, conn.id)
        self.registry.disarm(DeadlineKind.SLOW, conn.id)
        session = conn.session
        if session is not None:
            self._detach(conn, session)
            if session.state is SessionState.ACTIVE:
                self.registry.transport_lost(session.id, self.clock.monotonic())
                self.spawn(self._entered_grace(session))
        self.rearm()

    def close_for(self, conn: Connection, code: ErrorCode) -> None:
        """Close after a fatal error, with the close code that belongs to it."""
        close = _FATAL_CLOSE.get(code, CloseCode.BAD_REQUEST)
        conn.close(close, code.value.lower().replace("_", " "))

    def write_paused(self, conn: Connection) -> None:
        self.registry.arm(
            DeadlineKind.SLOW, conn.id, self.clock.monotonic() + self.settings.slow_consumer_timeout
        )
        self.rearm()

    def write_resumed(self, conn: Connection) -> None:
        self.registry.disarm(DeadlineKind.SLOW, conn.id)

    def slow_consumer(self, conn: Connection) -> None:
        """Its send buffer stayed full: drop it (the session goes to grace and may resume)."""
        log.info("closing slow consumer %r", conn)
        conn.close(CloseCode.SLOW_CONSUMER, "slow consumer: reconnect and resume", abort=True)

    # --- authentication and sessions -------------------------------------------------------

    async def authenticate(self, conn: Connection, msg: Auth) -> None:
        if msg.protocol not in SUPPORTED_PROTOCOLS:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_PROTOCOL,
                f"protocol {msg.protocol} is not supported; this server speaks "
                f"{sorted(SUPPORTED_PROTOCOLS)}",
                field="protocol",
                fatal=True,
            )
        identity = self._identify(msg)
        self.registry.disarm(DeadlineKind.AUTH, conn.id)
        self._pending.pop(conn.id, None)
        now = self.clock.monotonic()
        resume_error: str | None = None
        if msg.resume is not None:
            resumed = await self._resume(conn, identity, msg, now)
            if resumed:
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
        )
        self.registry.add(session, now)
        await self._attach_session(conn, session)
        change = await self.backplane.presence.set(
            session.user, session.id, session.effective_status, None, self.clock.wall()
        )
        await self.backplane.sessions.put(session)
        conn.send(self._welcome(session, msg, resumed=False, resume_error=resume_error))
        await self._presence_changed(session.user, change)

    def _identify(self, msg: Auth) -> Identity:
        if self.insecure:
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
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, "missing required field `token`", field="token"
            )
        assert self.verifier is not None
        return self.verifier.verify(msg.token, self.clock.wall())

    async def _resume(self, conn: Connection, identity: Identity, msg: Auth, now: float) -> bool:
        assert msg.resume is not None
        session = self.registry.by_resume_token(msg.resume)
        if session is None or session.user != identity.user:
            return False
        old = self._by_session.get(session.id)
        if old is not None:
            # Resumed while the old transport still looks alive (half-open): the new one wins.
            self._detach(old, session)
            old.session = None
            old.close(CloseCode.SESSION_REPLACED, "session resumed on another connection")
            self.registry.transport_lost(session.id, now)
        self.registry.resume(session.id, now, secrets.token_urlsafe(24))
        await self._attach_session(conn, session)
        if session.auto_away:  # coming back is activity
            session.auto_away = False
            await self.set_status(session)
        for room, options in session.rooms.items():
            await self.attach_room(conn, room, options.device_events)
        for user in session.subscriptions:
            await self.watch(conn, user)
        await self.backplane.sessions.put(session)
        conn.send(self._welcome(session, msg, resumed=True))
        from presenced.server.messaging import recover

        positions = msg.positions or {}
        for room in session.rooms:
            await recover(self, conn, session, room, positions.get(room))
        session.marks.clear()
        await self._publish_device(session, DeviceBack, None)
        return True

    def _welcome(
        self, session: Session, msg: Auth, *, resumed: bool, resume_error: str | None = None
    ) -> Welcome:
        s = self.settings
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
            ref=msg.ref,
        )

    async def _attach_session(self, conn: Connection, session: Session) -> None:
        conn.session = session
        self._by_session[session.id] = conn
        conns = self._user_conns.get(session.user)
        if conns is None:
            conns = self._user_conns[session.user] = {}
            user = session.user
            await self.backplane.broker.subscribe(
                user_channel(user), lambda data, origin: self._deliver_user(user, data)
            )
        conns[conn] = None

    def _deliver_user(self, user: UserId, data: bytes) -> None:
        for conn in self._user_conns.get(user, ()):
            conn.send_bytes(data)

    def _detach(self, conn: Connection, session: Session) -> None:
        """Take a connection out of every local fan-out table (it has no socket any more)."""
        if self._by_session.get(session.id) is conn:
            del self._by_session[session.id]
        conns = self._user_conns.get(session.user)
        if conns is not None and conn in conns:
            del conns[conn]
            if not conns:
                del self._user_conns[session.user]
                self.spawn(self.backplane.broker.unsubscribe(user_channel(session.user)))
        for room in session.rooms:
            self.detach_room(conn, room)
        for user in session.subscriptions:
            self.unwatch(conn, user)

    async def _entered_grace(self, session: Session) -> None:
        from presenced.server.messaging import clear_typing

        for room in session.rooms:
            session.marks[room] = await self.backplane.messages.position(room)
            await clear_typing(self, session, room)
        await self.backplane.sessions.put(session)
        await self._publish_device(session, DeviceDropped, None)

    async def end_session(self, session: Session, reason: LeaveReason) -> None:
        """A CLOSED session leaves every room and its user's presence, at once."""
        from presenced.server.messaging import clear_typing

        for room in list(session.rooms):
            await clear_typing(self, session, room)
            change = await self.backplane.rooms.remove(room, session.user, session.id)
            await self.publish_change(change, reason=reason, origin=session.id)
            if reason is not LeaveReason.LEFT:
                gone = DeviceGone(
                    room=room, user=session.user, device=session.device, reason=reason
                )
                await self.backplane.broker.publish(device_channel(room), encode(gone), session.id)
        presence = await self.backplane.presence.remove(session.user, session.id, self.clock.wall())
        await self.backplane.sessions.delete(session.id)
        await self._presence_changed(session.user, presence)

    def force_leave(self, session: Session, reason: LeaveReason, message: str) -> None:
        """Tell the client why, close its socket, and remove the (already CLOSED) session."""
        conn = self._by_session.get(session.id)
        if conn is not None:
            self._detach(conn, session)
            conn.session = None
            conn.send(ForceLeave(reason=reason.value, message=message))
            conn.close(CloseCode.FORCE_LEAVE, reason.value)
        self.spawn(self.end_session(session, reason))

    async def logout(self, conn: Connection, session: Session) -> None:
        self.registry.close(session.id, SessionEvent.LEAVE)
        self._detach(conn, session)
        conn.session = None
        await self.end_session(session, LeaveReason.LEFT)
        conn.close(CloseCode.NORMAL, "logged out")

    async def kick(self, user: UserId, message: str = "removed by the server") -> int:
        """Force-leave every local session of ``user``; returns how many were ended."""
        ended = 0
        for session in list(self.registry):
            if session.user == user:
                self.registry.close(session.id, SessionEvent.KICK)
                self.force_leave(session, LeaveReason.KICKED, message)
                ended += 1
        self.rearm()
        return ended

    # --- requests --------------------------------------------------------------------------

    async def handle(self, conn: Connection, message: ClientMessage) -> None:
        from presenced.server.handlers import dispatch

        await dispatch(self, conn, message)

    # --- rooms ---------------------------------------------------------------------------

    async def attach_room(self, conn: Connection, room: RoomId, device_events: bool) -> None:
        conns = self._room_conns.get(room)
        if conns is None:
            conns = self._room_conns[room] = {}
            await self.backplane.broker.subscribe(
                room_channel(room), lambda data, origin: self._deliver(room, data, origin)
            )
        conns[conn] = None
        if device_events:
            dconns = self._device_conns.get(room)
            if dconns is None:
                dconns = self._device_conns[room] = {}
                await self.backplane.broker.subscribe(
                    device_channel(room),
                    lambda data, origin: self._deliver_devices(room, data, origin),
                )
            dconns[conn] = None
        else:
            self._drop_device_conn(conn, room)

    def detach_room(self, conn: Connection, room: RoomId) -> None:
        conns = self._room_conns.get(room)
        if conns is not None:
            conns.pop(conn, None)
            if not conns:
                del self._room_conns[room]
                self.spawn(self.backplane.broker.unsubscribe(room_channel(room)))
        self._drop_device_conn(conn, room)

    def _drop_device_conn(self, conn: Connection, room: RoomId) -> None:
        dconns = self._device_conns.get(room)
        if dconns is not None and conn in dconns:
            del dconns[conn]
            if not dconns:
                del self._device_conns[room]
                self.spawn(self.backplane.broker.unsubscribe(device_channel(room)))

    def _deliver(self, room: RoomId, data: bytes, origin: str | None) -> None:
        """Write one encoded event to every local member connection but its origin."""
        for conn in self._room_conns.get(room, ()):
            session = conn.session
            if session is not None and session.id != origin:
                conn.send_bytes(data)

    def _deliver_devices(self, room: RoomId, data: bytes, origin: str | None) -> None:
        for conn in self._device_conns.get(room, ()):
            session = conn.session
            if session is not None and session.id != origin:
                conn.send_bytes(data)

    async def _publish_device(self, session: Session, kind: type[Any], reason: str | None) -> None:
        for room in session.rooms:
            if kind is DeviceDropped:
                event: Any = DeviceDropped(
                    room=room, user=session.user, device=session.device, grace=self.settings.grace
                )
            else:
                event = DeviceBack(room=room, user=session.user, device=session.device)
            await self.backplane.broker.publish(device_channel(room), encode(event), session.id)

    async def members(self, snapshot: RoomSnapshot) -> list[Member]:
        """Snapshot entries with each user's public status."""
        views = await self.backplane.presence.get_many(m.user for m in snapshot.members)
        return [
            Member(user=m.user, status=v.status, devices=m.devices, text=v.text, meta=m.meta)
            for m, v in zip(snapshot.members, views, strict=True)
        ]

    async def publish_change(
        self, change: RoomChange, *, reason: LeaveReason = LeaveReason.LEFT, origin: str | None
    ) -> None:
        """Turn a room transition into its member.* event and publish it once."""
        kind = change.kind
        if kind is ChangeKind.NONE:
            return
        event: Any
        if kind is ChangeKind.LEFT:
            event = MemberLeft(
                room=change.room, version=change.version, user=change.user, reason=reason.value
            )
        else:
            (view,) = await self.backplane.presence.get_many([change.user])
            cls = MemberJoined if kind is ChangeKind.JOINED else MemberUpdated
            event = cls(
                room=change.room,
                version=change.version,
                user=change.user,
                status=view.status,
                devices=change.devices,
                text=view.text,
                meta=change.meta,
            )
        await self.backplane.broker.publish(room_channel(change.room), encode(event), origin)

    # --- presence --------------------------------------------------------------------------

    async def watch(self, conn: Connection, user: UserId) -> None:
        conns = self._watchers.get(user)
        if conns is None:
            conns = self._watchers[user] = {}
            await self.backplane.broker.subscribe(
                presence_channel(user), lambda data, origin: self._deliver_presence(user, data)
            )
        conns[conn] = None

    def unwatch(self, conn: Connection, user: UserId) -> None:
        conns = self._watchers.get(user)
        if conns is not None:
            conns.pop(conn, None)
            if not conns:
                del self._watchers[user]
                self.spawn(self.backplane.broker.unsubscribe(presence_channel(user)))

    def _deliver_presence(self, user: UserId, data: bytes) -> None:
        for conn in self._watchers.get(user, ()):
            conn.send_bytes(data)

    async def set_status(self, session: Session) -> PresenceChange:
        """Push this session's effective status to the store and tell everyone concerned."""
        change = await self.backplane.presence.set(
            session.user, session.id, session.effective_status, session.text, self.clock.wall()
        )
        await self.backplane.sessions.put(session)
        await self._presence_changed(session.user, change)
        return change

    async def _presence_changed(self, user: UserId, change: PresenceChange) -> None:
        """Watchers get the new presence; rooms get hidden, revealed or updated members."""
        before, after = change.before, change.after
        if before == after:
            return
        await self.backplane.broker.publish(presence_channel(user), encode(_presence(after)))
        sessions = await self.backplane.sessions.of_user(user)
        rooms: set[RoomId] = set()
        for s in sessions:
            rooms.update(s.rooms)
        if not rooms:
            return
        rooms_store = self.backplane.rooms
        for room in sorted(rooms):
            if change.went_offline:  # still has sessions, so it went invisible
                hidden = await rooms_store.set_hidden(room, user, True)
                await self.publish_change(hidden, reason=LeaveReason.OFFLINE, origin=None)
            elif change.went_online:
                await self.publish_change(
                    await rooms_store.set_hidden(room, user, False), origin=None
                )
            elif before.status != after.status or before.text != after.text:
                await self.publish_change(await rooms_store.touch(room, user), origin=None)

    async def presence_of(self, users: Iterable[UserId]) -> list[Presence]:
        return [_presence(p) for p in await self.backplane.presence.get_many(users)]

    # --- time ----------------------------------------------------------------------------

    def rearm(self) -> None:
        """Point the node's one timer at the registry's earliest deadline."""
        when = self.registry.next_deadline()
        if when is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer, self._timer_at = None, math.inf
            return
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        delay = max(0.0, when - self.clock.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, math.inf
        try:
            for fired in self.registry.advance(self.clock.monotonic()):
                self._on_deadline(fired)
        finally:
            self.rearm()

    def _on_deadline(self, fired: Deadline) -> None:
        kind, session = fired.kind, fired.session
        if kind is DeadlineKind.AUTH:
            conn = self._pending.get(fired.key or "")
            if conn is not None:
                conn.send_error(
                    AuthError(
                        ErrorCode.AUTH_TIMEOUT,
                        f"no valid auth within {self.settings.auth_timeout:g} s",
                        fatal=True,
                    )
                )
            return
        if kind is DeadlineKind.SLOW:
            for conn in self.local_connections():
                if conn.id == fired.key:
                    self.slow_consumer(conn)
            return
        if kind is DeadlineKind.TYPING:
            from presenced.server.messaging import typing_expired

            self.spawn(typing_expired(self, fired.key or ""))
            return
        assert session is not None
        if kind is DeadlineKind.PING:
            conn = self._by_session.get(session.id)
            if conn is not None and conn.transport is not None:
                conn.transport.ping()
        elif kind is DeadlineKind.PONG:  # now in GRACE
            conn = self._by_session.get(session.id)
            if conn is not None:
                self._detach(conn, session)
                conn.session = None
                conn.close(CloseCode.HEARTBEAT_TIMEOUT, "no pong: reconnect and resume", abort=True)
            self.spawn(self._entered_grace(session))
        elif kind is DeadlineKind.GRACE:  # now CLOSED
            self.spawn(self.end_session(session, LeaveReason.GRACE_EXPIRED))
        elif kind is DeadlineKind.AWAY:
            self.spawn(self.set_status(session))
        elif kind is DeadlineKind.INACTIVITY:  # now CLOSED
            timeout = self.settings.inactivity_timeout or 0
            self.force_leave(
                session,
                LeaveReason.INACTIVITY_TIMEOUT,
                f"no activity for {timeout:g} s: disconnected",
            )

    # --- tasks and shutdown ----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run background work eagerly; keep a reference while it is pending; log failures."""
        from presenced.server.eager import run_eager

        try:
            task = run_eager(coro)
        except Exception:
            log.exception("background work failed")
            return
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())
        self.rearm()

    async def drain(self) -> None:
        """Stop taking connections; tell every client to reconnect elsewhere."""
        self.draining = True
        for conn in self.local_connections():
            conn.close(CloseCode.SERVICE_RESTART, "server restarting: reconnect")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf


def _presence(view: UserPresence) -> Presence:
    return Presence(
        user=view.user,
        online=view.online,
        status=view.status,
        devices=view.devices,
        text=view.text,
        last_seen=view.last_seen,
    )


def _parse_json_object(text: str, field: str) -> dict[str, Any]:
    import json

    try:
        value = json.loads(text)
    except ValueError:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"`{field}` must be a JSON object", field=field
        ) from None
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"`{field}` must be a JSON object", field=field)
    return value
