"""Hostile clients for :mod:`bench.flood`: one kind of flood from one process, for a while.

``python -m bench.loadgen.hostile --url ws://127.0.0.1:PORT --kind KIND --conns N
--seconds S [--rate R] [--nice 10] [--source-net 127.0.2]`` imports everything, prints
``{"ready": ...}`` and waits for a line on stdin; then it floods for ``S`` seconds, prints
one JSON line with what it saw and exits. Every connection is a raw socket speaking
RFC 6455 itself (masked client frames, with the all-zero mask key: legal, and the payload
goes out as built), so a frame costs the flooder nothing but its bytes: whole chunks of
ready-made frames are written. Kinds:

- ``unpaced``: authenticated (``?user=`` in insecure mode), then ``{"type":"heartbeat"}``
  frames, the cheapest valid request;
- ``binary``: authenticated, then 16-byte binary frames;
- ``oversized``: authenticated, then text frames of ``--frame-bytes`` (default 64 KiB + 1:
  one byte over the default ``max_frame_bytes``, below the 1 MiB hard cap);
- ``deep``: authenticated, then ``[[[...]]]`` 1,000 deep (2,000 bytes) text frames;
- ``typing``: authenticated, joins ``--room``, then ``typing.start`` and ``typing.stop``
  alternately;
- ``preauth``: never authenticates (no ``user`` in the URL): the header of a 1 MiB text
  frame and all but the last byte of its payload, then it waits.

"As fast as the socket takes them": each connection writes chunks while its transport
accepts them (``pause_writing`` at 256 KiB buffered, resumed when it drains). With
``--rate`` > 0 (not for ``preauth``) each connection sends that many frames per second
instead, paced (late timers catch up, bounded). The flooder reads and parses everything
the server sends (counting errors by code and keeping the close code), as a client that
ignores what it reads. A connection the server closes (or resets) is replaced at once by a
new one, a new session (no resume), until the time is up: a flood cut is only worth what
a reconnect costs. Each new connection binds the next source address of
``SOURCE_NET.1 - .250`` so thousands of reconnects do not exhaust one address's ports.
The process lowers its own priority (``--nice``): it shares the generator core with the
measured bystanders, and most of its time it waits for the server anyway.

Bounded: every connection ends by the deadline (aborted if need be), at most
``MAX_CYCLES`` connections per slot, every wait with a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import resource
import socket
import statistics
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

__all__ = ["KINDS", "Flood", "frame", "main"]

KINDS = ("unpaced", "binary", "oversized", "deep", "typing", "preauth")
MAX_CYCLES = 200_000  # connections per slot, a bound on the reconnect loop
HIGH_WATER = 256 * 1024  # transport buffer at which writing pauses
CHUNK = 64 * 1024  # bytes of ready-made frames per write
PREAUTH_FRAME = 1 << 20  # the announced size of the pre-auth frame
_BIND_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_TEXT, _BINARY, _CLOSE = 0x1, 0x2, 0x8


def frame(opcode: int, payload: bytes, length: int | None = None) -> bytes:
    """A masked client frame (FIN set, mask key 0: the payload goes out unchanged).

    ``length`` announces a payload size other than ``len(payload)`` (the pre-auth flood
    announces 1 MiB and sends less).
    """
    n = len(payload) if length is None else length
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload


def _repeat(frames: list[bytes]) -> bytes:
    """The frames, in turn, repeated to about ``CHUNK`` bytes (at least once)."""
    one = b"".join(frames)
    return one * max(1, CHUNK // len(one))


def flood_frames(kind: str, frame_bytes: int, room: str) -> list[bytes]:
    """The frames one connection of ``kind`` sends, in the order it sends them."""
    if kind == "unpaced":
        return [frame(_TEXT, b'{"type":"heartbeat"}')]
    if kind == "binary":
        return [frame(_BINARY, bytes(range(16)))]
    if kind == "oversized":
        pad = frame_bytes - len(b'{"type":"heartbeat","pad":""}')
        return [frame(_TEXT, b'{"type":"heartbeat","pad":"' + b"x" * pad + b'"}')]
    if kind == "deep":
        return [frame(_TEXT, b"[" * 1000 + b"]" * 1000)]
    if kind == "typing":
        start = json.dumps({"type": "typing.start", "room": room}).encode()
        stop = json.dumps({"type": "typing.stop", "room": room}).encode()
        return [frame(_TEXT, start), frame(_TEXT, stop)]
    raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")


class _Conn(asyncio.Protocol):
    """One hostile connection: the upgrade, the flood, and everything read back."""

    def __init__(self, flood: Flood, path: str, done: asyncio.Future[None]) -> None:
        self.f = flood
        self.path = path
        self.done = done
        self.t: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.flooding = False
        self.paused = False
        self.close_code: int | None = None
        self.flood_t0 = 0.0
        self.pacer: asyncio.TimerHandle | None = None
        self.sent_frames = 0
        self.preauth_left = 0
        self.stopped = False  # ended by the flooder's own deadline, not by the server

    # --- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but have its methods)
        self.t = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=HIGH_WATER)
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.f.host}:{self.f.port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        self.f.bytes_in += len(data)
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            del self.buf[: end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.f.refused[head.split(b"\r\n", 1)[0].decode("latin-1")[:40]] += 1
                self._end()
                return
            self.upgraded = True
            if self.f.kind == "preauth":
                self._start()
        self._frames()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.flooding and self.f.rate <= 0:
            self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pacer is not None:
            self.pacer.cancel()
        f = self.f
        f.frames_out += self.sent_frames
        if self.flooding and self.stopped:
            f.closes["open at the end"] += 1
        elif self.flooding:
            f.closes[str(self.close_code or 1006)] += 1
            f.lifetimes.append(time.monotonic() - self.flood_t0)
        elif self.upgraded:
            f.closes_before_flood[str(self.close_code or 1006)] += 1
        self.t = None
        if not self.done.done():
            self.done.set_result(None)

    # --- reading -------------------------------------------------------------------------

    def _frames(self) -> None:
        """Parse every whole server frame in the buffer (unmasked, RFC 6455)."""
        buf = self.buf
        pos = 0
        f = self.f
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            at = pos + 2
            if n == 126:
                if len(buf) - at < 2:
                    break
                n = int.from_bytes(buf[at : at + 2], "big")
                at += 2
            elif n == 127:
                if len(buf) - at < 8:
                    break
                n = int.from_bytes(buf[at : at + 8], "big")
                at += 8
            if len(buf) - at < n:
                break
            opcode = b0 & 0x0F
            payload = bytes(buf[at : at + n])
            pos = at + n
            if opcode == _TEXT:
                self._text(payload)
            elif opcode == _CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if n >= 2 else 1005
                f.received["close"] += 1
                if self.t is not None:
                    self.t.close()
                break
            else:
                f.received[f"opcode {opcode}"] += 1
        del buf[:pos]

    def _text(self, payload: bytes) -> None:
        f = self.f
        if payload.startswith(b'{"type":"error"'):
            i = payload.find(b'"code":"')
            code = payload[i + 8 : payload.find(b'"', i + 8)].decode() if i >= 0 else "?"
            f.errors[code] += 1
            return
        kind = payload[9 : payload.find(b'"', 9)].decode() if payload[:9] == b'{"type":"' else "?"
        f.received[kind] += 1
        if not self.flooding:
            if kind == "welcome":
                if f.kind == "typing":
                    self._send(json.dumps({"type": "room.join", "room": f.room}).encode())
                else:
                    self._start()
            elif kind == "room.joined":
                self._start()

    # --- writing -------------------------------------------------------------------------

    def _send(self, payload: bytes) -> None:
        if self.t is not None:
            self.t.write(frame(_TEXT, payload))

    def _start(self) -> None:
        self.flooding = True
        self.flood_t0 = time.monotonic()
        self.f.flooded += 1
        if self.f.kind == "preauth":
            if self.t is None:
                return
            self.t.write(frame(_TEXT, b"", PREAUTH_FRAME))
            self.preauth_left = PREAUTH_FRAME - 1
            self._pump_preauth()
        elif self.f.rate > 0:
            self._pace(0, self.flood_t0)
        else:
            self._pump()

    def _pump(self) -> None:
        """Write whole chunks until the transport pushes back (or the time is up)."""
        t = self.t
        chunk, per = self.f.chunk, self.f.per_chunk
        while t is not None and not self.paused and not t.is_closing():
            if self.f.over():
                self.stop()
                return
            t.write(chunk)
            self.sent_frames += per
            self.f.bytes_out += len(chunk)

    def _pump_preauth(self) -> None:
        t = self.t
        while t is not None and self.preauth_left > 0 and not t.is_closing():
            n = min(CHUNK, self.preauth_left)
            t.write(b"x" * n)
            self.preauth_left -= n
            self.f.bytes_out += n
            if self.paused:
                # Resumed by a drain (never, once the server stops reading): the rest
                # waits on a timer, bounded by the deadline.
                self.pacer = asyncio.get_running_loop().call_later(0.01, self._pump_preauth)
                return

    def _pace(self, i: int, t0: float) -> None:
        """Paced: frame ``i`` of this connection is due at ``t0 + i / rate``."""
        t = self.t
        if t is None or t.is_closing():
            return
        if self.f.over():
            self.stop()
            return
        frames, rate = self.f.frames, self.f.rate
        due = min(int((time.monotonic() - t0) * rate) + 1, i + 1000)
        while i < due:
            t.write(frames[i % len(frames)])
            self.f.bytes_out += len(frames[i % len(frames)])
            self.sent_frames += 1
            i += 1
        delay = max(0.0, t0 + i / rate - time.monotonic())
        self.pacer = asyncio.get_running_loop().call_later(delay, self._pace, i, t0)

    def _end(self) -> None:
        if self.t is not None:
            self.t.abort()

    def stop(self) -> None:
        """The time is up: drop the connection (no close frame)."""
        self.stopped = True
        self._end()


class Flood:
    """``conns`` slots, each holding one hostile connection at a time until the deadline."""

    def __init__(self, args: argparse.Namespace) -> None:
        parts = urlsplit(args.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.kind: str = args.kind
        self.conns: int = args.conns
        self.rate: float = args.rate if args.kind != "preauth" else 0.0
        self.room: str = args.room
        self.seconds: float = args.seconds
        self.source_net: str = args.source_net
        self.tag: str = args.tag
        self.frames = (
            [] if self.kind == "preauth" else flood_frames(self.kind, args.frame_bytes, self.room)
        )
        self.chunk = _repeat(self.frames) if self.frames else b""
        one = sum(len(x) for x in self.frames)
        self.per_chunk = len(self.chunk) // one * len(self.frames) if one else 0
        self.deadline = 0.0
        self._next_source = 0
        self.connections = 0  # TCP connections made
        self.connect_errors: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # upgrade answered with something but 101
        self.flooded = 0  # connections that got as far as flooding
        self.closes: Counter[str] = Counter()  # how flooding connections ended
        self.closes_before_flood: Counter[str] = Counter()
        self.lifetimes: list[float] = []  # s from a connection's first flood frame to its end
        self.received: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.frames_out = 0
        self.bytes_out = 0
        self.bytes_in = 0

    def over(self) -> bool:
        return time.monotonic() >= self.deadline

    def _socket(self) -> socket.socket:
        self._next_source = self._next_source % 250 + 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IP, _BIND_NO_PORT, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        s.bind((f"{self.source_net}.{self._next_source}", 0))
        return s

    async def _slot(self, k: int) -> None:
        loop = asyncio.get_running_loop()
        path = "/ws" if self.kind == "preauth" else f"/ws?user=flood-{self.tag}-{k}&device=d"
        for _ in range(MAX_CYCLES):
            left = self.deadline - time.monotonic()
            if left <= 0:
                return
            done: asyncio.Future[None] = loop.create_future()
            sock = self._socket()
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (self.host, self.port)), left)
                _t, conn = await loop.create_connection(
                    functools.partial(_Conn, self, path, done), sock=sock
                )
            except (OSError, TimeoutError) as exc:
                sock.close()
                self.connect_errors[type(exc).__name__] += 1
                await asyncio.sleep(0.01)  # a refused connect is not retried in a spin
                continue
            self.connections += 1
            try:
                left = max(0.0, self.deadline - time.monotonic())
                await asyncio.wait_for(asyncio.shield(done), left)
            except TimeoutError:
                conn.stop()
                await asyncio.wait_for(done, 5.0)
                return

    async def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        c0 = os.times()
        self.deadline = t0 + self.seconds
        await asyncio.gather(*(self._slot(k) for k in range(self.conns)))
        elapsed = time.monotonic() - t0
        c1 = os.times()
        life = sorted(self.lifetimes)
        return {
            "kind": self.kind,
            "conns": self.conns,
            "rate": self.rate,
            "seconds": elapsed,
            "connections": self.connections,
            "connect_errors": dict(self.connect_errors),
            "refused": dict(self.refused),
            "flooded": self.flooded,
            "closes": dict(self.closes),
            "closes_before_flood": dict(self.closes_before_flood),
            "ended": len(life),
            "lifetime_ms_min": life[0] * 1000 if life else None,
            "lifetime_ms_median": statistics.median(life) * 1000 if life else None,
            "lifetime_ms_max": life[-1] * 1000 if life else None,
            "received": dict(self.received),
            "errors": dict(self.errors),
            "frames_out": self.frames_out,
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
            "cpu_s": (c1.user + c1.system) - (c0.user + c0.system),
        }


async def _serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer
    out.write(json.dumps({"ready": os.getpid()}).encode() + b"\n")
    out.flush()
    line = await asyncio.wait_for(reader.readline(), 120.0)
    if line.strip() != b"go":
        return
    result = await Flood(args).run()
    out.write(json.dumps(result).encode() + b"\n")
    out.flush()


def main() -> None:
    """Entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description="bench flood: hostile clients")
    parser.add_argument("--url", required=True, help="ws://HOST:PORT of the server")
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="frames/s per connection")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--frame-bytes", type=int, default=64 * 1024 + 1)
    parser.add_argument("--source-net", default="127.0.2", help="first three octets")
    parser.add_argument("--tag", default="0", help="in the flooders' user ids")
    parser.add_argument("--nice", type=int, default=10)
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(args))
    else:
        uvloop.run(_serve(args))


if __name__ == "__main__":
    main()
