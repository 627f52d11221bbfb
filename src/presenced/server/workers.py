"""``presenced serve --workers N``: N processes on one port, each a node on the shared store.

The kernel spreads new connections over the workers (SO_REUSEPORT), so one machine goes past
the open-file limit of a single process. Each worker is an ordinary node with its own id
(``BASE-wI``) and lease: a worker that crashes is reaped by its siblings like any dead node
(its clients resume on them), and the supervisor starts a new one in its place. SIGINT and
SIGTERM are passed on, so every worker drains.

The admin port is served by one more process, ``BASE-api``: a node without a client port
(``port = off``). On a shared store any node answers the API for the whole cluster, so the
API's requests (each costs a few hundred microseconds of CPU, most of it the kernel's TCP
work: docs/benchmarks.md) then take nothing from the workers' fan-out. It is supervised and
restarted like a worker.

Every process leaves snapshots of its metrics in a directory the supervisor makes, so that
``/metrics`` on the admin node sums them all (:mod:`presenced.http.worker_metrics`); the
supervisor removes it on exit.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.process import BaseProcess

from presenced.config import Settings
from presenced.http.worker_metrics import ENV_DIR, ENV_NODE
from presenced.logs import setup_logging
from presenced.server.serve import run_single

__all__ = ["run", "run_workers"]

log = logging.getLogger("presenced")

RESTART_WINDOW = 60.0  # seconds
MAX_RESTARTS = 10  # per worker slot within the window: beyond that, give up on the slot


def _worker(settings: Settings, log_level: str) -> None:
    """Entry point of one worker process."""
    setup_logging(log_level, settings.log_format)
    raise SystemExit(run_single(settings, reuse_port=True))


def run(settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM (with worker processes when asked); the exit code."""
    if settings.workers > 1:
        return run_workers(settings)
    return run_single(settings)


def run_workers(settings: Settings) -> int:
    """Start ``settings.workers`` workers and supervise them until SIGINT/SIGTERM."""
    base = settings.node_id or f"{socket.gethostname()}-{os.getpid()}"
    # Every process's metrics snapshots, summed by the admin node's /metrics
    # (presenced.http.worker_metrics); the children inherit the environment.
    metrics_dir = tempfile.mkdtemp(prefix="presenced-metrics-")
    os.environ[ENV_DIR] = metrics_dir
    os.environ[ENV_NODE] = base
    try:
        return _supervise(settings, base)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(settings: Settings, base: str) -> int:
    context = multiprocessing.get_context("spawn")
    stopping = False

    slots = [
        (f"w{i}", settings.replace(workers=1, node_id=f"{base}-w{i}", admin_port=None))
        for i in range(settings.workers)
    ]
    if settings.admin_port is not None:
        slots.append(("api", settings.replace(workers=1, node_id=f"{base}-api", port=None)))

    def start(index: int) -> BaseProcess:
        name, worker_settings = slots[index]
        process = context.Process(
            target=_worker,
            args=(worker_settings, settings.log_level),
            name=f"presenced-{name}",
        )
        process.start()
        return process

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    processes = [start(i) for i in range(len(slots))]
    restarts: list[list[float]] = [[] for _ in processes]
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    log.info(
        "presenced supervising %d workers on %s:%s (nodes %s-w0..w%d)%s",
        settings.workers,
        settings.host,
        settings.port,
        base,
        settings.workers - 1,
        "" if len(slots) == settings.workers else f", admin API on its own node {base}-api",
    )
    while True:
        alive = [p for p in processes if p.is_alive()]
        if stopping and not alive:
            break
        for index, process in enumerate(processes):
            if stopping or process.is_alive():
                continue
            recent = [t for t in restarts[index] if time.monotonic() - t < RESTART_WINDOW]
            if len(recent) >= MAX_RESTARTS:
                continue
            log.error("worker %d exited (%s): starting it again", index, process.exitcode)
            restarts[index] = [*recent, time.monotonic()]
            processes[index] = start(index)
        if not stopping and not any(p.is_alive() for p in processes):
            log.error("every worker keeps failing: giving up")
            return 1
        for process in processes:
            process.join(timeout=0.2)  # supervision tick: wakes on exits, bounded
    return 0
