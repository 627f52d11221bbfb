"""Shared fixtures: real servers on loopback with millisecond intervals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from presenced.config import Settings
from presenced.server.serve import RunningServer, start_server
from presenced.testing import ProtocolClient

# Fast liveness for tests: events happen in tens of milliseconds; tests wait for them with
# timeouts instead of sleeping.
FAST: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "auth_mode": "insecure",
    "heartbeat_interval": 0.2,
    "heartbeat_timeout": 0.1,
    "grace": 0.4,
    "auth_timeout": 0.5,
    "inactivity_timeout": None,
}

ServerFactory = Callable[..., Awaitable[RunningServer]]
Connect = Callable[..., Awaitable[ProtocolClient]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    """Start servers with FAST settings plus overrides; all are stopped at teardown."""
    started: list[RunningServer] = []

    async def factory(**overrides: Any) -> RunningServer:
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
