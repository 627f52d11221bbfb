"""Load generator choosing presenced's server WebSocket library by measurement.

Runs the bare broadcast servers of this folder (``ws_websockets.py``, ``ws_picows.py``
with its default 16 KiB read buffer, and again with a 2 KiB one) alternately, each as
a subprocess pinned to core 0 with ``taskset -c 0``, while this generator pins itself
to core 1. The clients are picows clients (Cython frame parser, one cheap Python
callback per frame), the lightest option available, so the generator is not the
bottleneck; its own CPU use is reported next to the server's so that this can be
checked on every run. The machine is shared, so each run first waits (bounded) for
both cores to be quiet, and the busy time of core 0 is reported with the figures.

Per run (one server, fresh process):

1. Idle memory: server VmRSS before and after opening ``--conns`` connections
   (default 5000) on 127.0.0.1, giving KB per connection; then the server's CPU %
   over 5 s while they all sit idle (utime+stime from /proc/PID/stat).
2. Fan-out with ``--fanout`` clients (default 1000; the surplus connections are
   closed first), one of which publishes:

   a. paced: ``--rate`` messages/s for ``--seconds`` s, every client parsing the
      send timestamp in the payload: delivery latency p50/p99 and server CPU
      seconds per delivery at a fixed, moderate load;
   b. saturated: the publisher keeps ``--window`` messages in flight (it sends the
      next one as soon as its own copy comes back) for ``--seconds`` s: the
      sustained deliveries/s, the server's CPU seconds per delivery and its inverse,
      deliveries per server CPU second (the capacity of one full core, which other
      load on the machine does not distort).

Every wait is bounded in time, every loop in count; the servers are killed by pid at
the end of their run. Prints per-run figures, then medians, spread (min-max) and the
ratio of each candidate's median to the websockets one, as a Markdown table.

Usage: ``python bench/wslib/load.py [--rounds 5] [--conns 5000] [--fanout 1000] ...``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

__all__ = ["RunResult", "main", "run_one"]

HERE = Path(__file__).resolve().parent
# Server variants: script and extra arguments. "picows-rb2k" is picows with its
# per-connection initial read buffer cut from 16 KiB to 2 KiB (the library's minimum).
SERVERS: dict[str, tuple[Path, list[str]]] = {
    "websockets": (HERE / "ws_websockets.py", []),
    "picows": (HERE / "ws_picows.py", []),
    "picows-rb2k": (HERE / "ws_picows.py", ["2048"]),
}
BASELINE = "websockets"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CORE = 0
GENERATOR_CORE = 1
PAYLOAD_SIZE = 200  # bytes per broadcast payload: about one presence event in JSON
IDLE_SECONDS = 5.0


# ---------------------------------------------------------------- /proc readings


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds consumed so far by ``pid`` (/proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name; utime and stime are fields 14, 15.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def fd_count(pid: int) -> int:
    """Number of open file descriptors of ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def core_busy_seconds(core: int) -> float:
    """Busy (non-idle, non-iowait) seconds of CPU ``core`` so far, all processes."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            v = [int(x) for x in line.split()[1:]]
            # user nice system idle iowait irq softirq steal ...
            return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK
    raise RuntimeError(f"no cpu{core} in /proc/stat")


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this generator process."""
    t = os.times()
    return t.user + t.system


# ---------------------------------------------------------------- clients


@dataclass
class Tally:
    """Counters shared by every client of the generator (one process, one loop)."""

    count: int = 0
    record: bool = False
    latencies_ns: list[int] = field(default_factory=list)


TALLY = Tally()


def make_payload(seq: int) -> bytes:
    """``pub:`` frame body: sequence, send time (monotonic ns), padding."""
    head = f"{seq:010d} {time.monotonic_ns():020d} ".encode()
    return head + b"x" * (PAYLOAD_SIZE - len(head))


class Client(WSListener):
    """Counts every text frame; in recording mode also its delivery latency."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Count a delivery (and time it when recording)."""
        if frame.msg_type is WSMsgType.TEXT:
            TALLY.count += 1
            if TALLY.record:
                sent = int(frame.get_payload_as_bytes()[11:31])
                TALLY.latencies_ns.append(time.monotonic_ns() - sent)


class Publisher(Client):
    """A client that also publishes; in window mode it sends on its own echo."""

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.sent = 0
        self.echoed = 0
        self.window_until = 0.0  # monotonic deadline of window mode; 0 = off

    def on_ws_connected(self, transport: WSTransport) -> None:
        """Keep the transport to publish on."""
        self.transport = transport

    def publish(self) -> None:
        """Send one ``pub:`` frame."""
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, b"pub:" + make_payload(self.sent))
        self.sent += 1

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Count, and in window mode refill the window while time remains."""
        super().on_ws_frame(transport, frame)
        if frame.msg_type is WSMsgType.TEXT:
            self.echoed += 1
            # Bounded by time, and by count as a safety net.
            if self.window_until and time.monotonic() < self.window_until and self.sent < 10**7:
                self.publish()


async def connect_many(url: str, n: int, deadline: float) -> list[WSTransport]:
    """Open ``n`` client connections, 200 handshakes at a time, before ``deadline``."""
    transports: list[WSTransport] = []
    while len(transports) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(transports)}/{n} connections opened")
        batch = min(200, n - len(transports))
        pairs = await asyncio.wait_for(
            asyncio.gather(*(ws_connect(Client, url) for _ in range(batch))),
            timeout=max(0.1, deadline - time.monotonic()),
        )
        transports.extend(t for t, _ in pairs)
    return transports


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate()`` every 2 ms until true; raise after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.002)


async def wait_cpu_quiet(pid: int, timeout: float = 5.0) -> None:
    """Wait (bounded) until the server used no CPU tick over 0.2 s."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now = cpu_seconds(pid)
        if now == last:
            return
        last = now


async def wait_machine_quiet(timeout: float) -> float:
    """Wait (bounded) until both cores are under 20 % busy over 0.5 s; return the wait.

    The machine is shared: another process hogging a core skews every figure, so each
    run starts, if it can, on a quiet machine. Past ``timeout`` it starts anyway (the
    "core 0 busy" figure of the run then shows the contention).
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = [core_busy_seconds(c) for c in (SERVER_CORE, GENERATOR_CORE)]
        await asyncio.sleep(0.5)
        after = [core_busy_seconds(c) for c in (SERVER_CORE, GENERATOR_CORE)]
        if all((a - b) / 0.5 < 0.2 for a, b in zip(after, before, strict=True)):
            break
    return time.monotonic() - start


async def probe(pub: Publisher, expected: int) -> None:
    """One broadcast; wait until ``expected`` clients got it (all are in the set)."""
    TALLY.count = 0
    pub.publish()
    await wait_until(lambda: TALLY.count >= expected, 10.0, f"probe to {expected} clients")


# ---------------------------------------------------------------- one run


@dataclass
class RunResult:
    """Figures of one server run."""

    server: str
    kb_per_conn: float
    conns_per_gib: float
    rss_base_mb: float
    idle_cpu_pct: float
    paced_cpu_us: float
    paced_p50_ms: float
    paced_p99_ms: float
    sat_deliveries_s: float
    sat_cpu_us: float
    sat_capacity: float
    sat_server_cpu_pct: float
    sat_core0_busy_pct: float
    sat_gen_cpu_pct: float


def start_server(kind: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start server ``kind`` pinned to core 0; return it and its port."""
    script, extra = SERVERS[kind]
    proc = subprocess.Popen(
        ["taskset", "-c", str(SERVER_CORE), sys.executable, str(script), "0", *extra],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 10.0)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("READY "):
        stop_server(proc)
        raise RuntimeError(f"{kind} server did not start (got {line!r})")
    return proc, int(line.split()[1])


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Kill a server we started, by its pid (taskset execs, so the pid is the server)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


async def run_one(kind: str, args: argparse.Namespace) -> RunResult:
    """One full measurement of server ``kind``."""
    waited = await wait_machine_quiet(args.quiet_wait)
    if waited > 1.0:
        print(f"  (waited {waited:.1f} s for a quiet machine before {kind})", flush=True)
    proc, port = start_server(kind)
    pid = proc.pid
    url = f"ws://127.0.0.1:{port}/"
    transports: list[WSTransport] = []
    try:
        # 1. Idle memory and idle CPU.
        await wait_cpu_quiet(pid)
        rss0 = rss_kb(pid)
        fds0 = fd_count(pid)
        pub_t, pub_obj = await ws_connect(Publisher, url)
        pub = pub_obj
        assert isinstance(pub, Publisher)
        transports = [pub_t]
        transports += await connect_many(url, args.conns - 1, time.monotonic() + 60)
        await probe(pub, args.conns)  # every connection is in the server's set
        await wait_cpu_quiet(pid)
        rss1 = rss_kb(pid)
        cpu0 = cpu_seconds(pid)
        await asyncio.sleep(IDLE_SECONDS)
        idle_cpu = (cpu_seconds(pid) - cpu0) / IDLE_SECONDS * 100

        # 2. Down to the fan-out population.
        for t in transports[args.fanout :]:
            t.disconnect()
        transports = transports[: args.fanout]
        await wait_until(
            lambda: fd_count(pid) <= fds0 + args.fanout, 20.0, "server to drop connections"
        )
        await probe(pub, args.fanout)
        await wait_cpu_quiet(pid)

        # 2a. Paced: fixed rate, latency from the timestamp in every payload.
        TALLY.count, TALLY.record, TALLY.latencies_ns = 0, True, []
        pub.sent = 0
        n_msgs = int(args.rate * args.seconds)
        cpu0 = cpu_seconds(pid)
        start = time.monotonic()
        for i in range(n_msgs):
            delay = start + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pub.publish()
        expected = n_msgs * args.fanout
        await wait_until(lambda: TALLY.count >= expected, 30.0, "paced deliveries")
        paced_cpu = cpu_seconds(pid) - cpu0
        TALLY.record = False
        lat = sorted(TALLY.latencies_ns)
        p50 = lat[len(lat) // 2] / 1e6
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6
        await wait_cpu_quiet(pid)

        # 2b. Saturated: keep `window` messages in flight for `seconds`.
        TALLY.count = 0
        pub.sent = 0
        cpu0 = cpu_seconds(pid)
        gen0 = own_cpu_seconds()
        core0 = core_busy_seconds(SERVER_CORE)
        start = time.monotonic()
        pub.window_until = start + args.seconds
        for _ in range(args.window):
            pub.publish()
        await asyncio.sleep(args.seconds)
        pub.window_until = 0.0
        await wait_until(lambda: TALLY.count >= pub.sent * args.fanout, 30.0, "drain")
        elapsed = time.monotonic() - start
        sat_cpu = cpu_seconds(pid) - cpu0
        gen_cpu = own_cpu_seconds() - gen0
        core_busy = core_busy_seconds(SERVER_CORE) - core0
        delivered = TALLY.count

        return RunResult(
            server=kind,
            kb_per_conn=(rss1 - rss0) / args.conns,
            conns_per_gib=args.conns * 1024 * 1024 / max(1, rss1 - rss0),
            rss_base_mb=rss0 / 1024,
            idle_cpu_pct=idle_cpu,
            paced_cpu_us=paced_cpu / expected * 1e6,
            paced_p50_ms=p50,
            paced_p99_ms=p99,
            sat_deliveries_s=delivered / elapsed,
            sat_cpu_us=sat_cpu / delivered * 1e6,
            sat_capacity=delivered / sat_cpu,
            sat_server_cpu_pct=sat_cpu / elapsed * 100,
            sat_core0_busy_pct=core_busy / elapsed * 100,
            sat_gen_cpu_pct=gen_cpu / elapsed * 100,
        )
    finally:
        stop_server(proc)
        for t in transports:
            t.disconnect(graceful=False)
        # Let the clients see the disconnects and release their descriptors.
        await asyncio.sleep(0.5)


# ---------------------------------------------------------------- report

METRICS: list[tuple[str, str, str]] = [
    # (field, label, format)
    ("kb_per_conn", "Idle memory per connection (KiB)", "{:.1f}"),
    ("conns_per_gib", "Idle connections per GiB", "{:,.0f}"),
    ("rss_base_mb", "Server RSS before connections (MiB)", "{:.1f}"),
    ("idle_cpu_pct", "Idle CPU with all connections open (%)", "{:.1f}"),
    ("paced_cpu_us", "Paced: server CPU per delivery (us)", "{:.2f}"),
    ("paced_p50_ms", "Paced: delivery latency p50 (ms)", "{:.2f}"),
    ("paced_p99_ms", "Paced: delivery latency p99 (ms)", "{:.2f}"),
    ("sat_deliveries_s", "Saturated: deliveries/s", "{:,.0f}"),
    ("sat_cpu_us", "Saturated: server CPU per delivery (us)", "{:.2f}"),
    ("sat_capacity", "Saturated: deliveries per server CPU second", "{:,.0f}"),
    ("sat_server_cpu_pct", "Saturated: server CPU use (% of core 0)", "{:.0f}"),
    ("sat_core0_busy_pct", "Saturated: core 0 busy, all processes (%)", "{:.0f}"),
    ("sat_gen_cpu_pct", "Saturated: generator CPU use (% of core 1)", "{:.0f}"),
]


def table(results: list[RunResult], servers: list[str]) -> str:
    """Markdown table: median (min-max) per server, and each ratio to the baseline."""
    others = [k for k in servers if k != BASELINE]
    head = [BASELINE, *others, *(f"{k} / {BASELINE}" for k in others)]
    lines = ["| Metric | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, label, fmt in METRICS:
        cells = []
        medians: dict[str, float] = {}
        for kind in [BASELINE, *others]:
            values = [getattr(r, name) for r in results if r.server == kind]
            med = statistics.median(values)
            medians[kind] = med
            cells.append(
                f"{fmt.format(med)} ({fmt.format(min(values))} - {fmt.format(max(values))})"
            )
        for kind in others:
            base = medians[BASELINE]
            cells.append(f"{medians[kind] / base:.2f}" if base else "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> list[RunResult]:
    """Run every round, alternating the servers, rotating their order each round."""
    results: list[RunResult] = []
    servers: list[str] = args.servers
    for rnd in range(args.rounds):
        shift = rnd % len(servers)
        for kind in servers[shift:] + servers[:shift]:
            r = await run_one(kind, args)
            results.append(r)
            print(f"round {rnd + 1} {kind}: {json.dumps(r.__dict__)}", flush=True)
    return results


def main() -> None:
    """Parse options, pin to the generator core, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--conns", type=int, default=5000)
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=30.0, help="paced messages/s")
    parser.add_argument("--seconds", type=float, default=3.0, help="per fan-out phase")
    parser.add_argument("--window", type=int, default=64, help="saturated in-flight msgs")
    parser.add_argument(
        "--quiet-wait", type=float, default=10.0, help="max s to wait for idle cores per run"
    )
    parser.add_argument("--json", type=Path, help="also write per-run results here")
    parser.add_argument(
        "--servers",
        type=lambda v: v.split(","),
        default=list(SERVERS),
        help=f"comma-separated, from {', '.join(SERVERS)}; must include {BASELINE}",
    )
    args = parser.parse_args()
    if BASELINE not in args.servers or not set(args.servers) <= set(SERVERS):
        parser.error(f"--servers must be among {', '.join(SERVERS)} and include {BASELINE}")

    os.sched_setaffinity(0, {GENERATOR_CORE})
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.conns + 100 > hard:
        parser.error(f"--conns {args.conns} needs more than the fd hard limit {hard}")

    started = time.monotonic()
    results = uvloop.run(amain(args))
    print(
        f"\nversions: python {sys.version.split()[0]}, websockets {version('websockets')},"
        f" picows {version('picows')}, uvloop {version('uvloop')};"
        f" {args.rounds} rounds, {args.conns} idle conns, {args.fanout} fan-out clients,"
        f" {PAYLOAD_SIZE}-byte payload, paced {args.rate:g} msg/s, window {args.window},"
        f" {args.seconds:g} s per phase; total {time.monotonic() - started:.0f} s\n"
    )
    print(table(results, args.servers))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1))


if __name__ == "__main__":
    main()
