"""Scenarios 2 and 4 on one big room: fan-out latency, then presence propagation.

Setup: ``members`` clients (1,000 in a full run) connect and join one room.

2. Fan-out latency: members publish ``room_rate`` messages/s in turn (round robin, so no
   client comes near a rate limit) for ``room_seconds`` s; every other member receives
   each. Each body carries its send time (CLOCK_MONOTONIC, shared by all processes), so
   every delivery gives a latency: p50, p99 and max over all deliveries, plus losses
   (deliveries expected from the messages sent, minus those received after a bounded
   drain), and server CPU per delivery.
4. Presence propagation: ``movers`` members, spread over the room, each leave and then
   join again: each event is timed from the moment its request is sent until the *last*
   of the other members has received its member.left / member.joined. The leave comes
   after a quiet 0.1 s (``GAP``, longer than any batch window); the join is sent as soon
   as every member has seen the leave, so it follows another change of the room by a few
   milliseconds, well within the batch window (25 ms, 50 ms at 1,000 members): a server
   that holds a change for the window because another came just before shows it there.
   p50, p99, max over all events, and the p99 of each kind (``alone``: the leaves;
   ``after``: the joins).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.procs import cpu_times
from bench.scenarios.base import Ctx, poll, wait_cpu_quiet
from bench.stats import percentile

__all__ = ["GAP", "run_room"]

GAP = 0.1  # s between presence events


async def _latency(ctx: Ctx, pid: int, members: int, room: str) -> dict[str, Any]:
    s = ctx.sizes
    pool = ctx.pool
    await pool.all("record", messages=True, presence=False)
    plans = [[(room, local)] for local in pool.local(range(members))]
    c0 = cpu_times(pid)
    g0 = await ctx.gen_cpu()
    b0 = ctx.busy()
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(
            pool.call(
                w,
                "publish",
                rooms=plans[w],
                rate=s.room_rate / pool.n,
                seconds=s.room_seconds,
                size=s.body,
            )
            for w in range(pool.n)
        )
    )
    sent = sum(r["sent"] for r in results)
    expected = sent * (members - 1)

    async def drained() -> bool:
        return bool(int((await pool.stats())["delivered"]) >= expected)

    await poll(drained, 10.0, 0.05)
    elapsed = time.monotonic() - t0
    cpu = cpu_times(pid) - c0
    busy = [b - a for a, b in zip(b0, ctx.busy(), strict=True)]
    stats = await pool.stats()
    gen = float(stats["cpu"]) - g0
    hist, _count = await pool.latencies()
    delivered = int(stats["delivered"])
    return {
        "messages": sent,
        "deliveries": delivered,
        "lost": expected - delivered,
        "p50_ms": percentile(hist, 0.50) / 1000,
        "p99_ms": percentile(hist, 0.99) / 1000,
        "max_ms": hist[-1][0] / 1000 if hist else float("nan"),
        "cpu_us_per_delivery": cpu.total / max(1, delivered) * 1e6,
        "errors": sum(stats["errors"].values()),
        "acks": stats["acks"],
        "server_cpu_pct": cpu.total / elapsed * 100,
        "gen_cpu_pct": gen / elapsed * 100,
        "foreign_core0_pct": (busy[0] - cpu.total) / elapsed * 100,
        "foreign_core1_pct": (busy[1] - gen) / elapsed * 100,
    }


async def _presence(ctx: Ctx, members: int, room: str) -> dict[str, Any]:
    s = ctx.sizes
    pool = ctx.pool
    await pool.all("record", messages=False, presence=True)
    step = max(1, members // max(1, s.movers))
    times: list[float] = []
    by_kind: dict[str, list[float]] = {"leave": [], "join": []}
    missed = 0
    for m in range(s.movers):
        client = (m * step + step // 2) % members
        # A quiet spell longer than presenced's batch window, then a leave (a change alone)
        # and at once the join (a change right after another).
        await asyncio.sleep(GAP)
        for action, kind in (("leave", "member_left"), ("join", "member_joined")):
            reply = await pool.on(client, "move", room=room, action=action, timeout=30.0)
            key = [(kind, reply["user"])]
            last = 0

            async def everyone(key: list[tuple[str, str]] = key) -> bool:
                nonlocal last
                parts = await pool.all("seen", 10.0, keys=key)
                count = sum(p["seen"][0][0] for p in parts)
                last = max(p["seen"][0][2] for p in parts)
                return bool(count >= members - 1)

            if await poll(everyone, 10.0, 0.005):
                times.append((last - reply["t0"]) / 1e6)
                by_kind[action].append(times[-1])
            else:
                missed += 1
    exact = [(t, 1) for t in sorted(times)]
    return {
        "events": len(times),
        "missed": missed,
        "p50_ms": percentile(exact, 0.50),
        "p99_ms": percentile(exact, 0.99),
        "max_ms": max(times) if times else float("nan"),
        "alone_p99_ms": percentile([(t, 1) for t in sorted(by_kind["leave"])], 0.99),
        "after_p99_ms": percentile([(t, 1) for t in sorted(by_kind["join"])], 0.99),
    }


async def run_room(
    ctx: Ctx, name: str, tag: str, members: int, latency: bool, presence: bool
) -> dict[str, Any]:
    """Build one room of ``members`` on server ``name``; run the chosen measurements."""
    pool = ctx.pool
    room = "big"
    out: dict[str, Any] = {"server": name, "members": members}
    async with ctx.server(name, ctx.sizes.live, tag, members) as proc:
        t0 = time.monotonic()
        await ctx.connect(proc, name, [f"u{i}" for i in range(members)])
        await pool.all("record", messages=False, presence=False)
        t1 = time.monotonic()
        await ctx.join([(i, room) for i in range(members)])
        out["join_s"] = time.monotonic() - t1
        out["setup_s"] = time.monotonic() - t0
        await wait_cpu_quiet(proc.pid, 30.0)
        # Forming the room: frames that carried member events, against the naive
        # M(M-1)/2 (every join sent alone to every member already in).
        formed = await pool.stats()
        out["form_frames"] = int(formed["member_frames"])
        out["form_events"] = int(formed["member_events"])
        out["form_pct_of_naive"] = out["form_frames"] / (members * (members - 1) / 2) * 100
        ctx.log(
            f"    {name} formed {members} in {out['join_s']:.1f} s: {out['form_frames']:,} "
            f"member frames ({out['form_pct_of_naive']:.2f} % of naive), "
            f"{out['form_events']:,} member events"
        )
        if latency:
            lat = await _latency(ctx, proc.pid, members, room)
            out |= {f"lat_{k}": v for k, v in lat.items()}
            ctx.log(
                f"    {name} {members} members: p50 {lat['p50_ms']:.2f} ms, "
                f"p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.1f} ms, lost {lat['lost']}"
            )
        if presence:
            pres = await _presence(ctx, members, room)
            out |= {f"pres_{k}": v for k, v in pres.items()}
            ctx.log(
                f"    {name} presence: p50 {pres['p50_ms']:.2f} ms, p99 {pres['p99_ms']:.2f} ms"
                f" over {pres['events']} events ({pres['missed']} missed)"
            )
        out["dropped"] = members - int((await pool.stats())["open"])
    return out
