"""Redis clients from a URL: ``redis://``, ``rediss://``, or a Cluster given as
``redis+cluster://host:port[,host:port...]`` (or several seeds separated by commas)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = ["POOL_SIZE", "POOL_WAIT", "is_cluster_url", "make_client"]

# Connections one standalone client may hold, and how long a command waits for one when all
# are busy. redis-py's default pool refuses the 101st concurrent command outright ("Too many
# connections"); a node under a connect storm has hundreds of requests awaiting the store at
# once, and they must queue for a connection, not fail.
POOL_SIZE = 128
POOL_WAIT = 10.0
# redis-py's Cluster client has no blocking pool: past ``max_connections`` (100 by default)
# to one master it fails the command (MaxConnectionsError), which broke 200 concurrent joins
# on a 3-master cluster. Each master may take this many from one node instead.
CLUSTER_POOL_SIZE = 1024


def is_cluster_url(url: str) -> bool:
    return url.startswith(("redis+cluster://", "rediss+cluster://"))


def make_client(url: str, **kwargs: Any) -> Any:
    """An asyncio client (standalone or Cluster) for ``url``; bytes in, bytes out."""
    from redis.asyncio import Redis
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.exceptions import ConnectionError, TimeoutError

    # A pooled connection that died with the server (a restart, a failover) is retried on a
    # fresh one instead of failing the request that happened to pick it.
    kwargs.setdefault("retry", Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.02), 5))
    kwargs.setdefault("retry_on_error", [ConnectionError, TimeoutError])

    if is_cluster_url(url):
        parts = urlsplit(url)
        seeds = []
        for hostport in parts.netloc.rsplit("@", 1)[-1].split(","):
            host, _, port = hostport.rpartition(":")
            seeds.append(ClusterNode(host or "127.0.0.1", int(port or 6379)))
        ssl = url.startswith("rediss+")
        kwargs.setdefault("max_connections", CLUSTER_POOL_SIZE)
        return RedisCluster(
            startup_nodes=seeds,
            ssl=ssl,
            password=parts.password,
            username=parts.username,
            **kwargs,
        )
    from redis.asyncio import BlockingConnectionPool

    kwargs.setdefault("max_connections", POOL_SIZE)
    kwargs.setdefault("timeout", POOL_WAIT)  # how long to wait for a free connection
    return Redis.from_pool(BlockingConnectionPool.from_url(url, **kwargs))
