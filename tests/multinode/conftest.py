"""Fixtures for many-node tests: one real Valkey per module, presenced nodes as processes."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from presenced.testing import ProtocolClient
from tests.support.nodes import PresencedNode
from tests.support.valkey import ValkeyProcess

# Fast timings: a dead node's sessions enter grace within lease_ttl + lease_interval.
NODE_SETTINGS: dict[str, Any] = {
    "auth_mode": "insecure",
    "heartbeat_interval": "0.5",
    "heartbeat_timeout": "0.25",
    "grace": "1.5",
    "lease_ttl": "1",
    "lease_interval": "0.2",
    "inactivity_timeout": "off",
    "log_level": "info",
}

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def valkey() -> Iterator[ValkeyProcess]:
    server = ValkeyProcess().start()
    yield server
    server.cleanup()


StartNodes = Callable[..., list[PresencedNode]]


@pytest.fixture
def start_nodes(valkey: ValkeyProcess) -> Iterator[StartNodes]:
    """Start N nodes sharing the module's Valkey under a key prefix of this test's own."""
    started: list[PresencedNode] = []
    prefix = f"t{next(_prefixes)}"

    def start(count: int = 3, **overrides: Any) -> list[PresencedNode]:
        settings = {**NODE_SETTINGS, "redis": valkey.url, "redis_prefix": prefix, **overrides}
        nodes = [PresencedNode(f"n{len(started) + i + 1}", **settings) for i in range(count)]
        for node in nodes:
            node.start()
            started.append(node)
        return nodes

    yield start
    for node in started:
        node.cleanup()


Dial = Callable[..., Any]


@pytest.fixture
async def dial() -> AsyncIterator[Dial]:
    """Open raw protocol clients to a node: ``await dial(node, "alice", "phone")``."""
    clients: list[ProtocolClient] = []

    async def opener(
        node: PresencedNode, user: str, device: str = "d", **query: str
    ) -> ProtocolClient:
        params = "&".join(f"{k}={v}" for k, v in {"user": user, "device": device, **query}.items())
        client = await ProtocolClient.connect(f"{node.url}?{params}")
        clients.append(client)
        await client.wait_for("welcome", timeout=10)
        return client

    yield opener
    for client in clients:
        if not client.closed.is_set():
            client.abort()
