"""Node leases on Redis, and the batched refresh of every failsafe TTL a node keeps alive.

A lease is a key with a server-side expiry (``PX``): the store's clock decides when a node is
dead, so clock skew between nodes does not matter. Listed nodes live in a set; a listed node
whose lease key is gone is expired, and ``SREM`` decides which survivor reaps it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from presenced.presence.session import Session
from presenced.store.redis.keys import Keys

__all__ = ["RedisNodeStore"]


class RedisNodeStore:
    """:class:`presenced.store.base.NodeStore` on Redis / Valkey (standalone or Cluster)."""

    def __init__(self, client: Any, keys: Keys, list_ttl: float = 86400.0) -> None:
        self._client = client
        self._keys = keys
        self._list_ttl = int(list_ttl)

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

    async def claim(self, node: str) -> bool:
        return bool(await self._client.srem(self._keys.nodes(), node))

    async def refresh(self, sessions: Iterable[Session], ttl: float) -> None:
        """EXPIRE every key the sessions keep alive: records, indexes, rooms, users; pipelined
        without a transaction so it spreads over Cluster slots."""
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
        if not names:
            return
        pipe = self._client.pipeline(transaction=False)
        for name in sorted(names):
            pipe.expire(name, seconds, gt=True)
        await pipe.execute()
