"""Node leases on Redis, and the batched refresh of every failsafe TTL a node keeps alive.

A lease is a key with a server-side expiry (``PX``): the store's clock decides when a node is
dead, so clock skew between nodes does not matter. Listed nodes live in a set; a listed node
whose lease key is gone is expired, and ``SREM`` decides which survivor reaps it. Beside the
lease, each node may keep a report (a small JSON record with its own TTL) for the admin's
``nodes`` listing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from redis.asyncio import Redis

from presenced.presence.session import Session
from presenced.store.base import NodeRecord
from presenced.store.redis.keys import Keys
from presenced.store.redis.scripts import Scripts

__all__ = ["REFRESH_CHUNK", "RedisNodeStore"]

# Keys per refresh script call: big enough that a node of 20,000 sessions refreshes in a
# hundred calls, small enough that one call holds the server for well under a millisecond.
REFRESH_CHUNK = 1000

log = logging.getLogger(__name__)

_info_encoder = msgspec.json.Encoder()
_info_decoder = msgspec.json.Decoder(dict[str, Any])


class RedisNodeStore:
    """:class:`presenced.store.base.NodeStore` on Redis / Valkey (standalone or Cluster)."""

    def __init__(
        self, client: Any, keys: Keys, scripts: Scripts, list_ttl: float = 86400.0
    ) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._list_ttl = int(list_ttl)
        self._watcher: asyncio.Task[None] | None = None

    async def renew(self, node: str, ttl: float) -> bool:
        keys = self._keys
        previous = await self._client.set(
            keys.node_lease(node), b"1", px=max(1, int(ttl * 1000)), get=True
        )
        await self._client.sadd(keys.nodes(), node)
        await self._client.expire(keys.nodes(), self._list_ttl)
        return previous is not None

    async def drop(self, node: str) -> None:
        await self._client.delete(self._keys.node_lease(node))

    async def expired(self) -> list[str]:
        listed = sorted(m.decode() for m in await self._client.smembers(self._keys.nodes()))
        dead = []
        for node in listed:
            if not await self._client.exists(self._keys.node_lease(node)):
                dead.append(node)
        return dead

    async def watch(self, on_expired: Callable[[], None]) -> None:
        """Subscribe to expired-key events (standalone servers; a Cluster spreads them over
        its masters, so there the sweep alone finds dead nodes). Asks the server to emit them
        (``notify-keyspace-events Ex``) and carries on quietly where that is not allowed."""
        if self._watcher is not None or not isinstance(self._client, Redis):
            return
        try:
            flags = (await self._client.config_get("notify-keyspace-events")).get(
                "notify-keyspace-events", ""
            )
            flags = flags.decode() if isinstance(flags, bytes) else str(flags)
            if "E" not in flags or ("x" not in flags and "A" not in flags):
                await self._client.config_set("notify-keyspace-events", flags + "Ex")
        except Exception as exc:  # managed Redis may refuse CONFIG: the sweep still works
            log.info("no keyspace notifications (%s): dead nodes found by the sweep only", exc)
        lease_prefix = self._keys.node_lease("").encode()
        self._watcher = asyncio.get_running_loop().create_task(
            self._watch(lease_prefix, on_expired), name="lease-expiry-watch"
        )

    async def _watch(self, lease_prefix: bytes, on_expired: Callable[[], None]) -> None:
        delay = 0.05
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe("__keyevent@*__:expired")
                delay = 0.05
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes) and data.startswith(lease_prefix):
                        on_expired()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("lease expiry watch lost (%s); retrying", exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)  # reconnect backoff
            delay = min(2.0, delay * 2)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def claim(self, node: str) -> bool:
        if not await self._client.srem(self._keys.nodes(), node):
            return False
        await self._client.delete(self._keys.node_info(node))  # the reaped node's report
        return True

    async def report(self, node: str, info: dict[str, Any], ttl: float) -> None:
        """One SET with PX: the report replaces the last and expires by itself."""
        data = _info_encoder.encode(info)
        await self._client.set(self._keys.node_info(node), data, px=max(1, int(ttl * 1000)))

    async def nodes(self) -> list[NodeRecord]:
        """The listed nodes, then each one's lease and report in one pipeline."""
        keys = self._keys
        listed = sorted(m.decode() for m in await self._client.smembers(keys.nodes()))
        if not listed:
            return []
        pipe = self._client.pipeline(transaction=False)
        for node in listed:
            pipe.exists(keys.node_lease(node))
            pipe.get(keys.node_info(node))
        rows = await pipe.execute()
        return [
            NodeRecord(node, bool(rows[2 * i]), _info_decoder.decode(rows[2 * i + 1] or b"{}"))
            for i, node in enumerate(listed)
        ]

    async def refresh(self, sessions: Iterable[Session], ttl: float) -> None:
        """Push back (EXPIRE ... GT) every key the sessions keep alive: records, indexes
        (their watched users' watchers sets too), rooms, users.

        On one server: one script call per :data:`REFRESH_CHUNK` keys. A node of 20,000
        sessions has about 100,000 such keys, and sending each as its own EXPIRE cost the
        node more CPU than all its idle clients. On Cluster a script's keys must share a
        slot, and these spread over thousands of slots, so there it stays one pipelined
        EXPIRE per key (the pipeline groups them per shard).
        """
        keys = self._keys
        seconds = max(1, int(ttl))
        names: set[str] = set()
        for s in sessions:
            names.update(
                (
                    keys.session(s.id),
                    keys.resume_token(s.resume_token),
                    keys.user_sessions(s.user),
                    keys.node_sessions(s.node),
                    keys.user_statuses(s.user),
                )
            )
            for room in s.rooms:
                names.update((keys.room_state(room), keys.room_members(room)))
            names.update(keys.user_watchers(user) for user in s.subscriptions)
        ordered = sorted(names)
        if not isinstance(self._client, Redis):  # Cluster
            pipe = self._client.pipeline(transaction=False)
            for name in ordered:
                pipe.expire(name, seconds, gt=True)
            if ordered:
                await pipe.execute()
            return
        for i in range(0, len(ordered), REFRESH_CHUNK):
            await self._scripts.run("keys_expire", ordered[i : i + REFRESH_CHUNK], [seconds])
