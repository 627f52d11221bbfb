"""The backends the store conformance suite runs against, as one parametrized fixture.

Every test in tests/conformance takes ``backplane`` and so runs once per backend. Adding a
backend means adding its name to ``BACKENDS`` and a branch in ``_open``; the tests themselves
only ever go through the store Protocols (presenced.store.base), never a backend's internals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from presenced.store.base import Backplane
from presenced.store.memory import memory_backplane

__all__ = ["BACKENDS"]

BACKENDS: list[str] = [
    "memory",
    # "redis",          # a real Valkey/Redis server (e.g. $PRESENCED_TEST_REDIS_URL)
    # "redis-cluster",  # a real Valkey Cluster
]


async def _open(name: str) -> Backplane:
    """A fresh, empty backplane of backend ``name``."""
    if name == "memory":
        return memory_backplane()
    # Where redis goes, roughly:
    #   if name == "redis":
    #       bp = await redis_backplane(url, prefix=f"conformance:{uuid4().hex}:")
    #       return bp
    # A per-test key prefix (or FLUSHDB on a dedicated test database) keeps tests apart.
    raise AssertionError(f"unknown backend {name!r}")


@pytest.fixture(params=BACKENDS)
async def backplane(request: pytest.FixtureRequest) -> AsyncIterator[Backplane]:
    """A fresh backplane of each backend in turn, closed after the test."""
    bp = await _open(request.param)
    try:
        yield bp
    finally:
        await bp.close()
