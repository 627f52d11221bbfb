"""The event outbox with many nodes: on Valkey and on a 3-master Valkey Cluster, two nodes
share a store; whichever node made a change, each event reaches the sink once, numbered along
its room or user by the store, and a node that takes over the dispatch delivers what the
previous one had read and not confirmed, with the same ids.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from presenced.events import outbox_feed
from presenced.protocol.chat import MessageAck
from presenced.server.serve import RunningServer
from presenced.store.redis.outbox import RedisOutbox
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory
from tests.support.waiting import until
from tests.support.webhooks import Receiver, receiver

pytestmark = pytest.mark.own_backend

SECRET = "s3cret-s3cret-s3cret"


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver(SECRET) as r:
        yield r


@pytest.fixture(params=["valkey", "valkey-cluster"])
def shared(request: pytest.FixtureRequest, hook: Receiver) -> dict[str, Any]:
    """Settings two nodes share: one store and prefix, the same webhook."""
    if request.param == "valkey-cluster":
        url = "redis+cluster://" + ",".join(request.getfixturevalue("valkey_cluster").seeds)
    else:
        url = request.getfixturevalue("valkey").url
    return {
        "redis": url,
        "redis_prefix": f"ob{uuid.uuid4().hex[:8]}",
        "webhooks": hook.url,
        "webhook_secret": SECRET,
        "webhook_backoff": 0.01,
        "webhook_tries": 100,
        "lease_ttl": 1.0,
        "lease_interval": 0.2,
        "message_burst": 1000,
    }


async def open_client(server: RunningServer, user: str) -> ProtocolClient:
    c = await ProtocolClient.connect(f"{server.url}?user={user}&device=d")
    await c.wait_for("welcome", timeout=15)  # a Cluster on a loaded machine can be slow
    return c


def leaders(nodes: list[RunningServer]) -> list[RunningServer]:
    return [n for n in nodes if n.node.export.feed is not None and n.node.export.feed.leading]


async def test_events_of_two_nodes_reach_the_sink_once_numbered_by_the_store(
    hook: Receiver, make_server: ServerFactory, shared: dict[str, Any]
) -> None:
    nodes = [await make_server(node_id=f"n{i}", **shared) for i in range(2)]
    await until(lambda: len(leaders(nodes)) == 1, "one node leads the dispatch")
    clients = [await open_client(nodes[i % 2], f"u{i}") for i in range(6)]
    for c in clients:
        await c.request({"type": "room.join", "room": "lobby"})
    sends = [
        c.request({"type": "message.send", "room": "lobby", "body": f"{i}:{n}"})
        for n in range(10)
        for i, c in enumerate(clients)
    ]
    await asyncio.gather(*sends)
    await until(lambda: len(hook.of_type("message.created")) == 60, "every message", 15)
    await until(lambda: len(hook.of_type("member.joined")) == 6, "every join")
    room = [e for e in hook.events if e["key"] == "room:lobby"]
    ids = [e["id"] for e in hook.events]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    seqs = [e["seq"] for e in room]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # one sequence, both nodes
    assert {e["node"] for e in room} == {"n0", "n1"}
    # Numbered by the script that stores the message: seq order is offset order, whichever
    # node took each message.
    offsets = [e["data"]["offset"] for e in room if e["type"] == "message.created"]
    assert offsets == list(range(1, 61))
    assert room[0]["type"] == "room.occupied" and hook.bad_signatures == 0
    for c in clients:
        await c.close()


async def test_a_new_leader_delivers_what_the_old_one_read_and_did_not_confirm(
    hook: Receiver, make_server: ServerFactory, shared: dict[str, Any]
) -> None:
    first = await make_server(node_id="first", **shared)
    await until(lambda: leaders([first]) == [first], "the first node leads")
    hook.refusing = True  # the leader reads the events but cannot deliver them
    alice = await open_client(first, "alice")
    await alice.request({"type": "room.join", "room": "r"})
    await until(lambda: hook.refused >= 2, "the leader trying")
    # The leader dies without a word: its tasks stop, its lead is not given up.
    feed = first.node.export.feed
    assert feed is not None
    for task in feed._tasks:
        task.cancel()
    second = await make_server(node_id="second", **shared)
    hook.refusing = False
    await until(lambda: leaders([second]) == [second], "the second node takes the lead", 5)
    await until(lambda: "member.joined" in hook.types(), "the join, redelivered")
    await until(lambda: "user.online" in hook.types(), "alice online (another slot on Cluster)")
    joined = hook.of_type("member.joined")
    assert len(joined) == 1 and joined[0]["node"] == "first" and joined[0]["user"] == "alice"
    # Order is kept along each key (on Cluster, a user's and a room's events are in the
    # streams of two slots).
    by_key = {
        k: [e["type"] for e in hook.events if e["key"] == k] for k in ("user:alice", "room:r")
    }
    assert by_key == {
        "user:alice": ["session.opened", "user.online"],
        "room:r": ["room.occupied", "member.joined"],
    }
    ids = [e["id"] for e in hook.events]
    assert len(ids) == len(set(ids))
    await alice.close()


async def test_events_are_written_with_the_change_not_after_it(
    hook: Receiver,
    make_server: ServerFactory,
    shared: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The node's own appends never happen (its writer is stuck, as if it died right after
    # the change): the events are in the outbox all the same, each written by the script of
    # its transition.
    # The leader scans for streams only when it starts: on Cluster the script's stream is
    # found by the hint the store gives after it, not by the periodic sweep.
    monkeypatch.setattr(outbox_feed, "SWEEP_EVERY", 3600.0)
    hooked = {**shared, "webhooks": hook.url + "#events=*+typing.*"}
    first = await make_server(node_id="first", **hooked)
    feed = first.node.export.feed
    assert feed is not None
    stuck = asyncio.Event()
    appended: list[str] = []

    async def never(events: Any) -> list[int]:
        appended.extend(e.type for e in events)
        await stuck.wait()
        return []

    feed.outbox.append = never  # type: ignore[method-assign]
    alice = await open_client(first, "alice")
    await alice.request({"type": "room.join", "room": "r"})
    await alice.send({"type": "typing.start", "room": "r"})
    await until(lambda: "typing.started" in hook.types(), "alice typing, from the outbox")
    await alice.request({"type": "status.set", "status": "away", "text": "lunch"})
    sent = await alice.request({"type": "message.send", "room": "r", "body": {"t": "hi"}})
    assert isinstance(sent, MessageAck)
    await alice.request({"type": "message.edit", "room": "r", "id": sent.id, "body": "ho"})
    await alice.request({"type": "message.delete", "room": "r", "id": sent.id})
    await alice.request({"type": "room.leave", "room": "r"})
    await alice.send({"type": "logout"})
    await alice.wait_closed()
    await until(lambda: "user.offline" in hook.types(), "alice's logout, from the outbox")
    room_events = [e["type"] for e in hook.events if e["key"] == "room:r"]
    assert [t for t in room_events if not t.startswith("typing.")] == [
        "room.occupied", "member.joined", "message.created", "receipt.seen",
        "message.edited", "message.deleted", "member.left", "room.vacated",
    ]  # fmt: skip
    assert [t for t in room_events if t.startswith("typing.")] == [
        "typing.started", "typing.stopped",
    ]  # fmt: skip
    assert [e["type"] for e in hook.events if e["key"] == "user:alice"] == [
        "session.opened", "user.online", "user.status", "session.closed", "user.offline",
    ]  # fmt: skip
    created, edited = hook.of_type("message.created")[0], hook.of_type("message.edited")[0]
    assert created["data"]["body"] == {"t": "hi"} and created["data"]["id"] == sent.id
    assert created["data"]["offset"] == sent.offset and edited["data"]["body"] == "ho"
    (status,) = hook.of_type("user.status")
    assert status["data"] == {"status": "away", "text": "lunch", "devices": 1, "previous": "online"}
    (closed,) = hook.of_type("session.closed")
    assert closed["data"]["reason"] == "left" and closed["data"]["close_code"] == 1000
    assert appended == []  # the node appended nothing itself
    stuck.set()


async def test_what_every_sink_confirmed_is_trimmed_from_the_outbox(
    hook: Receiver, make_server: ServerFactory, shared: dict[str, Any]
) -> None:
    async with receiver(SECRET) as second_hook:
        both = {**shared, "webhooks": f"{hook.url} {second_hook.url}"}
        server = await make_server(node_id="n0", **both)
        second_hook.refusing = True  # one sink behind: its entries stay
        alice = await open_client(server, "alice")
        await alice.request({"type": "room.join", "room": "r"})
        await until(lambda: "member.joined" in hook.types(), "the first sink has it")
        outbox = server.node.backplane.outbox
        client = outbox._client
        stream = outbox.stream_of("room:r")
        assert await client.xlen(stream) > 0
        second_hook.refusing = False
        await until(lambda: "member.joined" in second_hook.types(), "the second sink has it")
        await alice.close()
        await until(lambda: "user.offline" in second_hook.types(), "alice's last events")
        await until(lambda: "user.offline" in hook.types(), "on both sinks")

        async def left() -> int:
            streams = {outbox.stream_of("room:r"), outbox.stream_of("user:alice")}
            return sum([await client.xlen(s) for s in streams])

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while await left():
            assert loop.time() < deadline, "the outbox kept confirmed entries"
            await asyncio.sleep(0.02)  # poll pacing, bounded above


async def test_what_this_node_writes_goes_out_without_waiting_for_the_next_poll(
    hook: Receiver,
    make_server: ServerFactory,
    shared: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An idle reader's wait is ten minutes here: only the wake-up of a local write can
    # bring the events out in time.
    monkeypatch.setattr(outbox_feed, "POLL", 600.0)
    monkeypatch.setattr(outbox_feed, "IDLE_MAX", 600.0)
    server = await make_server(node_id="n0", **shared)
    await until(lambda: bool(leaders([server])), "the node leads the dispatch")
    alice = await open_client(server, "alice")
    await alice.request({"type": "room.join", "room": "r"})
    await until(lambda: "member.joined" in hook.types(), "the join, written by a script")
    await alice.request({"type": "message.send", "room": "r", "body": "hi"})
    await until(lambda: "message.created" in hook.types(), "the message")
    await alice.close()
    await until(lambda: "user.offline" in hook.types(), "the offline after grace")


async def test_an_idle_leader_backs_off_instead_of_polling_the_store(
    hook: Receiver, make_server: ServerFactory, valkey: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    reads: list[float] = []
    pops: list[float] = []
    read, pop = RedisOutbox.read, RedisOutbox.pop_replay

    async def counted_read(self: RedisOutbox, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("pending"):
            reads.append(loop.time())
        return await read(self, *args, **kwargs)

    async def counted_pop(self: RedisOutbox, sink: str) -> Any:
        pops.append(loop.time())
        return await pop(self, sink)

    monkeypatch.setattr(RedisOutbox, "read", counted_read)
    monkeypatch.setattr(RedisOutbox, "pop_replay", counted_pop)
    settings = {
        "redis": valkey.url,
        "redis_prefix": f"ob{uuid.uuid4().hex[:8]}",
        "webhooks": hook.url,
        "webhook_secret": SECRET,
    }
    await make_server(node_id="n0", **settings)
    # Nothing is written: every read finds the outbox empty. Wait for eight of them.
    await until(lambda: len(reads) >= 8, "eight reads of the idle outbox", 10)
    span = reads[7] - reads[0]
    # Polling every 20 ms, seven gaps took 0.14 s; doubling from 20 ms to 250 ms they take
    # 0.02 + 0.04 + 0.08 + 0.16 + 3 x 0.25 = 1.05 s (a busy machine only lengthens them).
    assert span >= 0.6, [round(b - a, 3) for a, b in itertools.pairwise(reads)]
    # Replays are looked for once a second, not on every read.
    assert len([t for t in pops if reads[0] <= t <= reads[7]]) <= span + 2, pops
