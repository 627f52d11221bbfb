"""The gateway node: wires the presence core, the backplane, the lifecycle and the
connections, and runs the node's one timer.

The node owns what is per process: its connections (through :class:`Connection`), one timer
armed at the :class:`SessionRegistry`'s next deadline, the lease keeper, the notices other
nodes send it, and drain. Every session and room transition is the :class:`Lifecycle`'s,
whoever asks for it: a request (routed by :mod:`handlers`), a deadline, the lease keeper,
the backend (through :attr:`Node.admin`, an :class:`AdminActions`).
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
from presenced.events.sinks import export_from_settings
from presenced.logs import fields
from presenced.presence.liveness import Deadline, DeadlineKind, LivenessPolicy, SessionRegistry
from presenced.presence.session import Session
from presenced.protocol.chat import MessageSend
from presenced.protocol.codec import decode_server
from presenced.protocol.codes import CloseCode, ErrorCode, LeaveReason
from presenced.protocol.messages import Auth, ClientMessage, RoomDeleted
from presenced.server.admin import AdminActions
from presenced.server.auth_flow import connect_auth, too_many_from_address, too_often_from_address
from presenced.server.client_ip import ClientAddress
from presenced.server.cluster import LeaseKeeper
from presenced.server.connection import Connection
from presenced.server.eager import Runner, run_eager, run_in_task
from presenced.server.fanout import LocalFanout, node_channel
from presenced.server.handlers import dispatch
from presenced.server.instrument import instrument
from presenced.server.lifecycle import Lifecycle
from presenced.server.limits import AddressSlots, ConnectRate
from presenced.server.ordering import Emit, RoomOrder
from presenced.server.stats import NodeStats
from presenced.server.transport import ConnectRequest
from presenced.store.base import Backplane
from presenced.typing import NodeId, RoomId, SessionId, UserId

__all__ = ["Node"]

log = logging.getLogger(__name__)

SHUTDOWN_WORK_TIMEOUT = 5.0
"""Seconds a draining node waits for its background work before cancelling it."""

# Deadlines fire on a grid of at most this many seconds (finer when the heartbeat
# interval is short, as in tests): late by at most one tick. Pings, pong and grace
# deadlines, idle and auth deadlines take the coarse tick: 19,000 sessions pinging every
# 25 s need a ping every 1.3 ms, and one wake-up for each 20 ms of them cost an idle node
# more than the pings (docs/benchmarks.md, "Idle CPU, fifth pass"). The prompt deadlines
# (liveness.PROMPT_KINDS: typing, read pauses, slow consumers) keep a fine one.
MAX_TIMER_TICK = 0.5
MAX_PROMPT_TICK = 0.02


def timer_tick(heartbeat_interval: float, cap: float = MAX_TIMER_TICK) -> float:
    """The node timer's resolution for a given heartbeat interval (seconds), at most
    ``cap`` (MAX_PROMPT_TICK for the prompt deadlines)."""
    return max(0.001, min(cap, heartbeat_interval / 50))


def on_tick(when: float, tick: float) -> float:
    """The first tick at or after ``when``."""
    at = math.ceil(when / tick) * tick
    return at if at >= when else at + tick  # float rounding may land one ulp short


_FATAL_CLOSE = {
    ErrorCode.AUTH_FAILED: CloseCode.AUTH_FAILED,
    ErrorCode.AUTH_TIMEOUT: CloseCode.AUTH_TIMEOUT,
    ErrorCode.UNSUPPORTED_PROTOCOL: CloseCode.UNSUPPORTED_PROTOCOL,
    ErrorCode.SLOW_CONSUMER: CloseCode.SLOW_CONSUMER,
    ErrorCode.TOKEN_EXPIRED: CloseCode.TOKEN_EXPIRED,
    ErrorCode.TOO_MANY_CONNECTIONS: CloseCode.TOO_MANY_CONNECTIONS,
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
        # Counters bumped where things happen, read by the admin port's /metrics; the
        # backplane's stores are timed and its publishes counted by wrappers.
        self.stats = NodeStats()
        backplane = instrument(backplane, self.stats)
        self.backplane = backplane
        self.client_address = ClientAddress(settings.trusted_proxies)
        self.address_slots = AddressSlots(settings.max_connections_per_ip)
        rate = settings.max_connect_rate_per_ip
        self.connect_rate = ConnectRate(rate) if rate > 0 else None
        self._read_paused: dict[str, Connection] = {}  # flooders, by connection id
        self.clock = clock
        self.node_id = node_id
        self.verifier = verifier
        self._random = rng or random.Random()  # ping spread, read pause jitter
        self._tick = timer_tick(settings.heartbeat_interval)
        self._prompt_tick = timer_tick(settings.heartbeat_interval, MAX_PROMPT_TICK)
        self.registry = SessionRegistry(
            LivenessPolicy(
                heartbeat_interval=settings.heartbeat_interval,
                heartbeat_timeout=settings.heartbeat_timeout,
                grace=settings.grace,
                auth_timeout=settings.auth_timeout,
                away_after=settings.away_after,
                inactivity_timeout=settings.inactivity_timeout,
            ),
            self._random.random,
            self._tick,
            self._prompt_tick,
        )
        # The memory backend never suspends: its requests run inline, with no task at all.
        self.run: Runner = run_eager if backplane.name == "memory" else run_in_task
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
            self.stats,
            settings.presence_batch_window,
            settings.room_summary_interval,
            order,
        )
        self.export = export_from_settings(settings, node_id, clock, backplane.outbox)
        self.lifecycle = Lifecycle(
            settings, backplane, clock, node_id, self.registry, self.fanout, self.spawn,
            self.rearm, verifier, self.export,
        )  # fmt: skip
        self.fanout.rooms.on_deleted = self.lifecycle.room_deleted
        self.admin = AdminActions(self)  # the backend's writes (the HTTP API's entry point)
        self.lease = LeaseKeeper(self)
        self.draining = False
        self._stopped = False
        self.link_stale = False  # the broker's link was down: healthy after the next lease tick
        self._conn_seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- start and health -------------------------------------------------------------------

    async def start(self) -> None:
        """Join the cluster: listen for notices to this node, take the lease, start ticking."""
        await self.backplane.broker.subscribe(node_channel(self.node_id), self._on_notice)
        self.export.start()
        self.lease.start()
        await self.lease.watch()

    def _on_notice(self, data: bytes, origin: str | None) -> None:
        verb, _, arg = data.partition(b" ")
        if verb == b"moved":
            self.lifecycle.moved_away(SessionId(arg.decode()))
        elif verb == b"deleted":  # a room this node owns sessions of was deleted
            event = decode_server(arg)
            if isinstance(event, RoomDeleted):
                self.lifecycle.room_deleted(RoomId(event.room), arg)
        elif verb == b"admin":  # the backend acted, through another node, on our sessions
            self.admin.on_notice(arg)
        elif verb == b"admin-done":  # an owner did its part of an action we sent it
            self.admin.on_done(arg)
        elif verb == b"ping":  # our own, sent to measure the broker's round trip
            try:
                sent = float(arg)
            except ValueError:
                return
            self.stats.lag_measured(max(0.0, self.clock.monotonic() - sent))

    async def ping_broker(self) -> None:
        """Publish a timestamped ping on this node's own channel; its round trip is the
        pub/sub lag (``presenced_pubsub_lag_seconds``). Skipped while the link is down; a
        failure is only logged (the lease tick reports an unreachable store). Called by the
        lease keeper after each tick."""
        broker = self.backplane.broker
        if not broker.connected:
            return
        stamp = repr(self.clock.monotonic()).encode()
        try:
            await broker.publish(node_channel(self.node_id), b"ping " + stamp)
        except Exception as exc:
            log.debug("broker ping failed: %s", exc)

    @property
    def degraded(self) -> bool:
        """The shared store or the broker is unreachable, or was and the node has not yet
        re-asserted its state since, or transitions that failed meanwhile have left steps to
        take back (``lifecycle.repairs``): local clients are served, shared state and events
        from other nodes lag."""
        if not self.backplane.broker.connected:
            self.link_stale = True
            return True
        return self.lease.degraded or self.link_stale or bool(self.lifecycle.repairs)

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
        lc = self.lifecycle
        return len(lc.pending) + len(lc.by_session)

    @property
    def session_count(self) -> int:
        return len(self.registry)

    def local_connections(self) -> list[Connection]:
        lc = self.lifecycle
        return [*lc.pending.values(), *lc.by_session.values()]

    def connection_of(self, session_id: SessionId) -> Connection | None:
        return self.lifecycle.connection_of(session_id)

    # --- connections -----------------------------------------------------------------------

    def new_connection(self, request: ConnectRequest) -> Connection | None:
        """A handler for an incoming upgrade, or None while draining (refused with 503)."""
        if self.draining:
            return None
        self._conn_seq += 1
        return Connection(self, request, f"c{self._conn_seq}")

    def connection_opened(self, conn: Connection) -> None:
        """Authenticate from the connect URL if it carries credentials, else start the
        auth clock and wait for an ``auth`` message."""
        request = conn.request
        assert request is not None
        conn.request = None  # its headers are not needed again: do not keep them per socket
        self.stats.connections_opened += 1
        peer = conn.transport.peer if conn.transport is not None else request.peer
        conn.client_ip = self.client_address.of(peer or request.peer, request.headers)
        rate = self.connect_rate
        if (
            rate is not None
            and conn.client_ip
            and not rate.allow(conn.client_ip, self.clock.monotonic())
        ):
            # As for the slots below: refused before anything is read, no auth clock.
            self.stats.connection_refused("ip_rate")
            log.info("connection refused", extra=fields(limit="ip_rate", ip=conn.client_ip))
            conn.send_error(too_often_from_address(rate.rate))
            return
        slots = self.address_slots
        if slots.limit and conn.client_ip:
            if not slots.take(conn.client_ip):
                # Refused before anything is read: no auth clock, no session. After the
                # upgrade rather than with an HTTP 429 before it: picows's upgrade factory
                # is not told the peer's address, and a browser reports a refused upgrade
                # as a bare 1006 anyway, where 4012 is a code it can act on.
                self.stats.connection_refused("ip")
                log.info("connection refused", extra=fields(limit="ip", ip=conn.client_ip))
                conn.send_error(too_many_from_address(slots.limit))
                return
            conn.ip_slot = True
        self.lifecycle.waiting_for_auth(conn)
        try:
            auth = connect_auth(request.query, request.headers)
        except ProtocolError as exc:
            conn.send_error(exc)
        else:
            if auth is not None:
                conn.start(auth)
        self.rearm()

    def connection_closed(self, conn: Connection) -> None:
        """The socket is gone: an ACTIVE session enters grace."""
        self.registry.disarm(DeadlineKind.AUTH, conn.id)
        self.registry.disarm(DeadlineKind.SLOW, conn.id)
        if self._read_paused.pop(conn.id, None) is not None:
            self.registry.disarm(DeadlineKind.READ, conn.id)
        self.stats.connection_closed(conn.close_code)
        if conn.ip_slot:
            conn.ip_slot = False
            self.address_slots.give_back(conn.client_ip)
        if conn.bound is None and conn.session is not None:
            # Closed while its authentication was still finishing (the welcome was sent, the
            # presence not yet published): its opening is logged now, before its closing.
            self._log_opened(conn, conn.session, False)
        session = conn.bound
        if session is not None:
            log.info(
                "session closed",
                extra=fields(
                    user=session.user,
                    session=session.id,
                    device=session.device,
                    ip=conn.client_ip,
                    close_code=conn.close_code,
                    duration=round(self.clock.wall() - session.connected_at, 3),
                ),
            )
            conn.bound = None
        self.lifecycle.transport_lost(conn)
        self.rearm()

    def close_for(self, conn: Connection, code: ErrorCode) -> None:
        """Close after a fatal error, with the close code that belongs to it."""
        close = _FATAL_CLOSE.get(code, CloseCode.BAD_REQUEST)
        conn.close(close, code.value.lower().replace("_", " "))

    def reading_paused(self, conn: Connection, seconds: float) -> None:
        """``conn`` floods: its reads stay paused for ``seconds`` (``Connection._strike``)."""
        log.info("pausing reads from %r for %.2f s: far over the rate", conn, seconds)
        self.stats.read_pauses += 1
        self._read_paused[conn.id] = conn
        # Jittered by +-20 %: flooders that started together do not all come back at once.
        seconds *= 0.8 + 0.4 * self._random.random()
        self.registry.arm(DeadlineKind.READ, conn.id, self.clock.monotonic() + seconds)
        self.rearm()

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
        self.stats.slow_consumer_closes += 1
        conn.close(CloseCode.SLOW_CONSUMER, "slow consumer: reconnect and resume", abort=True)

    # --- requests --------------------------------------------------------------------------

    async def authenticate(self, conn: Connection, msg: Auth) -> None:
        started = self.clock.wall()
        try:
            await self.lifecycle.authenticate(conn, msg)
        except AuthError as exc:
            self.auth_failed(conn, exc)
            raise
        except ProtocolError as exc:
            if exc.code is ErrorCode.TOO_MANY_CONNECTIONS:  # max_connections_per_user
                self.stats.connection_refused("user")  # (the lifecycle logged it)
            raise
        if conn.session is not None:
            resumed = msg.resume is not None and conn.session.connected_at < started
            self._log_opened(conn, conn.session, resumed)

    def _log_opened(self, conn: Connection, session: Session, resumed: bool) -> None:
        conn.bound = session
        log.info(
            "session resumed" if resumed else "session opened",
            extra=fields(
                user=session.user, session=session.id, device=session.device, ip=conn.client_ip
            ),
        )

    def auth_failed(self, conn: Connection, exc: AuthError) -> None:
        """Count and log a refused authentication: why and from where, never the
        credentials."""
        reason = exc.reason or exc.code.value.lower()
        self.stats.auth_failed(reason)
        log.info("auth failed", extra=fields(reason=reason, ip=conn.client_ip))

    async def activity_resumed(self, session: Session) -> None:
        """A request ended the session's auto-away: its status is published again."""
        await self.lifecycle.set_status(session)

    async def handle(self, conn: Connection, message: ClientMessage) -> None:
        try:
            await dispatch(self.lifecycle, conn, message)
        except ProtocolError as exc:
            if exc.code is ErrorCode.MESSAGE_RATE_LIMITED:
                self.stats.was_rate_limited("message")
            elif isinstance(exc, AuthError):  # a refresh's token refused
                self.auth_failed(conn, exc)
            raise
        if type(message) is MessageSend:
            self.stats.messages_in += 1

    async def kick(self, user: UserId, message: str = "removed by the server") -> int:
        """Force-leave every local session of ``user``; returns how many were ended."""
        return self.lifecycle.kick(user, message)

    # --- time ------------------------------------------------------------------------------

    def rearm(self) -> None:
        """Point the node's one timer at the registry's earliest deadline, rounded up to its
        tick (the prompt deadlines' finer one, or the other deadlines' coarse one).

        Rounding lets one wake-up serve every deadline of a tick (19,000 sessions pinging
        every 25 s put a deadline every 1.3 ms otherwise), and it keeps the timer off
        sub-millisecond delays, which the event loop rounds to zero and would fire early,
        only to be re-armed again. A timer that is already armed earlier than needed is
        left alone: it fires, finds nothing due and re-arms, which is cheaper than
        cancelling and re-creating it whenever a request moves a deadline later.
        """
        relaxed, prompt = self.registry.next_deadlines()
        if (relaxed is None and prompt is None) or self._stopped:
            self.stop_timer()
            return
        when = math.inf if relaxed is None else on_tick(relaxed, self._tick)
        if prompt is not None:
            when = min(when, on_tick(prompt, self._prompt_tick))
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
        kind, session, lc = fired.kind, fired.session, self.lifecycle
        if kind is DeadlineKind.AUTH:
            conn = lc.pending.get(fired.key or "")
            if conn is not None:
                timeout = self.settings.auth_timeout
                error = AuthError(
                    ErrorCode.AUTH_TIMEOUT,
                    f"no valid auth within {timeout:g} s",
                    fatal=True,
                    reason="timeout",
                )
                self.auth_failed(conn, error)
                conn.send_error(error)
        elif kind is DeadlineKind.READ:
            paused = self._read_paused.pop(fired.key or "", None)
            if paused is not None:
                paused.resume_reading()
        elif kind is DeadlineKind.SLOW:
            for conn in self.local_connections():
                if conn.id == fired.key:
                    self.slow_consumer(conn)
        elif kind is DeadlineKind.TYPING:
            self.spawn(lc.typing_expired(fired.key or ""))
        elif kind is DeadlineKind.TYPING_DEFERRED:
            self.spawn(lc.typing_deferred(fired.key or ""))
        elif kind is DeadlineKind.TOKEN:  # the session goes to grace: resume with a new token
            conn = lc.connection_of(SessionId(fired.key or ""))
            if conn is not None:
                message = "token expired and no refresh came: reconnect with a fresh token"
                conn.send_error(AuthError(ErrorCode.TOKEN_EXPIRED, message, fatal=True))
        elif session is None:
            return
        elif kind is DeadlineKind.PING:
            conn = lc.connection_of(session.id)
            if conn is not None and conn.transport is not None:
                conn.transport.ping()
        elif kind is DeadlineKind.PONG:  # now in GRACE
            lc.pong_missed(session)
        elif kind is DeadlineKind.GRACE:  # now CLOSED
            self.spawn(lc.end(session, lc.grace_reason(session)))
        elif kind is DeadlineKind.AWAY:
            self.spawn(lc.set_status(session))
        elif kind is DeadlineKind.INACTIVITY:  # now CLOSED
            timeout = self.settings.inactivity_timeout or 0
            lc.force_leave(
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
        await self.settle(SHUTDOWN_WORK_TIMEOUT)
        self._stopped = True  # no deadline fires from here on: the store is about to close
        self.stop_timer()
        await self.lease.stop(hand_over=True)

    async def settle(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, for the background work to finish (work may
        start more work: wait for that too), then cancel what is left and wait for it to
        unwind. Called on shutdown before the store closes: work that outlived the store
        would reopen its connections (a closed redis-py client reconnects on next use) and
        leak them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(list(self._tasks), timeout=left)
        if not self._tasks:
            return
        log.warning("shutdown: cancelling %d background task(s) still running", len(self._tasks))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.wait(list(self._tasks), timeout=1.0)
