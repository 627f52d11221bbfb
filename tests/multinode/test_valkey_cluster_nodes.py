"""Three presenced nodes on a 3-master Valkey Cluster: shared presence, and no ghosts.

The nodes are real ``presenced serve`` processes given the Cluster as
``--redis redis+cluster://h:p,h:p,h:p``. Rooms are picked so that their keys live on each
of the three masters, so the tests cross shards. What a
standalone Valkey already shows in test_cluster.py must hold here too: presence, messages and
typing cross nodes; a node killed with SIGKILL loses its users within lease + lease interval +
grace (plus a margin), unless they resume on another node, in which case nobody sees a leave;
and a crashed node restarted at once under its id, or its users' typing indicators, leave no
ghost behind either.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis.crc import key_slot

from presenced.protocol.chat import (
    MessageAck,
    MessageEvent,
    RoomReadReply,
    RoomRecovered,
    TypingEvent,
)
from presenced.protocol.messages import (
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    Presence,
    RoomMembersReply,
    ServerMessage,
    Welcome,
)
from presenced.store.redis.keys import Keys
from presenced.testing import ProtocolClient
from tests.multinode.conftest import NODE_SETTINGS, Dial
from tests.support.nodes import PresencedNode
from tests.support.valkey import ValkeyCluster

__all__: list[str] = []

GRACE = float(NODE_SETTINGS["grace"])
LEASE = float(NODE_SETTINGS["lease_ttl"])
LEASE_INTERVAL = float(NODE_SETTINGS["lease_interval"])
# Scheduling slack on a loaded 2-core machine: three nodes, three Valkeys and the test.
MARGIN = 2.0
LEAVE_BOUND = LEASE + LEASE_INTERVAL + GRACE + MARGIN


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[ValkeyCluster]:
    server = ValkeyCluster()  # its nodes' bus ports (port + 10000) are checked free too
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


_prefixes = itertools.count()


@pytest.fixture
def start_cluster_nodes(cluster: ValkeyCluster) -> Iterator[Any]:
    """Start nodes on the Cluster, under a key prefix of this test's own."""
    started: list[PresencedNode] = []
    prefix = f"c{next(_prefixes)}"
    url = "redis+cluster://" + ",".join(cluster.seeds)

    def start(
        count: int = 3, *, node_ids: list[str] | None = None, **overrides: Any
    ) -> list[PresencedNode]:
        ids = node_ids or [f"n{len(started) + i + 1}" for i in range(count)]
        settings = {**NODE_SETTINGS, "redis": url, "redis_prefix": prefix, **overrides}
        nodes = [PresencedNode(node_id, **settings) for node_id in ids]
        for node in nodes:
            started.append(node)
            node.start()
        return nodes

    yield start
    for node in started:
        node.cleanup()


def _rooms_on_every_master() -> list[str]:
    """One room name per master: its keys hash into each of the three slot ranges."""
    keys = Keys()
    picked: dict[int, str] = {}
    for i in range(1000):
        room = f"room{i}"
        slot = key_slot(keys.room_members(room).encode())
        shard = next(n for n, (lo, hi) in enumerate(ValkeyCluster.SLOTS) if lo <= slot <= hi)
        picked.setdefault(shard, room)
        if len(picked) == len(ValkeyCluster.SLOTS):
            return [picked[n] for n in sorted(picked)]
    raise AssertionError("no room names found that cover every master")


ROOMS = _rooms_on_every_master()


# --- helpers -------------------------------------------------------------------------------


async def members(client: ProtocolClient, room: str) -> set[str]:
    reply = await client.request({"type": "room.members", "room": room})
    assert isinstance(reply, RoomMembersReply), reply
    return {m.user for m in reply.members}


async def join(client: ProtocolClient, room: str) -> None:
    reply = await client.request({"type": "room.join", "room": room})
    assert type(reply).__name__ == "RoomJoined", reply


def welcome_of(client: ProtocolClient) -> Welcome:
    welcome = client.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    return welcome


def is_a(cls: type[Any], **fields: Any) -> Callable[[ServerMessage], bool]:
    """A wait_for predicate: a ``cls`` message whose fields have the given values."""
    return lambda m: isinstance(m, cls) and all(getattr(m, k) == v for k, v in fields.items())


def joined(user: str, room: str) -> Callable[[ServerMessage], bool]:
    return is_a(MemberJoined, user=user, room=room)


def membership_events(client: ProtocolClient, start: int = 0) -> list[Any]:
    return [
        m
        for m in client.received[start:]
        if isinstance(m, MemberJoined | MemberLeft | MemberUpdated)
    ]


# --- tests ---------------------------------------------------------------------------------


async def test_rooms_span_every_master() -> None:
    keys = Keys()
    slots = [key_slot(keys.room_members(room).encode()) for room in ROOMS]
    shards = {n for s in slots for n, (lo, hi) in enumerate(ValkeyCluster.SLOTS) if lo <= s <= hi}
    assert shards == {0, 1, 2}, slots


async def test_presence_messages_and_typing_cross_nodes_and_shards(
    start_cluster_nodes: Any, dial: Dial
) -> None:
    n1, n2, n3 = start_cluster_nodes(3)
    alice = await dial(n1, "alice")
    bob = await dial(n2, "bob")
    carol = await dial(n3, "carol")
    for room in ROOMS:
        for client in (alice, bob, carol):
            await join(client, room)
    # Everyone sees everyone else arrive in every room, whichever node and master.
    for room in ROOMS:
        await alice.wait_for(joined("carol", room))
        await alice.wait_for(joined("bob", room))
        await bob.wait_for(joined("carol", room))
        for client in (alice, bob, carol):
            assert await members(client, room) == {"alice", "bob", "carol"}

    await carol.request({"type": "presence.subscribe", "users": ["alice"]})
    await alice.request({"type": "status.set", "status": "dnd"})
    dnd = await carol.wait_for(lambda m: isinstance(m, Presence) and m.status == "dnd")
    assert isinstance(dnd, Presence) and dnd.online and dnd.user == "alice"

    for i, room in enumerate(ROOMS):
        sender = (alice, bob, carol)[i]
        ack = await sender.request(
            {"type": "message.send", "room": room, "body": f"hello {room}", "temp_id": f"t{i}"}
        )
        assert isinstance(ack, MessageAck) and ack.temp_id == f"t{i}"
        for other in (alice, bob, carol):
            if other is sender:
                continue
            got = await other.wait_for(is_a(MessageEvent, room=room))
            assert isinstance(got, MessageEvent)
            assert (got.id, got.offset, got.body) == (ack.id, ack.offset, f"hello {room}")
        # The sender gets the ack only, never its own message back.
        assert not [m for m in sender.received if isinstance(m, MessageEvent) and m.room == room]

    room = ROOMS[1]
    await bob.send({"type": "typing.start", "room": room})
    for other in (alice, carol):
        typing = await other.wait_for(
            lambda m: isinstance(m, TypingEvent) and m.room == room and m.users == ["bob"]
        )
        assert isinstance(typing, TypingEvent)
    mark = len(alice.received)
    await bob.request({"type": "message.send", "room": room, "body": "done", "temp_id": "t9"})
    cleared = await alice.wait_for(
        lambda m: isinstance(m, TypingEvent) and m.room == room and m.users == [], start=mark
    )
    assert isinstance(cleared, TypingEvent)

    # A leave is seen on the other nodes, and every node agrees on what is left.
    await carol.request({"type": "room.leave", "room": ROOMS[2]})
    left = await alice.wait_for(
        lambda m: isinstance(m, MemberLeft) and m.user == "carol" and m.room == ROOMS[2]
    )
    assert isinstance(left, MemberLeft) and left.reason == "left"
    for client in (alice, bob, carol):
        assert await members(client, ROOMS[2]) == {"alice", "bob"}


async def test_killed_node_users_leave_everywhere_within_lease_and_grace(
    start_cluster_nodes: Any, dial: Dial
) -> None:
    n1, n2, n3 = start_cluster_nodes(3)
    bob = await dial(n2, "bob")
    carol = await dial(n3, "carol")
    alice = await dial(n1, "alice")
    for room in ROOMS:
        for client in (bob, carol, alice):
            await join(client, room)
        await bob.wait_for(joined("alice", room))
        await carol.wait_for(joined("alice", room))
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    n1.kill()
    for room in ROOMS:
        for observer in (bob, carol):
            left = await observer.wait_for(
                is_a(MemberLeft, user="alice", room=room), timeout=LEAVE_BOUND + 5
            )
            took = loop.time() - killed_at
            assert isinstance(left, MemberLeft) and left.reason in ("grace_expired", "node_lost")
            assert took < LEAVE_BOUND, (room, took)
            assert took > GRACE * 0.8, (room, took)  # through grace, not straight out
    for room in ROOMS:
        for observer in (bob, carol):
            assert await members(observer, room) == {"bob", "carol"}
    # Exactly one leave per room, and no join came back.
    for observer in (bob, carol):
        alice_events = [m for m in membership_events(observer) if m.user == "alice"]
        assert sorted(type(m).__name__ for m in alice_events) == sorted(
            ["MemberJoined", "MemberLeft"] * len(ROOMS)
        ), alice_events


async def test_killed_node_users_resume_on_another_node_without_a_leave(
    start_cluster_nodes: Any, dial: Dial
) -> None:
    n1, n2, n3 = start_cluster_nodes(3)
    bob = await dial(n2, "bob")
    alice = await dial(n1, "alice")
    positions: dict[str, dict[str, Any]] = {}
    for room in ROOMS:
        await join(bob, room)
        await join(alice, room)
        await bob.wait_for(joined("alice", room))
        read = await alice.request({"type": "room.read", "room": room})
        assert isinstance(read, RoomReadReply), read
        positions[room] = {"epoch": read.epoch, "offset": read.offset}
    token = welcome_of(alice).resume_token
    mark = len(bob.received)
    n1.kill()
    # While alice is gone, bob talks in every room: the resumed session must get it all.
    acks = {}
    for room in ROOMS:
        ack = await bob.request({"type": "message.send", "room": room, "body": f"missed {room}"})
        assert isinstance(ack, MessageAck)
        acks[room] = ack
    back = await ProtocolClient.connect(n3.url)
    try:
        await back.send(
            {
                "type": "auth",
                "user": "alice",
                "device": "d",
                "resume": token,
                "positions": positions,
            }
        )
        again = await back.wait_for("welcome", timeout=10)
        assert isinstance(again, Welcome) and again.resumed, again
        assert sorted(again.rooms) == sorted(ROOMS)
        for room in ROOMS:
            recovered = await back.wait_for(is_a(RoomRecovered, room=room))
            assert isinstance(recovered, RoomRecovered) and recovered.recovered
            assert [e.id for e in recovered.events] == [acks[room].id]
        # Long past the dead node's lease and the grace: alice never left, anywhere.
        await asyncio.sleep(LEASE + LEASE_INTERVAL + GRACE + 1)  # a deadline that must NOT fire
        carol = await dial(n3, "carol")
        for room in ROOMS:
            assert await members(bob, room) == {"alice", "bob"}
            assert await members(carol, room) == {"alice", "bob"}
        assert not membership_events(bob, mark), membership_events(bob, mark)
        # And the resumed session is fully live: bob hears it.
        ack = await back.request({"type": "message.send", "room": ROOMS[0], "body": "back"})
        assert isinstance(ack, MessageAck)
        heard = await bob.wait_for(lambda m: isinstance(m, MessageEvent) and m.id == ack.id)
        assert isinstance(heard, MessageEvent) and heard.user == "alice"
    finally:
        back.abort()


async def test_node_killed_and_restarted_at_once_with_its_id_still_loses_its_users(
    start_cluster_nodes: Any, dial: Dial
) -> None:
    """A crashed node that comes straight back under the same id (a supervisor restarting
    it, a StatefulSet pod) must not keep its dead sessions alive: they are nobody's now.

    The lease here is longer than a node's start-up, as in production (default 8 s), so the
    new process is up before the old lease has run out."""
    lease, interval = 3.0, 0.5
    timings = {"lease_ttl": str(lease), "lease_interval": str(interval)}
    (n1,) = start_cluster_nodes(1, node_ids=["n1"], **timings)
    n2, n3 = start_cluster_nodes(2, **timings)
    bob = await dial(n2, "bob")
    alice = await dial(n1, "alice")
    room = ROOMS[0]
    await join(bob, room)
    await join(alice, room)
    await bob.wait_for(joined("alice", room))
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    n1.kill()
    (again,) = await asyncio.to_thread(start_cluster_nodes, 1, node_ids=["n1"], **timings)
    restarted_in = loop.time() - killed_at
    assert restarted_in < lease, restarted_in  # the scenario: back before its lease ran out
    bound = lease + interval + GRACE + MARGIN
    left = await bob.wait_for(
        lambda m: isinstance(m, MemberLeft) and m.user == "alice", timeout=bound + 3
    )
    took = loop.time() - killed_at
    assert isinstance(left, MemberLeft), left
    assert took < bound, (took, restarted_in)
    for client in (bob, await dial(n3, "carol"), await dial(again, "dave")):
        assert await members(client, room) == {"bob"}


async def test_killed_node_typists_stop_typing_everywhere(
    start_cluster_nodes: Any, dial: Dial
) -> None:
    """Typing is cleared when a session's transport is lost or it closes: a node that dies
    takes its users' typing indicators with it, within lease + interval + grace."""
    n1, n2, n3 = start_cluster_nodes(3)
    bob = await dial(n2, "bob")
    carol = await dial(n3, "carol")
    alice = await dial(n1, "alice")
    room = ROOMS[2]
    for client in (bob, carol, alice):
        await join(client, room)
    await bob.wait_for(joined("alice", room))
    await alice.send({"type": "typing.start", "room": room})
    await bob.wait_for(is_a(TypingEvent, room=room, users=["alice"]))
    mark = len(bob.received)
    n1.kill()
    await bob.wait_for(is_a(MemberLeft, user="alice", room=room), timeout=LEAVE_BOUND + 5)
    # By the time alice is gone from the room she is gone from its typing list too...
    stopped = await bob.wait_for(is_a(TypingEvent, room=room, users=[]), start=mark, timeout=1)
    assert isinstance(stopped, TypingEvent)
    # ...so the next typist is typing alone.
    await carol.send({"type": "typing.start", "room": room})
    typing = await bob.wait_for(
        lambda m: isinstance(m, TypingEvent) and "carol" in m.users, start=mark
    )
    assert isinstance(typing, TypingEvent) and typing.users == ["carol"], typing
