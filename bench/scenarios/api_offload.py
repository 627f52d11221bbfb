"""Scenario 8, the admin API on its own node, on Valkey (presenced only).

Question (issue 11): the admin API costs the node that serves it hundreds of us of CPU
per request (the api_load scenario, memory store; on Valkey several ms), so on the
fan-out node it cannot stay within "a few percent". Served by a node of its own
(``presenced serve --port off``: no client port, what ``serve --workers N`` runs as
``BASE-api``), does it still slow WebSocket delivery?

Setup, fresh per run:

- a Valkey (:func:`bench.scenarios.capacity.valkey`) pinned to the generator core;
- the fan-out node, ``presenced serve --redis URL --redis-prefix P`` with its admin port,
  pinned to the server core (:meth:`Ctx.server`), and api_load's rooms
  (``api_rooms`` x ``api_members``, :func:`bench.scenarios.throughput.setup_rooms`)
  connected to it;
- an admin-only node, ``presenced serve --port off --redis URL --redis-prefix P`` (the same
  store and prefix), pinned to the generator core; it runs through every step, idle in all
  but its own;
- two API load processes (:mod:`bench.loadgen.api`, open loop, generator core), one on
  each admin port.

So core 0 holds the fan-out node and nothing else of the run; core 1 holds the WebSocket
generators, the API generators, the admin-only node and Valkey (on a real deployment
those would be other machines; here they share the generator core, whose busy share each
step records).

Steps of ``off_seconds`` s at ``off_deliveries_s`` (:func:`bench.scenarios.throughput.step`):

- ``base``: no API load;
- ``same@R``: ``R`` requests/s of ``api_mix`` on the fan-out node's own admin port, what a
  single-process deployment does;
- ``own@R``: the same requests on the admin-only node;

for each ``R`` of ``off_rates``; and a control, ``burn@P%``: no API load, but a busy loop
on the generator core taking ``off_burn_pct`` % of it (about what the admin-only node takes
at the top rate), to tell what the API does to delivery from what a busier core 1 does (on
this machine Valkey, which relays every message, and the clients share that core). In
``off_cycles`` cycles (``base``, then ``same@R`` and ``own@R`` for each rate and the
control), and one closing ``base``. Every second cycle runs its steps in the reverse order
(rates, and which of a pair goes first), and which variant comes first alternates by
round, so drift does not fall on one configuration. A warm-up step of the same length and
rate with both API loads comes first and is not counted: the publishers take the rooms'
members in turn from the first in every step, so from the second step on each message's
sender has written before, and the seen receipts it sets off (one per author of what it
covered, through the store) are the same in every step. Before each step the scenario
waits (at most 3 s) for both cores to be quiet. The delivery rate is lower than
api_load's: on Valkey a delivery costs the node several times what it does on the memory
store (docs/benchmarks.md), and 12,000/s saturates it here.

Every API answer is checked (``check`` of :meth:`bench.loadgen.api.ApiLoad.run`): a user's
presence is online, a members page holds a full page of the room's members, a count is
the room's size; a wrong one is an error. Before the steps each admin port's ``/health``
must come from the process meant (the admin-only node: no connections, the Valkey store).

Then, with no fan-out, each kind of ``off_kinds`` alone at ``off_kind_rate`` requests/s on
the admin-only node, between two ``idle`` steps: what each kind costs that node and Valkey.

Per step: the fan-out node's user+sys CPU per delivery (that process only: the API
generator, the admin-only node and Valkey are not in it) and its ratio to the median of the
run's ``base`` steps; delivery p50/p99 and the p99's ratio; the fan-out node's CPU per API
request above that baseline; API requests/s achieved, errors, p50/p99 per kind; the
admin-only node's and Valkey's CPU (% of a core, and per API request above their ``base``
share); core 1's busy share and the share of core 0 that other processes took.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

from bench.loadgen.api import KINDS, ApiLoad
from bench.procs import ServerProcess, cpu_times, free_port, wait_quiet
from bench.scenarios.api_load import QUIET_WAIT, api_during, api_figures, cell, quiet, round_of
from bench.scenarios.base import Ctx, Sizes, wait_cpu_quiet
from bench.scenarios.capacity import valkey
from bench.scenarios.throughput import During, Rooms, setup_rooms, step
from bench.servers import REPO, SERVERS

__all__ = ["Planned", "offload_labels", "offload_plan", "offload_tables", "run_api_offload"]

BASE = "base"
IDLE = "idle"  # no fan-out, no API: what the alone steps subtract
SAME = "same"  # the API on the fan-out node's own admin port
OWN = "own"  # the API on the admin-only node
BURN = "burn"  # the control: no API, a busy loop on the generator core
# The busy loop: keeps its CPU time at pct % of the time since it started (it catches up
# after being preempted, as a process with a backlog does), until killed.
BURNER = (
    "import sys, time\n"
    "share = float(sys.argv[1]) / 100\n"
    "t0, c0 = time.perf_counter(), time.process_time()\n"
    "while True:\n"
    "    if time.process_time() - c0 < share * (time.perf_counter() - t0):\n"
    "        sum(range(20000))\n"
    "    else:\n"
    "        time.sleep(0.001)\n"
)


class Planned(NamedTuple):
    """One step of the plan."""

    label: str
    rate: float  # API requests/s (0: none)
    target: str | None  # SAME, OWN or None (no API load)
    kinds: tuple[str, ...] | None  # None: the mix
    fanout: bool = True


def _alone(s: Sizes, kind: str) -> str:
    return f"{kind}@{s.off_kind_rate:g} alone"


def _burn(s: Sizes) -> list[str]:
    return [f"{BURN}@{s.off_burn_pct:g}%"] if s.off_burn_pct > 0 else []


def offload_labels(s: Sizes) -> list[str]:
    """Every step label, in table order."""
    alone = [IDLE, *(_alone(s, k) for k in s.off_kinds)] if s.off_kinds else []
    pairs = [f"{t}@{r:g}" for r in s.off_rates for t in (SAME, OWN)]
    return [BASE, *pairs, *_burn(s), *alone]


def offload_plan(s: Sizes, rnd: int) -> list[Planned]:
    """Every step of round ``rnd``, in order."""
    plan: list[Planned] = []
    for c in range(s.off_cycles):
        pairs = [Planned(f"{t}@{r:g}", r, t, None) for r in s.off_rates for t in (SAME, OWN)]
        pairs += [Planned(lab, 0.0, None, None) for lab in _burn(s)]
        if (c + rnd) % 2 == 0:
            pairs.reverse()
        plan += [Planned(BASE, 0.0, None, None), *pairs]
    plan.append(Planned(BASE, 0.0, None, None))
    if s.off_kinds:
        idle = Planned(IDLE, 0.0, None, None, False)
        alone = [Planned(_alone(s, k), s.off_kind_rate, OWN, (k,), False) for k in s.off_kinds]
        plan += [idle, *alone, idle]
    return plan


def _room_members(rooms: Rooms) -> dict[str, list[str]]:
    """Each room's members as :func:`setup_rooms` joined them."""
    users = rooms.users
    return {
        room: users[r * rooms.members : (r + 1) * rooms.members]
        for r, room in enumerate(rooms.names)
    }


@asynccontextmanager
async def _admin_node(ctx: Ctx, tag: str, extra: tuple[str, ...]) -> AsyncIterator[ServerProcess]:
    """An admin-only presenced node (``--port off``) on the generator core, just started
    (the caller waits for it to listen: it starts up meanwhile); stopped by its pid after."""
    port = free_port()
    argv = [*SERVERS["presenced"].argv(None, ctx.sizes.live, port), *extra]
    proc = ServerProcess(
        argv, port, ctx.generator_core, str(REPO), ctx.log_dir / f"{tag}-presenced-api.log"
    )
    try:
        yield proc
    finally:
        await proc.stop()


def _burner(ctx: Ctx, seconds: float) -> During:
    """The control's side load: a busy loop on the generator core for ``seconds`` s."""
    pct = ctx.sizes.off_burn_pct

    async def during() -> dict[str, Any]:
        argv = [sys.executable, "-c", BURNER, f"{pct:g}"]
        if ctx.generator_core is not None:
            argv = ["taskset", "-c", str(ctx.generator_core), *argv]
        proc = await asyncio.create_subprocess_exec(*argv)
        try:
            await asyncio.sleep(seconds)
            used = cpu_times(proc.pid).total
        finally:
            proc.kill()  # by its own pid
            await proc.wait()
        return {"burn_cpu_s": used, "burn_cpu_pct": used / seconds * 100}

    return during


async def _check_health(api: ApiLoad, pid: int, what: str, connections: bool) -> dict[str, Any]:
    health = await api.health()
    if health is None or health.get("pid") != pid:
        raise RuntimeError(f"{what}'s admin port answered /health from {health}, not pid {pid}")
    if health.get("store") == "memory" or (int(health.get("connections", 0)) > 0) != connections:
        raise RuntimeError(f"{what}: unexpected /health {health}")
    return health


async def run_api_offload(ctx: Ctx, name: str, tag: str) -> dict[str, Any]:
    """One api_offload run: fan-out node and admin-only node on a fresh Valkey."""
    if name != "presenced":
        raise ValueError("api_offload measures presenced's admin API only")
    s = ctx.sizes
    rnd = round_of(tag)
    out: dict[str, Any] = {"server": name, "deliveries_target_s": s.off_deliveries_s}
    n = s.api_rooms * s.api_members
    async with valkey(ctx, tag, ctx.generator_core) as store:
        out["valkey_version"] = store.version
        shared = ("--redis", store.url, "--redis-prefix", f"bench{rnd}")
        async with (
            _admin_node(ctx, tag, shared) as admin,
            ctx.server(name, s.live, tag, n, shared) as proc,
        ):
            await admin.wait_listening()
            await wait_cpu_quiet(admin.pid)
            rooms = await setup_rooms(ctx, proc, name, s.api_rooms, s.api_members)
            check = _room_members(rooms)
            async with (
                ApiLoad(ctx.admin_url(proc), ctx.generator_core) as same,
                ApiLoad(f"http://127.0.0.1:{admin.port}", ctx.generator_core) as own,
            ):
                out["fanout_node"] = (await _check_health(same, proc.pid, "fan-out", True))["node"]
                out["admin_node"] = (await _check_health(own, admin.pid, "admin-only", False))[
                    "node"
                ]
                apis = {SAME: same, OWN: own}
                watch = {"valkey": store.proc.pid, "admin": admin.pid}

                warm = s.off_seconds

                async def both() -> dict[str, Any]:  # the warm-up's side load, on both nodes
                    mix = dict(s.api_mix)
                    loads = [
                        api_during(a, s, rooms, 100.0, warm, mix, 0, check) for a in apis.values()
                    ]
                    await asyncio.gather(*(load() for load in loads))
                    return {}

                await step(ctx, proc.pid, rooms, s.off_deliveries_s, warm, both, watch)
                out["steps"] = await _steps(ctx, proc.pid, rooms, rnd, apis, check, watch)
    _derive(out)
    return out


async def _steps(
    ctx: Ctx,
    pid: int,
    rooms: Rooms,
    rnd: int,
    apis: dict[str, ApiLoad],
    check: dict[str, list[str]],
    watch: dict[str, int],
) -> list[dict[str, Any]]:
    s = ctx.sizes
    mix = dict(s.api_mix)
    steps: list[dict[str, Any]] = []
    for i, (label, rate, target, kinds, fanout) in enumerate(offload_plan(s, rnd)):
        during: During | None = quiet(s.off_seconds)  # a step without fan-out lasts its length
        if target is not None:
            seed = rnd * 100 + i
            load = dict.fromkeys(kinds, 1.0) if kinds else mix
            during = api_during(apis[target], s, rooms, rate, s.off_seconds, load, seed, check)
        elif label.startswith(BURN):
            during = _burner(ctx, s.off_seconds)
        elif fanout:
            during = None
        waited = 0.0
        if ctx.server_core is not None and ctx.generator_core is not None:
            cores = (ctx.server_core, ctx.generator_core)
            waited = await wait_quiet(cores, min(QUIET_WAIT, ctx.quiet_wait))
        deliveries = s.off_deliveries_s if fanout else 0.0
        st = await step(ctx, pid, rooms, deliveries, s.off_seconds, during, watch)
        window = st["window_s"]
        st |= {
            "label": label,
            "target": target,
            "api_rate": rate,
            "fanout": fanout,
            "waited_s": waited,
            "valkey_cpu_pct": st["valkey_cpu_s"] / window * 100,
            "admin_cpu_pct": st["admin_cpu_s"] / window * 100,
            # Everything on core 1: generators, admin-only node, Valkey, other processes.
            "core1_busy_pct": st["foreign_core1_pct"] + st["gen_cpu_pct"],
        }
        if not fanout:
            for key in ("p50_ms", "p99_ms", "cpu_us_per_delivery", "user_us_per_delivery"):
                st.pop(key, None)  # no deliveries: nothing to divide by
        if target is not None:
            st |= api_figures(st["during"])
        elif label.startswith(BURN):
            st |= st.pop("during")
        else:
            st.pop("during", None)
        ctx.log(
            f"    {label:>22}: "
            + (
                f"{st['deliveries_s']:,.0f} deliveries/s, "
                f"{st['cpu_us_per_delivery']:.2f} us CPU/delivery, p50 {st['p50_ms']:.2f} / "
                f"p99 {st['p99_ms']:.1f} ms, lost {st['lost']}; "
                if fanout
                else "no fan-out; "
            )
            + f"admin node {st['admin_cpu_pct']:.0f} %, Valkey {st['valkey_cpu_pct']:.0f} %, "
            f"core 1 {st['core1_busy_pct']:.0f} %, others on core 0 {st['foreign_core0_pct']:.0f} %"
            + (
                f"; API {st['api_rs']:,.0f} req/s, p99 {st['api_p99_ms']:.2f} ms, "
                f"errors {st['api_errors']}"
                if target is not None
                else ""
            )
            + (f"; busy loop {st['burn_cpu_pct']:.0f} %" if "burn_cpu_pct" in st else "")
        )
        steps.append(st)
        if st["dropped"]:  # later steps would not be comparable (nor the answers right)
            raise RuntimeError(f"{st['dropped']} connections dropped in step {i + 1} ({label})")
    return steps


MEDIANS = (
    "cpu_us_per_delivery",
    "cpu_ratio",
    "p50_ms",
    "p99_ms",
    "p50_ratio",
    "p99_ratio",
    "deliveries_s",
    "lost",
    "server_cpu_pct",
    "fanout_us_per_request",
    "admin_cpu_pct",
    "admin_us_per_request",
    "valkey_cpu_pct",
    "valkey_us_per_request",
    "core1_busy_pct",
    "burn_cpu_pct",
    "foreign_core0_pct",
    "api_rs",
    "api_errors",
    "api_wrong",
    "api_p50_ms",
    "api_p99_ms",
    "api_gen_cpu_pct",
    *(f"{k}_{q}" for k in KINDS for q in ("p50_ms", "p99_ms")),
)


def _derive(out: dict[str, Any]) -> None:
    """Ratios against the run's ``base`` steps, CPU per request, flat keys for the tables."""
    steps = out.get("steps", [])
    base = [st for st in steps if st["label"] == BASE]
    if not base:
        return
    b_us = statistics.median(st["cpu_us_per_delivery"] for st in base)
    b_p50 = statistics.median(st["p50_ms"] for st in base)
    b_p99 = statistics.median(st["p99_ms"] for st in base)
    # Valkey serves the fan-out too (per delivery); the idle admin-only node's is per second.
    b_valkey = statistics.median(st["valkey_cpu_s"] / max(1, st["delivered"]) for st in base)
    b_admin = statistics.median(st["admin_cpu_s"] / st["window_s"] for st in base)
    idle = [st for st in steps if st["label"] == IDLE]
    # Without fan-out: Valkey's and the admin-only node's CPU per second with nothing to do.
    i_valkey = statistics.median(st["valkey_cpu_s"] / st["window_s"] for st in idle) if idle else 0
    i_admin = statistics.median(st["admin_cpu_s"] / st["window_s"] for st in idle) if idle else 0
    out |= {"base_cpu_us_per_delivery": b_us, "base_p50_ms": b_p50, "base_p99_ms": b_p99}
    for st in steps:
        ok = st.get("api_ok")
        if st["fanout"]:
            st["cpu_ratio"] = st["cpu_us_per_delivery"] / b_us
            st["p50_ratio"] = st["p50_ms"] / b_p50
            st["p99_ratio"] = st["p99_ms"] / b_p99
            if ok:
                fan = st["server_cpu_s"] - b_us * st["delivered"] / 1e6
                st["fanout_us_per_request"] = fan / ok * 1e6
                vk = st["valkey_cpu_s"] - b_valkey * st["delivered"]
                st["valkey_us_per_request"] = vk / ok * 1e6
                adm = st["admin_cpu_s"] - b_admin * st["window_s"]
                st["admin_us_per_request"] = adm / ok * 1e6
        elif ok:
            vk = st["valkey_cpu_s"] - i_valkey * st["window_s"]
            st["valkey_us_per_request"] = vk / ok * 1e6
            adm = st["admin_cpu_s"] - i_admin * st["window_s"]
            st["admin_us_per_request"] = adm / ok * 1e6
    for label in dict.fromkeys(st["label"] for st in steps):
        mine = [st for st in steps if st["label"] == label]
        for key in MEDIANS:
            vals = [st[key] for st in mine if key in st]
            if vals:
                out[f"{label}:{key}"] = statistics.median(vals)
        out[f"{label}:steps"] = len(mine)


def offload_tables(runs: list[dict[str, Any]], s: Sizes) -> str:
    """Markdown: per step label, medians over runs (min - max); then per-run ratios."""
    ok = [r for r in runs if "error" not in r]
    labels = offload_labels(s)
    kinds = [k for k in KINDS if any(f"{lab}:{k}_p99_ms" in r for r in ok for lab in labels)]
    head = (
        "| API load | API req/s achieved | fan-out CPU per delivery (us) | ratio vs base "
        "| delivery p50 (ms) | delivery p99 (ms) | p99 ratio | fan-out CPU per request (us) | "
        + " | ".join(f"{k} p50 / p99 (ms)" for k in kinds)
        + " | API errors (wrong) | admin-only node CPU (% of a core) "
        "| admin-only node CPU per request (us) | Valkey CPU (% of a core) "
        "| Valkey CPU per request (us) | core 1 busy (%) | other processes on core 0 (%) |"
    )
    lines = [head, "|---" * (15 + len(kinds)) + "|"]
    for lab in labels:
        api = lab not in (BASE, IDLE) and not lab.startswith(BURN)
        cells = [
            cell(ok, f"{lab}:api_rs", "{:,.0f}") if api else "0",
            cell(ok, f"{lab}:cpu_us_per_delivery", "{:.2f}"),
            cell(ok, f"{lab}:cpu_ratio", "{:.3f}"),
            cell(ok, f"{lab}:p50_ms", "{:.2f}"),
            cell(ok, f"{lab}:p99_ms", "{:.1f}"),
            cell(ok, f"{lab}:p99_ratio", "{:.2f}"),
            cell(ok, f"{lab}:fanout_us_per_request", "{:.0f}") if api else "-",
        ]
        for k in kinds:
            p50 = cell(ok, f"{lab}:{k}_p50_ms", "{:.2f}").split(" ")[0]
            p99 = cell(ok, f"{lab}:{k}_p99_ms", "{:.2f}").split(" ")[0]
            cells.append("-" if p50 == "n/a" else f"{p50} / {p99}")
        wrong = cell(ok, f"{lab}:api_wrong", "{:.0f}").split(" ")[0]
        cells += [
            f"{cell(ok, f'{lab}:api_errors', '{:.0f}')} ({wrong})" if api else "-",
            cell(ok, f"{lab}:admin_cpu_pct", "{:.1f}"),
            cell(ok, f"{lab}:admin_us_per_request", "{:,.0f}") if api else "-",
            cell(ok, f"{lab}:valkey_cpu_pct", "{:.1f}"),
            cell(ok, f"{lab}:valkey_us_per_request", "{:,.0f}") if api else "-",
            cell(ok, f"{lab}:core1_busy_pct", "{:.0f}"),
            cell(ok, f"{lab}:foreign_core0_pct", "{:.0f}"),
        ]
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    rows = ["| API load | CPU ratio per run | p99 ratio per run |", "|---|---|---|"]
    for lab in labels[1 : 1 + 2 * len(s.off_rates) + len(_burn(s))]:  # those with fan-out
        cpu = ", ".join(f"{r[f'{lab}:cpu_ratio']:.3f}" for r in ok if f"{lab}:cpu_ratio" in r)
        p99 = ", ".join(f"{r[f'{lab}:p99_ratio']:.2f}" for r in ok if f"{lab}:p99_ratio" in r)
        rows.append(f"| {lab} | {cpu} | {p99} |")
    return "\n".join(lines) + "\n\n" + "\n".join(rows)
