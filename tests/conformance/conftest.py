"""The backends the store conformance suite runs against, as one parametrized fixture.

Every test in tests/conformance takes ``backplane`` and so runs once per backend. Adding a
backend means adding its name to ``BACKENDS`` and a branch in :func:`open_backend`; the tests
themselves only ever go through the store Protocols (presenced.store.base), never a backend's
internals.

The Redis backends run on real servers started once per test session (tests/conftest.py's
``valkey`` and ``valkey_cluster``). Each backplane gets a key prefix of
its own, so tests are independent without flushing or restarting anything.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from presenced.store.base import Backplane
from presenced.store.memory import memory_backplane
from presenced.store.redis import redis_backplane

__all__ = ["BACKENDS", "open_backend"]

BACKENDS: list[str] = ["memory", "redis", "redis-cluster"]


async def open_backend(
    request: pytest.FixtureRequest,
    name: str,
    *,
    history_size: int = 100,
    history_ttl: float = 3600.0,
) -> Backplane:
    """A fresh, empty backplane of backend ``name`` (the caller closes it).

    ``request`` is any fixture's or test's request: the servers are its session fixtures.
    """
    if name == "memory":
        return memory_backplane(history_size=history_size, history_ttl=history_ttl)
    if name == "redis":
        url = request.getfixturevalue("valkey").url
    elif name == "redis-cluster":
        url = "redis+cluster://" + ",".join(request.getfixturevalue("valkey_cluster").seeds)
    else:
        raise AssertionError(f"unknown backend {name!r}")
    # A prefix per backplane: nothing of another test is visible, nothing needs flushing.
    prefix = f"conf-{uuid.uuid4().hex[:12]}"
    return redis_backplane(url, history_size=history_size, history_ttl=history_ttl, prefix=prefix)


@pytest.fixture(params=BACKENDS)
async def backplane(request: pytest.FixtureRequest) -> AsyncIterator[Backplane]:
    """A fresh backplane of each backend in turn, closed after the test."""
    bp = await open_backend(request, request.param)
    try:
        yield bp
    finally:
        await bp.close()
