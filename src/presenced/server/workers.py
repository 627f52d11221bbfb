"""``presenced serve --workers N``: N processes on one port, each a node on the shared store.

The kernel spreads new connections over the workers (SO_REUSEPORT), so one machine goes past
the open-file limit of a single process. Each worker is an ordinary node with its own id
(``BASE-wI``) and lease: a worker that crashes is reaped by its siblings like any dead node
(its clients resume on them), and the supervisor starts a new one in its place. SIGINT and
SIGTERM are passed on, so every worker drains.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess

from presenced.config import Settings
from presenced.server.serve import run_single

__all__ = ["run", "run_workers"]

log = logging.getLogger("presenced")

RESTART_WINDOW = 60.0  # seconds
MAX_RESTARTS = 10  # per worker slot within the window: beyond that, give up on the slot


def _worker(settings: Settings, log_level: str) -> None:
    """Entry point of one worker process."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    raise SystemExit(run_single(settings, reuse_port=True))


def run(settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM (with worker processes when asked); the exit code."""
    if settings.workers > 1:
        return run_workers(settings)
    return run_single(settings)


def run_workers(settings: Settings) -> int:
    """Start ``settings.workers`` workers and supervise them until SIGINT/SIGTERM."""
    base = settings.node_id or f"{socket.gethostname()}-{os.getpid()}"
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start(index: int) -> BaseProcess:
        worker_settings = settings.replace(workers=1, node_id=f"{base}-w{index}")
        process = context.Process(
            target=_worker,
            args=(worker_settings, settings.log_level),
            name=f"presenced-w{index}",
        )
        process.start()
        return process

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    processes = [start(i) for i in range(settings.workers)]
    restarts: list[list[float]] = [[] for _ in processes]
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    log.info(
        "presenced supervising %d workers on %s:%d (nodes %s-w0..w%d)",
        settings.workers,
        settings.host,
        settings.port,
        base,
        settings.workers - 1,
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
