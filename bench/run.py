"""Run the benchmark suite: ``python -m bench.run [--quick] [--scenarios ...]``.

Every scenario runs against every chosen server in the same invocation, ``--runs``
rounds (servers in a rotated order each round), each run on a fresh server process
pinned to core 0 while the generator (several worker processes, uvloop, picows
clients, one loopback source address each) runs on core 1. Prints progress, then one
Markdown table per scenario: median (min - max) per server and presenced / peer ratios;
``--json FILE`` keeps every per-run figure, the sizes and the versions.

Scenarios (docs/benchmarks.md explains each and quotes the figures):

- ``idle``: 5k / 10k / 19k authenticated, heartbeating connections in rooms of 10, 100
  and 1,000 (a fresh server each): memory per connection, idle CPU, connect rate;
- ``latency``: one room of 1,000 members, 20 messages/s: delivery latency, losses;
- ``latency5k``: the same with 5,000 members (not in the default set: joining 5,000
  members one by one sends 12.5 million member.joined frames before it can start);
- ``throughput``: 100 rooms of 100: highest deliveries/s with p99 <= 100 ms, no loss;
- ``presence``: in the 1,000-member room, members leave and join one at a time: time
  until every other member has seen it;
- ``detection``: a client that stops reading and one that closes: time until the room
  sees member.left, against heartbeat interval + timeout (+ grace);
- ``capacity`` (not in the default set, presenced only, not pinned): 100,000
  connections on ``presenced serve --workers 6`` over a fresh Valkey, the generator
  spread over 10 processes; ``--cap-total`` / ``--cap-workers`` change the size.
- ``api_load`` (not in the default set, presenced only): 20 rooms of 100 at a fixed
  delivery rate, with 0 / 100 / 300 / 1000 admin API requests/s alongside (and each
  request kind alone): server CPU per delivery, delivery p99, API latency per kind, CPU
  per request; then the throughput search with and without 200 API requests/s.
  ``--api-deliveries`` sets the fixed delivery rate (default 12,000/s).
- ``api_offload`` (not in the default set, presenced only, on a fresh Valkey): the same
  rooms at 3,000 deliveries/s with the API's requests (30 / 100 req/s of the mix) sent to
  the fan-out node's own admin port or to an admin-only node (``serve --port off``) on the
  generator core: the fan-out node's CPU per delivery and delivery p50/p99 against no API
  load, API latency per kind, the admin-only node's and Valkey's CPU; then each kind alone
  on the admin-only node: its CPU per request.
  ``--off-deliveries`` sets its delivery rate (default 3,000/s), ``--off-rates`` the API
  rates, ``--off-cycles`` the cycles per run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.loadgen.pool import WorkerPool
from bench.procs import raise_open_files
from bench.scenarios.api_load import api_tables, run_api_load, step_labels
from bench.scenarios.api_offload import offload_tables, run_api_offload
from bench.scenarios.base import PER_WORKER, Ctx, Sizes
from bench.scenarios.capacity import capacity_metrics, run_capacity
from bench.scenarios.detection import run_detection
from bench.scenarios.idle import run_idle
from bench.scenarios.room import run_room
from bench.scenarios.throughput import run_throughput
from bench.servers import SERVERS, ensure_node_modules, versions
from bench.stats import Metric, table

__all__ = ["SCENARIOS", "main", "run_suite", "tables"]

SCENARIOS = [
    "idle",
    "latency",
    "latency5k",
    "throughput",
    "presence",
    "detection",
    "capacity",
    "api_load",
    "api_offload",
]
ONLY_PRESENCED = {"capacity", "api_load", "api_offload"}  # scenarios the peers take no part in
DEFAULT_SCENARIOS = ["idle", "latency", "throughput", "presence", "detection"]
SERVER_CORE = 0
GENERATOR_CORE = 1

Runner = Callable[[Ctx, str, str], Awaitable[dict[str, Any]]]


def _runners(scenarios: list[str], sizes: Sizes) -> list[tuple[str, Runner]]:
    """(result key, runner) per measurement; latency and presence share one room."""
    out: list[tuple[str, Runner]] = []
    if "idle" in scenarios:
        out.append(("idle", run_idle))
    lat, pres = "latency" in scenarios, "presence" in scenarios
    if lat or pres:
        members = sizes.room_members[0]

        async def room(ctx: Ctx, name: str, tag: str) -> dict[str, Any]:
            return await run_room(ctx, name, tag, members, lat, pres)

        out.append(("room", room))
    if "latency5k" in scenarios:

        async def room5k(ctx: Ctx, name: str, tag: str) -> dict[str, Any]:
            return await run_room(ctx, name, tag, 5 * sizes.room_members[0], True, False)

        out.append(("room5k", room5k))
    if "throughput" in scenarios:
        out.append(("throughput", run_throughput))
    if "detection" in scenarios:
        out.append(("detection", run_detection))
    if "capacity" in scenarios:
        out.append(("capacity", run_capacity))
    if "api_load" in scenarios:
        out.append(("api_load", run_api_load))
    if "api_offload" in scenarios:
        out.append(("api_offload", run_api_offload))
    return out


async def run_suite(
    scenarios: list[str],
    servers: list[str],
    runs: int,
    sizes: Sizes,
    workers: int,
    pin: bool,
    log_dir: Path,
    quiet_wait: float = 5.0,
) -> dict[str, list[dict[str, Any]]]:
    """Every scenario x round x server; returns per-run results keyed by scenario."""
    pool = WorkerPool(workers, GENERATOR_CORE if pin else None)
    await pool.start()
    ctx = Ctx(
        sizes=sizes,
        pool=pool,
        server_core=SERVER_CORE if pin else None,
        generator_core=GENERATOR_CORE if pin else None,
        log_dir=log_dir,
        quiet_wait=quiet_wait,
        log=lambda text: print(text, flush=True),
    )
    results: dict[str, list[dict[str, Any]]] = {}
    started = time.monotonic()
    try:
        for key, runner in _runners(scenarios, sizes):
            results[key] = []
            for rnd in range(runs):
                shift = rnd % len(servers)
                for name in servers[shift:] + servers[:shift]:
                    if key in ONLY_PRESENCED and name != "presenced":
                        continue
                    t0 = time.monotonic()
                    print(f"[{t0 - started:6.0f} s] {key} round {rnd + 1}: {name}", flush=True)
                    try:
                        res = await runner(ctx, name, f"{key}-{rnd + 1}")
                    except Exception as exc:  # recorded; the other runs go on
                        res = {"server": name, "error": f"{type(exc).__name__}: {exc}"}
                        print(f"    {name} FAILED: {res['error']}", flush=True)
                    res["round"] = rnd + 1
                    res["seconds"] = time.monotonic() - t0
                    results[key].append(res)
    finally:
        await pool.close()
    return results


def _idle_metrics(sizes: Sizes) -> list[Metric]:
    out: list[Metric] = []
    levels, top = sizes.idle_levels, sizes.idle_levels[-1]
    per_room = (
        ("b_per_conn", "Bytes per connection at {n:,}, rooms of {room:,}", "{:,.0f}"),
        ("idle_cpu_pct", "Idle CPU at {n:,}, rooms of {room:,} (% of a core)", "{:.2f}"),
    )
    for key, label, fmt in per_room:
        for room in sizes.idle_rooms:
            for n in levels:
                out.append(Metric(f"{key}_{n}_r{room}", label.format(n=n, room=room), fmt))
    r = f"_r{sizes.idle_rooms[0]}"
    if sizes.idle_pings:
        out.append(
            Metric(
                f"idle_cpu_pings_pct_{top}",
                f"Idle CPU at {top:,}, rooms of {sizes.idle_rooms[0]:,}, pings only (% of a core)",
                "{:.2f}",
            )
        )
    for n in levels:
        out.append(Metric(f"connect_rate_{n}{r}", f"Connect rate up to {n:,} (conn/s)", "{:,.0f}"))
    out += [
        Metric(f"rss_mib_{top}{r}", f"Server RSS at {top:,} (MiB)"),
        Metric(f"rss_base_mib{r}", "Server RSS before connections (MiB)"),
        Metric(f"hb_acks_s_{top}{r}", f"Heartbeat acks/s at {top:,}", "{:,.0f}"),
        Metric(f"gen_cpu_pct_{top}{r}", f"Generator CPU at {top:,} (% of a core)", "{:.1f}"),
        Metric(
            f"foreign_core0_pct_{top}{r}", f"Other processes on core 0 at {top:,} (%)", "{:.0f}"
        ),
    ]
    return out


ROOM_LATENCY = [
    Metric("lat_p50_ms", "Delivery latency p50 (ms)", "{:.2f}"),
    Metric("lat_p99_ms", "Delivery latency p99 (ms)", "{:.2f}"),
    Metric("lat_max_ms", "Delivery latency max (ms)", "{:.1f}"),
    Metric("lat_lost", "Deliveries lost", "{:.0f}"),
    Metric("lat_deliveries", "Deliveries received", "{:,.0f}"),
    Metric("lat_cpu_us_per_delivery", "Server CPU per delivery (us)", "{:.2f}"),
    Metric("lat_server_cpu_pct", "Server CPU (% of core 0)", "{:.0f}"),
    Metric("lat_gen_cpu_pct", "Generator CPU (% of core 1)", "{:.0f}"),
    Metric("lat_foreign_core0_pct", "Other processes on core 0 (%)", "{:.0f}"),
    Metric("lat_foreign_core1_pct", "Other processes on core 1 (%)", "{:.0f}"),
    Metric("setup_s", "Setup: connect + join all (s)", "{:.1f}"),
    Metric("join_s", "Forming the room: all joins (s)", "{:.1f}"),
    Metric("form_frames", "Forming the room: member frames received", "{:,.0f}"),
    Metric("form_pct_of_naive", "Forming the room: frames as % of naive M(M-1)/2", "{:.2f}"),
]
PRESENCE = [
    Metric("pres_p50_ms", "Time until all others saw it, p50 (ms)", "{:.2f}"),
    Metric("pres_p99_ms", "Time until all others saw it, p99 (ms)", "{:.2f}"),
    Metric("pres_max_ms", "Time until all others saw it, max (ms)", "{:.2f}"),
    Metric("pres_alone_p99_ms", "p99 of a change alone (the leaves, after 0.1 s quiet)", "{:.2f}"),
    Metric("pres_after_p99_ms", "p99 of a change right after another (the joins)", "{:.2f}"),
    Metric("pres_events", "Events timed", "{:.0f}"),
    Metric("pres_missed", "Events not seen by all within 10 s", "{:.0f}"),
]
THROUGHPUT = [
    Metric("deliveries_s", "Highest deliveries/s with p99 <= 100 ms, no loss", "{:,.0f}"),
    Metric("user_us_per_delivery", "Server user CPU per delivery (us)", "{:.2f}"),
    Metric("cpu_us_per_delivery", "Server user+sys CPU per delivery (us)", "{:.2f}"),
    Metric("capacity_s", "Deliveries per server CPU second (user+sys)", "{:,.0f}"),
    Metric("p50_ms", "p50 at that rate (ms)", "{:.2f}"),
    Metric("p99_ms", "p99 at that rate (ms)", "{:.2f}"),
    Metric("server_cpu_pct", "Server CPU at that rate (% of core 0)", "{:.0f}"),
    Metric("gen_cpu_pct", "Generator CPU at that rate (% of core 1)", "{:.0f}"),
    Metric("foreign_core0_pct", "Other processes on core 0 at that rate (%)", "{:.0f}"),
    Metric("foreign_core1_pct", "Other processes on core 1 at that rate (%)", "{:.0f}"),
    Metric("fail_target_s", "First failing step (deliveries/s offered)", "{:,.0f}"),
    Metric("fail_p99_ms", "p99 in the first failing step (ms)", "{:.1f}"),
    Metric("fail_gen_cpu_pct", "Generator CPU in that step (% of core 1)", "{:.0f}"),
]
DETECTION = [
    Metric("paused_median_s", "Paused client: median (s)", "{:.2f}"),
    Metric("paused_max_s", "Paused client: max (s)", "{:.2f}"),
    Metric("closed_median_s", "Closed client: median (s)", "{:.2f}"),
    Metric("closed_max_s", "Closed client: max (s)", "{:.2f}"),
    Metric("bound_s", "Configured bound: interval + timeout (+ grace) (s)", "{:g}"),
    Metric("paused_missed", "Paused clients not seen leaving", "{:.0f}"),
    Metric("closed_missed", "Closed clients not seen leaving", "{:.0f}"),
]


def tables(results: dict[str, list[dict[str, Any]]], servers: list[str], sizes: Sizes) -> str:
    """Markdown: one table per measurement that ran."""
    parts: list[str] = []
    for key, runs in results.items():
        if key == "idle":
            parts.append("### Idle capacity\n\n" + table(runs, servers, _idle_metrics(sizes)))
        elif key in ("room", "room5k"):
            members = runs[0].get("members", "?") if runs else "?"
            if any("lat_p50_ms" in r for r in runs):
                parts.append(
                    f"### Fan-out latency, one room of {members} members\n\n"
                    + table(runs, servers, ROOM_LATENCY)
                )
            if any("pres_p50_ms" in r for r in runs):
                parts.append(
                    f"### Presence propagation, room of {members}\n\n"
                    + table(runs, servers, PRESENCE)
                )
        elif key == "throughput":
            parts.append("### Fan-out throughput\n\n" + table(runs, servers, THROUGHPUT))
        elif key == "detection":
            parts.append("### Detection\n\n" + table(runs, servers, DETECTION))
        elif key == "capacity":
            workers = runs[0].get("cap_workers", "?") if runs else "?"
            parts.append(
                f"### Capacity, `serve --workers {workers}` on Valkey (not pinned)\n\n"
                + table(runs, ["presenced"], capacity_metrics(sizes))
            )
        elif key == "api_load":
            parts.append(
                f"### Admin API under fan-out load: {sizes.api_rooms} rooms of "
                f"{sizes.api_members}, {sizes.api_deliveries_s:,.0f} deliveries/s\n\n"
                + api_tables(runs, [step[0] for step in step_labels(sizes)])
            )
        elif key == "api_offload":
            parts.append(
                f"### Admin API on its own node (Valkey): {sizes.api_rooms} rooms of "
                f"{sizes.api_members}, {sizes.off_deliveries_s:,.0f} deliveries/s\n\n"
                + offload_tables(runs, sizes)
            )
        failed = [r for r in runs if "error" in r]
        for r in failed:
            parts.append(f"- {key}, {r['server']}, round {r['round']}: FAILED {r['error']}")
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    """Parse options, pin, run, print the tables (and write the JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (seconds)")
    parser.add_argument(
        "--scenarios",
        type=lambda v: v.split(","),
        default=DEFAULT_SCENARIOS,
        help=f"comma-separated, from {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--servers",
        type=lambda v: v.split(","),
        default=list(SERVERS),
        help=f"comma-separated, from {', '.join(SERVERS)}",
    )
    parser.add_argument("--runs", type=int, default=None, help="rounds (default 2; quick 1)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"generator processes at most (default: {PER_WORKER:,} connections each)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin to cores 0 and 1")
    parser.add_argument(
        "--quiet-wait", type=float, default=5.0, help="max s to wait for quiet cores per run"
    )
    parser.add_argument("--json", type=Path, help="write every per-run figure here")
    parser.add_argument("--cap-total", type=int, help="capacity: connections in all")
    parser.add_argument("--cap-workers", type=int, help="capacity: server worker processes")
    parser.add_argument(
        "--api-deliveries", type=float, help="api_load: the fixed delivery rate (deliveries/s)"
    )
    parser.add_argument(
        "--api-search-rate",
        type=float,
        help="api_load: API req/s of the second throughput search (0: no searches)",
    )
    parser.add_argument(
        "--off-rates",
        type=lambda v: tuple(float(x) for x in v.split(",")),
        help="api_offload: comma-separated API req/s (default 30,100)",
    )
    parser.add_argument("--off-cycles", type=int, help="api_offload: cycles per run (default 3)")
    parser.add_argument(
        "--off-deliveries", type=float, help="api_offload: the fixed delivery rate (default 3000)"
    )
    args = parser.parse_args(argv)
    bad = set(args.scenarios) - set(SCENARIOS) or set(args.servers) - set(SERVERS)
    if bad:
        parser.error(f"unknown: {', '.join(sorted(bad))}")
    if set(args.scenarios) & ONLY_PRESENCED and "presenced" not in args.servers:
        parser.error(
            "capacity, api_load and api_offload measure presenced only: add it to --servers"
        )
    runs = args.runs or (1 if args.quick else 2)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.cap_total or args.cap_workers:
        sizes = replace(
            sizes,
            cap_total=args.cap_total or sizes.cap_total,
            cap_workers=args.cap_workers or sizes.cap_workers,
        )
    if args.api_deliveries:
        sizes = replace(sizes, api_deliveries_s=args.api_deliveries)
    if args.api_search_rate is not None:
        sizes = replace(sizes, api_search_rate=args.api_search_rate)
    if args.off_rates:
        sizes = replace(sizes, off_rates=args.off_rates)
    if args.off_cycles:
        sizes = replace(sizes, off_cycles=args.off_cycles)
    if args.off_deliveries:
        sizes = replace(sizes, off_deliveries_s=args.off_deliveries)
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2

    hard = raise_open_files()  # inherited by every child
    capacity = "capacity" in args.scenarios
    most = max(
        max(sizes.idle_levels),
        sizes.tp_rooms * sizes.tp_members,
        sizes.api_rooms * sizes.api_members
        if {"api_load", "api_offload"} & set(args.scenarios)
        else 0,
        5 * sizes.room_members[0] if "latency5k" in args.scenarios else 0,
        sizes.cap_total if capacity else 0,
    )
    gens = max(math.ceil(most / PER_WORKER), sizes.cap_generators if capacity else 0)
    workers = args.workers or gens
    need = math.ceil(most / min(workers, gens)) + 200
    if need > hard:
        parser.error(f"each worker would hold {need} sockets: over the fd limit {hard}")
    # The kernel's SO_REUSEPORT spread is a hash, not exact: leave each server worker 5 %.
    per_server = math.ceil(sizes.cap_total / sizes.cap_workers * 1.05) + 200
    if capacity and per_server > hard:
        parser.error(f"each server worker may hold {per_server} sockets: raise --cap-workers")
    if pin:
        os.sched_setaffinity(0, {GENERATOR_CORE})
    if {"socketio-node", "ws-node"} & set(args.servers):
        ensure_node_modules()
    log_dir = Path(tempfile.mkdtemp(prefix="presenced-bench-"))  # server logs

    import uvloop

    started = time.monotonic()
    results = uvloop.run(
        run_suite(args.scenarios, args.servers, runs, sizes, workers, pin, log_dir, args.quiet_wait)
    )
    total = time.monotonic() - started
    vers = versions(args.servers)
    print(
        "\nversions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + f"\n{runs} run(s)"
        f" per server, up to {workers} generator processes, pinned: {pin}"
        f"{' (capacity: not pinned)' if 'capacity' in args.scenarios else ''}; total {total:.0f} s;"
        f" server logs in {log_dir}\n"
    )
    print(tables(results, args.servers, sizes))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "versions": vers,
            "sizes": asdict(sizes),
            "runs": runs,
            "workers": workers,
            "pinned": pin,
            "total_s": total,
            "results": results,
        }
        args.json.write_text(json.dumps(doc, indent=1, default=str))
    if any("error" in r for runs_ in results.values() for r in runs_):
        sys.exit(1)


if __name__ == "__main__":
    main()
