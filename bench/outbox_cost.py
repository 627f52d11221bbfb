"""What the event export costs the fan-out: the same node with and without an event sink.

``python -m bench.outbox_cost OUT.json ROUNDS RATE SECONDS STEPS [CONFIG ...]``

Four configurations of the working tree's presenced, each round in a rotating order (as
:mod:`bench.ab_trees` rotates trees), a fresh server each time (pinned to core 0):

- ``memory``: the default memory store, no sink;
- ``memory+sink``: the memory store and one Redis Streams sink (the node's in-process queue
  and its runner);
- ``valkey``: a Valkey store, no sink (the transition scripts write no event);
- ``valkey+outbox``: the Valkey store and the same sink: every transition script also
  numbers and appends its event to the store's outbox, and the node (the only one, so the
  leader) reads it through the sink's consumer group, delivers and acks.

The store's Valkey and the sink's Valkey are two processes pinned to the generator core,
shared by every configuration (each run with its own key prefix and stream). A server first
gets 20 rooms of 100 members (:func:`bench.scenarios.throughput.setup_rooms`): the joins'
CPU (node and store, while the 2,000 joins are made and until the export is settled) over
the number of joins is the cost per **presence change**. Then STEPS fixed-rate throughput
steps (``bench.scenarios.throughput.step``, RATE deliveries/s for SECONDS s): CPU per
**delivery**, and per message (x 99 recipients). Each window is closed only after the sink
stream stopped growing (the dispatcher caught up), so the export's own work is inside it.
CONFIG names the configurations to run (all four by default): the Valkey store saturates
the node at a far lower rate than memory (docs/benchmarks.md), so each store is run at a
rate of its own. Prints each step and the medians per configuration with their ratio to the
configuration without a sink on the same store; OUT.json keeps every figure.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.loadgen.pool import WorkerPool
from bench.procs import cpu_times, raise_open_files
from bench.scenarios.base import Ctx, Sizes
from bench.scenarios.capacity import valkey
from bench.scenarios.throughput import setup_rooms, step

__all__ = ["main"]

ROOMS, MEMBERS = 20, 100
CONFIGS = ("memory", "memory+sink", "valkey", "valkey+outbox")
BASELINE = {"memory+sink": "memory", "valkey+outbox": "valkey"}


async def _entries_added(sink: Redis, stream: str) -> int:
    """Events the sink stream ever took (``entries-added``: trimming does not lower it)."""
    if not await sink.exists(stream):
        return 0
    info = await sink.xinfo_stream(stream)
    return int(info.get("entries-added", info.get("length", 0)))


async def _command_calls(client: Redis) -> dict[str, int]:
    """The store's command counts so far (INFO commandstats), by command name."""
    stats = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


async def _settled(sink: Redis, stream: str | None, quiet: float = 0.5, cap: float = 30.0) -> int:
    """Wait until the sink stream has not grown for ``quiet`` s (at most ``cap`` s); its
    count. Without a sink: no wait."""
    if stream is None:
        return 0
    last, since = -1, time.monotonic()
    deadline = since + cap
    while time.monotonic() < deadline:
        n = await _entries_added(sink, stream)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        await asyncio.sleep(0.1)
    return last


async def run(
    out: Path, rounds: int, rate: float, seconds: float, steps: int, configs: tuple[str, ...]
) -> dict[str, Any]:
    pool = WorkerPool(1, 1)
    await pool.start()
    ctx = Ctx(
        sizes=Sizes(tp_rooms=ROOMS, tp_members=MEMBERS),
        pool=pool,
        server_core=0,
        generator_core=1,
        log_dir=Path(tempfile.mkdtemp(prefix="presenced-outbox-")),
        quiet_wait=20.0,
        log=lambda text: print(text, flush=True),
    )
    results: dict[str, Any] = {
        "rate": rate,
        "joins": {c: [] for c in configs},
        "steps": {c: [] for c in configs},
    }
    try:
        async with (
            valkey(ctx, "store", ctx.generator_core) as store,
            valkey(ctx, "sink", ctx.generator_core) as sink_server,
        ):
            results["valkey_version"] = store.version
            sink = Redis(host="127.0.0.1", port=sink_server.port)
            try:
                for r in range(rounds):
                    shift = r % len(configs)
                    order = list(configs[shift:] + configs[:shift])
                    for name in order[::-1] if r % 2 else order:
                        await _one(ctx, results, name, r, store, sink, sink_server.port, rate,
                                   seconds, steps)  # fmt: skip
                        out.write_text(json.dumps(results, indent=1))
            finally:
                await sink.aclose()
    finally:
        await pool.close()
    return results


async def _one(
    ctx: Ctx,
    results: dict[str, Any],
    name: str,
    r: int,
    store: Any,
    sink: Redis,
    sink_port: int,
    rate: float,
    seconds: float,
    steps: int,
) -> None:
    extra: list[str] = []
    stream: str | None = None
    if name.startswith("valkey"):
        extra += ["--redis", store.url, "--redis-prefix", f"ob{r}{name[-1]}"]
    if "+" in name:
        stream = f"events-{r}-{name.replace('+', '-')}"
        extra += ["--redis-stream-sinks", f"redis://127.0.0.1:{sink_port}/0?stream={stream}"]
    conns = ROOMS * MEMBERS
    async with ctx.server("presenced", ctx.sizes.live, f"{name}-{r}", conns, tuple(extra)) as proc:
        pids = {"node": proc.pid, "store": store.proc.pid}
        c0 = {k: cpu_times(p).total for k, p in pids.items()}
        t0 = time.monotonic()
        rooms = await setup_rooms(ctx, proc, "presenced", ROOMS, MEMBERS)
        events = await _settled(sink, stream)
        joins = {
            "round": r,
            "seconds": time.monotonic() - t0,
            "events": events,
            **{
                f"{k}_us_per_join": (cpu_times(p).total - c0[k]) / conns * 1e6
                for k, p in pids.items()
            },
        }
        results["joins"][name].append(joins)
        print(
            f"r{r} {name:14s} joins: node {joins['node_us_per_join']:.0f} us, store "
            f"{joins['store_us_per_join']:.0f} us per join (connect and join), {events} events",
            flush=True,
        )
        counter = Redis.from_url(store.url)
        for k in range(steps):
            before = await _entries_added(sink, stream) if stream else 0
            calls0 = await _command_calls(counter)
            c0 = {k2: cpu_times(p).total for k2, p in pids.items()}
            st = await step(ctx, proc.pid, rooms, rate, seconds)
            after = await _settled(sink, stream)
            used = {k2: cpu_times(p).total - c0[k2] for k2, p in pids.items()}
            calls1 = await _command_calls(counter)
            delivered = max(1, st["delivered"])
            # The store's commands per message (the node's, and this counter's two INFOs).
            per_message = {
                c: (n - calls0.get(c, 0)) / max(1, st["messages"])
                for c, n in calls1.items()
                if n > calls0.get(c, 0)
            }
            row = {
                "round": r,
                "step": k,
                **st,
                "events": after - before if stream else 0,
                "node_us_per_delivery_settled": used["node"] / delivered * 1e6,
                "store_us_per_delivery": used["store"] / delivered * 1e6,
                "store_commands_per_message": per_message,
            }
            results["steps"][name].append(row)
            print(
                f"r{r} {name:14s} step {k}: {st['deliveries_s']:8.0f}/s, node "
                f"{row['cpu_us_per_delivery']:.2f} "
                f"(settled {row['node_us_per_delivery_settled']:.2f})"
                f" us, store {row['store_us_per_delivery']:.2f} us per delivery, p99 "
                f"{st['p99_ms']:.1f} ms, lost {st['lost']}, events {row['events']}, other "
                f"processes {st['foreign_core0_pct']:.0f} / {st['foreign_core1_pct']:.0f} %",
                flush=True,
            )
            top = sorted(per_message.items(), key=lambda kv: -kv[1])[:8]
            print("    commands per message: " + ", ".join(f"{c} {n:.1f}" for c, n in top))
        await counter.aclose()


def _median_of_rounds(rows: list[dict[str, Any]], field: str) -> float:
    rounds: dict[int, list[float]] = {}
    for row in rows:
        rounds.setdefault(row["round"], []).append(float(row[field]))
    return statistics.median(statistics.median(v) for v in rounds.values())


def _summary(results: dict[str, Any]) -> None:
    fields = {
        "steps": (
            "node_us_per_delivery_settled",
            "store_us_per_delivery",
            "p99_ms",
            "deliveries_s",
        ),
        "joins": ("node_us_per_join", "store_us_per_join"),
    }
    for part, names in fields.items():
        for name in results[part]:
            rows = results[part][name]
            if not rows:
                continue
            cells = []
            for field in names:
                value = _median_of_rounds(rows, field)
                base = BASELINE.get(name)
                ratio = ""
                if base and results[part].get(base):
                    against = _median_of_rounds(results[part][base], field)
                    ratio = f" ({value / against:.2f}x)" if against > 0 else " (-)"
                cells.append(f"{field} {value:.2f}{ratio}")
            print(f"{part:5s} {name:14s} " + ", ".join(cells))


def main(argv: list[str]) -> None:
    out, rounds, rate, seconds, steps, *names = argv
    configs = tuple(names) or CONFIGS
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown configuration(s) {sorted(unknown)}; expected some of {CONFIGS}")
    raise_open_files()
    os.sched_setaffinity(0, {1})
    import uvloop

    results = uvloop.run(
        run(Path(out), int(rounds), float(rate), float(seconds), int(steps), configs)
    )
    _summary(results)


if __name__ == "__main__":
    main(sys.argv[1:])
