"""The event export to Redis Streams, NATS JetStream and Kafka, end to end, on memory and on
Valkey (where the events go through the store's outbox).

Real brokers started by the suite (valkey-server, nats-server with JetStream, tansu) and real
consumers (tests/support/stream_consumers.py: XRANGE, a JetStream pull consumer, an aiokafka
consumer) read back what clients' transitions exported over WebSocket: every event once,
with its id beside it, in order along its key, through each sink's filter. A
:class:`~tests.support.tcp_relay.TcpRelay` cut in front of a broker makes it unreachable
for a while; a tansu topic with a schema that no event matches refuses every batch.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import nats
import pytest

from presenced.protocol.chat import MessageAck
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory
from tests.support.kafka import KafkaProcess
from tests.support.nats import NatsProcess
from tests.support.stream_consumers import (
    Got,
    JetStreamConsumer,
    KafkaConsumer,
    RedisStreamConsumer,
    first_copies,
)
from tests.support.tcp_relay import TcpRelay
from tests.support.valkey import ValkeyProcess, free_port
from tests.support.waiting import eventually, until

KINDS = ("redis", "nats", "kafka")
SETTING = {"redis": "redis_stream_sinks", "nats": "nats_sinks", "kafka": "kafka_sinks"}
SINK_NAME = {"redis": "redis-stream", "nats": "nats", "kafka": "kafka"}

REFUSING = "refusing"
"""A tansu topic whose schema no event matches: every record is refused."""
REFUSING_SCHEMA = {
    "type": "object",
    "properties": {"value": {"type": "object", "required": ["no-event-has-this"]}},
}
ENVELOPE = {"v", "id", "type", "time", "node", "key", "seq", "user", "room", "data"}


@pytest.fixture(scope="module")
def jetstream() -> Iterator[NatsProcess]:
    server = NatsProcess(jetstream=True)
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def tansu() -> Iterator[KafkaProcess]:
    server = KafkaProcess(schemas={REFUSING: REFUSING_SCHEMA})
    try:
        yield server.start()
    finally:
        server.cleanup()


Consumer = RedisStreamConsumer | JetStreamConsumer | KafkaConsumer


@dataclass
class Target:
    """Where one kind of sink delivers (``address``: the broker, or a relay before it)."""

    kind: str
    address: str

    def url(self, name: str, events: str = "", **params: str) -> str:
        query = {"backoff": "10ms", **params}
        if self.kind == "redis":
            base = f"redis://{self.address}/0"
            query = {"stream": name, **query}
        elif self.kind == "nats":
            base = f"nats://{self.address}"
            query = {"stream": name, "subject": f"it.{name}", **query}
        else:
            base = f"kafka://{self.address}"
            query = {"topic": name, **query}
        text = base + "?" + "&".join(f"{k}={v}" for k, v in query.items())
        return text + (f"#events={events}" if events else "")

    async def consumer(self, name: str) -> Consumer:
        if self.kind == "redis":
            return RedisStreamConsumer(int(self.address.rsplit(":", 1)[1]), name)
        if self.kind == "nats":
            return JetStreamConsumer(f"nats://{self.address}", name, f"it.{name}")
        return await KafkaConsumer(self.address, name).create()


def unique() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest) -> Target:
    kind = str(request.param)
    if kind == "redis":
        valkey: ValkeyProcess = request.getfixturevalue("valkey")
        return Target(kind, f"127.0.0.1:{valkey.port}")
    if kind == "nats":
        return Target(kind, f"127.0.0.1:{request.getfixturevalue('jetstream').port}")
    return Target(kind, request.getfixturevalue("tansu").bootstrap)


@pytest.fixture(params=KINDS)
async def cut_target(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Target, TcpRelay]]:
    """A kind's target behind a relay that the test cuts (tansu: one of its own that
    advertises the relay, so that its clients come back through it)."""
    kind = str(request.param)
    tansu: KafkaProcess | None = None
    if kind == "kafka":
        upstream = free_port()
    else:
        upstream = request.getfixturevalue("valkey" if kind == "redis" else "jetstream").port
    async with TcpRelay(upstream) as relay:
        if kind == "kafka":
            tansu = KafkaProcess(upstream, advertise=relay.port).start()
        try:
            yield Target(kind, relay.address), relay
        finally:
            if tansu is not None:  # off the loop, which has its relayed sockets to close
                await asyncio.to_thread(tansu.cleanup)


async def open_client(server: RunningServer, user: str) -> ProtocolClient:
    c = await ProtocolClient.connect(f"{server.url}?user={user}&device=d1")
    await c.wait_for("welcome")
    return c


def types(got: list[Got], key: str | None = None) -> list[str]:
    return [g.event["type"] for g in got if key is None or g.event["key"] == key]


async def chat(server: RunningServer) -> None:
    """Two users in a room: join, a message edited, seen, deleted, one leaves, one logs out."""
    alice = await open_client(server, "alice")
    bob = await open_client(server, "bob")
    await alice.request({"type": "room.join", "room": "lobby"})
    await bob.request({"type": "room.join", "room": "lobby"})
    ack = await alice.request({"type": "message.send", "room": "lobby", "body": "hi"})
    assert isinstance(ack, MessageAck)
    await alice.request({"type": "message.edit", "room": "lobby", "id": ack.id, "body": "hey"})
    await alice.request({"type": "message.delete", "room": "lobby", "id": ack.id})
    await bob.request({"type": "room.leave", "room": "lobby"})
    await alice.send({"type": "logout"})
    await alice.wait_closed()
    await bob.close()


async def test_a_chat_reaches_two_sinks_in_order_each_event_once_with_its_id(
    target: Target, make_server: ServerFactory
) -> None:
    everything, messages = unique(), unique()
    entries = f"{target.url(everything)} {target.url(messages, 'message.*+user.offline')}"
    all_of = await target.consumer(everything)
    some_of = await target.consumer(messages)
    try:
        server = await make_server(**{SETTING[target.kind]: entries})
        prefix = SINK_NAME[target.kind]
        assert [r.sink.name for r in server.node.export.runners] == [f"{prefix}-1", f"{prefix}-2"]
        await chat(server)

        async def complete() -> bool:
            got = await all_of.poll()
            return types(got, "user:alice")[-1:] == ["user.offline"] and "user.offline" in types(
                got, "user:bob"
            )

        await eventually(complete, "every event of the chat on the first sink", 10)
        await eventually(
            lambda: _has(some_of, "user.offline", 2), "both offline on the second sink", 10
        )
        got = all_of.got
        assert types(got, "room:lobby") == [
            "room.occupied",
            "member.joined",  # alice
            "member.joined",  # bob
            "message.created",
            "receipt.seen",  # alice's own message is seen by her
            "message.edited",
            "message.deleted",
            "member.left",  # bob
            "member.left",  # alice, logged out
            "room.vacated",
        ]
        assert types(got, "user:alice") == [
            "session.opened", "user.online", "session.closed", "user.offline",
        ]  # fmt: skip
        assert all(set(g.event) == ENVELOPE and g.id == g.event["id"] for g in got)
        assert len({g.id for g in got}) == len(got)  # each once
        for key in {g.event["key"] for g in got}:
            seqs = [g.event["seq"] for g in got if g.event["key"] == key]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), key
        filtered = some_of.got
        offline = ["user.offline", "user.offline"]  # alice's and bob's
        assert sorted(types(filtered)) == sorted(["message.created", "message.edited",
                                                  "message.deleted", *offline])  # fmt: skip
        assert {g.id for g in filtered} <= {g.id for g in got}  # the same events, same ids
        _transport_checks(target.kind, everything, got)
    finally:
        await all_of.close()
        await some_of.close()


async def _has(consumer: Consumer, event_type: str, count: int) -> bool:
    return types(await consumer.poll()).count(event_type) >= count


def _transport_checks(kind: str, name: str, got: list[Got]) -> None:
    """What each transport carries beside the event."""
    if kind == "nats":
        assert all(g.where == f"it.{name}.{g.event['type']}" for g in got)
    if kind == "kafka":
        assert all(g.key == g.event["key"] for g in got)
        partitions = {g.event["key"]: {x.where for x in got if x.key == g.key} for g in got}
        assert all(len(p) == 1 for p in partitions.values()), partitions  # a key: one partition


async def test_a_sink_down_for_a_while_loses_nothing_and_keeps_each_rooms_order(
    cut_target: tuple[Target, TcpRelay], make_server: ServerFactory
) -> None:
    target, relay = cut_target
    name = unique()
    consumer = await target.consumer(name)
    try:
        url = target.url(name, "message.created", tries="100", timeout="1s")
        server = await make_server(**{SETTING[target.kind]: url, "message_burst": 100})
        runner = server.node.export.runners[0]
        alice = await open_client(server, "alice")
        for room in ("r1", "r2"):
            await alice.request({"type": "room.join", "room": room})

        async def send(n: int) -> None:
            await alice.request({"type": "message.send", "room": f"r{n % 2 + 1}", "body": f"{n}"})

        for n in range(10):
            await send(n)
        await until(lambda: runner.stats.delivered >= 10, "the first ten delivered", 10)
        await relay.cut()
        for n in range(10, 30):
            await send(n)
        await until(lambda: runner.stats.failures >= 2, "deliveries failing while cut", 10)
        await relay.mend()

        async def all_there() -> bool:
            return len({g.id for g in await consumer.poll()}) == 30

        await eventually(all_there, "all 30 messages after the outage", 20)
        kept = first_copies(consumer.got)
        for room, first in (("r1", 0), ("r2", 1)):
            bodies = [int(g.event["data"]["body"]) for g in kept if g.event["room"] == room]
            assert bodies == list(range(first, 30, 2)), room  # none lost, in order
        assert runner.stats.dead == 0
        await alice.close()
    finally:
        await consumer.close()


async def test_a_batch_kafka_refuses_every_try_goes_to_the_dead_letter_topic(
    tansu: KafkaProcess, make_server: ServerFactory
) -> None:
    dead = unique()
    letters = await KafkaConsumer(tansu.bootstrap, dead).create()
    url = (
        f"kafka://{tansu.bootstrap}?topic={REFUSING}&dead_letter_topic={dead}"
        "&tries=2&backoff=10ms#events=member.*"
    )
    try:
        server = await make_server(kafka_sinks=url)
        alice = await open_client(server, "alice")
        await alice.request({"type": "room.join", "room": "r"})
        runner = server.node.export.runners[0]
        await until(lambda: runner.stats.dead == 1, "the join dead-lettered", 10)
        assert runner.stats.failures == 2 and runner.stats.delivered == 0

        async def arrived() -> bool:
            return len(await letters.poll()) == 1

        await eventually(arrived, "the batch on the dead-letter topic", 10)
        (record,) = letters.got
        assert record.event["type"] == "member.joined" and record.event["user"] == "alice"
        assert record.key == "room:r" and record.id == record.event["id"]
        async with (
            aiohttp.ClientSession(server.admin_url) as http,
            http.get("/v1/events/dead-letters") as reply,
        ):
            listed: list[dict[str, Any]] = (await reply.json())["dead_letters"]
        (letter,) = listed  # still kept in the node's (or the store's) list, for a replay
        assert record.headers is not None
        assert record.headers["dead_letter"] == letter["id"]
        assert record.headers["sink"] == "kafka-1" == letter["sink"]
        assert record.headers["error"] == letter["error"]
        assert [e["id"] for e in letter["events"]] == [record.id]
        await alice.close()
    finally:
        await letters.close()


async def test_sinks_of_every_kind_at_once_each_through_its_filter(
    valkey: ValkeyProcess, jetstream: NatsProcess, tansu: KafkaProcess, make_server: ServerFactory
) -> None:
    redis = Target("redis", f"127.0.0.1:{valkey.port}")
    nats = Target("nats", f"127.0.0.1:{jetstream.port}")
    kafka = Target("kafka", tansu.bootstrap)
    names = {kind: unique() for kind in KINDS}
    filters = {"redis": "member.*", "nats": "message.*", "kafka": "user.*+room.*"}
    consumers = {
        kind: await target.consumer(names[kind]) for kind, target in
        (("redis", redis), ("nats", nats), ("kafka", kafka))
    }  # fmt: skip
    try:
        server = await make_server(
            redis_stream_sinks=redis.url(names["redis"], filters["redis"]),
            nats_sinks=nats.url(names["nats"], filters["nats"]),
            kafka_sinks=kafka.url(names["kafka"], filters["kafka"]),
        )
        assert [r.sink.name for r in server.node.export.runners] == [
            "redis-stream-1", "nats-1", "kafka-1",
        ]  # fmt: skip
        alice = await open_client(server, "alice")
        await alice.request({"type": "room.join", "room": "r"})
        await alice.request({"type": "message.send", "room": "r", "body": "hi"})
        await alice.request({"type": "room.leave", "room": "r"})
        wanted = {
            "redis": ["member.joined", "member.left"],
            "nats": ["message.created"],
            "kafka": ["user.online", "room.occupied", "room.vacated"],
        }
        for kind, consumer in consumers.items():

            async def arrived(consumer: Consumer = consumer, kind: str = kind) -> bool:
                return sorted(types(await consumer.poll())) == sorted(wanted[kind])

            await eventually(arrived, f"the {kind} sink's events", 10)
        await alice.close()
    finally:
        for consumer in consumers.values():
            await consumer.close()


async def test_a_jetstream_stream_deleted_meanwhile_is_created_again(
    jetstream: NatsProcess, make_server: ServerFactory
) -> None:
    target = Target("nats", f"127.0.0.1:{jetstream.port}")
    name = unique()
    server = await make_server(nats_sinks=target.url(name, "message.*"))
    runner = server.node.export.runners[0]
    alice = await open_client(server, "alice")
    await alice.request({"type": "room.join", "room": "r"})
    await alice.request({"type": "message.send", "room": "r", "body": "before"})
    await until(lambda: runner.stats.delivered == 1, "the first message delivered")
    nc = await nats.connect(jetstream.url)
    try:
        assert await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()
    await alice.request({"type": "message.send", "room": "r", "body": "after"})
    consumer = await target.consumer(name)
    try:

        async def recreated() -> bool:
            return [g.event["data"]["body"] for g in await consumer.poll()] == ["after"]

        await eventually(recreated, "the stream created again with the next message", 10)
        assert runner.stats.dead == 0
    finally:
        await consumer.close()
    await alice.close()


def _leading(server: RunningServer) -> bool:
    feed = server.node.export.feed
    return feed is not None and feed.leading


@pytest.mark.own_backend
@pytest.mark.parametrize("store", ["valkey", "valkey-cluster"])
async def test_a_sink_down_across_a_leader_change_loses_nothing_and_keeps_each_keys_order(
    cut_target: tuple[Target, TcpRelay],
    make_server: ServerFactory,
    store: str,
    request: pytest.FixtureRequest,
) -> None:
    """The leading node reads events it cannot deliver (the broker is cut off), then dies
    without giving up its lead; a second node takes over while the broker is still away and
    makes more changes. When the broker is back it holds every event, each key's first
    copies in ``seq`` order, with the ids the first node's reads had."""
    target, relay = cut_target
    if store == "valkey-cluster":
        url = "redis+cluster://" + ",".join(request.getfixturevalue("valkey_cluster").seeds)
    else:
        url = request.getfixturevalue("valkey").url
    name = unique()
    shared: dict[str, Any] = {
        "redis": url,
        "redis_prefix": f"lc{uuid.uuid4().hex[:8]}",
        SETTING[target.kind]: target.url(
            name, "member.*+message.created", tries="100", timeout="1s"
        ),
        "lease_ttl": 1.0,
        "lease_interval": 0.2,
        "message_burst": 100,
    }
    consumer = await target.consumer(name)
    try:
        first = await make_server(node_id="first", **shared)
        await until(lambda: _leading(first), "the first node leads")
        alice = await open_client(first, "alice")
        for room in ("r1", "r2"):
            await alice.request({"type": "room.join", "room": room})

        async def send(client: ProtocolClient, n: int) -> None:
            ack = await client.request(
                {"type": "message.send", "room": f"r{n % 2 + 1}", "body": f"{n}"}
            )
            assert isinstance(ack, MessageAck), ack

        for n in range(6):
            await send(alice, n)
        runner = first.node.export.runners[0]
        await until(lambda: runner.stats.delivered >= 8, "the first joins and messages", 10)
        await relay.cut()
        for n in range(6, 12):
            await send(alice, n)
        await until(lambda: runner.stats.failures >= 1, "the leader failing to deliver", 10)
        # The leader dies without a word: its tasks stop, its lead is not given up.
        feed = first.node.export.feed
        assert feed is not None
        for task in feed._tasks:
            task.cancel()
        second = await make_server(node_id="second", **shared)
        await until(lambda: _leading(second), "the second node takes the lead", 10)
        bob = await open_client(second, "bob")
        for room in ("r1", "r2"):
            await bob.request({"type": "room.join", "room": room})
        for n in range(12, 18):
            await send(bob, n)
        after = second.node.export.runners[0]
        await until(lambda: after.stats.failures >= 1, "the new leader failing too", 10)
        await relay.mend()

        async def all_there() -> bool:
            got = first_copies(await consumer.poll())
            return len(types(got)) == 18 + 4

        await eventually(all_there, "every join and message after the outage", 30)
        kept = first_copies(consumer.got)
        for room, first_body in (("r1", 0), ("r2", 1)):
            bodies = [
                int(g.event["data"]["body"])
                for g in kept
                if g.event["room"] == room and g.event["type"] == "message.created"
            ]
            assert bodies == list(range(first_body, 18, 2)), room  # none lost, in order
            seqs = [g.event["seq"] for g in kept if g.event["key"] == f"room:{room}"]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), room
        joins = [
            (g.event["user"], g.event["room"]) for g in kept if g.event["type"] == "member.joined"
        ]
        assert sorted(joins) == [("alice", "r1"), ("alice", "r2"), ("bob", "r1"), ("bob", "r2")]
        # A redelivered copy is the very event: same id, same content.
        firsts = {g.id: g.event for g in kept}
        assert all(firsts[g.id] == g.event for g in consumer.got)
        _transport_checks(target.kind, name, consumer.got)
        assert after.stats.dead == 0
        await alice.close()
        await bob.close()
    finally:
        await consumer.close()
