"""The gateway node: wires the presence core, the backplane and the connections.

The node owns the sessions of its own connections (a :class:`SessionRegistry`), one timer
armed at the registry's next deadline, and the local fan-out tables (:mod:`fanout`). Every
shared change goes through the backplane, which returns the transition; every event is encoded
once, published once per room, and written as the same bytes to each local socket.
Authentication lives in :mod:`auth_flow`, request handlers in :mod:`handlers` and
:mod:`messaging`, event building in :mod:`room_events`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Coroutine
from typing import Any

from presenced.auth import TokenVerifier
from presenced.clock import Clock
from presenced.config import Settings
from presenced.errors import AuthError, ProtocolError
from presenced.presence.liveness import Deadline, DeadlineKind, LivenessPolicy, SessionRegistry
from presenced.presence.session import Session, SessionEvent, SessionState
from presenced.presence.status import PresenceChange
from presenced.protocol.codec import convert_auth, encode
from presenced.protocol.codes import CloseCode, ErrorCode, LeaveReason
from presenced.protocol.messages import (
    Auth,
    ClientMessage,
    DeviceBack,
    DeviceDropped,
    DeviceGone,
    ForceLeave,
)
from presenced.server.cluster import LeaseKeeper
from presenced.server.connection import Connection
from presenced.server.eager import Runner, run_eager, run_in_task
from presenced.server.fanout import LocalFanout, device_channel, node_channel
from presenced.server.ordering import Emit, RoomOrder
from presenced.server.room_events import RoomEvents
from presenced.server.transport import ConnectRequest
from presenced.store.base import Backplane
from presenced.typing import NodeId, SessionId, UserId

__all__ = ["Node"]

log = logging.getLogger(__name__)

# Deadlines fire on a grid of at most this many seconds (finer when the heartbeat
# interval is short, as in tests): late by at most one tick.
MAX_TIMER_TICK = 0.02


def timer_tick(heartbeat_interval: float) -> float:
    """The node timer's resolution for a given heartbeat interval (seconds)."""
    return max(0.001, min(MAX_TIMER_TICK, heartbeat_interval / 50))


def on_tick(when: float, tick: float) -> float:
    """The first tick at or after ``when``."""
    at = math.ceil(when / tick) * tick
    return at if at >= when else at + tick  # float rounding may land one ulp short


_FATAL_CLOSE = {
    ErrorCode.AUTH_FAILED: CloseCode.AUTH_FAILED,
    ErrorCode.AUTH_TIMEOUT: CloseCode.AUTH_TIMEOUT,
    ErrorCode.UNSUPPORTED_PROTOCOL: CloseCode.UNSUPPORTED_PROTOCOL,
    ErrorCode.SLOW_CONSUMER: CloseCode.SLOW_CONSUMER,
}


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
        # The memory backend never suspends: its requests run inline, with no task at all.
        self.run: Runner = run_eager if backplane.name == "memory" else run_in_task
        self.events = RoomEvents(backplane, settings.room_summary_above)
        broker = backplane.broker
        order: Callable[[Emit], RoomOrder] | None = None
        if not broker.inline:
            # A networked broker delivers in the order publishes land, not by number.
            def order(emit: Emit) -> RoomOrder:
                return RoomOrder(
                    backplane.messages,
                    backplane.rooms,
                    clock.wall,
                    self.spawn,
                    emit,
                    settings.order_hold,
                )

            broker.on_resubscribed = self._resubscribed
        self.fanout = LocalFanout(
            broker,
            self.spawn,
            settings.presence_batch_window,
            settings.room_summary_interval,
            order,
        )
        self.lease = LeaseKeeper(self)
        self.draining = False
        self.link_stale = False  # the broker's link was down: healthy after the next lease tick
        self._conn_seq = 0
        self._pending: dict[str, Connection] = {}  # not yet authenticated, by connection id
        self._by_session: dict[SessionId, Connection] = {}
        # When each (session, room) typing indicator was last renewed, for throttling.
        self.typing_renewed: dict[str, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._tick = timer_tick(settings.heartbeat_interval)
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- start and health -------------------------------------------------------------------

    async def start(self) -> None:
        """Join the cluster: listen for notices to this node, take the lease, start ticking."""
        await self.backplane.broker.subscribe(node_channel(self.node_id), self._on_notice)
        self.lease.start()
        await self.lease.watch()

    def _on_notice(self, data: bytes, origin: str | None) -> None:
        verb, _, arg = data.partition(b" ")
        if verb == b"moved":
            self.moved_away(SessionId(arg.decode()))

    @property
    def degraded(self) -> bool:
        """The shared store or the broker is unreachable, or was and the node has not yet
        re-asserted its state since: local clients are served, shared state and events from
        other nodes lag."""
        if not self.backplane.broker.connected:
            self.link_stale = True
            return True
        return self.lease.degraded or self.link_stale

    def _resubscribed(self) -> None:
        """The broker's link is back: the store may have restarted, so check the lease now
        (healthy again once that tick is done), and fill what each room's stream moved on
        by meanwhile."""
        self.link_stale = True
        self.lease.poke()
        self.resync_rooms()

    def resync_rooms(self) -> None:
        """Check every local room's streams against the store; fill what was missed."""
        order = self.fanout.rooms.order
        if order is not None:
            self.spawn(order.resync_all())

    # --- introspection ---------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._pending) + len(self._by_session)

    @property
    def session_count(self) -> int:
        return len(self.registry)

    def local_connections(self) -> list[Connection]:
        return [*self._pending.values(), *self._by_session.values()]

    def connection_of(self, session_id: SessionId) -> Connection | None:
        return self._by_session.get(session_id)

    # --- connection lifecycle --------------------------------------------------------------

    def new_connection(self, request: ConnectRequest) -> Connection | None:
        """A handler for an incoming upgrade, or None while draining (refused with 503)."""
        if self.draining:
            return None
        self._conn_seq += 1
        return Connection(self, request, f"c{self._conn_seq}")

    def connection_opened(self, conn: Connection) -> None:
        """Authenticate from the connect URL if it carries credentials, else start the
        auth clock and wait for an ``auth`` message."""
        self._pending[conn.id] = conn
        request = conn.request
        assert request is not None
        conn.request = None  # its headers are not needed again: do not keep them per socket
        query = request.query
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else ""
        token = query.get("token") or bearer
        if token or "user" in query or "resume" in query:
            fields: dict[str, Any] = {"type": "auth", **query}
            if token:
                fields["token"] = token
            try:
                if "device_info" in query:
                    fields["device_info"] = _json_object(query["device_info"], "device_info")
                conn.start(convert_auth(fields))
            except ProtocolError as exc:
                conn.send_error(exc)
        if conn.session is None and not conn.closing:
            self.registry.arm(
                DeadlineKind.AUTH, conn.id, self.clock.monotonic() + self.settings.auth_timeout
            )
        self.rearm()

    def authenticated(self, conn: Connection) -> None:
        """The connection proved who it is: stop its auth clock."""
        self.registry.disarm(DeadlineKind.AUTH, conn.id)
        self._pending.pop(conn.id, None)

    def unauthenticated(self, conn: Connection) -> None:
        """An authentication failed half way and was undone: the connection may try again,
        within a fresh ``auth_timeout``."""
        if conn.closing or conn.session is not None:
            return
        self._pending[conn.id] = conn
        self.registry.arm(
            DeadlineKind.AUTH, conn.id, self.clock.monotonic() + self.settings.auth_timeout
        )
        self.rearm()

    def connection_closed(self, conn: Connection) -> None:
        """The socket is gone: an ACTIVE session enters grace."""
        self._pending.pop(conn.id, None)
        self.registry.disarm(DeadlineKind.AUTH, conn.id)
        self.registry.disarm(DeadlineKind.SLOW, conn.id)
        session = conn.session
        if session is not None:
            self.detach(conn, session)
            if session.state is SessionState.ACTIVE:
                self.registry.transport_lost(session.id, self.clock.monotonic())
                self.spawn(self.entered_grace(session))
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

    # --- sessions --------------------------------------------------------------------------

    async def authenticate(self, conn: Connection, msg: Auth) -> None:
        from presenced.server.auth_flow import authenticate

        await authenticate(self, conn, msg)

    async def attach_session(self, conn: Connection, session: Session) -> None:
        """Bind a session to its (new) connection and its user's event channel."""
        conn.session = session
        self._by_session[session.id] = conn
        await self.fanout.users.add(session.user, conn)

    def detach(self, conn: Connection, session: Session) -> None:
        """Unbind a connection from its session and every local fan-out table."""
        if self._by_session.get(session.id) is conn:
            del self._by_session[session.id]
        fanout = self.fanout
        fanout.users.discard(session.user, conn)
        for room in session.rooms:
            fanout.leave_room(conn, room)
        for user in session.subscriptions:
            fanout.watchers.discard(user, conn)
        conn.session = None

    async def entered_grace(self, session: Session) -> None:
        """Note where each room's stream was, stop typing, save, tell device-event rooms."""
        from presenced.server.messaging import clear_typing

        for room in session.rooms:
            session.marks[room] = await self.backplane.messages.position(room)
            await clear_typing(self, session, room)
        await self.save(session)
        await self.publish_device(session, DeviceDropped)

    async def save(self, session: Session) -> bool:
        """Write the session's record; if another node owns it now, let it go here."""
        if await self.backplane.sessions.put(session):
            return True
        self.lost(session)
        return False

    def lost(self, session: Session) -> None:
        """Another node took this session (it resumed there): drop it without ending it."""
        if self.registry.get(session.id) is session:
            self.registry.release(session.id)
        conn = self._by_session.get(session.id)
        if conn is not None:
            self.detach(conn, session)
            conn.close(CloseCode.SESSION_REPLACED, "session resumed on another connection")
        log.info("session %s moved to another node", session.id)

    def moved_away(self, session_id: SessionId) -> None:
        """Another node announced it took one of our sessions."""
        session = self.registry.get(session_id)
        if session is not None:
            self.lost(session)
            self.rearm()

    async def end_session(self, session: Session, reason: LeaveReason) -> None:
        """A CLOSED session leaves every room and its user's presence, at once.

        The CLOSED record is written first, so that if this node dies half-way the node that
        reaps it finishes the job instead of leaving a member behind."""
        if await self.save(session):
            await self.finish_session(session, reason)

    async def finish_session(self, session: Session, reason: LeaveReason) -> None:
        """Remove a CLOSED session from its rooms and its user's presence, then its record."""
        from presenced.server.messaging import clear_typing

        backplane = self.backplane
        for room in list(session.rooms):
            await clear_typing(self, session, room)
            change = await backplane.rooms.remove(room, session.user, session.id)
            # device.gone first, then member.left / member.updated (docs/protocol.md).
            if reason is not LeaveReason.LEFT:
                gone = DeviceGone(
                    room=room, user=session.user, device=session.device, reason=reason
                )
                await backplane.broker.publish(device_channel(room), encode(gone), session.id)
            await self.events.publish_change(change, reason=reason, origin=session.id)
        presence = await backplane.presence.remove(session.user, session.id, self.clock.wall())
        await backplane.sessions.delete(session.id, owner=self.node_id)
        await self.events.presence_changed(session.user, presence)

    def force_leave(self, session: Session, reason: LeaveReason, message: str) -> None:
        """Tell the client why, close its socket, and remove the (already CLOSED) session."""
        conn = self._by_session.get(session.id)
        if conn is not None:
            self.detach(conn, session)
            conn.send(ForceLeave(reason=reason.value, message=message))
            conn.close(CloseCode.FORCE_LEAVE, reason.value)
        self.spawn(self.end_session(session, reason))

    async def logout(self, conn: Connection, session: Session) -> None:
        self.registry.close(session.id, SessionEvent.LEAVE)
        self.detach(conn, session)
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

    async def set_status(self, session: Session) -> PresenceChange:
        """Push this session's effective status to the store and tell everyone concerned."""
        backplane = self.backplane
        change = await backplane.presence.set(
            session.user, session.id, session.effective_status, session.text, self.clock.wall()
        )
        await self.save(session)
        await self.events.presence_changed(session.user, change)
        return change

    async def publish_device(
        self, session: Session, kind: type[DeviceDropped] | type[DeviceBack]
    ) -> None:
        """A device-level event for each of the session's rooms (to sessions that asked)."""
        for room in session.rooms:
            event: DeviceDropped | DeviceBack
            if kind is DeviceDropped:
                event = DeviceDropped(
                    room=room, user=session.user, device=session.device, grace=self.settings.grace
                )
            else:
                event = DeviceBack(room=room, user=session.user, device=session.device)
            await self.backplane.broker.publish(device_channel(room), encode(event), session.id)

    async def handle(self, conn: Connection, message: ClientMessage) -> None:
        from presenced.server.handlers import dispatch

        await dispatch(self, conn, message)

    # --- time ------------------------------------------------------------------------------

    def rearm(self) -> None:
        """Point the node's one timer at the registry's earliest deadline, rounded up to the
        timer tick.

        Rounding lets one wake-up serve every deadline of a tick (19,000 sessions pinging
        every 25 s put a deadline every 1.3 ms otherwise), and it keeps the timer off
        sub-millisecond delays, which the event loop rounds to zero and would fire early,
        only to be re-armed again. A timer that is already armed earlier than needed is
        left alone: it fires, finds nothing due and re-arms, which is cheaper than
        cancelling and re-creating it whenever a request moves a deadline later.
        """
        when = self.registry.next_deadline()
        if when is None:
            self.stop_timer()
            return
        when = on_tick(when, self._tick)
        if when >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        delay = max(0.0, when - self.clock.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf

    def _on_timer(self) -> None:
        # The loop may run a timer up to a millisecond early (it rounds delays to whole
        # milliseconds against a cached time): the tick it was armed for counts as reached.
        target = self._timer_at
        self._timer, self._timer_at = None, math.inf
        try:
            now = max(self.clock.monotonic(), target)
            for fired in self.registry.advance(now):
                self._on_deadline(fired)
        finally:
            self.rearm()

    def _on_deadline(self, fired: Deadline) -> None:
        kind, session = fired.kind, fired.session
        if kind is DeadlineKind.AUTH:
            conn = self._pending.get(fired.key or "")
            if conn is not None:
                timeout = self.settings.auth_timeout
                conn.send_error(
                    AuthError(
                        ErrorCode.AUTH_TIMEOUT, f"no valid auth within {timeout:g} s", fatal=True
                    )
                )
        elif kind is DeadlineKind.SLOW:
            for conn in self.local_connections():
                if conn.id == fired.key:
                    self.slow_consumer(conn)
        elif kind is DeadlineKind.TYPING:
            from presenced.server.messaging import typing_expired

            self.spawn(typing_expired(self, fired.key or ""))
        elif session is None:
            return
        elif kind is DeadlineKind.PING:
            conn = self._by_session.get(session.id)
            if conn is not None and conn.transport is not None:
                conn.transport.ping()
        elif kind is DeadlineKind.PONG:  # now in GRACE
            conn = self._by_session.get(session.id)
            if conn is not None:
                self.detach(conn, session)
                conn.close(CloseCode.HEARTBEAT_TIMEOUT, "no pong: reconnect and resume", abort=True)
            self.spawn(self.entered_grace(session))
        elif kind is DeadlineKind.GRACE:  # now CLOSED
            self.spawn(self.end_session(session, LeaveReason.GRACE_EXPIRED))
        elif kind is DeadlineKind.AWAY:
            self.spawn(self.set_status(session))
        elif kind is DeadlineKind.INACTIVITY:  # now CLOSED
            timeout = self.settings.inactivity_timeout or 0
            self.force_leave(
                session, LeaveReason.INACTIVITY_TIMEOUT, f"no activity for {timeout:g} s: closed"
            )

    # --- tasks and shutdown ----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run background work eagerly; keep a reference while it is pending; log failures."""
        try:
            task = self.run(coro)
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
        """Stop taking connections; tell every client to reconnect elsewhere. Their sessions
        stay in grace and the lease is dropped, so another node adopts them at once and a
        rolling deploy shows no leave/join storm."""
        self.draining = True
        for conn in self.local_connections():
            conn.close(CloseCode.SERVICE_RESTART, "server restarting: reconnect")
        # Each socket's close completes a little later (its session then enters grace and
        # saves): wait for those, bounded, before waiting for the work they start.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while self.connection_count and loop.time() < deadline:
            await asyncio.sleep(0.005)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        self.stop_timer()
        await self.lease.stop(hand_over=True)


def _json_object(text: str, field: str) -> dict[str, Any]:
    """A JSON object given as text in the connect URL (checked further by ``convert_auth``)."""
    import json

    def no_constant(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(text, parse_constant=no_constant)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"`{field}` must be a JSON object", field=field)
    return value
