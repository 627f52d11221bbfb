"""Redis clients from a URL: ``redis://``, ``rediss://``, or a Cluster given as
``redis+cluster://host:port[,host:port...]`` (or several seeds separated by commas)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = ["is_cluster_url", "make_client"]


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
        return RedisCluster(
            startup_nodes=seeds,
            ssl=ssl,
            password=parts.password,
            username=parts.username,
            **kwargs,
        )
    return Redis.from_url(url, **kwargs)
