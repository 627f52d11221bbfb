"""One client connection: frames in, decoded requests to the node, encoded messages out.

The connection owns what is per socket: decoding and its errors, the rate limit, the auth
gate, request ordering (a request that suspends holds back the next ones) and the send side
with its flow-control signals. What a request *means* is the node's business
(:mod:`presenced.server.handlers`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from presenced.errors import ProtocolError
from presenced.presence.ratelimit import TokenBucket
from presenced.presence.session import Session, SessionState
from presenced.protocol.codec import decode_client, encode, ref_of
from presenced.protocol.codes import CloseCode, ErrorCode
from presenced.protocol.messages import (
    Auth,
    ClientMessage,
    Error,
    Heartbeat,
    HeartbeatAck,
    ServerMessage,
)
from presenced.server.transport import SMALL_FRAME, ConnectRequest, Transport

if TYPE_CHECKING:
    from presenced.server.node import Node

__all__ = ["Connection"]

log = logging.getLogger(__name__)

ANSWER_FACTOR = 2
"""Refusals over the rate that are answered (``RATE_LIMITED``, with the request's ``ref``)
in one run, in units of ``rate_burst``. Past that the client is not listening: reading from
its socket is paused until its bucket is full again (``rate_burst / rate_limit`` seconds;
its data waits in the kernel, then its writes block; at most half ``heartbeat_timeout``, so
that its pongs are read in time), and what was already read is dropped unanswered."""
FLOOD_FACTOR = 5
"""Refusals in one run, in units of ``rate_burst``, after which the connection is closed with
4008 (RATE_LIMITED): a client over the rate by mistake backs off long before."""
FLOOD_PAUSES = 3
"""Read pauses in one run after which the connection is closed with 4008 too: a client whose
frames are large reaches few refusals per pause, but it did not stop either."""
CALM = 1.0
"""Seconds without a refusal after which the next frame let through ends the run. (A frame
let through does not end it by itself: a flooder gets one every ``1 / rate_limit`` s.)"""


class _Refused:
    """A request refused over the rate while an earlier one ran: its answer waits its turn."""

    __slots__ = ("ref",)

    def __init__(self, ref: str | int | None) -> None:
        self.ref = ref


class Connection:
    """The gateway side of one WebSocket (a :class:`TransportHandler`)."""

    __slots__ = (
        "_backlog",
        "_busy",
        "_pauses",
        "_queued",
        "_refused_at",
        "_strikes",
        "bound",
        "bucket",
        "client_ip",
        "close_code",
        "closing",
        "id",
        "ip_slot",
        "message_bucket",
        "node",
        "paused",
        "reading_paused",
        "request",
        "session",
        "transport",
    )

    def __init__(self, node: Node, request: ConnectRequest, conn_id: str) -> None:
        self.node = node
        self.request: ConnectRequest | None = request  # dropped once read (memory)
        self.id = conn_id
        self.transport: Transport | None = None
        self.session: Session | None = None  # set once authenticated
        self.closing = False
        self.paused = False  # writes: the client does not read what it is sent
        self.reading_paused = False  # reads: the client sends far over the rate
        # For the metrics and the logs: the code the socket closed with (1006, abnormal,
        # until a close frame is sent or received), the client's address, and the session
        # it authenticated as (kept until the socket is gone, for the "session closed" line).
        self.close_code = 1006
        self.client_ip = ""
        self.ip_slot = False  # counted in its node's max_connections_per_ip slots
        self.bound: Session | None = None
        settings = node.settings
        now = node.clock.monotonic()
        self.bucket = TokenBucket(settings.rate_limit, settings.rate_burst, now)
        self.message_bucket = TokenBucket(settings.message_rate, settings.message_burst, now)
        self._busy: asyncio.Task[None] | None = None
        # Requests waiting for the one running (None: one refused, answered in its turn).
        self._backlog: deque[bytes | _Refused] | None = None
        self._queued = 0  # requests in the backlog (the rest are refusals waiting their turn)
        self._strikes = 0  # frames refused over the rate in this run (see CALM)
        self._pauses = 0  # reads paused in this run
        self._refused_at = 0.0  # when the last was

    def __repr__(self) -> str:
        who = f"{self.session.user}/{self.session.device}" if self.session else "anonymous"
        return f"<Connection {self.id} {who}>"

    # --- transport callbacks ----------------------------------------------------------------

    def on_open(self, transport: Transport) -> None:
        self.transport = transport
        transport.set_buffer_limit(self.node.settings.send_queue_bytes)
        self.node.connection_opened(self)

    def on_text(self, data: bytes) -> None:
        if self.closing:
            return
        if self.reading_paused:  # read before the pause: dropped, counted
            self._strike(self.node.clock.monotonic())
            return
        if self._busy is not None:
            self._queue(data)
            return
        self._process(data)

    def _queue(self, data: bytes) -> None:
        """A request arrived while an earlier one is still running: it waits its turn, and so
        does its refusal when it is over the rate (replies come in request order). Each frame
        pays its token on arrival. Bounded: at most ``rate_burst`` requests wait; past four
        times that (a flood) a frame is refused at once."""
        settings = self.node.settings
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = deque()
        now = self.node.clock.monotonic()
        if len(backlog) >= 4 * settings.rate_burst:
            if self._strike(now):
                self.send_error(ProtocolError(ErrorCode.RATE_LIMITED, "too many requests queued"))
            return
        if self._queued < settings.rate_burst and self._take(now):
            backlog.append(data)
            self._queued += 1
        elif self._strike(now):
            backlog.append(_Refused(ref_of(data)))  # answered in its turn

    def on_binary(self, data: bytes) -> None:
        if self.closing:
            return
        if self._charge():  # every frame costs a token, refused ones too
            self.send_error(
                ProtocolError(ErrorCode.BAD_JSON, "binary frames are not supported: send JSON text")
            )

    def on_oversize(self, size: int) -> None:
        limit = self.node.settings.max_frame_bytes
        if self.closing:
            return
        if self._charge():
            self.send_error(
                ProtocolError(
                    ErrorCode.FRAME_TOO_LARGE, f"frame of {size} bytes is over the limit of {limit}"
                )
            )

    # --- the rate ------------------------------------------------------------------------

    def _take(self, now: float) -> bool:
        """One token for a frame. The first let through after a calm (``CALM`` s without a
        refusal) ends the run of refusals."""
        if self.bucket.take(now):
            if self._strikes and now - self._refused_at >= CALM:
                self._strikes = self._pauses = 0
            return True
        return False

    def _strike(self, now: float) -> bool:
        """A frame refused over the rate; True when the refusal is to be answered. Counted
        here (``presenced_rate_limited_total{limit="request"}``), every refused frame once.
        Past ``ANSWER_FACTOR`` x ``rate_burst`` refusals in the run reading is paused; past
        ``FLOOD_FACTOR`` x ``rate_burst``, or at a refusal after ``FLOOD_PAUSES`` pauses, the
        connection is closed with 4008 (its session is in grace and may resume): a flooder
        cannot keep the loop busy refusing it."""
        self._strikes += 1
        self._refused_at = now
        if self._strikes == 1 and self.transport is not None:
            self.transport.throttle_reads()  # for good: this client sent too fast once
        node = self.node
        node.stats.was_rate_limited("request")
        burst = node.settings.rate_burst
        if self._strikes <= ANSWER_FACTOR * burst:
            return True
        if self._strikes > FLOOD_FACTOR * burst or self._pauses >= FLOOD_PAUSES:
            if not self.closing:
                log.info("closing %r: %d requests in a row over the rate", self, self._strikes)
                self.close(CloseCode.RATE_LIMITED, "flooding: far over the rate; slow down")
        elif not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self._pauses += 1
            self.transport.pause_reading()
            settings = node.settings
            # Until the bucket is full again, but short of the pong's deadline: a paused
            # socket's pong waits unread, and this client is to hear 4008, not 4006.
            pause = min(burst / settings.rate_limit, settings.heartbeat_timeout / 2)
            node.reading_paused(self, pause)
        return False

    def resume_reading(self) -> None:
        """The pause is over (the node's READ deadline): read from the client again."""
        if self.reading_paused and self.transport is not None and not self.closing:
            self.reading_paused = False
            # The pause was no calm: the run of refusals goes on from here.
            self._refused_at = self.node.clock.monotonic()
            self.transport.resume_reading()

    def _charge(self) -> bool:
        """Charge a frame that is answered without decoding; False when it was refused
        (and answered with RATE_LIMITED, unless past the answered refusals) instead."""
        now = self.node.clock.monotonic()
        if self.reading_paused:
            self._strike(now)
            return False
        if self._take(now):
            return True
        if self._strike(now):
            self.send_error(self._over_rate())
        return False

    def on_pong(self) -> None:
        if self.session is not None:
            self.node.registry.pong(self.session.id)

    def on_write_paused(self) -> None:
        self.paused = True
        self.node.write_paused(self)

    def on_write_resumed(self) -> None:
        self.paused = False
        self.node.write_resumed(self)

    def on_cut(self, code: int) -> None:
        self.closing = True
        self.close_code = code

    def on_peer_close(self, code: int) -> None:
        if not self.closing:  # the client closed first (else it echoes our code)
            self.close_code = code

    def on_closed(self) -> None:
        self.closing = True
        self.transport = None
        self._backlog = None
        self._queued = 0
        self.node.connection_closed(self)

    # --- requests ----------------------------------------------------------------------------

    def _process(self, data: bytes, *, charged: bool = False) -> None:
        """Decode and run one request; ``charged``: its token was taken when it was queued."""
        node = self.node
        now = node.clock.monotonic()
        # The token first: a frame over the rate costs no decode, only its ref is read back
        # (and not even that once its refusals go unanswered).
        if not charged and not self._take(now):
            if self._strike(now):
                self.send_error(self._over_rate(ref_of(data)))
            return
        try:
            message = decode_client(data, max_bytes=node.settings.max_frame_bytes)
        except ProtocolError as exc:
            self.send_error(exc)
            return
        session = self.session
        if type(message) is Heartbeat:
            node.stats.heartbeats += 1
            if (
                session is not None
                and session.state is SessionState.ACTIVE
                and not session.auto_away
            ):
                # The commonest request of an idle node, answered inline: no coroutine, no
                # task (a networked store runs every other request in a task), no store
                # access. A heartbeat that lifts an auto-away takes the full path, which
                # sets the status.
                node.registry.activity(session.id, now)
                wall = node.clock.wall()
                session.last_active = wall
                self.send(HeartbeatAck(time=wall, ref=message.ref))
                return
        self.start(message)

    def start(self, message: ClientMessage) -> None:
        """Run the request now; if it has to wait, hold later ones until it is done."""
        task = self.node.run(self._handle(message))
        if task is not None:
            self._busy = task
            task.add_done_callback(self._drain)
        else:
            self.node.rearm()

    async def _handle(self, message: ClientMessage) -> None:
        node = self.node
        try:
            if self.session is None:
                if isinstance(message, Auth):
                    await node.authenticate(self, message)
                else:
                    raise ProtocolError(
                        ErrorCode.NOT_AUTHENTICATED,
                        "authenticate first: send an auth message",
                        ref=message.ref,
                    )
            else:
                session = self.session
                session.last_active = node.clock.wall()  # saved with its next record write
                if node.registry.activity(session.id, node.clock.monotonic()):
                    await node.activity_resumed(session)  # back from auto-away
                await node.handle(self, message)
        except ProtocolError as exc:
            if exc.ref is None:
                exc.ref = message.ref
            self.send_error(exc)
        except Exception:
            log.exception("request %s failed on %r", type(message).__name__, self)
            self.send_error(
                ProtocolError(ErrorCode.INTERNAL, "internal error: retry", ref=message.ref)
            )

    def _over_rate(self, ref: str | int | None = None) -> ProtocolError:
        rate = self.node.settings.rate_limit
        return ProtocolError(
            ErrorCode.RATE_LIMITED, f"over {rate:g} messages/s: request dropped", ref=ref
        )

    def _drain(self, task: asyncio.Task[None]) -> None:
        self._busy = None
        self.node.rearm()
        while self._backlog and self._busy is None and not self.closing:
            data = self._backlog.popleft()
            if isinstance(data, _Refused):
                self.send_error(self._over_rate(data.ref))
            else:
                self._queued -= 1
                self._process(data, charged=True)
        if not self._backlog:
            self._backlog = None

    # --- sending ---------------------------------------------------------------------------

    def send(self, message: ServerMessage) -> None:
        self.send_bytes(encode(message))

    def send_bytes(self, data: bytes) -> None:
        """Write one frame to this socket, counted (``stats.deliveries``)."""
        self.node.stats.deliveries += 1
        self.send_shared(data)

    def send_shared(self, data: bytes) -> None:
        """Write one frame of a broadcast: the fan-out counts its deliveries once per
        broadcast (server/fanout.py), so this per-recipient path counts only a frame it
        does not write (``stats.unsent``)."""
        transport = self.transport
        if transport is None or self.closing:
            self.node.stats.unsent += 1
            return
        if self.paused and transport.buffered() > 4 * self.node.settings.send_queue_bytes:
            # Still far past the limit from earlier writes: do not wait for the slow-consumer
            # deadline to bound memory. (Checked before writing, so one large reply, such as
            # a recovery, gets the deadline's time to drain like anything else.)
            self.node.stats.unsent += 1
            self.node.slow_consumer(self)
            return
        if len(data) <= SMALL_FRAME:
            transport.send_text(data)
        else:
            transport.send_large(data)

    def send_error(self, exc: ProtocolError) -> None:
        self.send(Error(code=exc.code.value, message=exc.message, field=exc.field, ref=exc.ref))
        if exc.fatal:
            self.node.close_for(self, exc.code)

    def close(self, code: int, reason: str, *, abort: bool = False) -> None:
        """Close the socket (idempotent); ``abort`` drops it without flushing."""
        transport = self.transport
        if transport is None or self.closing:
            return
        self.closing = True
        self.close_code = code
        transport.close(code, reason)
        if abort:
            transport.abort()
