"""What a bystander sees while hostile clients flood the node (issue 10).

``python -m bench.flood OUT.json [--rounds 3] [--seconds 10] [--bystanders 50]
[--interval 0.5] [--floods unpaced-1,deep,...] [--quick] [--py-spy] [--server-args '...']``

Question: can one client (or a few) take more than its share of the event loop? The target
of the issue: under each flood, the other clients' heartbeat p99 stays within a few ms of
the unloaded figure.

**Setup**, per round: a fresh ``presenced serve`` (memory store, default limits: 50
requests/s, bursts of 100, refusals answered up to 200 a run, then reads paused, the cut
at 500 or after three pauses, 64 KiB frames, 32 KiB before auth, typing throttle 1 s;
insecure dev mode; ``grace`` 5 s so the flooders' abandoned sessions are gone between
steps) pinned to core 0
(:meth:`bench.scenarios.base.Ctx.server`). On core 1: ``--bystanders`` clients in one
generator process (:mod:`bench.loadgen.worker`, picows), all in room ``lobby``, and the
flooders (:mod:`bench.loadgen.hostile`, processes of their own, at nice 10: they share the
core with the bystanders and mostly wait for the server anyway).

**Steps**, each ``--seconds`` long, an ``unloaded`` step before every flood and one after
the last (the floods' order rotates by round):

- ``unpaced-1``: one authenticated connection writing ``{"type":"heartbeat"}`` frames as
  fast as its socket takes them; ``unpaced-8``: eight such (4 processes);
- ``binary``: 16-byte binary frames, unpaced; ``oversized``: 64 KiB + 1 text frames (one
  byte over ``max_frame_bytes``), unpaced; ``deep``: ``[[[...]]]`` 1,000 deep (2 KB),
  unpaced;
- ``preauth-40``: 40 connections that never authenticate, each sending the header of a
  1 MiB frame and all but its last byte (2 processes);
- ``typing``: one connection in ``lobby`` alternating ``typing.start`` / ``typing.stop``,
  unpaced; ``typing-paced``: the same at 40 frames/s, under the rate limit (never cut: the
  throttle alone decides what reaches the room).

A connection the server closes is replaced at once by a new one (a new session, no
resume), until the step ends: a cut flooder comes back, so what counts is what the whole
step costs, reconnects included.

**Measured** in each step: every bystander sends a ``heartbeat`` every ``--interval`` s
(jittered +-20 %, first beats spread over the first interval; far under the rate limit)
whose ``ref`` is its send time; the round trip to its ``heartbeat.ack`` is recorded (the
ack is answered inline by the server: it measures the loop's delay and nothing else). At
the end of the step the beats stop and the late acks are waited for (at most 5 s; one
still missing counts as ``unanswered``). Per step: bystander heartbeat p50 / p99 / max;
the typing events each bystander got per second (min, mean); every bystander still
connected (none dropped) and, once the flooders' sessions have left, exactly the
bystanders in ``lobby`` (``GET /v1/rooms/lobby/members``); the server's CPU over the step
(% of a core) and its RSS before, at the end, and once settled (the flooders' sessions
gone after grace, the CPU quiet); from the server's ``/metrics``, the connections closed
by code, the frames refused over the rate, the sessions in grace at the end; from the
flooders, how many connections they made and how each ended (close code as received;
1006: none arrived, usually a reset, as a server that closes on unread data sends) and
after how long (from its first flood frame), and the errors they got by code. Other
processes' share of each core (busy time minus this run's processes and minus the
kernel's software interrupts, which the floods' own loopback traffic fills; the
hypervisor's steal stays in, and is also kept apart) says how noisy the machine was; the
load average at start and end is kept too. Before each round (a fresh server) the run
waits up to ``--round-wait`` s (120) for both cores to be quiet, before each step up to
``--quiet-wait`` s (5).

**Figures**: per flood, the median over rounds (min - max) of the bystanders' p50 and p99,
and of p99 minus the median p99 of the same round's unloaded steps ("vs unloaded"), with
the ratio. ``met`` when that difference is at most ``FEW_MS`` (5 ms, our reading of "a few
ms"), all bystanders stayed connected and in their room, none unanswered. A second
summary keeps only the steps that were not noisy (other processes at most ``NOISY_PCT``,
25 %, of either core), the unloaded ones it compares with included.

``--py-spy``: during each flood step, ``py-spy record --nonblocking`` of the server (raw
collapsed stacks in the log directory): a profiling run, not for the figures (the sampler
takes core 1 too). ``--quick``: the smoke size (tests/bench/test_flood_smoke.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen.pool import WorkerPool
from bench.procs import ServerProcess, core_times, cpu_times, rss_kib, wait_quiet
from bench.scenarios.base import Ctx, Sizes, poll, wait_cpu_quiet
from bench.servers import REPO, Liveness, versions
from bench.stats import percentile

__all__ = ["FEW_MS", "FLOODS", "NOISY_PCT", "Flood", "Plan", "main", "noisy", "run", "summary"]

FEW_MS = 5.0
NOISY_PCT = 25.0  # a step whose other processes took more of either core is "noisy"
ROOM = "lobby"


@dataclass(frozen=True)
class Flood:
    """One step's hostile load: a :mod:`bench.loadgen.hostile` kind over ``procs``
    processes holding ``conns`` connections in all (``kind`` None: unloaded)."""

    name: str
    kind: str | None
    conns: int = 1
    procs: int = 1
    rate: float = 0.0  # frames/s per connection; 0: as fast as the socket takes them


UNLOADED = Flood("unloaded", None)
FLOODS = (
    Flood("unpaced-1", "unpaced"),
    Flood("unpaced-8", "unpaced", conns=8, procs=4),
    Flood("binary", "binary"),
    Flood("oversized", "oversized"),
    Flood("deep", "deep"),
    Flood("preauth-40", "preauth", conns=40, procs=2),
    Flood("typing", "typing"),
    Flood("typing-paced", "typing", rate=40.0),
)


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of a run."""

    rounds: int = 3
    seconds: float = 10.0
    bystanders: int = 50
    interval: float = 0.5
    grace: float = 5.0
    floods: tuple[Flood, ...] = FLOODS
    quiet_wait: float = 5.0  # at most this long for quiet cores before each step
    round_wait: float = 120.0  # ... and this long before each round (a fresh server)
    settle_cap: float = 30.0  # at most this long for the flooders' sessions to go
    py_spy: bool = False
    server_args: tuple[str, ...] = ()  # extra `presenced serve` options (hardening, say)

    @classmethod
    def quick(cls) -> Plan:
        """The smoke size: a few seconds in all."""
        small = tuple(
            replace(f, conns=4) if f.kind == "preauth" else replace(f, procs=min(f.procs, 2))
            for f in FLOODS
        )
        return cls(
            rounds=1,
            seconds=0.4,
            bystanders=8,
            interval=0.05,
            grace=0.3,
            floods=small,
            quiet_wait=0.0,
            round_wait=0.0,
            settle_cap=5.0,
        )


# --- the flooders ----------------------------------------------------------------------


class _Hostile:
    """One :mod:`bench.loadgen.hostile` process: started, told to go, its result read."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, argv: list[str], log: Path) -> _Hostile:
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=REPO
            )
        h = cls(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30.0)
        if not line.startswith(b'{"ready"'):
            await h.stop()
            raise RuntimeError(f"flooder did not start (see {log})")
        return h

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def finish(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        finally:
            await self.stop()
        if not line:
            raise RuntimeError(f"flooder {self.proc.pid} exited without a result")
        return dict(json.loads(line))

    async def stop(self) -> None:
        """Wait (bounded) for the process to exit; kill it by its pid if it does not."""
        try:
            await asyncio.wait_for(self.proc.wait(), 10.0)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def _hostile_argv(
    ctx: Ctx, proc: ServerProcess, flood: Flood, k: int, share: int, plan: Plan, tag: str
) -> list[str]:
    assert flood.kind is not None
    argv = [
        sys.executable, "-m", "bench.loadgen.hostile", "--url", ctx.url(proc),
        "--kind", flood.kind, "--conns", str(share), "--seconds", f"{plan.seconds:g}",
        "--rate", f"{flood.rate:g}", "--room", ROOM, "--source-net", f"127.0.{2 + k}",
        "--tag", f"{tag}p{k}", "--nice", "10",
    ]  # fmt: skip
    if ctx.generator_core is not None:
        argv = ["taskset", "-c", str(ctx.generator_core), *argv]
    return argv


def _merge_hostile(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The flooder processes' results as one."""
    out: dict[str, Any] = {"processes": len(parts)}
    for key in ("connections", "flooded", "ended", "frames_out", "bytes_out", "cpu_s"):
        out[key] = sum(p[key] for p in parts)
    for key in ("closes", "errors", "connect_errors", "refused", "received"):
        merged: dict[str, int] = {}
        for p in parts:
            for k, v in p[key].items():
                merged[k] = merged.get(k, 0) + v
        out[key] = merged
    mins = [p["lifetime_ms_min"] for p in parts if p["lifetime_ms_min"] is not None]
    meds = [p["lifetime_ms_median"] for p in parts if p["lifetime_ms_median"] is not None]
    maxs = [p["lifetime_ms_max"] for p in parts if p["lifetime_ms_max"] is not None]
    out["lifetime_ms_min"] = min(mins) if mins else None
    out["lifetime_ms_median"] = statistics.median(meds) if meds else None
    out["lifetime_ms_max"] = max(maxs) if maxs else None
    return out


# --- the server's own view ---------------------------------------------------------------


async def _metrics(http: aiohttp.ClientSession, ctx: Ctx, proc: ServerProcess) -> dict[str, float]:
    """The server's /metrics samples, keyed ``name{labels}`` without the node label."""
    async with http.get(ctx.admin_url(proc) + "/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if "{" in key:
            name, _, labels = key.partition("{")
            kept = [x for x in labels.rstrip("}").split(",") if x and not x.startswith("node=")]
            key = name + ("{" + ",".join(kept) + "}" if kept else "")
        out[key] = float(value)
    return out


def _by_label(m: dict[str, float], name: str, label: str) -> dict[str, float]:
    head = f"{name}{{{label}="
    return {k[len(head) :].split('"')[1]: v for k, v in m.items() if k.startswith(head)}


def _delta(
    before: dict[str, float], after: dict[str, float], name: str, label: str
) -> dict[str, int]:
    a, b = _by_label(after, name, label), _by_label(before, name, label)
    return {k: int(v - b.get(k, 0)) for k, v in sorted(a.items()) if v - b.get(k, 0)}


async def _members(http: aiohttp.ClientSession, ctx: Ctx, proc: ServerProcess) -> set[str]:
    url = f"{ctx.admin_url(proc)}/v1/rooms/{ROOM}/members?limit=1000"
    async with http.get(url) as resp:
        body = await resp.json()
    return {m["user"] for m in body.get("members", [])}


# The process's entry frames, in every sample: left out of the "in" list.
_ENTRY = ("presenced/cli.py", "presenced/__main__.py", "server/workers.py", "server/serve.py")


def _profile_top(path: Path, n: int = 8) -> dict[str, list[tuple[str, float]]]:
    """The frames most often on top of the stack (``leaf``) and anywhere in it (``in``,
    presenced's own only) in a py-spy raw (collapsed stacks) file, as % of the samples."""
    leaf: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    if not path.exists():
        return {"leaf": [], "in": []}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = stack.split(";")
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + k
        for fr in set(frames):
            if ("presenced/" in fr or "codec.py" in fr) and not any(e in fr for e in _ENTRY):
                incl[fr] = incl.get(fr, 0) + k

    def top(d: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(d.items(), key=lambda kv: -kv[1])[:n]
        return [(name, round(v / max(1, total) * 100, 1)) for name, v in best]

    return {"leaf": top(leaf), "in": top(incl)}


# --- one step ----------------------------------------------------------------------------


async def _step(
    ctx: Ctx,
    http: aiohttp.ClientSession,
    proc: ServerProcess,
    flood: Flood,
    plan: Plan,
    tag: str,
    users: set[str],
) -> dict[str, Any]:
    pool, pid = ctx.pool, proc.pid
    waited = await wait_quiet((0, 1), plan.quiet_wait) if plan.quiet_wait > 0 else 0.0
    m0 = await _metrics(http, ctx, proc)
    rss0 = rss_kib(pid)
    hostiles: list[_Hostile] = []
    log = ctx.log_dir / f"{tag}-hostile.log"
    if flood.kind is not None:
        shares = [
            flood.conns // flood.procs + (k < flood.conns % flood.procs) for k in range(flood.procs)
        ]
        hostiles = list(
            await asyncio.gather(
                *(
                    _Hostile.start(_hostile_argv(ctx, proc, flood, k, n, plan, tag), log)
                    for k, n in enumerate(shares)
                    if n
                )
            )
        )
    await pool.all("record", messages=False, presence=False)
    await pool.all("heartbeat", interval=plan.interval, timed=True)
    me0, c0, b0, g0 = os.times(), cpu_times(pid), ctx.busy(), await ctx.gen_cpu()
    k0 = [core_times(c) for c in (0, 1)]
    t0 = time.monotonic()
    for h in hostiles:
        h.go()
    spy = None
    if plan.py_spy and hostiles:
        spy_argv = [
            str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking",
            "--pid", str(pid), "--rate", "100", "--duration", str(max(1, int(plan.seconds) - 1)),
            "--format", "raw", "--output", str(ctx.log_dir / f"{tag}-py-spy.txt"),
        ]  # fmt: skip
        spy = await asyncio.create_subprocess_exec(
            *spy_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    await asyncio.sleep(plan.seconds)
    typing = [n for part in await pool.all("typing_counts") for n in part["counts"]]
    elapsed = time.monotonic() - t0
    c1, b1, g1, me1 = cpu_times(pid), ctx.busy(), await ctx.gen_cpu(), os.times()
    k1 = [core_times(c) for c in (0, 1)]
    await pool.all("heartbeat_stop")
    parts = [await h.finish(plan.seconds + 30.0) for h in hostiles]
    if spy is not None:
        await asyncio.wait_for(spy.wait(), 30.0)

    async def acked() -> bool:
        st = await pool.stats()
        return bool(st["hb_acks"] >= st["hb_sent"])

    await poll(acked, 5.0, 0.05)
    stats = await pool.stats()
    hist, count = await pool.latencies("heartbeats")
    m_end = await _metrics(http, ctx, proc)
    rss_end = rss_kib(pid)

    async def settled() -> bool:
        m = await _metrics(http, ctx, proc)
        return m.get("presenced_sessions", 0) <= len(users) and m.get(
            "presenced_connections", 0
        ) <= len(users)

    t_settle = time.monotonic()
    is_settled = await poll(settled, plan.settle_cap, 0.2)
    settle_s = time.monotonic() - t_settle
    if plan.quiet_wait > 0:  # (the smoke size does not wait)
        await wait_cpu_quiet(pid, 5.0)
    rss_settled = rss_kib(pid)
    m1 = await _metrics(http, ctx, proc)
    members = await _members(http, ctx, proc)
    hostile = _merge_hostile(parts) if parts else None
    ours = (me1.user + me1.system) - (me0.user + me0.system) + (g1 - g0)
    ours += hostile["cpu_s"] if hostile else 0.0
    server_cpu = (c1 - c0).total
    softirq = [b["softirq"] - a["softirq"] for a, b in zip(k0, k1, strict=True)]
    steal = [b["steal"] - a["steal"] for a, b in zip(k0, k1, strict=True)]
    busy = [b - a - q for a, b, q in zip(b0, b1, softirq, strict=True)]
    return {
        "step": flood.name,
        "kind": flood.kind,
        "conns": flood.conns,
        "rate": flood.rate,
        "waited_quiet_s": waited,
        "window_s": elapsed,
        "hb_sent": int(stats["hb_sent"]),
        "hb_acked": int(count),
        "hb_unanswered": max(0, int(stats["hb_sent"]) - int(stats["hb_acks"])),
        "p50_ms": percentile(hist, 0.50) / 1000,
        "p99_ms": percentile(hist, 0.99) / 1000,
        "max_ms": percentile(hist, 1.0) / 1000,
        "typing_per_s_min": min(typing, default=0) / elapsed,
        "typing_per_s_mean": (statistics.fmean(typing) if typing else 0.0) / elapsed,
        "bystanders_open": int(stats["open"]),
        "bystanders_dropped": int(stats["dropped"]) + (len(users) - int(stats["open"])),
        "bystander_errors": dict(stats["errors"]),
        "bystander_close_codes": dict(stats["close_codes"]),
        "in_room": sorted(users - members) == [],
        "room_extra": sorted(members - users)[:5],
        "settled": is_settled,
        "settle_s": settle_s,
        "server_cpu_pct": server_cpu / elapsed * 100,
        "rss_mib_before": rss0 / 1024,
        "rss_mib_end": rss_end / 1024,
        "rss_mib_settled": rss_settled / 1024,
        "closed_by_code": _delta(m0, m_end, "presenced_connections_closed_total", "code"),
        "rate_limited": _delta(m0, m_end, "presenced_rate_limited_total", "limit"),
        # heartbeats the server took in (bystanders' and flooders', refused ones not),
        # frames it wrote (replies, errors, events) and connections it opened, from just
        # before the step to just after it
        "heartbeats_in": m_end.get("presenced_heartbeats_total", 0)
        - m0.get("presenced_heartbeats_total", 0),
        "frames_out": m_end.get("presenced_deliveries_total", 0)
        - m0.get("presenced_deliveries_total", 0),
        "connections_opened": m_end.get("presenced_connections_opened_total", 0)
        - m0.get("presenced_connections_opened_total", 0),
        "sessions_grace_end": m_end.get('presenced_sessions_by_state{state="grace"}', 0.0),
        "sessions_settled": m1.get("presenced_sessions", math.nan),
        "hostile": hostile,
        "hostile_processes": parts,
        "py_spy_top": _profile_top(ctx.log_dir / f"{tag}-py-spy.txt") if spy else None,
        "hostile_cpu_pct": hostile["cpu_s"] / elapsed * 100 if hostile else 0.0,
        # Other processes' share of each core: busy time, less the kernel's software
        # interrupts (the floods' loopback traffic, mostly: kept apart), less ours; the
        # hypervisor's steal (other machines) is in it, and also apart.
        "foreign_core0_pct": (busy[0] - server_cpu) / elapsed * 100,
        "foreign_core1_pct": (busy[1] - ours) / elapsed * 100,
        "softirq_core0_pct": softirq[0] / elapsed * 100,
        "softirq_core1_pct": softirq[1] / elapsed * 100,
        "steal_core0_pct": steal[0] / elapsed * 100,
        "steal_core1_pct": steal[1] / elapsed * 100,
    }


def _line(r: int, row: dict[str, Any]) -> str:
    h = row["hostile"]
    who = ""
    if h:
        closes = ", ".join(f"{k}: {v}" for k, v in sorted(h["closes"].items()))
        life = h["lifetime_ms_median"]
        who = (
            f", flooders {h['connections']} conns ({closes}; median life "
            f"{'-' if life is None else f'{life:.0f} ms'})"
        )
    return (
        f"r{r} {row['step']:13s} hb p50 {row['p50_ms']:6.2f} p99 {row['p99_ms']:7.2f} max "
        f"{row['max_ms']:7.1f} ms ({row['hb_acked']} acks, {row['hb_unanswered']} unanswered), "
        f"server {row['server_cpu_pct']:3.0f} %, RSS {row['rss_mib_before']:.1f} -> "
        f"{row['rss_mib_end']:.1f} -> {row['rss_mib_settled']:.1f} MiB, bystanders "
        f"{row['bystanders_open']} open, in room {row['in_room']}, typing "
        f"{row['typing_per_s_mean']:.1f}/s{who}, other processes "
        f"{row['foreign_core0_pct']:.0f} / {row['foreign_core1_pct']:.0f} % (steal "
        f"{row['steal_core0_pct']:.0f} / {row['steal_core1_pct']:.0f}, softirq "
        f"{row['softirq_core0_pct']:.0f} / {row['softirq_core1_pct']:.0f} %)"
    )


# --- the run -----------------------------------------------------------------------------


async def run(out: Path, plan: Plan, log_dir: Path | None = None) -> dict[str, Any]:
    """Every round (a fresh server each), every step; ``out`` rewritten after each step."""
    pool = WorkerPool(1, 1)
    await pool.start()
    live = Liveness(25.0, 10.0, plan.grace)
    ctx = Ctx(
        sizes=Sizes(live=live),
        pool=pool,
        server_core=0,
        generator_core=1,
        log_dir=log_dir or Path(tempfile.mkdtemp(prefix="presenced-flood-")),
        quiet_wait=plan.quiet_wait,
        log=lambda text: print(text, flush=True),
    )
    plan_doc = asdict(plan)
    results: dict[str, Any] = {
        "plan": plan_doc,
        "versions": versions(["presenced"]),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "log_dir": str(ctx.log_dir),
        "steps": [],
    }
    users = [f"b{i}" for i in range(plan.bystanders)]
    try:
        async with aiohttp.ClientSession() as http:
            for r in range(plan.rounds):
                shift = r % len(plan.floods)
                order = plan.floods[shift:] + plan.floods[:shift]
                steps = [s for f in order for s in (UNLOADED, f)] + [UNLOADED]
                if plan.round_wait > 0:
                    waited = await wait_quiet((0, 1), plan.round_wait)
                    ctx.log(f"  (round {r}: waited {waited:.0f} s for quiet cores)")
                extra = tuple(plan.server_args)
                async with ctx.server("presenced", live, f"flood-{r}", len(users), extra) as proc:
                    await ctx.connect(proc, "presenced", users)
                    await ctx.join([(i, ROOM) for i in range(len(users))])
                    await wait_cpu_quiet(proc.pid, 10.0)
                    for k, flood in enumerate(steps):
                        row = await _step(ctx, http, proc, flood, plan, f"r{r}s{k}", set(users))
                        row |= {"round": r, "index": k}
                        results["steps"].append(row)
                        ctx.log(_line(r, row))
                        for part, top in (row["py_spy_top"] or {}).items():
                            ctx.log(f"  py-spy {part}: " + "; ".join(f"{v} % {k}" for k, v in top))
                        out.write_text(json.dumps(results, indent=1))
    finally:
        await pool.close()
    results["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    results["summary"] = summary(results["steps"])
    results["summary_quiet"] = summary(results["steps"], quiet_only=True)
    out.write_text(json.dumps(results, indent=1))
    return results


# --- figures -----------------------------------------------------------------------------


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "n/a"
    med = fmt.format(statistics.median(vals))
    if len(vals) == 1:
        return med
    return f"{med} ({fmt.format(min(vals))} - {fmt.format(max(vals))})"


def noisy(step: dict[str, Any]) -> bool:
    """Other processes took more than :data:`NOISY_PCT` of a core during the step."""
    return max(step["foreign_core0_pct"], step["foreign_core1_pct"]) > NOISY_PCT


def summary(steps: list[dict[str, Any]], quiet_only: bool = False) -> dict[str, Any]:
    """Per step name: medians over rounds, p99 against the same round's unloaded steps
    (``quiet_only``: of the steps that were not :func:`noisy`, floods and baselines)."""
    if quiet_only:
        steps = [s for s in steps if not noisy(s)]
    base: dict[int, float] = {}
    for r in {s["round"] for s in steps}:
        p99s = [s["p99_ms"] for s in steps if s["round"] == r and s["kind"] is None]
        base[r] = statistics.median(p99s) if p99s else math.nan
    names = list(dict.fromkeys(s["step"] for s in steps))
    out: dict[str, Any] = {}
    for name in names:
        rows = [s for s in steps if s["step"] == name]
        deltas = [s["p99_ms"] - base[s["round"]] for s in rows if not math.isnan(base[s["round"]])]
        ratios = [s["p99_ms"] / base[s["round"]] for s in rows if base[s["round"]] > 0]
        ok_clients = all(
            s["bystanders_dropped"] == 0 and s["in_room"] and s["hb_unanswered"] == 0 for s in rows
        )
        entry: dict[str, Any] = {
            "rows": len(rows),
            "p50_ms": [s["p50_ms"] for s in rows],
            "p99_ms": [s["p99_ms"] for s in rows],
            "max_ms": [s["max_ms"] for s in rows],
            "p99_vs_unloaded_ms": deltas,
            "p99_ratio": ratios,
            "server_cpu_pct": [s["server_cpu_pct"] for s in rows],
            "rss_growth_settled_mib": [s["rss_mib_settled"] - s["rss_mib_before"] for s in rows],
            "typing_per_s_mean": [s["typing_per_s_mean"] for s in rows],
            "typing_per_s_min": [s["typing_per_s_min"] for s in rows],
            "bystanders_ok": ok_clients,
            "foreign_core0_pct": [s["foreign_core0_pct"] for s in rows],
            "foreign_core1_pct": [s["foreign_core1_pct"] for s in rows],
        }
        hs = [s["hostile"] for s in rows if s["hostile"]]
        if hs:
            closes: dict[str, int] = {}
            for h in hs:
                for k, v in h["closes"].items():
                    closes[k] = closes.get(k, 0) + v
            entry |= {
                "flooder_connections": [h["connections"] for h in hs],
                "flooder_closes": closes,
                "flooder_life_ms": [
                    h["lifetime_ms_median"] for h in hs if h["lifetime_ms_median"] is not None
                ],
                "server_refused": [sum(s["rate_limited"].values()) for s in rows],
            }
            # None: no unloaded step of the same round to compare with (quiet_only)
            entry["met"] = (
                bool(statistics.median(deltas) <= FEW_MS and ok_clients) if deltas else None
            )
        out[name] = entry
    return out


def table(summ: dict[str, Any]) -> str:
    """The summary as a markdown table."""
    lines = [
        "| step | bystander p50 (ms) | bystander p99 (ms) | p99 vs unloaded (ms) | ratio "
        "| server CPU (%) | flooder connections / step | how they ended | median life (ms) "
        "| RSS growth, settled (MiB) | typing events / bystander / s | bystanders all there "
        "| met |",
        "|---" * 13 + "|",
    ]
    for name, e in summ.items():
        closes = ", ".join(f"{k}: {v}" for k, v in sorted(e.get("flooder_closes", {}).items()))
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    _spread(e["p50_ms"]),
                    _spread(e["p99_ms"]),
                    _spread(e["p99_vs_unloaded_ms"], "{:+.2f}"),
                    _spread(e["p99_ratio"]),
                    _spread(e["server_cpu_pct"], "{:.0f}"),
                    _spread([float(x) for x in e.get("flooder_connections", [])], "{:.0f}"),
                    closes or "-",
                    _spread(e.get("flooder_life_ms", []), "{:.0f}") if "met" in e else "-",
                    _spread(e["rss_growth_settled_mib"], "{:+.1f}"),
                    _spread(e["typing_per_s_mean"], "{:.1f}"),
                    "yes" if e["bystanders_ok"] else "**no**",
                    {True: "yes", False: "**no**", None: "n/a"}[e["met"]] if "met" in e else "-",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("out", type=Path, help="JSON file of every step and the summary")
    parser.add_argument("--quick", action="store_true", help="the smoke size")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--bystanders", type=int)
    parser.add_argument("--interval", type=float, help="s between a bystander's heartbeats")
    parser.add_argument(
        "--floods", help="comma-separated subset of: " + ", ".join(f.name for f in FLOODS)
    )
    parser.add_argument("--quiet-wait", type=float, help="s (at most) for quiet cores per step")
    parser.add_argument("--round-wait", type=float, help="s (at most) for quiet cores per round")
    parser.add_argument("--log-dir", type=Path, help="server and flooder logs (default: a tmp dir)")
    parser.add_argument("--py-spy", action="store_true", help="profile the server in flood steps")
    parser.add_argument(
        "--server-args",
        default="",
        help="extra `presenced serve` options, one string (e.g. '--max-connect-rate-per-ip 5')",
    )
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    given = {
        "rounds": args.rounds,
        "seconds": args.seconds,
        "bystanders": args.bystanders,
        "interval": args.interval,
        "quiet_wait": args.quiet_wait,
        "round_wait": args.round_wait,
    }
    plan = replace(
        plan,
        **{k: v for k, v in given.items() if v is not None},
        py_spy=args.py_spy,
        server_args=tuple(args.server_args.split()),
    )
    if args.floods:
        known = {f.name: f for f in plan.floods}
        unknown = [n for n in args.floods.split(",") if n not in known]
        if unknown:
            parser.error(f"unknown floods {unknown}; known: {', '.join(known)}")
        plan = replace(plan, floods=tuple(known[n] for n in args.floods.split(",")))
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20_000), hard))
    os.sched_setaffinity(0, {1})
    import uvloop

    results = uvloop.run(run(args.out, plan, args.log_dir))
    print(table(results["summary"]), flush=True)
    print(f"\nSteps where other processes took at most {NOISY_PCT:g} % of each core:")
    print(table(results["summary_quiet"]), flush=True)


if __name__ == "__main__":
    main()
