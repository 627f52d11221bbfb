"""The broker contract, required of every broker between nodes: two brokers (as two gateway
processes would have) on one real server, for each of RedisBroker on a standalone Valkey,
RedisBroker on a 3-master Valkey Cluster (sharded pub/sub) and NatsBroker on a nats-server.

- An event published by either node reaches the handler of every node subscribed to the
  channel, with its origin; in order from one publisher.
- Unsubscribing stops delivery (proved by a later marker, not by waiting), and the server
  knows at once; (un)subscribing is idempotent; subscribing again replaces the handler; a
  handler that raises is logged and delivery goes on; nothing is kept for later subscribers.
- The server restarts: each broker reconnects, re-subscribes its channels (logged) and
  delivery resumes; the test probes until it does, every wait bounded.

What only one broker has is tested beside it: test_redis_broker.py (channels spread over
Cluster shards), test_nats_broker.py (subjects, draining on close, NATS unreachable).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from uuid import uuid4

import pytest
import redis
from nats.errors import Error as NatsError

from presenced.store.nats import NatsBroker
from presenced.store.redis.broker import RedisBroker
from presenced.store.redis.keys import Keys
from tests.support.brokers import (
    Inbox,
    NodeBroker,
    owner_index,
    probe_until_delivered,
    subscribers,
    until,
)
from tests.support.nats import NatsProcess
from tests.support.quiet import quiet_launcher
from tests.support.valkey import ValkeyCluster, ValkeyProcess

__all__: list[str] = []

BACKENDS = ["redis", "redis-cluster", "nats"]


class Nodes:
    """Two brokers sharing one server (or cluster) and prefix, as two gateway nodes, and what
    the contract needs to know of the server behind them."""

    logger: str
    errors: tuple[type[BaseException], ...]  # what a publish may raise while the server is down

    def __init__(self, backend: str, a: NodeBroker, b: NodeBroker) -> None:
        self.backend, self.a, self.b = backend, a, b

    def subscribers(self, channel: str) -> int:
        """How many subscriptions of ``channel`` the server holds."""
        raise NotImplementedError

    def restarter(self, channel: str) -> Callable[[], None]:
        """Restart (blocking) the server that carries ``channel``."""
        raise NotImplementedError

    async def check_resubscribe_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """After a restart: a holds 1 channel, b holds 2; each logged re-subscribing them."""
        raise NotImplementedError


class RedisNodes(Nodes):
    logger = "presenced.store.redis.broker"
    errors = (redis.ConnectionError, redis.TimeoutError)

    def __init__(
        self, backend: str, keys: Keys, url: str, servers: ValkeyProcess | ValkeyCluster
    ) -> None:
        super().__init__(backend, RedisBroker(url, keys), RedisBroker(url, keys))
        self.keys, self.servers = keys, servers

    def _server_of(self, channel: str) -> ValkeyProcess:
        if isinstance(self.servers, ValkeyProcess):
            return self.servers
        return self.servers.nodes[owner_index(self.servers, self.keys.channel(channel))]

    def subscribers(self, channel: str) -> int:
        wire = self.keys.channel(channel)
        command = "NUMSUB" if self.backend == "redis" else "SHARDNUMSUB"
        with self._server_of(channel).client() as client:
            return subscribers(client, command, [wire])[wire]

    def restarter(self, channel: str) -> Callable[[], None]:
        return self._server_of(channel).restart_empty  # on Cluster, the master holding it

    async def check_resubscribe_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        resubscribed = [m for r in caplog.records if "re-subscribing" in (m := r.getMessage())]
        assert any("re-subscribing 1 channel" in m for m in resubscribed), resubscribed
        # (On Cluster, b's two channels may live on two masters: one link each.)
        if self.backend == "redis":
            assert any("re-subscribing 2 channel" in m for m in resubscribed), resubscribed


class NatsNodes(Nodes):
    logger = "presenced.store.nats.broker"
    errors = (NatsError, ConnectionError)

    def __init__(self, server: NatsProcess) -> None:
        prefix = f"bt{uuid4().hex[:10]}"
        a, b = NatsBroker(server.url, prefix), NatsBroker(server.url, prefix)
        super().__init__("nats", a, b)
        self.server, self.nats_a = server, a

    def subscribers(self, channel: str) -> int:
        return self.server.subscriptions().count(self.nats_a.subject(channel))

    def restarter(self, channel: str) -> Callable[[], None]:
        return self.server.restart

    async def check_resubscribe_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        def logged(text: str) -> list[str]:
            return [r.getMessage() for r in caplog.records if text in r.getMessage()]

        await until(lambda: len(logged("reconnected")) == 2, "both brokers log a reconnect")
        assert len(logged("disconnected")) == 2
        assert sorted(m.rsplit(", ", 1)[1] for m in logged("reconnected")) == [
            "re-subscribed 1 channel(s)",
            "re-subscribed 2 channel(s)",
        ]


@pytest.fixture(params=BACKENDS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Nodes]:
    """Two fresh brokers of one backend, with a prefix of their own; closed at teardown."""
    backend: str = request.param
    nodes: Nodes
    keys = Keys(prefix=f"bt{uuid4().hex[:10]}")
    if backend == "redis":
        server: ValkeyProcess = request.getfixturevalue("valkey")
        nodes = RedisNodes(backend, keys, server.url, server)
    elif backend == "redis-cluster":
        cluster: ValkeyCluster = request.getfixturevalue("valkey_cluster")
        nodes = RedisNodes(backend, keys, "redis+cluster://" + ",".join(cluster.seeds), cluster)
    else:
        nodes = NatsNodes(request.getfixturevalue("nats_server"))
    try:
        yield nodes
    finally:
        await nodes.a.close()
        await nodes.b.close()


# --- delivery between nodes --------------------------------------------------------------------


async def test_every_subscribed_node_gets_payload_and_origin(broker: Nodes) -> None:
    a, b = broker.a, broker.b
    in_a, in_b = Inbox(), Inbox()
    await a.subscribe("room:1", in_a)
    await b.subscribe("room:1", in_b)

    await a.publish("room:1", b'{"type":"member.joined"}', "s1")
    for inbox in (in_a, in_b):
        assert await inbox.next() == (b'{"type":"member.joined"}', "s1")
    await b.publish("room:1", b"\x00\xff\xff binary", None)
    for inbox in (in_a, in_b):
        assert await inbox.next() == (b"\x00\xff\xff binary", None)
    await b.publish("room:1", b"", "séssion-ü")
    for inbox in (in_a, in_b):
        assert await inbox.next() == (b"", "séssion-ü")
    # (Two nodes' messages are in the order the server gets them, and a NATS publish only
    # hands the message to the connection: so each is awaited before the other node publishes.)
    await a.publish("room:1", b"default origin")
    for inbox in (in_a, in_b):
        assert await inbox.next() == (b"default origin", None)

    # In order from one publisher, all of them, on both nodes.
    for i in range(50):
        await a.publish("room:1", str(i).encode(), f"s{i}")
    for inbox in (in_a, in_b):
        for i in range(50):
            assert await inbox.next() == (str(i).encode(), f"s{i}")
    assert len(in_a.got) == len(in_b.got) == 54
    assert a.channels == b.channels == ["room:1"]
    assert a.connected and b.connected


async def test_unsubscribe_stops_delivery(broker: Nodes) -> None:
    a, b = broker.a, broker.b
    in_a, old_b = Inbox(), Inbox()
    await a.subscribe("ch", in_a)
    await b.subscribe("ch", old_b)
    await b.subscribe("ch", old_b)  # idempotent: still one subscription
    assert broker.subscribers("ch") == 2  # one per node
    await a.publish("ch", b"first", "s1")
    assert await in_a.next() == (b"first", "s1")
    assert await old_b.next() == (b"first", "s1")

    await b.unsubscribe("ch")
    await b.unsubscribe("ch")  # idempotent
    await b.unsubscribe("never-subscribed")
    assert b.channels == []
    assert broker.subscribers("ch") == 1  # the server already knows
    await a.publish("ch", b"while away", "s2")
    assert await in_a.next() == (b"while away", "s2")  # it was published: node a got it

    # Subscribing again and waiting for a marker proves "while away" never reached node b.
    new_b = Inbox()
    await b.subscribe("ch", new_b)
    await a.publish("ch", b"marker", None)
    assert await new_b.next() == (b"marker", None)
    assert await in_a.next() == (b"marker", None)
    assert old_b.got == [(b"first", "s1")]
    assert new_b.got == [(b"marker", None)]


async def test_subscribing_again_replaces_the_handler(broker: Nodes) -> None:
    a, b = broker.a, broker.b
    first, second = Inbox(), Inbox()
    await b.subscribe("ch", first)
    await a.publish("ch", b"one", None)
    assert await first.next() == (b"one", None)
    await b.subscribe("ch", second)
    await a.publish("ch", b"two", "s2")
    assert await second.next() == (b"two", "s2")
    assert first.got == [(b"one", None)]
    assert b.channels == ["ch"]


async def test_a_failing_handler_is_logged_and_delivery_goes_on(
    broker: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = broker.a, broker.b
    inbox = Inbox()

    def flaky(payload: bytes, origin: str | None) -> None:
        inbox(payload, origin)
        if payload == b"boom":
            raise RuntimeError("handler bug")

    await b.subscribe("ch", flaky)
    with caplog.at_level(logging.ERROR, logger=broker.logger):
        await a.publish("ch", b"boom", None)
        await a.publish("ch", b"after", "s1")
        assert await inbox.next() == (b"boom", None)
        assert await inbox.next() == (b"after", "s1")
    failures = [r.exc_info for r in caplog.records if r.name == broker.logger and r.exc_info]
    assert [str(exc_info[1]) for exc_info in failures] == ["handler bug"]
    assert b.connected


async def test_publish_to_nobody_is_dropped(broker: Nodes) -> None:
    a, b = broker.a, broker.b
    await a.publish("nobody", b"lost", "s1")
    inbox = Inbox()
    await b.subscribe("nobody", inbox)
    await a.publish("nobody", b"marker", None)
    assert await inbox.next() == (b"marker", None)
    assert inbox.got == [(b"marker", None)]  # nothing kept for later subscribers


# --- the server restarts -----------------------------------------------------------------------


async def test_delivery_resumes_after_the_server_restarts(
    broker: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = broker.a, broker.b
    in_a, in_b, other_b = Inbox(), Inbox(), Inbox()
    await a.subscribe("room", in_a)
    await b.subscribe("room", in_b)
    await b.subscribe("other", other_b)
    await a.publish("room", b"before", "s1")
    assert await in_a.next() == (b"before", "s1")
    assert await in_b.next() == (b"before", "s1")

    with caplog.at_level(logging.INFO, logger=broker.logger):
        # In a thread: the event loop (and the brokers' readers) keeps going.
        with quiet_launcher():
            await asyncio.to_thread(broker.restarter("room"))
        await probe_until_delivered(a, "room", [in_a, in_b], broker.errors)
        await probe_until_delivered(b, "other", [other_b], broker.errors)

        # Both nodes get what comes next, exactly, from either publisher.
        await b.publish("room", b"after", "s2")
        await a.publish("other", b"other after", "s3")
        for inbox in (in_a, in_b):
            assert await inbox.next() == (b"after", "s2")
        assert await other_b.next() == (b"other after", "s3")
        await broker.check_resubscribe_logged(caplog)
    assert a.connected and b.connected
