"""Broker on Redis/Valkey pub/sub: an event published once reaches every subscribed node.

Each node (process) has one RedisBroker. ``publish`` sends the payload with its origin to the
channel named by Keys.channel(); every broker that subscribed the channel hands
``(payload, origin)`` to its one handler for it. The origin travels in the published bytes,
framed by :mod:`presenced.store.frames`.

Connections: one client for publishing, and one pub/sub connection with its reader task per
server. On a standalone server that is one connection per broker. On Cluster the broker uses
sharded pub/sub (SPUBLISH / SSUBSCRIBE): a channel lives on the master owning its slot (the
``{c:...}`` hash tag), so a publish goes to one shard instead of the whole cluster, and a
subscription must be made on that master: one connection per master that holds channels.

(Un)subscribe is idempotent and returns once the server has confirmed it, so a publish made
after ``subscribe`` returns is delivered and one made after ``unsubscribe`` returns is not.
While a connection is down, (un)subscribing only records the wish. The reader reconnects with
exponential backoff and jitter and re-subscribes every channel it should have (logged); what
was published meanwhile is lost, as pub/sub always is. A reader that hears nothing for
``keepalive`` seconds pings, and treats a second silent period as a dead connection. A
handler that raises is logged and the reader goes on. On Cluster, a MOVED reply, a channel the
server dropped (its slot moved) or a master that cannot be reached makes the broker refresh
the slot map and move channels to their new owners; an error reply to a (re)subscribe makes
the reader start over on a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from presenced.store.base import MessageHandler
from presenced.store.frames import deliver_frame, encode_frame
from presenced.store.redis.connect import is_cluster_url, make_client
from presenced.store.redis.keys import Keys

__all__ = ["RedisBroker"]

log = logging.getLogger(__name__)

_CHUNK = 500  # channels per (re)subscribe command

_MAINTENANCE_OPTIONS = (
    "maint_notifications_config",
    "maint_notifications_pool_handler",
    "oss_cluster_maint_notifications_handler",
)
"""redis-py 8.1's connection options for RESP3 maintenance notifications, turned off on
the pub/sub links (older versions have none)."""
_LINK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


class _Link:
    """One pub/sub connection (to the server, or to one Cluster master) and its reader task.

    ``channels`` is what should be subscribed on it: the reader subscribes all of them each
    time it connects, so callers send (un)subscribe commands only while it is up.
    """

    def __init__(self, broker: RedisBroker, name: str, kwargs: dict[str, Any], cls: Any) -> None:
        self.broker = broker
        self.name = name
        self._kwargs = kwargs
        self._cls = cls
        self.channels: set[bytes] = set()
        self.conn: Any = None  # the connection, while up
        self.down = False  # the last attempt failed: callers do not wait for confirmations
        self.connects = 0  # connections made (the first, then one per reconnect)
        self._waiters: dict[tuple[bytes, bytes], list[asyncio.Future[None]]] = {}
        self.task = asyncio.create_task(self._run(), name=f"presenced pub/sub {name}")

    async def request(self, verb: str, reply: bytes, channel: bytes) -> None:
        """Send one (un)subscribe and wait (bounded) for the server's confirmation."""
        conn = self.conn
        if self.down or (conn is None and reply.endswith(b"unsubscribe")):
            return  # not connected: the next connection subscribes ``channels``, no more
        key = (reply, channel)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        try:
            # Connecting (conn is None): the reader's subscription of ``channels`` answers.
            if conn is not None and conn.is_connected:
                await conn.send_command(verb, channel, check_health=False)
            await asyncio.wait_for(future, self.broker.confirm_timeout)
        except TimeoutError:
            log.warning("pub/sub %s: %s %r not confirmed in time", self.name, verb, channel)
        except _LINK_ERRORS as exc:
            # The reader sees the connection fail too, reconnects and subscribes ``channels``.
            log.debug("pub/sub %s: %s %r not confirmed: %r", self.name, verb, channel, exc)
        finally:
            waiting = self._waiters.get(key)
            if waiting is not None and future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self._waiters[key]

    def _confirmed_later(self, last: bytes) -> None:
        """Tell the broker once the server confirmed the re-subscription of ``last`` (the
        channel subscribed last: replies come in order, so every channel before it is in
        effect too)."""
        callback = self.broker.on_resubscribed
        if callback is None:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((self.broker._sub_reply, last), []).append(future)

        def done(f: asyncio.Future[None]) -> None:
            if self.conn is not None:  # confirmed, not released by a failed connection
                callback()

        future.add_done_callback(done)

    def _release_waiters(self) -> None:
        for waiting in self._waiters.values():
            for future in waiting:
                if not future.done():
                    future.set_result(None)
        self._waiters.clear()

    async def _run(self) -> None:
        broker = self.broker
        loop = asyncio.get_running_loop()
        delay = broker.backoff_min
        failures = 0
        while True:
            conn = self._cls(**self._kwargs)
            up_since: float | None = None
            try:
                await conn.connect()
                # In one step with no await: whoever adds a channel after this sees ``conn``
                # and subscribes it itself; whoever added it before is in ``wanted``.
                self.conn, self.down, wanted = conn, False, list(self.channels)
                self.connects += 1
                up_since = loop.time()
                if self.connects > 1:
                    log.warning(
                        "pub/sub %s: reconnected, re-subscribing %d channel(s)",
                        self.name, len(wanted),
                    )  # fmt: skip
                failures = 0
                if self.connects > 1 and wanted:
                    self._confirmed_later(wanted[-1])
                await broker._send_all(conn, broker._sub, wanted)
                stale = [c for c in wanted if c not in self.channels]  # dropped meanwhile
                await broker._send_all(conn, broker._unsub, stale)
                await self._read(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(
                    level, "pub/sub %s: connection lost or refused (%s: %s)",
                    self.name, type(exc).__name__, exc,
                )  # fmt: skip
            finally:
                self.conn, self.down = None, True
                self._release_waiters()
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
            if up_since is not None and loop.time() - up_since > broker.backoff_max:
                delay = broker.backoff_min  # it had been working: retry soon
            broker._link_failed(self)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # backoff, with jitter
            delay = min(delay * 2, broker.backoff_max)

    async def _read(self, conn: Any) -> None:
        pinged = False
        while True:
            try:
                reply = await conn.read_response(timeout=self.broker.keepalive)
            except ResponseError as exc:
                # A (re)subscribe refused (MOVED, CLUSTERDOWN while a master restarts, ...): we
                # cannot tell which channels it left out, so start over on a new connection.
                self.broker._command_failed(self, exc)
                raise
            if reply is None:  # silent for ``keepalive`` seconds
                if pinged:
                    raise RedisTimeoutError("no reply to PING")
                await conn.send_command("PING", check_health=False)
                pinged = True
                continue
            pinged = False
            if isinstance(reply, list) and len(reply) >= 2:
                self._on_reply(reply)

    def _on_reply(self, reply: list[Any]) -> None:
        kind = reply[0]
        if kind == b"message" or kind == b"smessage":
            self.broker._deliver(reply[1], reply[2])
            return
        waiting = self._waiters.pop((kind, reply[1]), None)
        for future in waiting or ():
            if not future.done():
                future.set_result(None)
        if kind == b"sunsubscribe" and waiting is None and reply[1] in self.channels:
            # Not asked for: the server dropped the channel, its slot moved elsewhere.
            self.broker._channel_dropped(reply[1])

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class RedisBroker:
    """Fan-out between nodes over Redis/Valkey pub/sub (sharded on Cluster)."""

    inline = False

    def __init__(
        self,
        url: str,
        keys: Keys,
        *,
        keepalive: float = 15.0,
        confirm_timeout: float = 5.0,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        self._keys = keys
        self._cluster = is_cluster_url(url)
        self._client: Any = make_client(url)
        self.keepalive = keepalive
        self.confirm_timeout = confirm_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        if self._cluster:
            self._pub, self._sub, self._unsub = "SPUBLISH", "SSUBSCRIBE", "SUNSUBSCRIBE"
            self._sub_reply, self._unsub_reply = b"ssubscribe", b"sunsubscribe"
        else:
            self._pub, self._sub, self._unsub = "PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE"
            self._sub_reply, self._unsub_reply = b"subscribe", b"unsubscribe"
        self._handlers: dict[bytes, MessageHandler] = {}  # by the channel's Redis name
        self._names: dict[bytes, str] = {}  # Redis name -> channel
        self._owner: dict[bytes, _Link] = {}  # channel -> the link it is subscribed on
        self._links: dict[str, _Link] = {}
        self._locks: dict[bytes, list[Any]] = {}  # channel -> [lock, users]
        self._dropped: set[bytes] = set()
        self._rebalancing: asyncio.Task[None] | None = None
        self._closed = False
        self.on_resubscribed: Callable[[], None] | None = None

    # --- the Broker Protocol -------------------------------------------------------------

    async def publish(self, channel: str, payload: bytes, origin: str | None = None) -> None:
        """Send to every node subscribed to ``channel`` (none: the message is dropped)."""
        frame = encode_frame(payload, origin)
        await self._client.execute_command(self._pub, self._keys.channel(channel), frame)

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        """Deliver ``channel``'s messages to ``handler`` (replacing this node's previous one)."""
        wire = self._keys.channel(channel).encode()
        async with self._channel_lock(wire):
            if wire in self._handlers:
                self._handlers[wire] = handler
                return
            link = await self._link_for(wire)
            self._handlers[wire] = handler
            self._names[wire] = channel
            self._owner[wire] = link
            link.channels.add(wire)
            await link.request(self._sub, self._sub_reply, wire)

    async def unsubscribe(self, channel: str) -> None:
        """Stop delivering ``channel`` here (nothing to do if it was not subscribed)."""
        wire = self._keys.channel(channel).encode()
        async with self._channel_lock(wire):
            if self._handlers.pop(wire, None) is None:
                return
            del self._names[wire]
            self._dropped.discard(wire)
            link = self._owner.pop(wire)
            link.channels.discard(wire)
            await link.request(self._unsub, self._unsub_reply, wire)

    # --- life cycle and state ------------------------------------------------------------

    async def close(self) -> None:
        """Stop the readers and close every connection."""
        self._closed = True
        if self._rebalancing is not None:
            self._rebalancing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rebalancing
        for link in list(self._links.values()):
            await link.close()
        self._links.clear()
        await self._client.aclose()

    @property
    def channels(self) -> list[str]:
        """The subscribed channels."""
        return list(self._names.values())

    @property
    def connections(self) -> int:
        """Pub/sub connections (links) in use: one, or one per Cluster master with channels."""
        return len(self._links)

    @property
    def connected(self) -> bool:
        """Whether every pub/sub connection is up."""
        return all(link.conn is not None for link in self._links.values())

    # --- internals -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _channel_lock(self, wire: bytes) -> AsyncIterator[None]:
        """Serialize the (un)subscribes of one channel; other channels go on in parallel."""
        entry = self._locks.get(wire)
        if entry is None:
            entry = self._locks[wire] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[wire]

    async def _link_for(self, wire: bytes) -> _Link:
        if self._closed:
            raise RuntimeError("broker closed")
        if not self._cluster:
            link = self._links.get("")
            if link is None:
                pool = self._client.connection_pool
                kwargs = self._link_kwargs(pool.connection_kwargs, pool.connection_class)
                name = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
                link = self._links[""] = _Link(self, name, kwargs, pool.connection_class)
            return link
        await self._client.initialize()
        node = self._client.get_node_from_key(wire)
        link = self._links.get(node.name)
        if link is None:
            kwargs = self._link_kwargs(node.connection_kwargs, node.connection_class)
            link = self._links[node.name] = _Link(self, node.name, kwargs, node.connection_class)
        return link

    @staticmethod
    def _link_kwargs(kwargs: dict[str, Any], connection_class: type) -> dict[str, Any]:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # RESP2 pub/sub replies (so no RESP3 maintenance notifications either: off where
        # this redis-py has them, 8.1 and later); no health checks (they would read replies
        # the reader expects); no retries inside connect() (the link's own backoff paces
        # them).
        accepted = inspect.signature(connection_class).parameters
        return {
            **kwargs,
            "protocol": 2,
            **{name: None for name in _MAINTENANCE_OPTIONS if name in accepted},
            "health_check_interval": 0,
            "retry": Retry(NoBackoff(), 0),
        }

    def _groups(self, channels: list[bytes]) -> list[list[bytes]]:
        """Channels in chunks one command may carry (on Cluster: one slot per command)."""
        if not self._cluster:
            return [channels[i : i + _CHUNK] for i in range(0, len(channels), _CHUNK)]
        by_slot: dict[int, list[bytes]] = defaultdict(list)
        for channel in channels:
            by_slot[key_slot(channel)].append(channel)
        return [g[i : i + _CHUNK] for g in by_slot.values() for i in range(0, len(g), _CHUNK)]

    async def _send_all(self, conn: Any, verb: str, channels: list[bytes]) -> None:
        """(Un)subscribe ``channels`` in one write: every command of every group packed
        together. On Cluster a group is one slot, so a link coming up under a connect storm
        has hundreds of commands to send; awaiting each in turn on a busy event loop took
        one loop pass apiece (1.8 s for 36 channels, measured), and every subscriber waiting
        for its confirmation waited that long."""
        if not channels:
            return
        packed = conn.pack_commands([(verb, *chunk) for chunk in self._groups(channels)])
        await conn.send_packed_command(packed, check_health=False)

    def _deliver(self, channel: bytes, frame: bytes) -> None:
        deliver_frame(self._handlers.get(channel), channel, frame, log, "pub/sub")

    def _command_failed(self, link: _Link, exc: ResponseError) -> None:
        log.warning("pub/sub %s: command refused: %s", link.name, exc)
        if self._cluster and str(exc).startswith(("MOVED", "ASK", "CLUSTERDOWN")):
            self._rebalance_soon()

    def _channel_dropped(self, channel: bytes) -> None:
        log.warning("pub/sub: the server dropped %r (slot moved?)", channel)
        self._dropped.add(channel)
        self._rebalance_soon()

    def _link_failed(self, link: _Link) -> None:
        if self._cluster and link.channels:
            self._rebalance_soon()  # a master that is gone may have been replaced

    def _rebalance_soon(self) -> None:
        if self._closed or (self._rebalancing is not None and not self._rebalancing.done()):
            return
        self._rebalancing = asyncio.create_task(self._rebalance())

    async def _rebalance(self) -> None:
        """Cluster: refresh the slot map; move each channel to the master owning it now."""
        try:
            await self._client.nodes_manager.initialize()
        except Exception as exc:
            log.debug("pub/sub: slot map refresh failed: %r", exc)
            return
        for wire in list(self._owner):
            async with self._channel_lock(wire):
                old = self._owner.get(wire)
                if old is None:
                    continue
                try:
                    new = await self._link_for(wire)
                except Exception as exc:
                    log.debug("pub/sub: no owner for %r: %r", wire, exc)
                    continue
                dropped = wire in self._dropped
                self._dropped.discard(wire)
                if new is old and not dropped:
                    continue
                if new is not old:
                    log.warning("pub/sub: %r moves from %s to %s", wire, old.name, new.name)
                    old.channels.discard(wire)
                    await old.request(self._unsub, self._unsub_reply, wire)
                    self._owner[wire] = new
                    new.channels.add(wire)
                await new.request(self._sub, self._sub_reply, wire)
        # Close the links left without channels, unless an (un)subscribe is under way (it may
        # be about to use one).
        for name, link in list(self._links.items()):
            if not link.channels and not self._locks and self._links.get(name) is link:
                del self._links[name]
                await link.close()
