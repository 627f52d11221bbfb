"""RedisBroker beyond the broker contract (test_broker_contract.py runs that on a standalone
Valkey, a 3-master Valkey Cluster and NATS): many channels, and where they are subscribed.

- Many channels: each message reaches its own channel's handler only; on Cluster the channels
  spread over the three masters, each subscribed on the master owning its slot (checked on the
  servers with PUBSUB SHARDNUMSUB), over one pub/sub connection per master.

The servers are session-scoped (tests/integration/conftest.py); each test takes a fresh key
prefix, so channels never meet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import uuid4

import pytest

from presenced.store.redis.broker import RedisBroker
from presenced.store.redis.keys import Keys
from tests.support.brokers import Inbox, owner_index, subscribers
from tests.support.valkey import ValkeyCluster, ValkeyProcess

__all__: list[str] = []

BACKENDS = ["redis", "redis-cluster"]


@dataclass
class Nodes:
    """Two brokers sharing one server (or cluster) and key prefix, as two gateway nodes."""

    a: RedisBroker
    b: RedisBroker
    keys: Keys
    backend: str
    url: str


def _url(request: pytest.FixtureRequest, backend: str) -> str:
    if backend == "redis":
        server: ValkeyProcess = request.getfixturevalue("valkey")
        return server.url
    cluster: ValkeyCluster = request.getfixturevalue("valkey_cluster")
    return "redis+cluster://" + ",".join(cluster.seeds)


@pytest.fixture(params=BACKENDS)
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[Nodes]:
    url = _url(request, request.param)
    keys = Keys(prefix=f"bt{uuid4().hex[:10]}")
    a, b = RedisBroker(url, keys), RedisBroker(url, keys)
    try:
        yield Nodes(a, b, keys, request.param, url)
    finally:
        await a.close()
        await b.close()


# --- many channels, spread over shards ---------------------------------------------------------


async def test_many_channels_each_to_its_own_handler(
    nodes: Nodes, request: pytest.FixtureRequest
) -> None:
    a, b = nodes.a, nodes.b
    names = [f"room:{i}" for i in range(60)]
    inboxes = {n: Inbox() for n in names}
    for n in names:
        await b.subscribe(n, inboxes[n])
    for n in names:
        await a.publish(n, n.encode(), f"origin-{n}")
    for n in names:
        assert await inboxes[n].next() == (n.encode(), f"origin-{n}")
    assert all(len(inbox.got) == 1 for inbox in inboxes.values())
    assert sorted(b.channels) == sorted(names)
    assert a.connections == 0  # a node that subscribes nothing holds no pub/sub connection

    wire = [nodes.keys.channel(n) for n in names]
    if nodes.backend == "redis":
        server: ValkeyProcess = request.getfixturevalue("valkey")
        assert b.connections == 1
        with server.client() as client:
            assert set(subscribers(client, "NUMSUB", wire).values()) == {1}
    else:
        cluster: ValkeyCluster = request.getfixturevalue("valkey_cluster")
        owners = {w: owner_index(cluster, w) for w in wire}
        assert set(owners.values()) == {0, 1, 2}  # the channels really spread over the shards
        assert b.connections == 3  # one pub/sub connection per master
        for index, node in enumerate(cluster.nodes):
            with node.client() as client:
                sharded = subscribers(client, "SHARDNUMSUB", wire)
                plain = subscribers(client, "NUMSUB", wire)
            # Each master has exactly its own slots' channels, as shard channels only.
            assert sharded == {w: int(owners[w] == index) for w in wire}, index
            assert set(plain.values()) == {0}

    # Unsubscribing them all leaves no subscriber on any server.
    for n in names:
        await b.unsubscribe(n)
    servers = (
        [request.getfixturevalue("valkey")]
        if nodes.backend == "redis"
        else request.getfixturevalue("valkey_cluster").nodes
    )
    command = "NUMSUB" if nodes.backend == "redis" else "SHARDNUMSUB"
    for server in servers:
        with server.client() as client:
            assert set(subscribers(client, command, wire).values()) == {0}
