"""presenced nodes as real subprocesses (``python -m presenced serve``), for multi-node tests.

Each node gets its own free port and node id and logs to its own file. Start-up is awaited by
polling ``/health`` on the client port and then on the admin port (two listeners, bound one
after the other), with one bound; nodes are ended by their own process handle only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.valkey import free_port

__all__ = ["PresencedNode"]


class _PortTaken(RuntimeError):
    """The node could not bind a port it was given: something else holds it."""


class PresencedNode:
    """One ``presenced serve`` process."""

    def __init__(self, node_id: str, **settings: Any) -> None:
        self.node_id = node_id
        self.port = free_port()
        self._own_ports = not settings.get("admin_port")  # (else the test chose one)
        self.admin_port = int(settings.pop("admin_port", None) or free_port())
        self.settings = {
            "host": "127.0.0.1",
            "port": self.port,
            "admin_port": self.admin_port,
            "node_id": node_id,
            **settings,
        }
        self.log_path = Path(tempfile.mkstemp(prefix=f"presenced-{node_id}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def admin_url(self) -> str:
        """The node's admin API (with --workers, one of the workers answers)."""
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 15.0) -> PresencedNode:
        """Start the node and wait until both its ports answer. On its first start, a port
        taken between :func:`free_port` and the node's bind (another process's outgoing
        connection may get it as its source port) is replaced by a fresh one, twice at
        most; a restart keeps its ports, as clients reconnect to them."""
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except _PortTaken:
                if self._started or not self._own_ports or attempt == 2:
                    raise
                self.port = self.settings["port"] = free_port()
                self.admin_port = self.settings["admin_port"] = free_port()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> PresencedNode:
        args = [sys.executable, "-m", "presenced", "serve"]
        for key, value in self.settings.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        # Both listeners: a test that calls the admin API at once must not race its bind.
        for port in (self.port, self.admin_port):
            while self.health(port) is None:
                if self.proc.poll() is not None:
                    tail = self.log_tail()
                    if "address already in use" in tail:
                        raise _PortTaken(f"node {self.node_id}: {tail}")
                    raise RuntimeError(f"node {self.node_id} exited: {tail}")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"node {self.node_id} not up on port {port} in {timeout}s: "
                        f"{self.log_tail()}"
                    )
                time.sleep(0.05)  # polling a process start-up, not waiting for an event
        self._started = True
        return self

    def health(self, port: int | None = None) -> dict[str, Any] | None:
        """``/health`` of the client port (or of ``port``); None while nothing answers."""
        url = f"http://127.0.0.1:{port or self.port}/health"
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read()))
        except (OSError, ValueError):
            return None

    def log_tail(self, size: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-size:]

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the node vanishes, its lease is left to expire."""
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM: a clean drain; returns the exit code."""
        assert self.proc is not None
        self.signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log_path.unlink(missing_ok=True)
