"""Two presenced nodes with presence state in Valkey and events over NATS (``--broker``).

Each node is a ``presenced serve --redis ... --broker nats://...`` process. A client on each
node sees the other's ``member.joined`` and messages, and the events really travel over NATS:
each node subscribed the room's subject on the nats-server, while Valkey has no pub/sub channel
at all. When the nats-server restarts, both nodes reconnect and events flow again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from presenced.protocol.chat import MessageAck, MessageEvent
from presenced.protocol.messages import MemberJoined, ServerMessage
from presenced.testing import ProtocolClient
from tests.multinode.conftest import Dial, StartNodes
from tests.support.nats import NatsProcess
from tests.support.valkey import ValkeyProcess

__all__: list[str] = []

RESUME = 30.0  # seconds for events to flow again after the nats-server restarts


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsProcess]:
    server = NatsProcess().start()
    yield server
    server.cleanup()


async def _join(client: ProtocolClient, room: str = "r") -> None:
    reply = await client.request({"type": "room.join", "room": room})
    assert type(reply).__name__ == "RoomJoined", reply


async def _send(client: ProtocolClient, body: str, room: str = "r") -> MessageAck:
    ack = await client.request({"type": "message.send", "room": room, "body": body})
    assert isinstance(ack, MessageAck), ack
    return ack


def _joined(user: str) -> Callable[[ServerMessage], bool]:
    return lambda m: isinstance(m, MemberJoined) and m.user == user


async def test_clients_on_two_nodes_see_each_other_over_nats(
    start_nodes: StartNodes, dial: Dial, nats_server: NatsProcess, valkey: ValkeyProcess
) -> None:
    n1, n2 = start_nodes(2, broker=nats_server.url)
    assert n1.health() is not None and n1.health()["store"] == "redis"  # type: ignore[index]
    alice = await dial(n1, "alice")
    bob = await dial(n2, "bob")
    await _join(alice)
    await _join(bob)

    joined = await alice.wait_for(_joined("bob"), timeout=10)
    assert isinstance(joined, MemberJoined) and joined.room == "r"

    ack = await alice.request({"type": "message.send", "room": "r", "body": "hi from n1"})
    assert isinstance(ack, MessageAck)
    got = await bob.wait_for("message", timeout=10)
    assert isinstance(got, MessageEvent) and got.id == ack.id and got.body == "hi from n1"
    back = await _send(bob, "hi from n2")
    got = await alice.wait_for(
        lambda m: isinstance(m, MessageEvent) and m.id == back.id, timeout=10
    )
    assert isinstance(got, MessageEvent) and got.user == "bob" and got.body == "hi from n2"

    # A third user joining on n2 reaches alice on n1 as well.
    carol = await dial(n2, "carol")
    await _join(carol)
    assert await alice.wait_for(_joined("carol"), timeout=10)

    # The events went over NATS: each node subscribed the room there, Redis pub/sub is unused.
    rooms = [s for s in nats_server.subscriptions() if s.endswith(".room:r")]
    assert len(rooms) == 2, rooms
    with valkey.client() as client:
        assert client.pubsub_channels() == []


async def test_events_flow_again_after_nats_restarts(
    start_nodes: StartNodes, dial: Dial, nats_server: NatsProcess
) -> None:
    n1, n2 = start_nodes(2, broker=nats_server.url)
    alice = await dial(n1, "alice")
    bob = await dial(n2, "bob")
    await _join(alice)
    await _join(bob)
    await alice.wait_for(_joined("bob"), timeout=10)

    # In a thread: the clients' event loop keeps going (heartbeats) while NATS is away.
    await asyncio.to_thread(nats_server.restart)

    # Bob's messages are stored (Valkey is up) whether or not NATS carries them yet: send
    # until one reaches alice, every wait bounded.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESUME
    mark = len(alice.received)
    sent: set[str] = set()
    while True:
        assert loop.time() < deadline, "messages did not cross nodes again after the restart"
        sent.add((await _send(bob, f"probe {len(sent)}")).id)
        try:
            await alice.wait_for(
                lambda m: isinstance(m, MessageEvent) and m.id in sent, timeout=0.3, start=mark
            )
            break
        except AssertionError:
            continue

    # Both directions and membership too, now.
    ack = await _send(alice, "back from n1")
    got = await bob.wait_for(lambda m: isinstance(m, MessageEvent) and m.id == ack.id, timeout=10)
    assert isinstance(got, MessageEvent) and got.body == "back from n1"
    carol = await dial(n1, "carol")
    await _join(carol)
    assert await bob.wait_for(_joined("carol"), timeout=10)
    for node in (n1, n2):
        assert "nats: reconnected" in node.log_tail(20000), node.log_tail()
