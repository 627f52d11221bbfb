"""Scenario 7, the admin API under fan-out load (presenced only).

Question: does the backend's HTTP API (on the node's event loop, next to the WebSocket
fan-out) slow delivery, and which request costs what?

Setup: the throughput scenario's rooms (:func:`bench.scenarios.throughput.setup_rooms`,
``api_rooms`` x ``api_members``, 20 x 100 in a full run: a members page of 100 is full),
and one API load process (:mod:`bench.loadgen.api`, open loop, pinned to the generator
core) on the admin port. Then steps of ``api_seconds`` s
(:func:`bench.scenarios.throughput.step`) at one fixed delivery rate,
``api_deliveries_s`` (below saturation: about half the top passing rate here), each with
API load alongside:

- ``base``: no API load, three times (first, middle, last), the baseline; each run's
  ratios are against the median of its own three;
- ``mix@R`` for each ``R`` of ``api_rates`` above 0: ``R`` requests/s of ``api_mix``;
- ``<kind>@K``: ``api_kind_rate`` requests/s of one kind alone (``presence``: one user;
  ``presence_many``: ``api_many`` users in one POST; ``members``: a page of
  ``api_limit``; ``count``), so that the cost of each kind shows on its own;
- ``<kind>@K alone``: the same with no fan-out at all, and ``idle`` (neither, twice):
  the cost of a request with nothing to subtract but the idle server's CPU.

Every second round runs the steps in the reverse order (the suite's rounds alternate), so
drift over a run (a neighbour's load, the allocator warming up) does not fall on one end.
A one-second warm-up step with mixed API load comes first and is not counted.
Before each step the scenario waits (at most 3 s) for both cores to be quiet, and each
step records the share of core 0 that other processes took.

Per step: server user+sys CPU per delivery (the server's CPU over the step, API included,
over the deliveries) and its ratio to the baseline; delivery p50/p99; API requests/s
achieved, errors, p50/p99 per kind (from each request's due time); and the server CPU
per API request, ``(CPU - baseline CPU per delivery x deliveries) / requests answered``
(without fan-out: ``(CPU - idle CPU per second x step length) / requests answered``).

Then, when ``api_search_rate`` > 0, the throughput search twice on the same rooms: with
no API load and with ``api_search_rate`` requests/s of the mix in every step (which goes
first alternates by round): the highest passing delivery rate with and without the API.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable
from typing import Any

from bench.loadgen.api import KINDS, ApiLoad
from bench.procs import wait_quiet
from bench.scenarios.base import Ctx, Sizes
from bench.scenarios.throughput import During, Rooms, search, setup_rooms, step

__all__ = [
    "QUIET_WAIT",
    "api_during",
    "api_figures",
    "api_tables",
    "cell",
    "quiet",
    "round_of",
    "run_api_load",
    "step_labels",
]

BASE = "base"
IDLE = "idle"  # no fan-out, no API: the server's idle CPU with every member connected
QUIET_WAIT = 3.0  # s at most to wait for quiet cores before each step

# (API requests/s, mix, seed) -> the side load of one step
Load = Callable[[float, dict[str, float], int], During]


def step_labels(s: Sizes) -> list[tuple[str, float, dict[str, float], bool]]:
    """(label, API requests/s, mix, with fan-out?) of every step, in round 1's order."""
    mix = dict(s.api_mix)
    mixed = [(f"mix@{r:g}", r, mix, True) for r in s.api_rates if r > 0]
    kinds = [(f"{k}@{s.api_kind_rate:g}", s.api_kind_rate, {k: 1.0}, True) for k in mix]
    alone = [(f"{k}@{s.api_kind_rate:g} alone", s.api_kind_rate, {k: 1.0}, False) for k in mix]
    base = (BASE, 0.0, mix, True)
    idle = (IDLE, 0.0, mix, False)
    return [base, *mixed, base, *kinds, base, idle, *alone, idle]


def round_of(tag: str) -> int:
    tail = tag.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 1


def api_figures(api: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "api_rs": api["achieved_rs"],
        "api_ok": api["ok"],
        "api_errors": api["errors"],
        "api_wrong": sum(k["errors"].get("wrong", 0) for k in api["kinds"].values()),
        "api_late_max_ms": api["late_max_ms"],
        "api_gen_cpu_pct": api["cpu_s"] / api["elapsed_s"] * 100,
        "api_p50_ms": api["p50_ms"],
        "api_p99_ms": api["p99_ms"],
    }
    for kind, k in api["kinds"].items():
        out[f"{kind}_p50_ms"] = k["p50_ms"]
        out[f"{kind}_p99_ms"] = k["p99_ms"]
        out[f"{kind}_ok"] = k["ok"]
        out[f"{kind}_errors"] = k["errors"]
    return out


def api_during(
    api: ApiLoad,
    s: Sizes,
    rooms: Rooms,
    rate: float,
    seconds: float,
    mix: dict[str, float],
    seed: int,
    check: dict[str, list[str]] | None = None,
) -> During:
    """A step's side load: ``rate`` requests/s of ``mix`` for ``seconds`` s on ``api``,
    over the rooms' users and rooms (``check``: verify each answer, see the loadgen)."""

    async def during() -> dict[str, Any]:
        return await api.run(
            rate,
            seconds,
            mix=mix,
            users=rooms.users,
            rooms=rooms.names,
            many=min(s.api_many, len(rooms.users)),
            limit=s.api_limit,
            seed=seed,
            check=check,
        )

    return during


async def run_api_load(ctx: Ctx, name: str, tag: str) -> dict[str, Any]:
    """One api_load run against presenced."""
    if name != "presenced":
        raise ValueError("api_load measures presenced's admin API only")
    s = ctx.sizes
    rnd = round_of(tag)
    out: dict[str, Any] = {"server": name, "deliveries_target_s": s.api_deliveries_s}
    n = s.api_rooms * s.api_members
    async with ctx.server(name, s.live, tag, n) as proc:
        rooms = await setup_rooms(ctx, proc, name, s.api_rooms, s.api_members)
        async with ApiLoad(ctx.admin_url(proc), ctx.generator_core) as api:
            if await api.ping() != 200:
                raise RuntimeError("the admin port does not answer /health")

            def load(rate: float, mix: dict[str, float], seed: int) -> During:
                return api_during(api, s, rooms, rate, s.api_seconds, mix, seed)

            # Warm-up (not counted): connections, first calls, the allocator.
            await step(ctx, proc.pid, rooms, s.api_deliveries_s, 1.0, load(100, dict(s.api_mix), 0))
            out["steps"] = await _steps(ctx, proc.pid, rooms, rnd, load)
            if s.api_search_rate > 0:
                out |= await _searches(ctx, name, proc.pid, rooms, rnd, load)
    _derive(out)
    return out


async def _steps(ctx: Ctx, pid: int, rooms: Rooms, rnd: int, load: Load) -> list[dict[str, Any]]:
    s = ctx.sizes
    plan = step_labels(s)
    if rnd % 2 == 0:
        plan.reverse()
    steps: list[dict[str, Any]] = []
    for i, (label, rate, mix, fanout) in enumerate(plan):
        during = load(rate, mix, rnd * 100 + i) if rate > 0 else None
        if during is None and not fanout:
            during = quiet(s.api_seconds)  # idle: the step must still last its length
        waited = 0.0
        if ctx.server_core is not None and ctx.generator_core is not None:
            # Bounded: on a shared machine a step starts on quiet cores if it can.
            cores = (ctx.server_core, ctx.generator_core)
            waited = await wait_quiet(cores, min(QUIET_WAIT, ctx.quiet_wait))
        deliveries = s.api_deliveries_s if fanout else 0.0
        st = await step(ctx, pid, rooms, deliveries, s.api_seconds, during)
        st |= {"label": label, "api_rate": rate, "mix": mix, "fanout": fanout, "waited_s": waited}
        if not fanout:
            for key in ("p50_ms", "p99_ms", "cpu_us_per_delivery", "user_us_per_delivery"):
                st.pop(key, None)  # no deliveries: nothing to divide by
            st["server_cpu_pct"] = st["server_cpu_s"] / st["window_s"] * 100
        if rate > 0:
            st |= api_figures(st["during"])
        else:
            st.pop("during", None)
        ctx.log(
            f"    {label:>20}: "
            + (
                f"{st['deliveries_s']:,.0f} deliveries/s, "
                f"{st['cpu_us_per_delivery']:.2f} us CPU/delivery, p99 {st['p99_ms']:.1f} ms, "
                f"lost {st['lost']}"
                if fanout
                else f"no fan-out, server CPU {st['server_cpu_pct']:.1f} %"
            )
            + (
                f"; API {st['api_rs']:,.0f} req/s, p99 {st['api_p99_ms']:.2f} ms, "
                f"errors {st['api_errors']}"
                if "api_rs" in st
                else ""
            )
        )
        steps.append(st)
    return steps


def quiet(seconds: float) -> During:
    """A side load that does nothing for ``seconds`` s (a step without fan-out lasts that)."""

    async def during() -> dict[str, Any]:
        await asyncio.sleep(seconds)
        return {"slept_s": seconds}

    return during


async def _searches(
    ctx: Ctx, name: str, pid: int, rooms: Rooms, rnd: int, load: Load
) -> dict[str, Any]:
    s = ctx.sizes
    order = [0.0, s.api_search_rate]
    if rnd % 2 == 0:
        order.reverse()
    out: dict[str, Any] = {}
    for rate in order:
        key = f"search_api{rate:g}"
        ctx.log(f"    throughput search with {rate:g} API req/s")
        during = load(rate, dict(s.api_mix), 7) if rate > 0 else None
        res = await search(ctx, name, pid, rooms, during)
        out[key] = res
    return out


def _derive(out: dict[str, Any]) -> None:
    """Ratios against the run's baseline, CPU per request, flat keys for the tables."""
    steps = out.get("steps", [])
    base = [st["cpu_us_per_delivery"] for st in steps if st["label"] == BASE]
    if not base:
        return
    base_us = statistics.median(base)
    out["base_cpu_us_per_delivery"] = base_us
    out["base_p99_ms"] = statistics.median(st["p99_ms"] for st in steps if st["label"] == BASE)
    idle = [st["server_cpu_s"] / st["window_s"] for st in steps if st["label"] == IDLE]
    idle_s = statistics.median(idle) if idle else 0.0  # CPU s per s with nothing to do
    out["idle_cpu_pct"] = idle_s * 100
    for st in steps:
        if st.get("fanout", True):
            st["cpu_ratio"] = st["cpu_us_per_delivery"] / base_us
            base_s = base_us * st["delivered"] / 1e6
        else:
            base_s = idle_s * st["window_s"]
        if st.get("api_ok"):
            st["server_us_per_request"] = (st["server_cpu_s"] - base_s) / st["api_ok"] * 1e6
    labels = dict.fromkeys(st["label"] for st in steps)
    for label in labels:
        mine = [st for st in steps if st["label"] == label]
        for key in (
            "cpu_us_per_delivery",
            "cpu_ratio",
            "p50_ms",
            "p99_ms",
            "deliveries_s",
            "lost",
            "server_cpu_pct",
            "foreign_core0_pct",
            "api_rs",
            "api_errors",
            "api_p50_ms",
            "api_p99_ms",
            "api_gen_cpu_pct",
            "server_us_per_request",
            *(f"{k}_{q}" for k in KINDS for q in ("p50_ms", "p99_ms")),
        ):
            vals = [st[key] for st in mine if key in st]
            if vals:
                out[f"{label}:{key}"] = statistics.median(vals)
    for key in ("search_api0", f"search_api{_search_rate(out)}"):
        res = out.get(key)
        if isinstance(res, dict) and "deliveries_s" in res:
            out[f"{key}:deliveries_s"] = res["deliveries_s"]
            out[f"{key}:cpu_us_per_delivery"] = res["cpu_us_per_delivery"]
            out[f"{key}:p99_ms"] = res["p99_ms"]
            api = [st["during"] for st in res["steps"] if "during" in st]
            if api:
                out[f"{key}:api_errors"] = sum(a["errors"] for a in api)
                out[f"{key}:api_rs"] = statistics.median(a["achieved_rs"] for a in api)


def _search_rate(*runs: dict[str, Any]) -> str:
    rates = [
        k[len("search_api") :]
        for out in runs
        for k in out
        if k.startswith("search_api") and ":" not in k
    ]
    return next((r for r in rates if r != "0"), "0")


def cell(runs: list[dict[str, Any]], key: str, fmt: str) -> str:
    vals = [float(r[key]) for r in runs if key in r]
    if not vals:
        return "n/a"
    med = fmt.format(statistics.median(vals))
    if len(vals) == 1:
        return med
    return f"{med} ({fmt.format(min(vals))} - {fmt.format(max(vals))})"


def api_tables(runs: list[dict[str, Any]], labels: list[str]) -> str:
    """Markdown: per step label, medians over runs (min - max); then the searches."""
    ok = [r for r in runs if "error" not in r]
    kinds = [k for k in KINDS if any(f"{lab}:{k}_p99_ms" in r for r in ok for lab in labels)]
    head = (
        "| API load | API req/s achieved | CPU per delivery (us) | ratio vs base "
        "| delivery p50 (ms) | delivery p99 (ms) | server CPU (% of core 0) "
        "| server CPU per request (us) | "
        + " | ".join(f"{k} p50 / p99 (ms)" for k in kinds)
        + " | API errors | other processes on core 0 (%) |"
    )
    lines = [head, "|---" * (10 + len(kinds)) + "|"]
    seen: set[str] = set()
    for lab in labels:
        if lab in seen:
            continue
        seen.add(lab)
        cells = [
            cell(ok, f"{lab}:api_rs", "{:,.0f}") if lab not in (BASE, IDLE) else "0",
            cell(ok, f"{lab}:cpu_us_per_delivery", "{:.2f}"),
            cell(ok, f"{lab}:cpu_ratio", "{:.3f}"),
            cell(ok, f"{lab}:p50_ms", "{:.2f}"),
            cell(ok, f"{lab}:p99_ms", "{:.1f}"),
            cell(ok, f"{lab}:server_cpu_pct", "{:.0f}"),
            cell(ok, f"{lab}:server_us_per_request", "{:.0f}"),
        ]
        for k in kinds:
            p50 = cell(ok, f"{lab}:{k}_p50_ms", "{:.2f}").split(" ")[0]
            p99 = cell(ok, f"{lab}:{k}_p99_ms", "{:.2f}").split(" ")[0]
            cells.append("-" if p50 == "n/a" else f"{p50} / {p99}")
        cells.append(cell(ok, f"{lab}:api_errors", "{:.0f}") if lab not in (BASE, IDLE) else "-")
        cells.append(cell(ok, f"{lab}:foreign_core0_pct", "{:.0f}"))
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    parts = ["\n".join(lines)]
    if any("search_api0:deliveries_s" in r for r in ok):
        rate = _search_rate(*ok)
        rows = [
            "| Throughput search | no API load | " + f"{rate} API req/s (mix) |",
            "|---|---|---|",
        ]
        for key, label, fmt in (
            ("deliveries_s", "Highest deliveries/s with p99 <= 100 ms, no loss", "{:,.0f}"),
            ("cpu_us_per_delivery", "CPU per delivery at that rate (us)", "{:.2f}"),
            ("p99_ms", "p99 at that rate (ms)", "{:.1f}"),
            ("api_rs", "API req/s achieved (median step)", "{:,.0f}"),
            ("api_errors", "API errors (all steps)", "{:.0f}"),
        ):
            rows.append(
                f"| {label} | {cell(ok, f'search_api0:{key}', fmt)} | "
                f"{cell(ok, f'search_api{rate}:{key}', fmt)} |"
            )
        parts.append("\n".join(rows))
    return "\n\n".join(parts)
