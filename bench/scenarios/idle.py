"""Scenario 1, idle capacity: what holding many quiet, live clients costs one process.

For each room size of ``idle_rooms`` (10, 100 and 1,000 members in a full run), a fresh
server; connections are opened in levels (5,000, then up to 10,000, then up to 19,000),
each authenticated with a browser's upgrade headers, joined to one room and heartbeating:
the server pings every ``live.interval`` s (25 s, the default) a client it has not heard
from, and every client sends an application heartbeat every interval (+-2 %, at a random
phase, as the SDKs do), so the load is spread evenly. At each level, after a short settle:

- resident memory per connection, in bytes: (VmRSS now - VmRSS of the fresh server) /
  connections;
- idle CPU: the server's user+system CPU over ``idle_window`` s, as % of one core; and
  at the top level of the first room size once more, after the clients stopped their
  heartbeats and only answer the server's pings;
- heartbeat acks/s received in that window (a check that heartbeats did flow);
- connect rate: authenticated connections per second while opening the level
  (64 handshakes in flight across the generator).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.procs import cpu_times, rss_kib
from bench.scenarios.base import Ctx

__all__ = ["run_idle"]

SETTLE = 2.0
HEARTBEAT_SPREAD = 0.02


async def run_idle(ctx: Ctx, name: str, tag: str) -> dict[str, Any]:
    """One idle-capacity run against server ``name``: figures per room size and level,
    keys ending ``_r<room size>``."""
    out: dict[str, Any] = {"server": name}
    for room in ctx.sizes.idle_rooms:
        await _run_rooms_of(ctx, name, f"{tag}-r{room}", room, out)
    return out


async def _run_rooms_of(ctx: Ctx, name: str, tag: str, room: int, out: dict[str, Any]) -> None:
    s = ctx.sizes
    pool = ctx.pool
    r = f"_r{room}"
    async with ctx.server(name, s.live, tag, max(s.idle_levels)) as proc:
        rss0 = rss_kib(proc.pid)
        out["rss_base_mib" + r] = rss0 / 1024
        done = 0
        connect_s = 0.0
        for level in s.idle_levels:
            users = [f"u{i}" for i in range(done, level)]
            res = await ctx.connect(proc, name, users)
            connect_s += res["seconds"]
            out[f"connect_rate_{level}{r}"] = len(users) / res["seconds"]
            await ctx.join([(i, f"idle{i // room}") for i in range(done, level)])
            # Every interval, as the SDKs do (their timer is the server's interval; the 2 %
            # spread is a timer's lateness): such clients are not pinged.
            await pool.all("heartbeat", interval=s.live.interval, jitter=HEARTBEAT_SPREAD)
            done = level
            await asyncio.sleep(SETTLE)
            await pool.all("record", messages=False, presence=False)
            c0 = cpu_times(proc.pid)
            g0 = await ctx.gen_cpu()
            b0 = ctx.busy()
            t0 = time.monotonic()
            await asyncio.sleep(s.idle_window)
            cpu = cpu_times(proc.pid) - c0
            elapsed = time.monotonic() - t0
            busy = [b - a for a, b in zip(b0, ctx.busy(), strict=True)]
            stats = await pool.stats()
            rss = rss_kib(proc.pid)
            if stats["open"] != level:
                raise RuntimeError(f"{level - stats['open']} connections dropped while idle")
            out[f"b_per_conn_{level}{r}"] = (rss - rss0) * 1024 / level
            out[f"rss_mib_{level}{r}"] = rss / 1024
            out[f"idle_cpu_pct_{level}{r}"] = cpu.total / elapsed * 100
            out[f"hb_acks_s_{level}{r}"] = stats["hb_acks"] / elapsed
            out[f"gen_cpu_pct_{level}{r}"] = (stats["cpu"] - g0) / elapsed * 100
            out[f"foreign_core0_pct_{level}{r}"] = (busy[0] - cpu.total) / elapsed * 100
            ctx.log(
                f"    {name} rooms of {room}, {level}: "
                f"{out[f'b_per_conn_{level}{r}']:,.0f} B/conn, "
                f"idle CPU {out[f'idle_cpu_pct_{level}{r}']:.2f} %, "
                f"{out[f'connect_rate_{level}{r}']:.0f} conn/s"
            )
        out["connect_rate" + r] = done / connect_s
        if room == s.idle_rooms[0] and s.idle_pings:
            await _pings_only(ctx, proc.pid, done, out)


async def _pings_only(ctx: Ctx, pid: int, level: int, out: dict[str, Any]) -> None:
    """Idle CPU at ``level`` once the clients stop heartbeating and only answer the server's
    pings (after an interval and a bit, every server pings each connection again)."""
    s = ctx.sizes
    await ctx.pool.all("heartbeat_stop")
    await asyncio.sleep(s.live.interval * 1.1 + SETTLE)
    c0 = cpu_times(pid)
    t0 = time.monotonic()
    await asyncio.sleep(s.idle_window)
    cpu = cpu_times(pid) - c0
    stats = await ctx.pool.stats()
    if stats["open"] != level:
        raise RuntimeError(f"{level - stats['open']} connections dropped while ping-only")
    out[f"idle_cpu_pings_pct_{level}"] = cpu.total / (time.monotonic() - t0) * 100
    ctx.log(f"    pings only, {level}: idle CPU {out[f'idle_cpu_pings_pct_{level}']:.2f} %")
