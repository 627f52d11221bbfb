"""Scenario 5, detection: how long until a room sees a vanished or closed member leave.

Setup, with short liveness settings (``det_live``: ping every 5 s, 3 s to answer, and
presenced's grace of 2 s in a full run): ``det_observers`` members plus ``2 * det_each``
subjects join one room; everyone heartbeats. Then, at once:

- ``det_each`` subjects *pause*: they stop reading their socket (no pong, no heartbeat,
  no FIN: a vanished client, as behind a dead NAT); only the server's ping timeout can
  notice them;
- ``det_each`` subjects *close*: close frame 1001 then FIN, without leaving the room
  (a closed tab).

Each is timed from that moment until the last observer has received its member.left.
The configured worst case is interval + timeout (+ grace for presenced, which holds a
dropped session for grace before announcing the leave; the peers have no grace).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.scenarios.base import Ctx, poll
from bench.servers import SERVERS

__all__ = ["run_detection"]


async def run_detection(ctx: Ctx, name: str, tag: str) -> dict[str, Any]:
    """One detection run against server ``name``."""
    s = ctx.sizes
    pool = ctx.pool
    live = s.det_live
    observers = s.det_observers
    n = observers + 2 * s.det_each
    room = "det"
    bound = SERVERS[name].bound(live)
    out: dict[str, Any] = {"server": name, "bound_s": bound}
    async with ctx.server(name, live, tag, n) as proc:
        await ctx.connect(proc, name, [f"u{i}" for i in range(n)])
        await ctx.join([(i, room) for i in range(n)])
        await pool.all("heartbeat", interval=live.interval)
        await pool.all("record", messages=False, presence=True)
        await asyncio.sleep(1.0)
        paused = list(range(observers, observers + s.det_each))
        closed = list(range(observers + s.det_each, n))
        starts = await asyncio.gather(
            *(pool.on(i, "pause") for i in paused), *(pool.on(i, "close") for i in closed)
        )
        keys = [("member_left", r["user"]) for r in starts]
        last: list[int] = [0] * len(keys)
        counts: list[int] = [0] * len(keys)

        async def all_seen() -> bool:
            parts = await pool.all("seen", 10.0, keys=keys)
            for j in range(len(keys)):
                counts[j] = sum(p["seen"][j][0] for p in parts)
                last[j] = max(p["seen"][j][2] for p in parts)
            return all(c >= observers for c in counts)

        t0 = time.monotonic()
        await poll(all_seen, bound + 5.0, 0.02)
        waited = time.monotonic() - t0
        times = [
            (last[j] - starts[j]["t0"]) / 1e9 if counts[j] >= observers else None
            for j in range(len(keys))
        ]
        for label, part in (("paused", times[: s.det_each]), ("closed", times[s.det_each :])):
            seen = [t for t in part if t is not None]
            out[f"{label}_median_s"] = statistics.median(seen) if seen else float("nan")
            out[f"{label}_max_s"] = max(seen) if seen else float("nan")
            out[f"{label}_missed"] = len(part) - len(seen)
            out[f"{label}_times_s"] = part
        ctx.log(
            f"    {name}: paused {out['paused_median_s']:.2f} s (max {out['paused_max_s']:.2f}),"
            f" closed {out['closed_median_s']:.2f} s (max {out['closed_max_s']:.2f});"
            f" bound {bound:g} s; waited {waited:.1f} s"
        )
    return out
