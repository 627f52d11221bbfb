"""Broker on NATS core pub/sub: the alternative to Redis pub/sub (presence state stays in Redis).

Each node (process) has one NatsBroker with one NATS connection. ``publish`` sends the payload
with its origin, framed as the Redis broker frames it (:mod:`presenced.store.frames`), on the
subject ``{prefix}.{token}``; every broker that subscribed the channel hands
``(payload, origin)`` to its one handler for it. The prefix keeps deployments sharing a NATS
server apart, as the Redis key prefix does.

Subjects: NATS subjects are dot-separated tokens, and ``.``, ``*``, ``>`` and whitespace have
meaning there, so a channel name (``room:<any room id>``) is escaped into one token: ASCII
letters, digits, ``-``, ``_`` and ``:`` stay, every other UTF-8 byte becomes ``%XX``
(uppercase hex), and the empty name becomes ``%``. That is reversible (:func:`unescape_channel`)
and without collisions: ``%`` only ever starts an escape, so two names never share a token.

(Un)subscribe is idempotent and, while connected, returns once the server has confirmed it (a
PING/PONG once the SUB/UNSUB is written: the server handles a connection's commands in order),
so a publish made after ``subscribe`` returns is delivered and one made after ``unsubscribe``
returns is not. ``publish`` only hands the message to the connection (nats-py writes it out
at once, in the background): messages are in order per publisher, and messages of different
nodes in the order the server gets them.

The connection is made in the background on first use; the first publish or (un)subscribe
waits (bounded) for the first attempt. If NATS cannot be reached, subscribing only records the
wish (it is subscribed once connected) and publishing raises ConnectionError.

After that, nats-py's own reconnect takes over, with unlimited attempts: it replays every
subscription on the new connection, buffers what is published meanwhile (up to its pending
size; past that publish raises), and disconnects and reconnects are logged here. A handler that
raises is logged and delivery goes on. ``close()`` drains: subscriptions stop, what was
published is flushed, then the connection closes.

nats-py runs one small task per subscription (its message queue): fine for the channels of one
node (its rooms, watched users and sessions' users), each idle one costs a parked task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import UnexpectedEOF

from presenced.store.base import MessageHandler
from presenced.store.frames import deliver_frame, encode_frame

__all__ = ["NatsBroker", "escape_channel", "unescape_channel"]

log = logging.getLogger(__name__)

_PLAIN = re.compile(r"[A-Za-z0-9_:-]+")  # channel names that are their own token
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_:-")
_ESCAPE = re.compile(r"%([0-9A-F]{2})")
_EMPTY = "%"  # the token of the empty name: never produced otherwise (% is always %XX)
_BAD_PREFIX = re.compile(r"[\s*>]")


def escape_channel(channel: str) -> str:
    """The one NATS subject token for ``channel``: reversible, distinct for distinct names."""
    if _PLAIN.fullmatch(channel):
        return channel
    if not channel:
        return _EMPTY
    # surrogatepass: a str with a lone surrogate still maps to a token, and back.
    raw = channel.encode("utf-8", "surrogatepass")
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw)


def unescape_channel(token: str) -> str:
    """The channel name whose token is ``token``; ValueError if no name has that token."""
    if token == _EMPTY:
        return ""
    raw = bytearray()
    at = 0
    for match in _ESCAPE.finditer(token):
        raw += token[at : match.start()].encode("ascii", "replace")
        raw.append(int(match.group(1), 16))
        at = match.end()
    raw += token[at:].encode("ascii", "replace")
    try:
        channel = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise ValueError(f"{token!r} is not an escaped channel name") from None
    if not channel or escape_channel(channel) != token:  # a byte left unescaped, or a stray %
        raise ValueError(f"{token!r} is not an escaped channel name")
    return channel


def _check_prefix(prefix: str) -> str:
    tokens = prefix.split(".")
    if any(not t or _BAD_PREFIX.search(t) for t in tokens):
        raise ValueError(
            f"{prefix!r} is not a NATS subject prefix: dot-separated, non-empty tokens without "
            "whitespace, '*' or '>'"
        )
    return prefix


class NatsBroker:
    """Fan-out between nodes over NATS core pub/sub, on one connection."""

    inline = False

    def __init__(
        self,
        url: str,
        prefix: str = "pd",
        *,
        connect_wait: float = 5.0,
        confirm_timeout: int = 5,
        reconnect_wait: int = 1,
        keepalive: int = 15,
        drain_timeout: int = 5,
    ) -> None:
        """``url``: ``nats://host:port`` (or ``tls://``), or several, comma-separated, of one
        NATS cluster. Nothing connects until the first publish or (un)subscribe."""
        self._servers = [s.strip() for s in url.split(",") if s.strip()]
        self._prefix = _check_prefix(prefix)
        self.connect_wait = connect_wait
        self.confirm_timeout = confirm_timeout
        self.reconnect_wait = reconnect_wait
        self.keepalive = keepalive
        self.drain_timeout = drain_timeout
        self._nc = Client()
        self._handlers: dict[str, MessageHandler] = {}  # channel -> this node's handler
        self._subs: dict[str, Subscription] = {}  # channel -> its NATS subscription
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # channel -> lock, users
        self._task: asyncio.Task[None] | None = None  # the first connection
        self._up = asyncio.Event()  # connected once: from then on nats-py reconnects
        self._tried = asyncio.Event()  # the first attempt succeeded or failed
        self._failures = 0  # failed connection attempts since the last success
        self._closed = False
        self.on_resubscribed: Callable[[], None] | None = None

    # --- the Broker Protocol -------------------------------------------------------------

    def subject(self, channel: str) -> str:
        """The NATS subject of ``channel``."""
        return f"{self._prefix}.{escape_channel(channel)}"

    async def publish(self, channel: str, payload: bytes, origin: str | None = None) -> None:
        """Send to every node subscribed to ``channel`` (none: the message is dropped)."""
        subject = self.subject(channel)
        frame = encode_frame(payload, origin)
        if not await self._connected():
            raise ConnectionError(f"NATS at {', '.join(self._servers)} is not reachable")
        await self._nc.publish(subject, frame)

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        """Deliver ``channel``'s messages to ``handler`` (replacing this node's previous one)."""
        if self._closed:
            raise RuntimeError("broker closed")
        async with self._channel_lock(channel):
            if channel in self._handlers:
                self._handlers[channel] = handler
                return
            self._handlers[channel] = handler
            if await self._connected():
                await self._open(channel)
            # Else the first connection subscribes it (see _connect).

    async def unsubscribe(self, channel: str) -> None:
        """Stop delivering ``channel`` here (nothing to do if it was not subscribed)."""
        async with self._channel_lock(channel):
            if self._handlers.pop(channel, None) is None:
                return
            sub = self._subs.pop(channel, None)
            if sub is None or self._closed:
                return
            try:
                # While reconnecting this only forgets it: it is not replayed on reconnect.
                await sub.unsubscribe()
            except NatsError as exc:
                log.debug("nats: unsubscribing %r: %r", channel, exc)
                return
            await self._confirm("unsubscribe", channel)

    # --- life cycle and state ------------------------------------------------------------

    async def close(self) -> None:
        """Drain (stop the subscriptions, flush what was published) and close the connection."""
        if self._closed:
            return
        self._closed = True
        task = self._task
        if task is None:
            return  # never connected
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        nc = self._nc
        try:
            if nc.is_connected:
                await nc.drain()
        except NatsError as exc:
            log.debug("nats: drain failed: %r", exc)
        finally:
            if not nc.is_closed:
                await nc.close()
        self._subs.clear()

    @property
    def channels(self) -> list[str]:
        """The subscribed channels."""
        return list(self._handlers)

    @property
    def connected(self) -> bool:
        """Whether the NATS connection is up."""
        return self._nc.is_connected

    # --- internals -----------------------------------------------------------------------

    async def _connected(self) -> bool:
        """Start connecting on first use; wait (bounded) for the first attempt to end."""
        if self._up.is_set():
            return True  # later outages: nats-py reconnects, buffers and replays by itself
        if self._closed:
            raise RuntimeError("broker closed")
        if self._task is None:
            self._task = asyncio.create_task(self._connect(), name="presenced nats connect")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), self.connect_wait)
        return self._up.is_set()

    async def _connect(self) -> None:
        nc = self._nc
        # With max_reconnect_attempts=-1, connect() itself retries until it gets through.
        await nc.connect(
            servers=self._servers,
            name="presenced",
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=self.reconnect_wait,
            ping_interval=self.keepalive,
            max_outstanding_pings=2,  # a connection silent for two pings is dead
            drain_timeout=self.drain_timeout,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            closed_cb=self._on_closed,
        )
        self._failures = 0
        log.info("nats: connected to %s", self._where())
        self._up.set()
        self._tried.set()
        # Channels subscribed while NATS could not be reached (their subscribe gave up waiting).
        for channel in list(self._handlers):
            async with self._channel_lock(channel):
                if channel in self._handlers and channel not in self._subs:
                    await self._open(channel)

    async def _open(self, channel: str) -> None:
        """Subscribe ``channel`` on the connection and wait for the server to confirm it."""
        self._subs[channel] = await self._nc.subscribe(
            self.subject(channel), cb=self._receiver(channel)
        )
        await self._confirm("subscribe", channel)

    async def _confirm(self, verb: str, channel: str) -> None:
        """A PING/PONG round trip: the server has handled every command sent before it."""
        if not self._nc.is_connected:
            return  # reconnecting: the new connection gets the subscriptions that are wanted
        try:
            # nats-py queues SUB/UNSUB in its pending buffer for its flusher task, but flush()
            # writes its PING straight to the socket, so the PONG alone could come back before
            # the command was even sent: first have the flusher write the buffer out.
            await self._nc._flush_pending(force_flush=True)
            # flush's own timeout, not wait_for: a PONG must not meet a cancelled future.
            await self._nc.flush(timeout=self.confirm_timeout)
        except NatsError as exc:
            log.warning("nats: %s %r not confirmed: %r", verb, channel, exc)

    def _receiver(self, channel: str) -> Callable[[Msg], Awaitable[None]]:
        async def receive(msg: Msg) -> None:
            self._deliver(channel, msg.data)

        return receive

    def _deliver(self, channel: str, frame: bytes) -> None:
        deliver_frame(self._handlers.get(channel), channel, frame, log, "nats")

    @contextlib.asynccontextmanager
    async def _channel_lock(self, channel: str) -> AsyncIterator[None]:
        """Serialize the (un)subscribes of one channel; other channels go on in parallel."""
        entry = self._locks.get(channel)
        if entry is None:
            entry = self._locks[channel] = (asyncio.Lock(), [0])
        entry[1][0] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1][0] -= 1
            if entry[1][0] == 0:
                del self._locks[channel]

    def _where(self) -> str:
        url = self._nc.connected_url
        return url.netloc.rpartition("@")[2] if url is not None else ", ".join(self._servers)

    # --- nats-py callbacks ---------------------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        if self._nc.is_connected:
            # The server went away: the disconnect is logged next, this is only its cause.
            level = logging.DEBUG if isinstance(exc, UnexpectedEOF) else logging.WARNING
            log.log(level, "nats: %s: %s", type(exc).__name__, exc)  # e.g. a slow consumer
            return
        # A failed (re)connection attempt: say so once per outage, then quietly.
        self._failures += 1
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(level, "nats: cannot reach %s (%s: %s)", self._where(), type(exc).__name__, exc)
        if not self._up.is_set():
            self._tried.set()  # waiters stop waiting; _connect goes on trying

    async def _on_disconnected(self) -> None:
        if not self._closed:
            log.warning("nats: disconnected from %s, reconnecting", self._where())

    async def _on_reconnected(self) -> None:
        self._failures = 0
        log.warning(
            "nats: reconnected to %s, re-subscribed %d channel(s)", self._where(), len(self._subs)
        )
        if self.on_resubscribed is not None:
            try:
                await self._nc.flush(timeout=self.confirm_timeout)  # the SUBs are in effect
            except Exception as exc:
                log.debug("nats: flush after reconnect failed: %r", exc)
            self.on_resubscribed()

    async def _on_closed(self) -> None:
        log.info("nats: connection closed")
