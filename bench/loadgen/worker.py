"""One load-generator process: thousands of picows clients on one uvloop loop.

Started by :class:`bench.loadgen.pool.WorkerPool` (``python -m bench.loadgen.worker
--source 127.0.0.N``), it reads JSON-line commands on stdin and answers each with one
JSON line on stdout (``{"id", "ok", "result" | "error"}``); commands run concurrently,
so a long ``publish`` does not hold back a ``stats``.

Why picows and one callback per frame: the generator must not be the bottleneck, so a
delivered room message costs one prefix check, a counter increment and, while
recording, one ``find`` and ``int`` for its send time (no JSON parsing). Everything
else (replies, member events) is rare and classified by prefix too.

Each process raises its open-file soft limit to the hard limit, binds its clients to its
own loopback source address (``IP_BIND_ADDRESS_NO_PORT``, so ports are shared per
destination, not per address) and reports its own CPU time so that a saturated
generator shows in the results. Every wait is bounded by a timeout, every loop by a
count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import socket
import sys
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.loadgen.protocols import (
    BROWSER_HEADERS,
    DIALECTS,
    Dialect,
    Frame,
    body_with_time,
    user_of,
)

__all__ = ["Client", "Worker", "main", "quantize"]

# Linux's IP_BIND_ADDRESS_NO_PORT (Python exposes it only from 3.12 on).
_BIND_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_TEXT = WSMsgType.TEXT
_BATCHED = {"member.joined": Frame.MEMBER_JOINED.value, "member.left": Frame.MEMBER_LEFT.value}


def quantize(us: int) -> int:
    """Round a latency in microseconds to 3 significant digits (histogram key)."""
    if us < 1000:
        return us
    step: int = 10 ** (len(str(us)) - 3)
    return (us // step) * step


class Client(WSListener):
    """One benchmark connection: counts deliveries, answers pings, resolves its waiter."""

    def __init__(self, worker: Worker, idx: int, user: str) -> None:
        self.w = worker
        self.idx = idx
        self.user = user
        self.t: WSTransport | None = None
        self.waiter: asyncio.Future[Frame] | None = None
        self.hb: asyncio.TimerHandle | None = None
        self.expect_close = False
        self.paused = False
        self.typing = 0  # typing events received since the last reset

    def on_ws_connected(self, transport: WSTransport) -> None:
        """Keep the transport."""
        self.t = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Count a room message (and time it when recording); hand the rest on."""
        if frame.msg_type is not _TEXT:
            if frame.msg_type is WSMsgType.CLOSE:
                self.w.close_codes[str(frame.get_close_code())] += 1
                transport.disconnect()
            return
        data = frame.get_payload_as_bytes()
        w = self.w
        if data.startswith(w.msg_prefix):
            w.delivered += 1
            if w.recording:
                i = data.find(b"~T")
                w.lat.append((time.monotonic_ns() - int(data[i + 2 : i + 22])) // 1000)
            return
        w.on_other(self, data)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        """Forget the transport; count it if the server closed it."""
        self.t = None
        if self.hb is not None:
            self.hb.cancel()
            self.hb = None
        self.w.on_closed(self)


class Worker:
    """All clients of this process and their counters; the command handlers."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.dialect: Dialect = DIALECTS["presenced"]
        self.msg_prefix = self.dialect.message
        self.clients: list[Client] = []
        self.loop = asyncio.get_running_loop()
        self.reset()

    # --- counters ----------------------------------------------------------------------

    def reset(self) -> None:
        """Zero every counter and stop recording."""
        self.delivered = 0
        self.acks = 0
        self.hb_acks = 0
        self.hb_sent = 0
        self.hb_lat = array("q")  # round trips (us) of timed heartbeats, acked since reset
        self.typing = 0
        for c in self.clients:
            c.typing = 0
        self.member_events = 0
        self.member_frames = 0  # frames that carried member events (lone or batched)
        self.dropped = 0
        self.errors: Counter[str] = Counter()
        self.close_codes: Counter[str] = Counter()
        self.recording = False
        self.lat = array("q")
        self.presence = False
        self.seen: dict[tuple[str, str], list[int]] = {}

    def on_other(self, c: Client, data: bytes) -> None:
        """Every frame that is not a room message."""
        kind = self.dialect.classify(data)
        if kind is Frame.MEMBER_JOINED or kind is Frame.MEMBER_LEFT:
            self.member_events += 1
            self.member_frames += 1
            if self.presence:
                now = time.monotonic_ns()
                key = (kind.value, user_of(data))
                rec = self.seen.get(key)
                if rec is None:
                    self.seen[key] = [1, now, now]
                else:
                    rec[0] += 1
                    rec[2] = max(rec[2], now)
            return
        if kind is Frame.BATCH:
            self._batch(c, data)
        elif kind is Frame.PUB_ACK:
            self.acks += 1
        elif kind is Frame.HB_ACK:
            self.hb_acks += 1
            i = data.rfind(b'"ref":')
            if i >= 0:  # a timed heartbeat: its ref is its send time (ns)
                end = data.find(b"}", i)
                with contextlib.suppress(ValueError):
                    sent = int(data[i + 6 : end])
                    self.hb_lat.append((time.monotonic_ns() - sent) // 1000)
        elif kind is Frame.TYPING:
            self.typing += 1
            c.typing += 1
        elif kind is Frame.PING:
            if c.t is not None:
                c.t.send(_TEXT, self.dialect.pong)
        elif kind is Frame.OPEN:
            if c.t is not None:
                c.t.send(_TEXT, self.dialect.after_open)
        elif kind is Frame.ERROR:
            self.errors[_error_code(data)] += 1
            self._resolve(c, kind)
        elif kind is Frame.READY or kind is Frame.JOINED or kind is Frame.LEFT:
            self._resolve(c, kind)

    def _batch(self, c: Client, data: bytes) -> None:
        """presenced's ``room.batch``: record each member event in it like a lone one."""
        self.member_frames += 1
        if not self.presence:
            # Counted without parsing (forming a big room sends millions of events): every
            # event of a batch has exactly one "user" key, and member meta is not used here.
            self.member_events += data.count(b'"user":')
            return
        events = json.loads(data).get("events", [])
        self.member_events += len(events)
        now = time.monotonic_ns()
        for ev in events:
            kind = _BATCHED.get(ev.get("type"))
            user = ev.get("user")
            # A batch also reaches the member that caused an event: not a receiver.
            if kind is None or user == c.user:
                continue
            rec = self.seen.get((kind, user))
            if rec is None:
                self.seen[(kind, user)] = [1, now, now]
            else:
                rec[0] += 1
                rec[2] = max(rec[2], now)

    @staticmethod
    def _resolve(c: Client, kind: Frame) -> None:
        fut = c.waiter
        if fut is not None and not fut.done():
            fut.set_result(kind)

    def on_closed(self, c: Client) -> None:
        """A connection ended; unexpected ends are counted as drops."""
        if not c.expect_close:
            self.dropped += 1
        fut = c.waiter
        if fut is not None and not fut.done():
            fut.set_exception(ConnectionError(f"{c.user}: connection closed"))

    # --- helpers -----------------------------------------------------------------------

    def _socket(self, _url: object) -> socket.socket:
        """A TCP socket bound to this worker's source address, port chosen at connect."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IP, _BIND_NO_PORT, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((self.source, 0))
        return s

    async def _bounded(
        self, items: list[Any], fn: Callable[[Any], Awaitable[None]], concurrency: int
    ) -> tuple[int, list[str]]:
        """Run ``fn`` on every item, at most ``concurrency`` at once; count failures."""
        failed = 0
        errors: list[str] = []
        it = iter(items)

        async def runner() -> None:
            nonlocal failed
            for item in it:
                try:
                    await fn(item)
                except Exception as exc:  # counted and reported, the run goes on
                    failed += 1
                    if len(errors) < 5:
                        errors.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(runner() for _ in range(max(1, concurrency))))
        return failed, errors

    async def _request(self, c: Client, data: bytes, timeout: float) -> Frame:
        if c.t is None:
            raise ConnectionError(f"{c.user}: not connected")
        fut: asyncio.Future[Frame] = self.loop.create_future()
        c.waiter = fut
        c.t.send(_TEXT, data)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            c.waiter = None

    # --- commands ----------------------------------------------------------------------

    async def cmd_connect(
        self,
        url: str,
        dialect: str,
        users: list[str],
        concurrency: int,
        timeout: float,
        device: str = "d",
    ) -> dict[str, Any]:
        """Open one authenticated connection per user; returns the index range."""
        self.dialect = DIALECTS[dialect]
        self.msg_prefix = self.dialect.message
        first = len(self.clients)

        async def one(user: str) -> None:
            c = Client(self, len(self.clients), user)
            self.clients.append(c)
            fut: asyncio.Future[Frame] = self.loop.create_future()
            c.waiter = fut
            await ws_connect(
                lambda: c,
                url + self.dialect.path(user, device),
                socket_factory=self._socket,
                websocket_handshake_timeout=timeout,
                read_buffer_init_size=4096,
                extra_headers=BROWSER_HEADERS,
            )
            try:
                kind = await asyncio.wait_for(fut, timeout)
            finally:
                c.waiter = None
            if kind is not Frame.READY:
                raise ConnectionError(f"{user}: got {kind.value} instead of a welcome")

        start = time.monotonic()
        failed, errors = await self._bounded(users, one, concurrency)
        return {
            "first": first,
            "end": len(self.clients),
            "failed": failed,
            "errors": errors,
            "seconds": time.monotonic() - start,
        }

    async def cmd_join(
        self, pairs: list[tuple[int, str]], concurrency: int, timeout: float
    ) -> dict[str, Any]:
        """Join client ``idx`` to ``room`` for every pair; wait for every reply."""

        async def one(pair: tuple[int, str]) -> None:
            idx, room = pair
            kind = await self._request(self.clients[idx], self.dialect.join(room), timeout)
            if kind is not Frame.JOINED:
                raise RuntimeError(f"join {room}: got {kind.value}")

        start = time.monotonic()
        failed, errors = await self._bounded(pairs, one, concurrency)
        return {"failed": failed, "errors": errors, "seconds": time.monotonic() - start}

    async def cmd_move(self, idx: int, room: str, action: str, timeout: float) -> dict[str, Any]:
        """One client leaves or joins ``room``; returns the send time (ns)."""
        c = self.clients[idx]
        data = self.dialect.leave(room) if action == "leave" else self.dialect.join(room)
        t0 = time.monotonic_ns()
        kind = await self._request(c, data, timeout)
        return {"t0": t0, "reply": kind.value, "user": c.user}

    async def cmd_heartbeat(
        self, interval: float, jitter: float = 0.2, timed: bool = False
    ) -> dict[str, Any]:
        """Every open client sends an application heartbeat every ``interval`` s (jittered).

        The first beat of each client falls at a random point of the first interval, so
        the beats are spread evenly; each next one ``interval * (1 +- jitter)`` later.
        ``timed``: each beat carries its send time as ``ref``, and the round trip of its
        ``heartbeat.ack`` is recorded (``latencies kind=heartbeats``).
        """
        rnd = random.Random(os.getpid())
        beat = self.dialect.heartbeat()
        timed_beat = self.dialect.timed_heartbeat

        def fire(c: Client) -> None:
            if c.t is None or c.paused:
                c.hb = None
                return
            c.t.send(_TEXT, timed_beat(time.monotonic_ns()) if timed else beat)
            self.hb_sent += 1
            c.hb = self.loop.call_later(interval * rnd.uniform(1 - jitter, 1 + jitter), fire, c)

        started = 0
        for c in self.clients:
            if c.t is not None and c.hb is None:
                c.hb = self.loop.call_later(rnd.uniform(0, interval), fire, c)
                started += 1
        return {"started": started}

    async def cmd_heartbeat_stop(self) -> dict[str, Any]:
        """Stop every client's heartbeat timer."""
        for c in self.clients:
            if c.hb is not None:
                c.hb.cancel()
                c.hb = None
        return {}

    async def cmd_record(self, messages: bool, presence: bool) -> dict[str, Any]:
        """Reset the counters and start recording message latencies / presence events."""
        self.reset()
        self.recording = messages
        self.presence = presence
        return {}

    async def cmd_stats(self) -> dict[str, Any]:
        """Counters so far, this process's CPU seconds and open connection count."""
        t = os.times()
        return {
            "delivered": self.delivered,
            "acks": self.acks,
            "hb_acks": self.hb_acks,
            "hb_sent": self.hb_sent,
            "typing": self.typing,
            "member_events": self.member_events,
            "member_frames": self.member_frames,
            "dropped": self.dropped,
            "errors": dict(self.errors),
            "close_codes": dict(self.close_codes),
            "open": sum(1 for c in self.clients if c.t is not None),
            "cpu": t.user + t.system,
            "recorded": len(self.lat),
        }

    async def cmd_latencies(self, kind: str = "messages") -> dict[str, Any]:
        """Histogram (us, 3 significant digits) of the recorded delivery latencies, or with
        ``kind="heartbeats"`` of the timed heartbeats' round trips; and the largest value."""
        values = self.hb_lat if kind == "heartbeats" else self.lat
        hist = Counter(quantize(v) for v in values)
        return {"hist": sorted(hist.items()), "count": len(values), "max": max(values, default=0)}

    async def cmd_typing_counts(self) -> dict[str, Any]:
        """Typing events each client received since the last reset (open clients only)."""
        return {"counts": [c.typing for c in self.clients if c.t is not None]}

    async def cmd_seen(self, keys: list[tuple[str, str]]) -> dict[str, Any]:
        """For each (event kind, user): [receivers, first, last receive time in ns]."""
        return {"seen": [self.seen.get((k, u), [0, 0, 0]) for k, u in keys]}

    async def cmd_publish(
        self, rooms: list[tuple[str, list[int]]], rate: float, seconds: float, size: int
    ) -> dict[str, Any]:
        """Send ``rate`` messages/s for ``seconds`` s, round robin over rooms and members.

        Message ``i`` goes to room ``i % len(rooms)``, sent by the next member of that
        room in turn; each body carries its send time. A late loop catches up by sending
        every message that is due (bounded: ``rate * seconds`` messages in all).
        """
        total = int(rate * seconds)
        members = [[self.clients[i] for i in idxs] for _, idxs in rooms]
        names = [room for room, _ in rooms]
        n_rooms = len(rooms)
        sent = 0
        i = 0
        start = time.monotonic()
        while i < total:
            due = min(total, int((time.monotonic() - start) * rate) + 1)
            while i < due:
                r = i % n_rooms
                group = members[r]
                c = group[(i // n_rooms) % len(group)]
                if c.t is not None:
                    body = body_with_time(time.monotonic_ns(), size)
                    c.t.send(_TEXT, self.dialect.publish(names[r], body))
                    sent += 1
                i += 1
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        return {"sent": sent, "seconds": time.monotonic() - start}

    async def cmd_pause(self, idx: int) -> dict[str, Any]:
        """Stop reading on client ``idx`` (no FIN, no pong, no heartbeat): a vanished peer."""
        c = self.clients[idx]
        if c.t is None:
            raise ConnectionError(f"{c.user}: not connected")
        c.paused = True
        c.expect_close = True
        if c.hb is not None:
            c.hb.cancel()
            c.hb = None
        c.t.underlying_transport.pause_reading()
        return {"t0": time.monotonic_ns(), "user": c.user}

    async def cmd_close(self, idx: int) -> dict[str, Any]:
        """Close client ``idx`` cleanly (close frame 1001, then FIN), without leaving."""
        c = self.clients[idx]
        if c.t is None:
            raise ConnectionError(f"{c.user}: not connected")
        c.expect_close = True
        t0 = time.monotonic_ns()
        c.t.send_close(WSCloseCode.GOING_AWAY)
        c.t.disconnect()
        return {"t0": t0, "user": c.user}

    async def cmd_drop_all(self, timeout: float = 10.0) -> dict[str, Any]:
        """Abort every connection and forget the clients (bounded wait for the ends)."""
        for c in self.clients:
            c.expect_close = True
            if c.hb is not None:
                c.hb.cancel()
                c.hb = None
            if c.t is not None:
                if c.paused:
                    c.t.underlying_transport.resume_reading()
                c.t.disconnect(graceful=False)
        deadline = time.monotonic() + timeout
        while any(c.t is not None for c in self.clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = sum(1 for c in self.clients if c.t is not None)
        self.clients = []
        self.reset()
        return {"left_open": left}


def _error_code(data: bytes) -> str:
    try:
        msg = json.loads(data[2:] if data.startswith(b"44") else data)
    except ValueError:
        return "unparsable"
    if isinstance(msg, dict):
        return str(msg.get("code") or msg.get("message") or "error")
    return "error"


async def serve(source: str) -> None:
    """Read commands from stdin until EOF or ``exit``; answer each on stdout."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker = Worker(source)
    out = sys.stdout.buffer
    tasks: set[asyncio.Task[None]] = set()

    def reply(msg: dict[str, Any]) -> None:
        out.write(json.dumps(msg).encode() + b"\n")
        out.flush()

    async def handle(msg: dict[str, Any]) -> None:
        fn = getattr(worker, "cmd_" + str(msg.pop("cmd")))
        rid = msg.pop("id")
        try:
            result = await fn(**msg)
        except Exception as exc:
            reply({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        else:
            reply({"id": rid, "ok": True, "result": result})

    reply({"id": 0, "ok": True, "result": {"pid": os.getpid(), "source": source}})
    while True:
        line = await reader.readline()
        if not line:
            break
        msg = json.loads(line)
        if msg.get("cmd") == "exit":
            break
        task = asyncio.ensure_future(handle(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await worker.cmd_drop_all(5.0)


def main() -> None:
    """Entry point: ``python -m bench.loadgen.worker --source 127.0.0.N``."""
    parser = argparse.ArgumentParser(description="bench load generator worker")
    parser.add_argument("--source", default="127.0.0.1", help="loopback source address")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
    except ImportError:  # the suite installs it; plain asyncio still works, slower
        asyncio.run(serve(args.source))
    else:
        uvloop.run(serve(args.source))


if __name__ == "__main__":
    main()
