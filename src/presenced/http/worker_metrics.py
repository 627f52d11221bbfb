"""``--workers``: every process's metrics summed in the admin node's ``/metrics``.

Under ``--workers`` the admin port is served by a node of its own (``BASE-api``,
server/workers.py), which sees none of the workers' connections. So every process, the
workers and that node alike, writes a snapshot of its values
(:class:`~presenced.http.metrics.Values`, msgspec JSON) into a directory the supervisor
made, every :data:`INTERVAL` seconds and once more as it stops, by an atomic write and
rename, as ``<pid>.json`` (:class:`SnapshotWriter`, started with the node by
``server/serve.start_server``). The node that answers a scrape adds the others' snapshots
to its own live values:

- a live process (its pid exists) whose snapshot is fresh (newer than :data:`STALE`
  seconds) counts whole: counters, histograms and gauges;
- any other snapshot (a process that died, was replaced, or hangs) adds its counters and
  histograms only: what it counted happened, so the sums never go backwards when a worker is
  replaced, but its gauges describe nothing any more.

The supervisor removes the directory when it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from presenced.http.metrics import Values

if TYPE_CHECKING:
    from presenced.server.node import Node

__all__ = [
    "ENV_DIR",
    "ENV_NODE",
    "INTERVAL",
    "STALE",
    "Snapshot",
    "SnapshotWriter",
    "WorkerSnapshots",
    "from_environment",
    "pid_alive",
]

log = logging.getLogger(__name__)

ENV_DIR = "PRESENCED_WORKER_METRICS_DIR"
"""Set by the supervisor for its processes: the snapshot directory."""
ENV_NODE = "PRESENCED_WORKER_METRICS_NODE"
"""Set by the supervisor for its processes: the ``node`` label of the summed metrics."""
INTERVAL = 1.0
"""Seconds between a worker's snapshots."""
STALE = 5.0
"""A snapshot older than this (seconds) no longer counts its gauges."""


class Snapshot(msgspec.Struct):
    """One worker's values, when it wrote them, and who it is."""

    pid: int
    node: str
    written: float  # wall clock, seconds
    values: Values


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Snapshot)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkerSnapshots:
    """The snapshot directory, seen by one worker (``pid``, default this process)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        pid: int | None = None,
        wall: Callable[[], float] = time.time,
        alive: Callable[[int], bool] = pid_alive,
    ) -> None:
        self.directory = Path(directory)
        self.pid = os.getpid() if pid is None else pid
        self._wall = wall
        self._alive = alive

    def write(self, node: str, values: Values) -> None:
        """Replace this worker's snapshot, atomically (a reader never sees half a file)."""
        data = _encoder.encode(Snapshot(self.pid, node, self._wall(), values))
        final = self.directory / f"{self.pid}.json"
        temporary = self.directory / f".{self.pid}.json.tmp"
        temporary.write_bytes(data)
        os.replace(temporary, final)

    def others(self) -> list[tuple[Values, bool]]:
        """Every other worker's values, each with whether its gauges count (live and fresh).
        Unreadable files are skipped."""
        now = self._wall()
        found: list[tuple[Values, bool]] = []
        try:
            paths = list(self.directory.glob("*.json"))
        except OSError:
            return found
        for path in paths:
            if path.stem == str(self.pid):
                continue
            try:
                snapshot = _decoder.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError):
                continue  # removed meanwhile, or not ours
            live = now - snapshot.written < STALE and self._alive(snapshot.pid)
            found.append((snapshot.values, live))
        return found


def from_environment() -> tuple[WorkerSnapshots, str] | None:
    """The snapshot directory and ``node`` label the supervisor gave this worker, if any."""
    directory = os.environ.get(ENV_DIR)
    if not directory or not Path(directory).is_dir():
        return None
    return WorkerSnapshots(directory), os.environ.get(ENV_NODE) or ""


class SnapshotWriter:
    """Under ``--workers``: write this process's snapshot every :data:`INTERVAL`, and once
    more on stop. The loop makes no store or broker call (its only wait is the sleep, which
    a cancellation always ends), so its stop cannot hang on a library that swallows a
    cancellation; the pub/sub lag ping is the lease keeper's (server/cluster.py)."""

    def __init__(
        self,
        node: Node,
        values: Callable[[], Values],  # this process's own
        snapshots: WorkerSnapshots,
        interval: float = INTERVAL,
    ) -> None:
        self.node = node
        self.values = values
        self.snapshots = snapshots
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="metrics-snapshots")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._write()

    async def _run(self) -> None:
        while True:
            self._write()
            await asyncio.sleep(self.interval)

    def _write(self) -> None:
        try:
            self.snapshots.write(self.node.node_id, self.values())
        except OSError as exc:
            log.warning("cannot write the metrics snapshot: %s", exc)
