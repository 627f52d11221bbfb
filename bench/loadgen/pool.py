"""The controller side of the load generator: start worker processes and drive them.

:class:`WorkerPool` starts ``n`` workers (``python -m bench.loadgen.worker``), each on
its own loopback source address 127.0.0.(10+k), pinned to the generator core, and sends
them JSON-line commands. :meth:`WorkerPool.connect` spreads users over the workers and
keeps the map from a global client number to (worker, local index), which every
scenario uses to say "client 17 joins room r3".
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClientRef", "WorkerError", "WorkerPool"]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class WorkerError(RuntimeError):
    """A worker answered a command with an error, or did not answer in time."""


@dataclass(frozen=True, slots=True)
class ClientRef:
    """Where a client lives: worker number and index in that worker."""

    worker: int
    idx: int


@dataclass
class _Proc:
    proc: asyncio.subprocess.Process
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None


class WorkerPool:
    """Several generator processes driven as one."""

    def __init__(self, n: int, core: int | None, connect_concurrency: int = 64) -> None:
        self.n = n  # workers in use (see use()); every command goes to these
        self.core = core
        self.total_concurrency = connect_concurrency
        self.concurrency = max(1, connect_concurrency // n)
        self.procs: list[_Proc] = []
        self.clients: list[ClientRef] = []
        self._next_id = 1

    def use(self, k: int) -> None:
        """Drive only the first ``k`` workers (at least one, at most all) from now on.

        Several generator processes on one core cost latency (each fan-out burst is
        split over processes that take turns), so a scenario uses as few as its
        connection count allows; the others hold no clients.
        """
        self.n = max(1, min(k, len(self.procs)))
        self.concurrency = max(1, self.total_concurrency // self.n)

    async def start(self) -> None:
        """Start the workers and wait for each one's hello."""
        for k in range(self.n):
            argv = [sys.executable, "-m", "bench.loadgen.worker", "--source", f"127.0.0.{10 + k}"]
            if self.core is not None:
                argv = ["taskset", "-c", str(self.core), *argv]
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=REPO,
                limit=1 << 26,
            )
            p = _Proc(proc)
            hello: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            p.pending[0] = hello
            p.reader = asyncio.ensure_future(self._read(p))
            self.procs.append(p)
            await asyncio.wait_for(hello, 20.0)

    async def _read(self, p: _Proc) -> None:
        assert p.proc.stdout is not None
        while True:
            line = await p.proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            fut = p.pending.pop(msg["id"], None)
            if fut is None or fut.done():
                continue
            if msg["ok"]:
                fut.set_result(msg["result"])
            else:
                fut.set_exception(WorkerError(msg["error"]))
        for fut in p.pending.values():
            if not fut.done():
                fut.set_exception(WorkerError(f"worker {p.proc.pid} exited"))
        p.pending.clear()

    async def call(self, worker: int, cmd: str, wait: float = 120.0, **args: Any) -> Any:
        """Send one command to one worker and wait (bounded) for its answer."""
        p = self.procs[worker]
        rid = self._next_id
        self._next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        p.pending[rid] = fut
        assert p.proc.stdin is not None
        p.proc.stdin.write(json.dumps({"id": rid, "cmd": cmd, **args}).encode() + b"\n")
        await p.proc.stdin.drain()
        try:
            return await asyncio.wait_for(fut, wait)
        except TimeoutError:
            p.pending.pop(rid, None)
            raise WorkerError(f"worker {worker}: {cmd} took over {wait} s") from None

    async def all(self, cmd: str, wait: float = 120.0, **args: Any) -> list[Any]:
        """The same command to every worker at once."""
        return list(await asyncio.gather(*(self.call(k, cmd, wait, **args) for k in range(self.n))))

    async def connect(
        self, url: str, dialect: str, users: Sequence[str], timeout: float = 30.0
    ) -> dict[str, Any]:
        """Open one connection per user, spread round robin over the workers.

        Returns the wall time, the failures and the new clients' global numbers range;
        ``self.clients`` grows by ``len(users)`` in order (failed ones included, so the
        numbering stays aligned; a scenario gives up on any failure).
        """
        share: list[list[str]] = [list(users[k :: self.n]) for k in range(self.n)]
        start = time.monotonic()
        results = await asyncio.gather(
            *(
                self.call(
                    k,
                    "connect",
                    timeout + 60 + len(share[k]) / 50,
                    url=url,
                    dialect=dialect,
                    users=share[k],
                    concurrency=self.concurrency,
                    timeout=timeout,
                )
                for k in range(self.n)
            )
        )
        seconds = time.monotonic() - start
        first = len(self.clients)
        for i in range(len(users)):
            k = i % self.n
            self.clients.append(ClientRef(k, results[k]["first"] + i // self.n))
        errors = [e for r in results for e in r["errors"]]
        return {
            "seconds": seconds,
            "failed": sum(r["failed"] for r in results),
            "errors": errors[:5],
            "range": (first, len(self.clients)),
        }

    async def join(
        self, pairs: Sequence[tuple[int, str]], timeout: float = 30.0, concurrency: int = 0
    ) -> dict[str, Any]:
        """Join global client ``i`` to ``room`` for every pair, all workers at once."""
        per: list[list[tuple[int, str]]] = [[] for _ in range(self.n)]
        for i, room in pairs:
            ref = self.clients[i]
            per[ref.worker].append((ref.idx, room))
        start = time.monotonic()
        results = await asyncio.gather(
            *(
                self.call(
                    k,
                    "join",
                    timeout + 60 + len(per[k]) / 20,
                    pairs=per[k],
                    concurrency=concurrency or self.concurrency,
                    timeout=timeout,
                )
                for k in range(self.n)
                if per[k]
            )
        )
        errors = [e for r in results for e in r["errors"]]
        return {
            "seconds": time.monotonic() - start,
            "failed": sum(r["failed"] for r in results),
            "errors": errors[:5],
        }

    def local(self, members: Sequence[int]) -> list[list[int]]:
        """Split global client numbers into per-worker local index lists."""
        per: list[list[int]] = [[] for _ in range(self.n)]
        for i in members:
            ref = self.clients[i]
            per[ref.worker].append(ref.idx)
        return per

    async def on(self, client: int, cmd: str, wait: float = 60.0, **args: Any) -> Any:
        """A command about one client, sent to the worker that holds it."""
        ref = self.clients[client]
        return await self.call(ref.worker, cmd, wait, idx=ref.idx, **args)

    async def stats(self) -> dict[str, Any]:
        """Every worker's counters added up (errors and close codes merged)."""
        parts = await self.all("stats", 30.0)
        total: dict[str, Any] = {"errors": {}, "close_codes": {}}
        for part in parts:
            for key, value in part.items():
                if isinstance(value, dict):
                    for k, v in value.items():
                        total[key][k] = total[key].get(k, 0) + v
                else:
                    total[key] = total.get(key, 0) + value
        return total

    async def latencies(self, kind: str = "messages") -> tuple[list[tuple[int, int]], int]:
        """The merged latency histogram (us -> count) of every worker, and its count:
        room message deliveries, or with ``kind="heartbeats"`` timed heartbeat round trips."""
        parts = await self.all("latencies", 60.0, kind=kind)
        merged: dict[int, int] = {}
        for part in parts:
            for value, count in part["hist"]:
                merged[value] = merged.get(value, 0) + count
        return sorted(merged.items()), sum(p["count"] for p in parts)

    async def drop_all(self) -> None:
        """Every worker (in use or not) aborts and forgets all its clients."""
        await asyncio.gather(*(self.call(k, "drop_all", 30.0) for k in range(len(self.procs))))
        self.clients = []

    async def close(self) -> None:
        """Ask every worker to exit; kill (by pid) any that does not within 10 s."""
        for p in self.procs:
            if p.proc.returncode is None and p.proc.stdin is not None:
                try:
                    p.proc.stdin.write(b'{"cmd": "exit"}\n')
                    await p.proc.stdin.drain()
                    p.proc.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass
        for p in self.procs:
            try:
                await asyncio.wait_for(p.proc.wait(), 10.0)
            except TimeoutError:
                p.proc.kill()
                await p.proc.wait()
            if p.reader is not None:
                await p.reader
        self.procs = []
