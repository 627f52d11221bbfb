"""Where an idle connection's bytes go: RSS and tracemalloc per connection, by site.

``python -m bench.memory_sites --conns 3000 --room 100`` starts ``presenced serve`` twice:

1. plain, for the resident memory per connection (VmRSS after ``--conns`` idle,
   authenticated, joined connections minus VmRSS after a warm-up of ``--warm``);
2. under tracemalloc (:mod:`bench.traced_serve`), snapshots taken after the warm-up and
   after the connections, the difference grouped by allocation site: the innermost frame
   in presenced, picows or websockets code if the traceback has one, else the innermost
   frame (allocations made by C code show its nearest Python caller). It also counts live
   objects by type, so a per-connection dict or closure shows up by name.

The clients are the benchmark's (bench/loadgen, picows, with a browser's upgrade headers),
one room membership each, rooms of ``--room`` members. Bytes are per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.loadgen.pool import WorkerPool
from bench.procs import ServerProcess, free_port, rss_kib
from bench.scenarios.base import wait_cpu_quiet
from bench.servers import REPO, SERVERS, Liveness

__all__ = ["main"]

LIVE = Liveness(25.0, 10.0, 15.0)
OWN = ("/presenced/", "/picows/", "/websockets/", "/bench/")


def _site(tb: tracemalloc.Traceback) -> str:
    """The frame that explains an allocation (see the module docstring)."""
    for frame in reversed(tb):  # a Traceback runs from the oldest frame to the newest
        if any(part in frame.filename for part in OWN) and "traced_serve" not in frame.filename:
            path = frame.filename.split("/site-packages/")[-1].split("/src/")[-1]
            return f"{path}:{frame.lineno}"
    frame = tb[-1]
    return f"{frame.filename.split('/')[-1]}:{frame.lineno} (C below)"


async def _load(
    proc: ServerProcess, pool: WorkerPool, users: list[str], first: int, room: int
) -> None:
    res = await pool.connect(f"ws://127.0.0.1:{proc.port}", "presenced", users)
    if res["failed"]:
        raise RuntimeError(f"{res['failed']} connections failed: {res['errors']}")
    pairs = [(i, f"r{i // room}") for i in range(first, first + len(users))]
    joined = await pool.join(pairs, timeout=60.0)
    if joined["failed"]:
        raise RuntimeError(f"{joined['failed']} joins failed: {joined['errors']}")


async def _run(args: argparse.Namespace, traced: bool, out: Path) -> dict[str, float]:
    kind = SERVERS["presenced"]
    port = free_port()
    argv = kind.argv(port, LIVE)
    prefix = str(out / "snap")
    if traced:
        argv = [sys.executable, "-m", "bench.traced_serve", prefix, *argv[4:]]
    proc = ServerProcess(argv, port, None, str(REPO), out / f"server-{traced}.log")
    pool = WorkerPool(max(1, -(-(args.conns + args.warm) // 10000)), None)
    await pool.start()
    dumps = 0

    async def snapshot() -> None:
        nonlocal dumps
        dumps += 1
        os.kill(proc.pid, signal.SIGUSR1)
        done = Path(f"{prefix}.{dumps}.done")
        deadline = time.monotonic() + 300
        while not done.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("no snapshot from the server")
            await asyncio.sleep(0.2)

    try:
        await proc.wait_listening()
        await wait_cpu_quiet(proc.pid)
        warm = [f"w{i}" for i in range(args.warm)]
        await _load(proc, pool, warm, 0, args.room)
        await asyncio.sleep(args.settle)
        if traced:
            await snapshot()
        rss0 = rss_kib(proc.pid)
        users = [f"u{i}" for i in range(args.conns)]
        await _load(proc, pool, users, args.warm, args.room)
        await asyncio.sleep(args.settle)
        rss1 = rss_kib(proc.pid)
        if traced:
            await snapshot()
        return {"rss_b_per_conn": (rss1 - rss0) * 1024 / args.conns}
    finally:
        await proc.stop()
        await pool.close()


def _report(out: Path, conns: int, top: int) -> None:
    a = tracemalloc.Snapshot.load(str(out / "snap.1.snap"))
    b = tracemalloc.Snapshot.load(str(out / "snap.2.snap"))
    sites: dict[str, list[int]] = {}
    for stat in b.compare_to(a, "traceback"):
        site = _site(stat.traceback)
        entry = sites.setdefault(site, [0, 0])
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    total = sum(v[0] for v in sites.values())
    print(f"\ntracemalloc: {total / conns:,.0f} B per connection in all; by site:")
    for site, (size, count) in sorted(sites.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {size / conns:8,.0f} B  {count / conns:6.2f} blocks  {site}")
    ta = json.loads((out / "snap.1.types").read_text())
    tb = json.loads((out / "snap.2.types").read_text())
    rows = []
    for key, (count, size) in tb.items():
        c0, s0 = ta.get(key, (0, 0))
        if count - c0 > conns // 4:
            rows.append((size - s0, count - c0, key))
    print("\nlive objects added per connection (gc-tracked, sys.getsizeof, not contents):")
    for size, count, key in sorted(rows, reverse=True)[:top]:
        print(f"  {size / conns:8,.0f} B  {count / conns:6.2f} objects  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conns", type=int, default=3000)
    parser.add_argument("--warm", type=int, default=500)
    parser.add_argument("--room", type=int, default=100)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-trace", action="store_true", help="RSS only")
    parser.add_argument("--keep", type=Path, help="keep the snapshots in this directory")
    parser.add_argument("--report", type=Path, help="only report on the snapshots kept here")
    args = parser.parse_args()
    if args.report:
        _report(args.report, args.conns, args.top)
        return
    with tempfile.TemporaryDirectory(prefix="memsites-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        plain = asyncio.run(_run(args, False, out))
        print(f"RSS: {plain['rss_b_per_conn']:,.0f} B per connection (rooms of {args.room})")
        if not args.no_trace:
            traced = asyncio.run(_run(args, True, out))
            print(f"RSS under tracemalloc: {traced['rss_b_per_conn']:,.0f} B per connection")
            _report(out, args.conns, args.top)


if __name__ == "__main__":
    main()
