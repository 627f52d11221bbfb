"""A WebSocket relay on loopback that can lose chosen server frames: a lossy network, for real.

Clients connect to :attr:`Relay.url` instead of the server's; every connection is relayed to
the server (same path and query) frame by frame, both ways. A frame from the server for which
a rule returns true is dropped instead of delivered, as a network that loses it would do to a
client that has no other way of knowing. Each rule drops one frame, then is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["Relay"]

Frame = dict[str, Any]


class Relay:
    """Relays WebSocket connections to ``upstream`` (a ``ws://host:port/ws`` URL)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rsplit("/", 1)[0]  # ws://host:port
        self.dropped: list[Frame] = []
        self._rules: list[tuple[Callable[[Frame], bool], asyncio.Event]] = []
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> Relay:
        self._server = await serve(self._relay, "127.0.0.1", 0, compression=None)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def drop(self, rule: Callable[[Frame], bool]) -> asyncio.Event:
        """Drop the next server frame (decoded) for which ``rule`` is true; the event is set
        once it has been dropped."""
        done = asyncio.Event()
        self._rules.append((rule, done))
        return done

    def _lose(self, raw: str | bytes) -> bool:
        if not self._rules:
            return False
        try:
            frame = json.loads(raw)
        except ValueError:
            return False
        for index, (rule, done) in enumerate(self._rules):
            if isinstance(frame, dict) and rule(frame):
                del self._rules[index]
                self.dropped.append(frame)
                done.set()
                return True
        return False

    async def _relay(self, downstream: ServerConnection) -> None:
        path = downstream.request.path if downstream.request is not None else "/ws"
        async with connect(
            self.upstream + path, ping_interval=None, compression=None, max_size=None
        ) as upstream:
            tasks = [
                asyncio.create_task(self._pump(downstream, upstream, lossy=False)),
                asyncio.create_task(self._pump(upstream, downstream, lossy=True)),
            ]
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _pump(
        self,
        source: ServerConnection | ClientConnection,
        sink: ServerConnection | ClientConnection,
        *,
        lossy: bool,
    ) -> None:
        try:
            async for raw in source:
                if lossy and self._lose(raw):
                    continue
                await sink.send(raw)
        except ConnectionClosed:
            pass
        finally:
            await sink.close()
