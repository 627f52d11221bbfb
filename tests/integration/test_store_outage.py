"""A Redis outage does not take the gateway down: clients stay, the node says degraded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from presenced.protocol.messages import HeartbeatAck, RoomMembersReply
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory
from tests.integration.test_http_endpoints import get
from tests.support.valkey import ValkeyProcess


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
    _, _, metrics = await asyncio.to_thread(get, running.http_url + "/metrics")
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
