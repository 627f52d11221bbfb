"""The Valkey/Redis backend: shared state for many gateway nodes, standalone or Cluster.

Every store here keeps the memory backend's semantics exactly (the conformance suite in
tests/conformance is the judge); each atomic transition is one Lua script under ``lua/`` on
the keys of one room or one user (one Cluster slot), and every key carries a failsafe TTL
(documented in keys.py). :func:`redis_backplane` builds all of them over one client.
"""

from __future__ import annotations

from presenced.store.base import Backplane
from presenced.store.redis.broker import RedisBroker
from presenced.store.redis.connect import is_cluster_url, make_client
from presenced.store.redis.keys import Keys
from presenced.store.redis.messages import RedisMessageStore
from presenced.store.redis.nodes import RedisNodeStore
from presenced.store.redis.outbox import RedisOutbox
from presenced.store.redis.presence import RedisPresenceStore
from presenced.store.redis.rooms import RedisRoomStore
from presenced.store.redis.scripts import Scripts
from presenced.store.redis.sessions import SESSION_TTL, RedisSessionStore
from presenced.store.redis.typing_store import RedisTypingStore

__all__ = [
    "Keys",
    "RedisBroker",
    "RedisMessageStore",
    "RedisNodeStore",
    "RedisPresenceStore",
    "RedisRoomStore",
    "RedisSessionStore",
    "RedisTypingStore",
    "redis_backplane",
]


def redis_backplane(
    url: str,
    *,
    history_size: int = 100,
    history_ttl: float = 3600.0,
    prefix: str = "pd",
    session_ttl: float = SESSION_TTL,
) -> Backplane:
    """A backplane on the server (or Cluster, ``redis+cluster://...``) at ``url``.

    Keys are under ``prefix`` (one deployment per prefix). The stores share one client (and
    its scripts); node leases and the broker have their own connections. No connection is
    made until the first command; ``Backplane.close()`` closes them all.
    """
    client = make_client(url)
    keys = Keys(prefix=prefix)
    scripts = Scripts(client, prefix)
    broker = RedisBroker(url, keys)
    # Leases on a client of their own: under a connect storm hundreds of requests queue for
    # the shared pool, and a lease renewal stuck behind them could lapse and get a live node
    # reaped by its peers.
    node_client = make_client(url, **({} if is_cluster_url(url) else {"max_connections": 8}))
    nodes = RedisNodeStore(node_client, keys, Scripts(node_client, prefix))

    async def close() -> None:
        try:
            await nodes.close()
            await broker.close()
        finally:
            await node_client.aclose()
            await client.aclose()

    outbox = RedisOutbox(client, keys, scripts, cluster=is_cluster_url(url))
    return Backplane(
        sessions=RedisSessionStore(client, keys, scripts, session_ttl),
        # Membership and presence expire with the sessions that back them unless a live node
        # refreshes them (NodeStore.refresh): after a whole-cluster crash nothing lingers.
        rooms=RedisRoomStore(client, keys, scripts, session_ttl, outbox),
        presence=RedisPresenceStore(client, keys, scripts, session_ttl, outbox=outbox),
        messages=RedisMessageStore(client, keys, scripts, history_size, history_ttl, outbox),
        typing=RedisTypingStore(client, keys, scripts, outbox),
        broker=broker,
        nodes=nodes,
        name="redis-cluster" if is_cluster_url(url) else "redis",
        closer=close,
        outbox=outbox,
    )
