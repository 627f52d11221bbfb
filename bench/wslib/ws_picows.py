"""Bare echo-broadcast WebSocket server on ``picows`` (callback API, Cython) + uvloop.

The other candidate measured by ``bench/wslib/load.py`` (results in
docs/benchmarks.md), doing exactly what ``ws_websockets.py`` does: every client that
connects joins one set; a text frame ``pub:<payload>`` from any client is sent to
every connected client as a text frame carrying ``<payload>``; anything else is
ignored. The payload is copied out of the receive buffer once, as ``bytes``, and the
same object is passed to ``transport.send`` for every recipient; ``send`` never
blocks, so no recipient is awaited.

Usage: ``python ws_picows.py PORT [READ_BUFFER_INIT_SIZE]`` (``0`` picks a free port).
Prints ``READY <port>`` on stdout once listening. Auto-ping is off (the library
default), matching ``ping_interval=None`` on the websockets side. The optional second
argument sets picows' per-connection initial read buffer (default 16 KiB, which the
handshake touches entirely, so it counts in idle memory; it grows on demand).
"""

from __future__ import annotations

import sys

import uvloop
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

__all__ = ["BroadcastListener", "main", "run"]

_PREFIX = b"pub:"

# The one set every connection joins; the broadcast iterates over it.
_clients: set[WSTransport] = set()


class BroadcastListener(WSListener):
    """Per-connection callbacks: join the set, broadcast ``pub:`` frames, leave."""

    def on_ws_connected(self, transport: WSTransport) -> None:
        """Join the broadcast set."""
        _clients.add(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Broadcast a ``pub:`` text frame; answer a close; ignore the rest."""
        if frame.msg_type is WSMsgType.TEXT:
            # The frame points into the read buffer: copy the payload out once.
            data = frame.get_payload_as_bytes()
            if data[:4] == _PREFIX:
                payload = data[4:]
                for peer in _clients:
                    peer.send(WSMsgType.TEXT, payload)
        elif frame.msg_type is WSMsgType.CLOSE:
            # picows leaves the closing handshake to the listener: echo it, then close.
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        """Leave the broadcast set."""
        _clients.discard(transport)


def _listener_factory(request: WSUpgradeRequest) -> WSListener:
    return BroadcastListener()


async def run(port: int, read_buffer_init_size: int = 16 * 1024) -> None:
    """Serve on 127.0.0.1:``port`` until cancelled."""
    server = await ws_create_server(
        _listener_factory,
        "127.0.0.1",
        port,
        read_buffer_init_size=read_buffer_init_size,
        backlog=1024,
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Entry point: port from argv[1] (default 0), read buffer size from argv[2]."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if len(sys.argv) > 2:
        uvloop.run(run(port, int(sys.argv[2])))
    else:
        uvloop.run(run(port))


if __name__ == "__main__":
    main()
