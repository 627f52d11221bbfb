"""RedisBroker between two nodes: two brokers (as two gateway processes would have) on one real
Valkey server, and on a 3-master Valkey Cluster with sharded pub/sub.

- An event published by either node reaches the handler of every node subscribed to the
  channel, with its origin; in order from one publisher.
- Unsubscribing stops delivery (proved by a later marker, not by waiting); (un)subscribing is
  idempotent; subscribing again replaces the handler; a handler that raises is logged and
  delivery goes on.
- Many channels: each message reaches its own channel's handler only; on Cluster the channels
  spread over the three masters, each subscribed on the master owning its slot (checked on the
  servers with PUBSUB SHARDNUMSUB), over one pub/sub connection per master.
- The server restarts (empty): each broker reconnects, re-subscribes its channels (logged) and
  delivery resumes; the test probes until it does, every wait bounded.

The servers are session-scoped; each test takes a fresh key prefix, so channels never meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from uuid import uuid4

import pytest
import redis
from redis.crc import key_slot

from presenced.store.frames import decode_frame, encode_frame
from presenced.store.redis.broker import RedisBroker
from presenced.store.redis.keys import Keys
from tests.support.valkey import ValkeyCluster, ValkeyProcess, free_port

__all__: list[str] = []

WAIT = 5.0  # seconds to wait for one message before failing
RESUME = 30.0  # seconds for delivery to resume after a restart
BACKENDS = ["redis", "redis-cluster"]
LOGGER = "presenced.store.redis.broker"


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    """tests/support/valkey.py leaves each server's log file to the garbage collector; its
    ResourceWarning would fail the run (warnings are errors), so it is collected here, while
    ResourceWarnings are ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()


@pytest.fixture(scope="session")
def valkey() -> Iterator[ValkeyProcess]:
    server = ValkeyProcess()
    try:
        with _quiet_launcher():
            server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[ValkeyCluster]:
    cluster = ValkeyCluster()
    # A Cluster node's bus port is its port + 10000, so its port must be 55535 or less.
    for node in cluster.nodes:
        while node.port > 55535:
            node.port = free_port()
    try:
        with _quiet_launcher():
            cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@dataclass
class Inbox:
    """A broker handler that records what it gets and lets a test wait for the next one."""

    got: list[tuple[bytes, str | None]] = field(default_factory=list)
    queue: asyncio.Queue[tuple[bytes, str | None]] = field(default_factory=asyncio.Queue)

    def __call__(self, payload: bytes, origin: str | None) -> None:
        self.got.append((payload, origin))
        self.queue.put_nowait((payload, origin))

    async def next(self, timeout: float = WAIT) -> tuple[bytes, str | None]:
        return await asyncio.wait_for(self.queue.get(), timeout)


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


# --- framing -----------------------------------------------------------------------------------


def test_frames_carry_the_origin() -> None:
    for payload in (b"", b"{}", b"\x00\xff\xff\x00 binary"):
        for origin in (None, "", "s1", "séssion-ü"):
            frame = encode_frame(payload, origin)
            assert decode_frame(frame) == (payload, origin)
    for bad in (b"", b"\x00", b"\x00\x05abc"):
        with pytest.raises(ValueError):
            decode_frame(bad)
    with pytest.raises(ValueError):
        encode_frame(b"x", "o" * 0xFFFF)


# --- delivery between nodes --------------------------------------------------------------------


async def test_every_subscribed_node_gets_payload_and_origin(nodes: Nodes) -> None:
    a, b = nodes.a, nodes.b
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
    await a.publish("room:1", b"default origin")
    for inbox in (in_a, in_b):
        assert await inbox.next() == (b"", "séssion-ü")
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


async def test_unsubscribe_stops_delivery(nodes: Nodes) -> None:
    a, b = nodes.a, nodes.b
    in_a, old_b = Inbox(), Inbox()
    await a.subscribe("ch", in_a)
    await b.subscribe("ch", old_b)
    await b.subscribe("ch", old_b)  # idempotent: still one subscription
    await a.publish("ch", b"first", "s1")
    assert await in_a.next() == (b"first", "s1")
    assert await old_b.next() == (b"first", "s1")

    await b.unsubscribe("ch")
    await b.unsubscribe("ch")  # idempotent
    await b.unsubscribe("never-subscribed")
    assert b.channels == []
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


async def test_subscribing_again_replaces_the_handler(nodes: Nodes) -> None:
    a, b = nodes.a, nodes.b
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
    nodes: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = nodes.a, nodes.b
    inbox = Inbox()

    def flaky(payload: bytes, origin: str | None) -> None:
        inbox(payload, origin)
        if payload == b"boom":
            raise RuntimeError("handler bug")

    await b.subscribe("ch", flaky)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        await a.publish("ch", b"boom", None)
        await a.publish("ch", b"after", "s1")
        assert await inbox.next() == (b"boom", None)
        assert await inbox.next() == (b"after", "s1")
    failures = [r.exc_info for r in caplog.records if r.name == LOGGER and r.exc_info]
    assert [str(exc_info[1]) for exc_info in failures] == ["handler bug"]
    assert b.connected


async def test_publish_to_nobody_is_dropped(nodes: Nodes) -> None:
    a, b = nodes.a, nodes.b
    await a.publish("nobody", b"lost", "s1")
    inbox = Inbox()
    await b.subscribe("nobody", inbox)
    await a.publish("nobody", b"marker", None)
    assert await inbox.next() == (b"marker", None)
    assert inbox.got == [(b"marker", None)]  # nothing kept for later subscribers


# --- many channels, spread over shards ---------------------------------------------------------


def _owners(cluster: ValkeyCluster, names: list[str]) -> dict[str, int]:
    """The index of the master owning each channel's slot."""
    owners = {}
    for name in names:
        slot = key_slot(name.encode())
        owners[name] = next(i for i, (lo, hi) in enumerate(cluster.SLOTS) if lo <= slot <= hi)
    return owners


def _subscribers(client: redis.Redis, command: str, names: list[str]) -> dict[str, int]:
    """PUBSUB NUMSUB / SHARDNUMSUB on one server: subscribers of each channel there."""
    reply = client.execute_command("PUBSUB", command, *names)  # type: ignore[no-untyped-call]
    return {reply[i].decode(): int(reply[i + 1]) for i in range(0, len(reply), 2)}


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
            assert set(_subscribers(client, "NUMSUB", wire).values()) == {1}
    else:
        cluster: ValkeyCluster = request.getfixturevalue("valkey_cluster")
        owners = _owners(cluster, wire)
        assert set(owners.values()) == {0, 1, 2}  # the channels really spread over the shards
        assert b.connections == 3  # one pub/sub connection per master
        for index, node in enumerate(cluster.nodes):
            with node.client() as client:
                sharded = _subscribers(client, "SHARDNUMSUB", wire)
                plain = _subscribers(client, "NUMSUB", wire)
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
            assert set(_subscribers(client, command, wire).values()) == {0}


# --- the server restarts -----------------------------------------------------------------------


async def _probe_until_delivered(
    publisher: RedisBroker, channel: str, inboxes: list[Inbox]
) -> None:
    """Publish probes until every inbox got one, each wait bounded, then drain up to a marker
    so the inboxes hold only what comes next."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESUME
    waiting = list(inboxes)
    probe = 0
    while waiting:
        assert loop.time() < deadline, "delivery did not resume after the restart"
        probe += 1
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            await publisher.publish(channel, b"probe %d" % probe, None)
        for inbox in list(waiting):
            with contextlib.suppress(TimeoutError):
                while True:
                    payload, _ = await inbox.next(timeout=0.2)
                    if payload.startswith(b"probe"):
                        waiting.remove(inbox)
                        break
    await publisher.publish(channel, b"drained", None)
    for inbox in inboxes:
        while (payload := (await inbox.next())[0]) != b"drained":
            assert payload.startswith(b"probe")


async def _restart(restart: Callable[[], None]) -> None:
    """Restart a server in a thread: the event loop (and the brokers' readers) keeps going."""
    with _quiet_launcher():
        await asyncio.to_thread(restart)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_delivery_resumes_after_the_server_restarts(
    backend: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    url = _url(request, backend)
    keys = Keys(prefix=f"bt{uuid4().hex[:10]}")
    a, b = RedisBroker(url, keys), RedisBroker(url, keys)
    try:
        in_a, in_b, other_b = Inbox(), Inbox(), Inbox()
        await a.subscribe("room", in_a)
        await b.subscribe("room", in_b)
        await b.subscribe("other", other_b)
        await a.publish("room", b"before", "s1")
        assert await in_a.next() == (b"before", "s1")
        assert await in_b.next() == (b"before", "s1")

        if backend == "redis":
            server: ValkeyProcess = request.getfixturevalue("valkey")
        else:
            # Restart the master that holds the room's channel.
            cluster: ValkeyCluster = request.getfixturevalue("valkey_cluster")
            server = cluster.nodes[_owners(cluster, [keys.channel("room")])[keys.channel("room")]]
        with caplog.at_level(logging.INFO, logger=LOGGER):
            await _restart(server.restart_empty)
            await _probe_until_delivered(a, "room", [in_a, in_b])
            await _probe_until_delivered(b, "other", [other_b])

        # Both nodes get what comes next, exactly, from either publisher.
        await b.publish("room", b"after", "s2")
        await a.publish("other", b"other after", "s3")
        for inbox in (in_a, in_b):
            assert await inbox.next() == (b"after", "s2")
        assert await other_b.next() == (b"other after", "s3")
        assert a.connected and b.connected
        resubscribed = [r.getMessage() for r in caplog.records if "re-subscribing" in r.message]
        assert any("re-subscribing 1 channel" in m for m in resubscribed), resubscribed
        assert any("re-subscribing 2 channel" in m for m in resubscribed) or backend != "redis"
    finally:
        await a.close()
        await b.close()
