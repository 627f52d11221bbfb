"""Real servers for the broker tests, started once per test session and shared by the contract
suite (test_broker_contract.py) and each broker's own tests: a standalone Valkey, a 3-master
Valkey Cluster and a nats-server. Each test takes a fresh key or subject prefix, so channels
never meet.

Every test here that starts in-process servers through ``make_server`` (tests/conftest.py)
runs twice, ``test_x[memory]`` and ``test_x[valkey]``: the memory store runs requests inline
and hides the concurrency that Redis exposes (design.md section 7). A module that picks its
store itself (it passes ``redis=`` or builds its nodes its own way) says so with
``pytestmark = pytest.mark.own_backend`` and runs once; ``@pytest.mark.gateway_backends(...)``
narrows one test to the backends named.
"""

from __future__ import annotations

import contextlib
import gc
import warnings
from collections.abc import Iterator

import pytest

from tests.conftest import BACKENDS
from tests.support.nats import NatsProcess
from tests.support.valkey import ValkeyCluster, ValkeyProcess, free_port

__all__ = ["quiet_launcher"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``gateway_backend`` (so ``make_server``, ``server``, ``connect``) over
    BACKENDS, unless the test or its module is marked ``own_backend``."""
    if "gateway_backend" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("own_backend") is not None:
        return
    backends = list(BACKENDS)
    narrowed = metafunc.definition.get_closest_marker("gateway_backends")
    if narrowed is not None:
        unknown = set(narrowed.args) - set(BACKENDS)
        if unknown or not narrowed.args:
            raise ValueError(f"gateway_backends{narrowed.args}: expected some of {BACKENDS}")
        backends = [b for b in BACKENDS if b in narrowed.args]
    metafunc.parametrize("gateway_backend", backends, indirect=True, ids=backends)


@contextlib.contextmanager
def quiet_launcher() -> Iterator[None]:
    """tests/support/valkey.py leaves each server's log file to the garbage collector; its
    ResourceWarning would fail the run (warnings are errors), so it is collected here, while
    ResourceWarnings are ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()


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
