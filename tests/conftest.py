"""Shared fixtures: real servers on loopback with millisecond intervals.

``make_server`` starts servers on the store named by ``gateway_backend``: "memory" unless a
directory's conftest parametrizes it (tests/integration runs each gateway test on "memory" and
on "valkey", design.md section 7).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from presenced.config import Settings
from presenced.server.serve import RunningServer, start_server
from presenced.testing import ProtocolClient
from tests.support.nats import NatsProcess
from tests.support.quiet import quiet_launcher
from tests.support.valkey import ValkeyCluster, ValkeyProcess, free_port

# Fast liveness for tests: events happen in tens of milliseconds; tests wait for them with
# timeouts instead of sleeping.
FAST: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "admin_port": 0,
    "auth_mode": "insecure",
    "heartbeat_interval": 0.2,
    "heartbeat_timeout": 0.1,
    "grace": 0.4,
    "auth_timeout": 0.5,
    "inactivity_timeout": None,
}

ServerFactory = Callable[..., Awaitable[RunningServer]]
Connect = Callable[..., Awaitable[ProtocolClient]]


BACKENDS = ("memory", "valkey")


@pytest.fixture
def gateway_backend(request: pytest.FixtureRequest) -> str:
    """The store ``make_server`` uses unless a test passes ``redis`` itself: "memory" by
    default; "valkey" (the session's ``valkey`` fixture) where it is parametrized."""
    backend = str(getattr(request, "param", "memory"))
    if backend not in BACKENDS:
        raise ValueError(f"gateway_backend {backend!r}: expected one of {BACKENDS}")
    return backend


@pytest.fixture
async def make_server(
    gateway_backend: str, request: pytest.FixtureRequest
) -> AsyncIterator[ServerFactory]:
    """Start servers with FAST settings plus overrides; all are stopped at teardown.

    On the "valkey" backend every server gets ``redis`` and a key prefix of its own, so each
    is a deployment of its own as on memory (no test or server sees another's keys); a test
    that passes ``redis`` keeps its own store, one that passes ``redis_prefix`` its prefix.
    """
    started: list[RunningServer] = []

    async def factory(**overrides: Any) -> RunningServer:
        if gateway_backend == "valkey" and "redis" not in overrides:
            overrides = {
                "redis": request.getfixturevalue("valkey").url,
                "redis_prefix": f"it-{uuid.uuid4().hex[:12]}",
                **overrides,
            }
        settings = Settings().replace(**{**FAST, **overrides})
        running = await start_server(settings)
        started.append(running)
        return running

    yield factory
    for running in started:
        await running.stop()


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    return await make_server()


@pytest.fixture
async def connect(server: RunningServer) -> AsyncIterator[Connect]:
    """Open authenticated raw-protocol clients to ``server``: connect("alice", "phone")."""
    clients: list[ProtocolClient] = []

    async def opener(
        user: str | None = None, device: str = "d1", *, url: str | None = None, **query: str
    ) -> ProtocolClient:
        params = dict(query)
        if user is not None:
            params.setdefault("user", user)
            params.setdefault("device", device)
        qs = "&".join(f"{k}={v}" for k, v in params.items())
        client = await ProtocolClient.connect(f"{url or server.url}{'?' + qs if qs else ''}")
        clients.append(client)
        if user is not None:
            await client.wait_for("welcome")
        return client

    yield opener
    for client in clients:
        if not client.closed.is_set():
            client.abort()


# --- real servers, started once per test session and shared: a standalone Valkey, a
# 3-master Valkey Cluster and a nats-server. Each user takes a fresh key or subject prefix,
# so tests never meet. (A test that stops or restarts its server starts its own.)


@pytest.fixture(scope="session")
def valkey() -> Iterator[ValkeyProcess]:
    server = ValkeyProcess()
    try:
        with quiet_launcher():
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
        with quiet_launcher():
            cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsProcess]:
    server = NatsProcess()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
