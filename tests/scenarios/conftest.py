"""Fixtures for end-to-end scenarios: raw protocol clients dialled to any running server.

The shared ``connect`` fixture is bound to the one ``server`` fixture; scenarios often need
their own server settings, a second server (a restart), or a connect URL that is deliberately
incomplete, so :func:`dial` takes the URL and the query explicitly and leaves waiting for the
welcome to the caller when asked to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlencode

import pytest

from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory

__all__ = ["Dial", "dial"]

Dial = Callable[..., Awaitable[ProtocolClient]]


@pytest.fixture
async def dial(make_server: ServerFactory) -> AsyncIterator[Dial]:
    """Open clients: ``await dial(url, user="alice", device="phone")``.

    Query parameters go into the connect URL as given. With ``welcome=True`` (the default)
    the call returns once the server has welcomed the client. Every client still open at
    teardown is dropped; depending on ``make_server`` makes that happen before the servers
    are stopped.
    """
    clients: list[ProtocolClient] = []

    async def opener(url: str, *, welcome: bool = True, **query: str) -> ProtocolClient:
        qs = urlencode(query)
        client = await ProtocolClient.connect(f"{url}?{qs}" if qs else url)
        clients.append(client)
        if welcome:
            await client.wait_for("welcome")
        return client

    yield opener
    for client in clients:
        if not client.closed.is_set():
            client.abort()
