"""HTTP load on the admin API at a fixed rate, from a process of its own.

``python -m bench.loadgen.api --url http://127.0.0.1:PORT`` reads JSON-line commands on
stdin and answers each with one JSON line on stdout, like the WebSocket workers
(:mod:`bench.loadgen.worker`); :class:`ApiLoad` starts it (pinned to the generator core
when asked) and drives it. Its own process, so that neither the server nor the
WebSocket generators pay for its CPU, and it reports that CPU itself.

``run`` is *open loop*: request ``i`` is due at ``start + i / rate`` whatever became of
the earlier ones; a late loop sends everything due at once (catching up, bounded by
``rate * seconds`` requests in all). Request kinds are interleaved by smooth weighted
round robin, so each kind gets exactly its share of the mix and the kinds are spread
evenly over time. Kinds:

- ``presence``: ``GET /v1/presence/{user}``, one user;
- ``presence_many``: ``POST /v1/presence`` with ``many`` users;
- ``members``: ``GET /v1/rooms/{room}/members?limit=LIMIT``, the first page;
- ``count``: ``GET /v1/rooms/{room}/count``.

Users and rooms are drawn from the lists given (a seeded generator: the same run sends
the same requests). Latency is taken per kind from the time each request was *due*, not
when it went out, so that a generator that falls behind shows in the figures (no
coordinated omission); the time from sending to the full answer is kept as well. A
request counts as an error when its status is not 200 or it raised (by status or
exception name); at most ``max_inflight`` requests are out at once, and one that is due
beyond that is not sent and counts as ``shed``. Every wait is bounded.

With ``check`` (each room's members, every user given online) every answer's body is read
too, after its time was taken, and one that is not right counts as an error, ``wrong``: a
user's presence is online and is that user's; ``presence_many`` lists the users asked, in
that order, all online; a members page holds ``min(limit, room size)`` distinct members
of that room; a count is the room's size. The first wrong answer of each kind is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import sys
import time
from collections import Counter
from typing import Any, cast

__all__ = ["KINDS", "ApiLoad", "main", "schedule"]

KINDS = ("presence", "presence_many", "members", "count")


def schedule(mix: dict[str, float], n: int) -> list[str]:
    """``n`` request kinds in smooth weighted round robin over ``mix`` (weights > 0)."""
    kinds = [(k, float(w)) for k, w in mix.items() if w > 0]
    if not kinds:
        raise ValueError("the mix has no kind with a positive weight")
    unknown = {k for k, _ in kinds} - set(KINDS)
    if unknown:
        raise ValueError(f"unknown request kinds: {', '.join(sorted(unknown))}")
    total = sum(w for _, w in kinds)
    current = [0.0] * len(kinds)
    out: list[str] = []
    for _ in range(n):
        for j, (_k, w) in enumerate(kinds):
            current[j] += w
        best = max(range(len(kinds)), key=current.__getitem__)
        current[best] -= total
        out.append(kinds[best][0])
    return out


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": math.nan, "p90_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    v = sorted(values)

    def q(p: float) -> float:
        return v[max(0, math.ceil(p * len(v)) - 1)] * 1000

    return {"p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99), "max_ms": v[-1] * 1000}


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class HttpError(Exception):
    """An answer this client cannot read (no Content-Length, a malformed status line)."""


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, Content-Length answers.

    Far cheaper than aiohttp's client (measured here: 300-650 us of generator CPU per
    request, which at 1000 requests/s would take half the core the WebSocket
    generators share); the admin port answers every request with a Content-Length.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.need = -1  # total bytes of the answer once its head is parsed
        self.body_at = 0  # where its body starts
        self.status = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("closed by the server"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).split(b"\r\n")
            try:
                self.status = int(head[0].split(b" ", 2)[1])
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head[1:]
                    if line[:15].lower() == b"content-length:"
                )
            except (IndexError, ValueError, StopIteration):
                self._fail(HttpError("an answer without Content-Length"))
                return
            self.need = end + 4 + length
            self.body_at = end + 4
        if len(self.buf) >= self.need:
            body = bytes(self.buf[self.body_at : self.need])
            del self.buf[: self.need]
            self.need = -1
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result((self.status, body))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one request; the status and body of its answer, once the whole body is in."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


class _Load:
    """The process side: a pool of keep-alive connections, ``run`` commands in turn."""

    def __init__(self, url: str, connections: int) -> None:
        hostport = url.split("://", 1)[1].split("/", 1)[0]
        host, port = hostport.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.hostport = hostport
        self.connections = connections
        self.idle: list[_Conn] = []
        self.opened = 0
        self.slots = asyncio.Semaphore(connections)

    async def close(self) -> None:
        for c in self.idle:
            if c.transport is not None:
                c.transport.close()
        self.idle = []

    async def _exchange(self, data: bytes) -> tuple[int, bytes, float]:
        """One request on an idle connection (a new one if none is idle).

        Returns its status, its body and when it went out (``time.monotonic()``).
        """
        async with self.slots:  # at most ``connections`` open; a request waits its turn
            conn = self.idle.pop() if self.idle else None
            if conn is None or conn.closed:
                loop = asyncio.get_running_loop()
                _t, conn = await loop.create_connection(_Conn, self.host, self.port)
                self.opened += 1
            sent_at = time.monotonic()
            status, body = await conn.request(data)
            if not conn.closed:
                self.idle.append(conn)
            return status, body, sent_at

    def _get(self, path: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: {self.hostport}\r\n\r\n".encode()

    def _post(self, path: str, body: bytes) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.hostport}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def cmd_ping(self) -> dict[str, Any]:
        """One ``GET /health``: the server answers and a connection is warm."""
        status, body, _sent = await asyncio.wait_for(self._exchange(self._get("/health")), 10.0)
        return {"status": status, "body": json.loads(body) if status == 200 else None}

    async def cmd_run(
        self,
        rate: float,
        seconds: float,
        mix: dict[str, float],
        users: list[str],
        rooms: list[str],
        many: int = 50,
        limit: int = 100,
        seed: int = 1,
        max_inflight: int = 256,
        timeout: float = 10.0,
        check: dict[str, list[str]] | None = None,
    ) -> dict[str, Any]:
        """``rate`` requests/s of ``mix`` for ``seconds`` s; figures per kind.

        ``check``: each room's members; every answer is then verified (module docstring).
        """
        total = int(rate * seconds)
        kinds = schedule(mix, total) if total else []
        rng = random.Random(seed)
        lat: dict[str, list[float]] = {k: [] for k in mix}
        svc: dict[str, list[float]] = {k: [] for k in mix}
        errors: dict[str, Counter[str]] = {k: Counter() for k in mix}
        sent: Counter[str] = Counter()
        inflight: set[asyncio.Task[None]] = set()
        late_max = 0.0
        wrong: dict[str, str] = {}  # the first wrong answer of each kind
        members_of = {r: set(m) for r, m in (check or {}).items()}

        def request(kind: str) -> tuple[bytes, Any]:
            """The request's bytes and what it asked for (a user, users or a room)."""
            if kind == "presence":
                user = rng.choice(users)
                return self._get(f"/v1/presence/{user}"), user
            if kind == "presence_many":
                asked = rng.sample(users, many)
                return self._post("/v1/presence", json.dumps({"users": asked}).encode()), asked
            room = rng.choice(rooms)
            if kind == "members":
                return self._get(f"/v1/rooms/{room}/members?limit={limit}"), room
            return self._get(f"/v1/rooms/{room}/count"), room

        def right(kind: str, asked: Any, body: bytes) -> bool:
            doc = json.loads(body)
            if kind == "presence":
                return bool(doc["user"] == asked and doc["online"] is True)
            if kind == "presence_many":
                got = doc["users"]
                return [p["user"] for p in got] == asked and all(p["online"] for p in got)
            room = members_of[asked]
            if kind == "members":
                page = [m["user"] for m in doc["members"]]
                return len(page) == len(set(page)) == min(limit, len(room)) and set(page) <= room
            return bool(doc["members"] == len(room))

        async def one(kind: str, due: float) -> None:
            data, asked = request(kind)
            try:
                status, body, t0 = await asyncio.wait_for(self._exchange(data), timeout)
            except Exception as exc:  # counted, the run goes on
                errors[kind][type(exc).__name__] += 1
                return
            t1 = time.monotonic()
            if status != 200:
                errors[kind][str(status)] += 1
                return
            if check is not None:
                try:
                    ok = right(kind, asked, body)
                except (ValueError, KeyError, TypeError):
                    ok = False
                if not ok:
                    errors[kind]["wrong"] += 1
                    wrong.setdefault(kind, body[:300].decode(errors="replace"))
                    return
            lat[kind].append(t1 - due)
            svc[kind].append(t1 - t0)

        c0 = _cpu_s()
        start = time.monotonic()
        i = 0
        while i < total:
            now = time.monotonic()
            due_n = min(total, int((now - start) * rate) + 1)
            while i < due_n:
                kind = kinds[i]
                due = start + i / rate
                late_max = max(late_max, now - due)
                sent[kind] += 1
                if len(inflight) >= max_inflight:
                    errors[kind]["shed"] += 1
                else:
                    task = asyncio.ensure_future(one(kind, due))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                i += 1
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(max(delay, 0.001))  # uvloop wakes early: no spin
        window = max(time.monotonic() - start, seconds)
        if inflight:
            await asyncio.wait(set(inflight), timeout=timeout + 1.0)
        elapsed = time.monotonic() - start
        for task in list(inflight):  # bounded: whatever is still out is cancelled
            task.cancel()
        per_kind: dict[str, Any] = {}
        for k in mix:
            ok = len(lat[k])
            per_kind[k] = {
                "sent": sent[k],
                "ok": ok,
                "errors": dict(errors[k]),
                "achieved_rs": ok / window,
                **_quantiles(lat[k]),
                "svc": _quantiles(svc[k]),
            }
        ok_all = sum(len(v) for v in lat.values())
        return {
            "rate": rate,
            "seconds": seconds,
            "sent": sum(sent.values()),
            "ok": ok_all,
            "errors": sum(sum(c.values()) for c in errors.values()),
            "achieved_rs": ok_all / window,
            "window_s": window,
            "elapsed_s": elapsed,
            "late_max_ms": late_max * 1000,
            "cpu_s": _cpu_s() - c0,
            "checked": check is not None,
            "wrong": wrong,
            "kinds": per_kind,
            **_quantiles([x for v in lat.values() for x in v]),
        }


async def serve(url: str, connections: int) -> None:
    """Read commands from stdin until EOF or ``exit``; answer each on stdout, in order."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    load = _Load(url, connections)
    out = sys.stdout.buffer

    def reply(msg: dict[str, Any]) -> None:
        out.write(json.dumps(msg).encode() + b"\n")
        out.flush()

    reply({"id": 0, "ok": True, "result": {"pid": os.getpid()}})
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            msg = json.loads(line)
            cmd = str(msg.pop("cmd"))
            if cmd == "exit":
                break
            rid = msg.pop("id")
            try:
                result = await getattr(load, "cmd_" + cmd)(**msg)
            except Exception as exc:
                reply({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            else:
                reply({"id": rid, "ok": True, "result": result})
    finally:
        await load.close()


class ApiLoad:
    """The controller side: one API load process, started and stopped by its pid."""

    def __init__(self, url: str, core: int | None = None, connections: int = 32) -> None:
        self.url = url
        self.core = core
        self.connections = connections
        self.proc: asyncio.subprocess.Process | None = None
        self._next = 1

    async def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait (bounded) for its hello."""
        argv = [sys.executable, "-m", "bench.loadgen.api", "--url", self.url]
        argv += ["--connections", str(self.connections)]
        if self.core is not None:
            argv = ["taskset", "-c", str(self.core), *argv]
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=repo,
            limit=1 << 24,
        )
        await asyncio.wait_for(self._answer(), timeout)

    async def _answer(self) -> Any:
        assert self.proc is not None and self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"API load process exited with {await self.proc.wait()}")
        msg = json.loads(line)
        if not msg["ok"]:
            raise RuntimeError(f"API load: {msg['error']}")
        return msg["result"]

    async def call(self, cmd: str, wait: float, **args: Any) -> Any:
        """One command; its answer (bounded by ``wait`` s). Commands run one at a time."""
        assert self.proc is not None and self.proc.stdin is not None
        rid = self._next
        self._next += 1
        self.proc.stdin.write(json.dumps({"id": rid, "cmd": cmd, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        return await asyncio.wait_for(self._answer(), wait)

    async def ping(self) -> int:
        """``GET /health`` once; the status."""
        return int((await self.call("ping", 20.0))["status"])

    async def health(self) -> dict[str, Any] | None:
        """``GET /health`` once; its body (None unless the status was 200)."""
        body: dict[str, Any] | None = (await self.call("ping", 20.0))["body"]
        return body

    async def run(self, rate: float, seconds: float, **spec: Any) -> dict[str, Any]:
        """``rate`` requests/s for ``seconds`` s (see :meth:`_Load.cmd_run` for ``spec``)."""
        res: dict[str, Any] = await self.call(
            "run", seconds + 30.0, rate=rate, seconds=seconds, **spec
        )
        return res

    async def close(self) -> None:
        """Ask the process to exit; kill it (by its pid) if it does not within 10 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.returncode is None and proc.stdin is not None:
            try:
                proc.stdin.write(b'{"cmd": "exit"}\n')
                await proc.stdin.drain()
                proc.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass
        try:
            await asyncio.wait_for(proc.wait(), 10.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def __aenter__(self) -> ApiLoad:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def main() -> None:
    """Entry point: ``python -m bench.loadgen.api --url http://127.0.0.1:PORT``."""
    parser = argparse.ArgumentParser(description="admin API load generator")
    parser.add_argument("--url", required=True, help="the admin port's base URL")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # the suite installs it; plain asyncio works, slower
        asyncio.run(serve(args.url, args.connections))
    else:
        uvloop.run(serve(args.url, args.connections))


if __name__ == "__main__":
    main()
