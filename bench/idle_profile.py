"""Where an idle server's CPU goes: user/system split, syscalls and a profile.

``python -m bench.idle_profile --conns 19000 --room 100 [--pings] [--strace] [--perf F]``
starts ``presenced serve`` pinned to core 0 with the default liveness (25 s / 10 s), opens
``--conns`` authenticated, joined connections from generator processes on core 1, and has
every client heartbeat every interval at a random phase (as the idle scenario does); with
``--pings`` the clients then stop, and once an interval has passed the server pings each
(at the phases the heartbeats left) and the clients only answer.

It prints the server's user and system CPU over ``--window`` s as % of a core, and per
event (a heartbeat received, or a ping sent), so a change can be judged by microseconds
per event; ``--strace`` counts the syscalls over a second window (strace slows the process,
its CPU is not reported); ``--perf F`` runs ``perf record`` over the window into F
(``--perf-graph dwarf`` unwinds through libpython; kernel samples need
``/proc/sys/kernel/perf_event_paranoid`` <= 1); ``--pyspy F`` records py-spy's raw stacks
into F (``--native``: with native frames, which pauses the process).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.loadgen.pool import WorkerPool
from bench.procs import ServerProcess, cpu_times, free_port
from bench.scenarios.base import wait_cpu_quiet
from bench.servers import REPO, SERVERS, Liveness

__all__ = ["main"]

LIVE = Liveness(25.0, 10.0, 15.0)


async def _run(args: argparse.Namespace) -> None:
    port = free_port()
    out = Path(tempfile.mkdtemp(prefix="idle-profile-"))
    argv = SERVERS[args.server].argv(port, LIVE)
    proc = ServerProcess(argv, port, 0, str(REPO), out / "server.log")
    pool = WorkerPool(max(1, -(-args.conns // 10000)), 1)
    await pool.start()
    try:
        await proc.wait_listening()
        await wait_cpu_quiet(proc.pid)
        users = [f"u{i}" for i in range(args.conns)]
        res = await pool.connect(f"ws://127.0.0.1:{port}", args.server, users, timeout=120.0)
        if res["failed"]:
            raise RuntimeError(f"{res['failed']} connections failed: {res['errors']}")
        joined = await pool.join([(i, f"r{i // args.room}") for i in range(args.conns)], 120.0)
        if joined["failed"]:
            raise RuntimeError(f"{joined['failed']} joins failed")
        # Heartbeats at random phases spread the load (the joins came in one burst) ...
        await pool.all("heartbeat", interval=LIVE.interval, jitter=0.02)
        await asyncio.sleep(LIVE.interval + 2)  # every client's first beat has gone
        if args.pings:  # ... and once they stop, the pings keep those phases
            await pool.all("heartbeat_stop")
            await asyncio.sleep(LIVE.interval * 1.1 + 2)
        await pool.all("record", messages=False, presence=False)
        perf = None
        if args.perf:
            graph = ["--call-graph", args.perf_graph]
            perf = subprocess.Popen(
                ["perf", "record", *graph, "-F", "999", "-p", str(proc.pid), "-o", args.perf],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        if args.pyspy:
            native = ["--native"] if args.native else ["--nonblocking"]
            spy = str(Path(sys.executable).parent / "py-spy")
            where = ["-p", str(proc.pid), "-o", args.pyspy]
            perf = subprocess.Popen(
                [
                    spy,
                    "record",
                    "-r",
                    "250",
                    "-d",
                    str(int(args.window)),
                    "-f",
                    "raw",
                    *native,
                    *where,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        c0 = cpu_times(proc.pid)
        t0 = time.monotonic()
        await asyncio.sleep(args.window)
        cpu = cpu_times(proc.pid) - c0
        elapsed = time.monotonic() - t0
        if perf is not None:
            if not args.pyspy:
                perf.send_signal(2)
            perf.wait(timeout=60)
        stats = await pool.stats()
        events = stats["hb_acks"] if not args.pings else args.conns / LIVE.interval * elapsed
        kind = "pings sent (estimated)" if args.pings else "heartbeat acks"
        print(
            f"{args.conns} conns, rooms of {args.room}: user {cpu.user / elapsed * 100:.2f} %, "
            f"system {cpu.system / elapsed * 100:.2f} %, total {cpu.total / elapsed * 100:.2f} %"
        )
        print(
            f"{kind}: {events / elapsed:.0f}/s; per event: user {cpu.user / events * 1e6:.1f} us,"
            f" system {cpu.system / events * 1e6:.1f} us; open {stats['open']}"
        )
        if args.strace:
            st = subprocess.run(
                [
                    "timeout",
                    "-s",
                    "INT",
                    str(args.window),
                    *["strace", "-c", "-f"],
                    "-p",
                    str(proc.pid),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            print(st.stderr[-3000:])
    finally:
        await proc.stop()
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="presenced", choices=sorted(SERVERS))
    parser.add_argument("--conns", type=int, default=19000)
    parser.add_argument("--room", type=int, default=100)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--pings", action="store_true", help="clients only answer pings")
    parser.add_argument("--strace", action="store_true", help="count syscalls afterwards")
    parser.add_argument("--perf", help="perf record -g into this file")
    parser.add_argument("--native", action="store_true", help="py-spy: native frames too")
    parser.add_argument(
        "--perf-graph", default="fp", help="perf's --call-graph (dwarf: through libpython)"
    )
    parser.add_argument("--pyspy", help="py-spy record (raw stacks) into this file")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
