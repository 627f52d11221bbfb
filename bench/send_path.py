"""What one delivery costs in the transport itself: CPU nanoseconds per ``send_text``.

``python -m bench.send_path [--conns 1000] [--size 150] [--rounds 300]`` starts the
gateway's WebSocket listener (:func:`presenced.server.ws_picows.start_picows_server`) in
this process with a handler that only keeps each connection's transport, opens
``--conns`` raw loopback sockets to it, then writes one ``--size`` byte text frame to each,
``--rounds`` times, draining the client sockets between rounds (outside the timing). It
prints the median round's CPU time (``thread_time``: the write system calls included) per
delivery. :mod:`bench.fanout_path` stubs ``send_text`` out; this is the other half, so
run it under ``PYTHONPATH=OTHER_TREE/src`` to compare two trees' transports.

With ``--framed`` (trees whose transport has ``send_framed``), a second figure: the same
frames framed once per round and written by ``send_framed``.

On loopback the write system call (and the kernel's delivery to the reading socket, done
in the writer's call) is most of a delivery and varies by a microsecond from one run to
the next. ``--queued`` leaves that out: the client sockets are not read and every
server-side socket is filled first, so each frame is only queued in the event loop's
transport (no system call) and what is timed is the transport's own code.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import statistics
import time
from typing import Any

from presenced.server.ws_picows import start_picows_server

__all__ = ["main"]


_KEPT: list[Any] = []


class _Keep:
    """A TransportHandler that keeps its transport and ignores everything else."""

    def on_open(self, transport: Any) -> None:
        _KEPT.append(transport)

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


async def _open(port: int, count: int) -> list[socket.socket]:
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(
            sock,
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode(),
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(sock, 4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        socks.append(sock)
    return socks


def _drain(socks: list[socket.socket]) -> int:
    got = 0
    for sock in socks:
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not data:
                break
            got += len(data)
    return got


async def _rounds(socks: list[socket.socket], rounds: int, send: Any, queued: bool) -> float:
    """The median round's CPU nanoseconds per delivery of ``send()``."""
    per = []
    for _ in range(rounds):
        t0 = time.thread_time_ns()
        send()
        per.append((time.thread_time_ns() - t0) / len(socks))
        if not queued:
            await asyncio.sleep(0)  # let uvloop flush anything it queued
            _drain(socks)
    return statistics.median(per) if not BEST else min(per)


BEST = False  # --best: the fastest round instead of the median one


def _fill(transports: list[Any]) -> None:
    """Write to every socket until the event loop's transport holds what the kernel does
    not take: from then on each write is only queued."""
    block = b"f" * 1000
    for transport in transports:
        transport.set_buffer_limit(1 << 30)  # no pause_writing
        while transport.buffered() == 0:
            transport.send_text(block)


async def run(conns: int, size: int, rounds: int, framed: bool, queued: bool) -> dict[str, float]:
    server = await start_picows_server(
        "127.0.0.1",
        0,
        ws_path="/ws",
        handler_factory=lambda request: _Keep(),  # type: ignore[arg-type,return-value]
        http_route=lambda request: None,
        max_frame_bytes=64 * 1024,
    )
    port = server.sockets[0].getsockname()[1]
    socks = await _open(port, conns)
    while len(_KEPT) < conns:
        await asyncio.sleep(0.01)
    transports = list(_KEPT)
    payload = b'{"type":"message","body":"' + b"x" * max(0, size - 28) + b'"}'

    def send_text() -> None:
        for transport in transports:
            transport.send_text(payload)

    if queued:
        _fill(transports)
    result = {"send_text": await _rounds(socks, rounds, send_text, queued)}
    if framed and hasattr(transports[0], "send_framed"):
        from presenced.server.ws_frames import text_frame

        def send_framed() -> None:
            frame = text_frame(payload)
            for transport in transports:
                transport.send_framed(frame)

        result["send_framed"] = await _rounds(socks, rounds, send_framed, queued)
    for sock in socks:
        sock.close()
    server.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=1000)
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--framed", action="store_true")
    parser.add_argument("--queued", action="store_true")
    parser.add_argument("--best", action="store_true", help="the fastest round's figure")
    args = parser.parse_args()
    global BEST
    BEST = args.best
    import uvloop

    result = uvloop.run(run(args.conns, args.size, args.rounds, args.framed, args.queued))
    print(" ".join(f"{name}={ns:.0f}ns" for name, ns in result.items()))


if __name__ == "__main__":
    main()
