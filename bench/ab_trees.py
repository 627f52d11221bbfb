"""Fan-out CPU per delivery of several source trees, alternated: an A/B for a change.

``python -m bench.ab_trees OUT.json ROUNDS RATE SECONDS STEPS NAME=SRC_DIR [NAME=SRC_DIR ...]``

Each round starts a fresh presenced from each tree in turn (``PYTHONPATH=SRC_DIR``, server
pinned to core 0, generator to core 1, as ``bench.run`` does), sets up 20 rooms of 100
members (the api_load scenario's rooms) and runs STEPS fixed-rate throughput steps
(``bench.scenarios.throughput.step``: RATE deliveries/s for SECONDS s). The order of the
trees rotates and reverses from round to round, so a drift of the shared machine's load
falls on every tree alike. Prints each step and the medians per tree; OUT.json keeps every
step. On a busy machine the per-step figures move by 10 % or more: compare medians of
several rounds, and check the loop itself with ``bench.fanout_path``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.loadgen.pool import WorkerPool
from bench.procs import raise_open_files
from bench.scenarios.base import Ctx, Sizes
from bench.scenarios.throughput import setup_rooms, step

__all__ = ["main"]

ROOMS, MEMBERS = 20, 100


async def run(
    out: Path, rounds: int, rate: float, seconds: float, steps: int, trees: dict[str, str]
) -> dict[str, list[dict[str, Any]]]:
    names = list(trees)
    pool = WorkerPool(1, 1)
    await pool.start()
    ctx = Ctx(
        sizes=Sizes(tp_rooms=ROOMS, tp_members=MEMBERS),
        pool=pool,
        server_core=0,
        generator_core=1,
        log_dir=Path(tempfile.mkdtemp(prefix="presenced-ab-")),
        quiet_wait=20.0,
        log=lambda text: print(text, flush=True),
    )
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    try:
        for r in range(rounds):
            shift = r % len(names)
            order = names[shift:] + names[:shift]
            for name in order[::-1] if r % 2 else order:
                os.environ["PYTHONPATH"] = trees[name]
                conns = ROOMS * MEMBERS
                async with ctx.server("presenced", ctx.sizes.live, f"{name}-{r}", conns) as proc:
                    rooms = await setup_rooms(ctx, proc, "presenced", ROOMS, MEMBERS)
                    for k in range(steps):
                        st = await step(ctx, proc.pid, rooms, rate, seconds)
                        row = {"round": r, "step": k, **st}
                        results[name].append(row)
                        print(
                            f"r{r} {name:10s} step {k}: {st['deliveries_s']:8.0f}/s, user "
                            f"{st['user_us_per_delivery']:.2f} / user+sys "
                            f"{st['cpu_us_per_delivery']:.2f} us per delivery, p99 "
                            f"{st['p99_ms']:.1f} ms, lost {st['lost']}, other processes "
                            f"{st['foreign_core0_pct']:.0f} / {st['foreign_core1_pct']:.0f} %",
                            flush=True,
                        )
                out.write_text(json.dumps(results, indent=1))
    finally:
        await pool.close()
    return results


def _summary(results: dict[str, list[dict[str, Any]]]) -> None:
    for name, rows in results.items():
        rounds: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            rounds.setdefault(row["round"], []).append(row)
        user = [statistics.median(x["user_us_per_delivery"] for x in v) for v in rounds.values()]
        total = [statistics.median(x["cpu_us_per_delivery"] for x in v) for v in rounds.values()]
        print(
            f"{name:10s} median of the rounds' medians: user {statistics.median(user):.2f}, "
            f"user+sys {statistics.median(total):.2f} us per delivery"
        )


def main(argv: list[str]) -> None:
    out, rounds, rate, seconds, steps, *pairs = argv
    trees = dict(pair.split("=", 1) for pair in pairs)
    raise_open_files()
    os.sched_setaffinity(0, {1})
    import uvloop

    results = uvloop.run(
        run(Path(out), int(rounds), float(rate), float(seconds), int(steps), trees)
    )
    _summary(results)


if __name__ == "__main__":
    main(sys.argv[1:])
