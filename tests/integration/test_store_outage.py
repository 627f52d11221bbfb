"""A Redis outage does not take the gateway down: clients stay, the node says degraded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from presenced.protocol.chat import MessageAck
from presenced.protocol.messages import HeartbeatAck, RoomMembersReply
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory
from tests.integration.test_http_endpoints import get
from tests.support.valkey import ValkeyProcess
from tests.support.waiting import until

# Stops and restarts a Valkey of its own (redis= on every server): not run on each backend.
pytestmark = pytest.mark.own_backend


@pytest.fixture
def valkey() -> Iterator[ValkeyProcess]:
    server = ValkeyProcess().start()
    yield server
    server.cleanup()


async def wait_health(url: str, status: str, timeout: float = 10) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        _, _, body = await asyncio.to_thread(get, url + "/health")
        data = json.loads(body)
        if data["status"] == status:
            return dict(data)
        if loop.time() > deadline:
            raise AssertionError(f"health stayed {data['status']}, expected {status}")
        await asyncio.sleep(0.05)  # poll pacing, bounded by the deadline


async def test_outage_keeps_clients_and_recovers(
    make_server: ServerFactory, valkey: ValkeyProcess
) -> None:
    running = await make_server(redis=valkey.url, lease_ttl=1, lease_interval=0.1, grace=30)
    alice = await ProtocolClient.connect(running.url + "?user=alice&device=d")
    await alice.wait_for("welcome")
    await alice.request({"type": "room.join", "room": "r"})
    port = valkey.port
    valkey.stop()
    data = await wait_health(running.http_url, "degraded")
    assert data["connections"] == 1
    # The local connection stays up and is served what needs no store.
    assert isinstance(await alice.request({"type": "heartbeat"}), HeartbeatAck)
    _, _, metrics = await asyncio.to_thread(get, running.admin_url + "/metrics")
    assert f'presenced_degraded{{node="{running.node.node_id}"}} 1.0' in metrics
    # Valkey comes back empty (no persistence): the node re-asserts alice.
    valkey.port = port
    valkey.start()
    await wait_health(running.http_url, "ok")
    reply = await alice.request({"type": "room.members", "room": "r"})
    assert isinstance(reply, RoomMembersReply)
    assert [m.user for m in reply.members] == ["alice"]
    assert not alice.closed.is_set()
    await alice.close()


async def test_store_restart_loses_no_acked_message(
    make_server: ServerFactory, valkey: ValkeyProcess
) -> None:
    """Valkey restarts empty while messages flow: every message that was acked reaches the
    live members of the room exactly once, on the same node and on another."""
    settings = {
        "redis": valkey.url,
        "lease_ttl": 1,
        "lease_interval": 0.1,
        "grace": 30,
        "message_rate": 1000,
        "message_burst": 1000,
    }
    nodes = [await make_server(node_id=f"n{i}", **settings) for i in range(2)]
    sender = await ProtocolClient.connect(nodes[0].url + "?user=alice&device=d")
    await sender.wait_for("welcome")
    observers = []
    for i, node in enumerate(nodes):
        observer = await ProtocolClient.connect(node.url + f"?user=bob{i}&device=d")
        await observer.wait_for("welcome")
        await observer.request({"type": "room.join", "room": "r"})
        observers.append(observer)
    await sender.request({"type": "room.join", "room": "r"})
    acked: list[str] = []
    stop = asyncio.Event()

    async def send_until_stopped() -> None:
        n = 0
        while not stop.is_set() and n < 2000:
            n += 1
            reply = await sender.request(
                {"type": "message.send", "room": "r", "body": str(n), "temp_id": str(n)}, timeout=15
            )
            if isinstance(reply, MessageAck):
                acked.append(reply.id)
            else:
                await asyncio.sleep(0.01)  # pacing retries while the store is away

    sending = asyncio.create_task(send_until_stopped())
    await until(lambda: len(acked) >= 20, "messages before the restart", 10)
    port = valkey.port
    valkey.stop()
    await wait_health(nodes[0].http_url, "degraded")
    valkey.port = port
    valkey.start()
    before = len(acked)
    await until(lambda: len(acked) >= before + 60, "messages after the restart", 30)
    stop.set()
    await sending
    for observer in observers:
        await until(
            lambda o=observer: {m.id for m in o.of_type("message")} >= set(acked),  # type: ignore[attr-defined]
            "every acked message at every observer",
            15,
        )
        ids = [m.id for m in observer.of_type("message")]  # type: ignore[attr-defined]
        assert len(ids) == len(set(ids)), "a message arrived twice"
    assert not sender.of_type("message"), "the sender got a copy of its own message"
    for client in (sender, *observers):
        await client.close()
