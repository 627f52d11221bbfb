"""Bare echo-broadcast WebSocket server on ``websockets`` (asyncio API) + uvloop.

One of the two candidates measured by ``bench/wslib/load.py`` to choose presenced's
server WebSocket library (results in docs/benchmarks.md). Every client that connects
joins one set; a text frame ``pub:<payload>`` from any client is broadcast to every
connected client as a text frame carrying ``<payload>``; anything else is ignored.

The broadcast follows the design rule "encode once, write to all, never await one
recipient": ``websockets.broadcast`` encodes the ``str`` payload to UTF-8 once, then
frames and writes it on every connection without awaiting any of them.

Usage: ``python ws_websockets.py PORT`` (``0`` picks a free port). Prints
``READY <port>`` on stdout once listening. Compression and keepalive pings are off,
as on the picows side (picows has neither), so both servers do the same work.
"""

from __future__ import annotations

import sys

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["main", "run"]

_PREFIX = "pub:"

# The one set every connection joins; the broadcast iterates over it.
_clients: set[ServerConnection] = set()


async def _handler(ws: ServerConnection) -> None:
    """Keep ``ws`` in the set while it is open; broadcast its ``pub:`` frames."""
    _clients.add(ws)
    try:
        while True:
            data = await ws.recv()
            # A text frame arrives as str, a binary one as bytes (ignored).
            if isinstance(data, str) and data.startswith(_PREFIX):
                broadcast(_clients, data[4:])
    except ConnectionClosed:
        pass
    finally:
        _clients.discard(ws)


async def run(port: int) -> None:
    """Serve on 127.0.0.1:``port`` until cancelled."""
    async with serve(
        _handler,
        "127.0.0.1",
        port,
        compression=None,
        ping_interval=None,
        backlog=1024,
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"READY {bound}", flush=True)
        await server.serve_forever()


def main() -> None:
    """Entry point: port from argv[1] (default 0)."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    uvloop.run(run(port))


if __name__ == "__main__":
    main()
