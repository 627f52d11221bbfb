"""What every scenario shares: sizes, the run context and the server life cycle.

:class:`Sizes` holds every knob of a full run and of ``--quick`` (the smoke test's
size). :class:`Ctx` owns the generator pool and starts one fresh server per
(scenario, server, run): pinned to the server core, waited for until it listens and its
CPU is quiet; at the end the server is stopped first (so closing thousands of clients
does not set off a storm of member.left broadcasts) and then every client is dropped.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen.pool import WorkerPool
from bench.procs import ServerProcess, core_busy_seconds, cpu_times, free_port, wait_quiet
from bench.servers import REPO, SERVERS, Liveness

__all__ = ["PER_WORKER", "Ctx", "Sizes", "poll", "wait_cpu_quiet"]

# Connections per generator process: half the 20,000 open files a process may hold here.
PER_WORKER = 10_000


@dataclass(frozen=True)
class Sizes:
    """Every size and duration of a run (defaults: the full run)."""

    # 1. idle capacity: connections per level (cumulative), room sizes (a fresh server
    # each), CPU window (s)
    idle_levels: tuple[int, ...] = (5000, 10000, 19000)
    idle_rooms: tuple[int, ...] = (10, 100, 1000)
    idle_pings: bool = True  # then ping-only clients (waits an interval: not at quick size)
    idle_window: float = 8.0
    # 2. fan-out latency / 4. presence: room sizes, message rate, duration, movers
    room_members: tuple[int, ...] = (1000,)
    room_rate: float = 20.0
    room_seconds: float = 10.0
    movers: int = 30
    # 3. fan-out throughput: rooms x members, step length (s), first step and bisections
    tp_rooms: int = 100
    tp_members: int = 100
    tp_seconds: float = 3.0
    tp_first: float = 10000.0  # deliveries/s of the first step; doubled until one fails
    tp_refine: int = 3
    tp_max_steps: int = 12
    # 5. detection: observers, subjects of each kind
    det_observers: int = 20
    det_each: int = 4
    # 6. capacity (not in the default set): connections in all, server worker processes,
    # room size, CPU window (s), levels as fractions of the total, connections per
    # generator process (the pool's PER_WORKER in a full run)
    cap_total: int = 100_000
    cap_workers: int = 6
    cap_room: int = 10
    # 28 s: two rounds of each worker's session-expiry refresh on the store (every
    # session_ttl / 4 rounded to lease ticks: 14 s with presenced's defaults), a burst
    # that a shorter window catches or misses by its phase
    cap_window: float = 28.0
    cap_fractions: tuple[float, ...] = (0.2, 0.5, 1.0)
    cap_per_generator: int = PER_WORKER
    # 7. api_load (presenced only): rooms x members as in throughput, a fixed delivery
    # rate below saturation, step length (s); API rates (requests/s) of the mixed load,
    # the mix (kind, weight), the rate each kind is run at alone, the API rate of the
    # second throughput search (0: no searches); users per presence_many, members page
    # limit. The members page is full (a room of 100, limit 100).
    api_rooms: int = 20
    api_members: int = 100
    api_deliveries_s: float = 12000.0  # about half the top passing rate at 20 x 100 here
    api_seconds: float = 4.0
    api_rates: tuple[float, ...] = (0.0, 100.0, 300.0, 1000.0)
    api_mix: tuple[tuple[str, float], ...] = (
        ("presence", 1.0),
        ("presence_many", 1.0),
        ("members", 1.0),
        ("count", 1.0),
    )
    api_kind_rate: float = 300.0
    api_search_rate: float = 200.0
    api_many: int = 50
    api_limit: int = 100
    # 8. api_offload (presenced only, on Valkey): api_load's rooms and mix; a fixed delivery
    # rate (on Valkey a delivery costs the node several times what it does on the memory
    # store: 3,000/s takes it about as much of its core as api_load's 12,000/s), the API
    # rates (requests/s) each sent to the fan-out node and to an admin-only node, cycles
    # of (base, then each rate on each node), step length (s)
    off_deliveries_s: float = 3000.0
    off_rates: tuple[float, ...] = (30.0, 100.0)  # one admin-only node holds ~150 req/s here
    off_cycles: int = 3
    off_seconds: float = 5.0
    # then, with no fan-out, each of these kinds alone at this rate on the admin-only node
    # (its and Valkey's CPU per request), between two idle steps
    off_kinds: tuple[str, ...] = ("presence", "presence_many", "members", "count")
    off_kind_rate: float = 50.0
    # a control step per cycle (0: none): no API, a busy loop on the generator core taking
    # this % of it (what the admin-only node takes at the top rate): what a busier core 1
    # alone does to delivery
    off_burn_pct: float = 75.0
    body: int = 60  # characters of each message body (with its send time)
    live: Liveness = field(default_factory=lambda: Liveness(25.0, 10.0, 15.0))
    det_live: Liveness = field(default_factory=lambda: Liveness(5.0, 3.0, 2.0))

    @classmethod
    def quick(cls) -> Sizes:
        """A few hundred connections and a few seconds per scenario: the smoke size."""
        return cls(
            idle_levels=(200, 400),
            idle_rooms=(10, 100),
            idle_pings=False,
            idle_window=2.0,
            room_members=(200,),
            room_seconds=2.0,
            movers=5,
            tp_rooms=10,
            tp_members=20,
            tp_seconds=1.0,
            tp_first=2000.0,
            tp_refine=0,
            tp_max_steps=2,
            det_observers=5,
            det_each=1,
            det_live=Liveness(1.0, 1.0, 0.5),
            cap_total=600,
            cap_workers=2,
            cap_window=2.0,
            cap_per_generator=300,  # 2 generator processes: the spread is exercised too
            api_rooms=4,
            api_members=10,
            api_deliveries_s=1000.0,
            api_seconds=0.5,
            api_rates=(0.0, 20.0, 50.0),
            api_kind_rate=20.0,
            api_search_rate=20.0,
            api_many=5,
            api_limit=5,
            off_deliveries_s=1000.0,
            off_rates=(20.0, 50.0),
            off_cycles=1,
            off_seconds=0.5,
            off_kinds=("members",),
            off_kind_rate=20.0,
            off_burn_pct=50.0,
        )

    @property
    def cap_levels(self) -> tuple[int, ...]:
        """Capacity levels (cumulative connection counts), the last one ``cap_total``."""
        levels = {max(1, round(self.cap_total * f)) for f in self.cap_fractions if 0 < f < 1}
        return (*sorted(n for n in levels if n < self.cap_total), self.cap_total)

    @property
    def cap_generators(self) -> int:
        """Generator processes the capacity scenario spreads its connections over."""
        return math.ceil(self.cap_total / self.cap_per_generator)


async def poll(
    check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.01
) -> bool:
    """Call ``check`` until it is true or ``timeout`` s pass; returns the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)


async def wait_cpu_quiet(pid: int, timeout: float = 10.0, window: float = 0.3) -> None:
    """Wait (bounded) until ``pid`` used at most one CPU tick over ``window`` s."""
    deadline = time.monotonic() + timeout
    last = cpu_times(pid).total
    while time.monotonic() < deadline:
        await asyncio.sleep(window)
        now = cpu_times(pid).total
        if now - last <= 0.011:
            return
        last = now


@dataclass
class Ctx:
    """One invocation: sizes, the generator pool, cores, where server logs go."""

    sizes: Sizes
    pool: WorkerPool
    server_core: int | None
    generator_core: int | None
    log_dir: Path
    quiet_wait: float = 5.0
    log: Callable[[str], None] = print
    notes: list[str] = field(default_factory=list)

    @asynccontextmanager
    async def server(
        self, name: str, live: Liveness, tag: str, conns: int, extra: tuple[str, ...] = ()
    ) -> AsyncIterator[ServerProcess]:
        """A fresh server ``name``, listening and quiet; stopped and cleaned up after.

        The generator uses as few worker processes as ``conns`` connections allow
        (:data:`PER_WORKER` each). ``extra`` goes at the end of its command line
        (presenced's ``--redis URL`` in the api_offload scenario).
        """
        self.pool.use(math.ceil(conns / PER_WORKER))
        cores = tuple(c for c in (self.server_core, self.generator_core) if c is not None)
        if cores:
            waited = await wait_quiet(cores, self.quiet_wait)
            if waited > 1.0:
                self.log(f"  (waited {waited:.1f} s for quiet cores before {tag} {name})")
        port = free_port()
        kind = SERVERS[name]
        admin = free_port() if name == "presenced" else None
        proc = ServerProcess(
            [*kind.argv(port, live, admin or 0), *extra],
            port,
            self.server_core,
            str(REPO),
            self.log_dir / f"{tag}-{name}.log",
            admin,
        )
        try:
            await proc.wait_listening()
            await wait_cpu_quiet(proc.pid)
            yield proc
        finally:
            await proc.stop()
            await self.pool.drop_all()

    def url(self, proc: ServerProcess) -> str:
        """Base URL of a server (the dialect adds the path)."""
        return f"ws://127.0.0.1:{proc.port}"

    def admin_url(self, proc: ServerProcess) -> str:
        """Base URL of presenced's admin HTTP API; raises for a server without one."""
        if proc.admin_port is None:
            raise RuntimeError("this server has no admin port known to the suite")
        return f"http://127.0.0.1:{proc.admin_port}"

    async def connect(self, proc: ServerProcess, name: str, users: list[str]) -> dict[str, Any]:
        """Connect ``users`` to server ``name``; raise if any connection failed."""
        res = await self.pool.connect(self.url(proc), SERVERS[name].dialect, users)
        if res["failed"]:
            raise RuntimeError(f"{res['failed']} connections failed: {res['errors']}")
        return res

    async def join(self, pairs: list[tuple[int, str]]) -> dict[str, Any]:
        """Join clients to rooms; raise if any join failed."""
        res = await self.pool.join(pairs, timeout=60.0)
        if res["failed"]:
            codes = (await self.pool.stats())["close_codes"]
            raise RuntimeError(
                f"{res['failed']} joins failed: {res['errors']}; close codes seen: {codes}"
            )
        return res

    def busy(self) -> tuple[float, float]:
        """Busy seconds so far of the server core and the generator core (NaN unpinned)."""
        if self.server_core is None or self.generator_core is None:
            return (math.nan, math.nan)
        return (core_busy_seconds(self.server_core), core_busy_seconds(self.generator_core))

    async def gen_cpu(self) -> float:
        """CPU seconds used so far by all generator processes."""
        return float((await self.pool.stats())["cpu"])
