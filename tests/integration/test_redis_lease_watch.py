"""A lapsed lease is noticed through keyspace notifications, not only by the sweep."""

from __future__ import annotations

import asyncio

from presenced.store.redis import redis_backplane
from tests.support.valkey import ValkeyProcess


async def test_lease_expiry_calls_back() -> None:
    server = ValkeyProcess().start()
    backplane = redis_backplane(server.url, prefix="watch")
    try:
        fired = asyncio.Event()
        await backplane.nodes.watch(fired.set)
        # Another node's lease lapses (server-side expiry).
        await backplane.nodes.renew("other", 0.15)
        await asyncio.wait_for(fired.wait(), 5)
        assert "other" in await backplane.nodes.expired()
    finally:
        await backplane.close()
        server.cleanup()
