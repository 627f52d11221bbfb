"""Real servers for the broker tests, started once per test session and shared by the contract
suite (test_broker_contract.py) and each broker's own tests: a standalone Valkey, a 3-master
Valkey Cluster and a nats-server. Each test takes a fresh key or subject prefix, so channels
never meet.
"""

from __future__ import annotations

import contextlib
import gc
import warnings
from collections.abc import Iterator

import pytest

from tests.support.nats import NatsProcess
from tests.support.valkey import ValkeyCluster, ValkeyProcess, free_port

__all__ = ["quiet_launcher"]


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
