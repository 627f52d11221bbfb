"""SCAN over every key of a pattern, on one server or on every Cluster primary.

The admin reads (room listing, online users, session count) have no index to read: an index
spanning rooms or users could not be written atomically with their own slot on Cluster, and
it would cost every join or connect one more write. They scan instead, which costs a pass
over the whole keyspace of each server per call (``SCAN ... COUNT`` batches, so no one call
holds a server long) and is meant for the HTTP API, never for a client's request.

SCAN returns each key that exists for the whole scan at least once and may return one twice
(the keyspace was resized meanwhile), so the keys come back as a set. On Cluster the scan runs
on every primary (redis-py's ``RedisCluster.PRIMARIES`` target, which follows each primary's
cursor to its end); replicas hold the same keys and are left alone.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

__all__ = ["SCAN_COUNT", "scan_keys"]

SCAN_COUNT = 1000
"""Keys a server looks at per SCAN call: a thousand-key step is well under a millisecond."""


async def scan_keys(client: Any, pattern: str, count: int = SCAN_COUNT) -> set[bytes]:
    """Every key matching the glob ``pattern`` (see keys.py ``match_*``), once each."""
    if isinstance(client, Redis):
        found = client.scan_iter(match=pattern, count=count)
    else:
        found = client.scan_iter(match=pattern, count=count, target_nodes=RedisCluster.PRIMARIES)
    return {key async for key in found}
