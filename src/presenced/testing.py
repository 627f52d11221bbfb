"""Helpers for tests, ours and users': a manual clock and a recording protocol client.

:class:`ManualClock` drives the pure core deterministically. :class:`ProtocolClient` is a bare
WebSocket client that speaks raw protocol frames, records everything the server sends and
waits for a message *with a timeout* rather than sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from presenced.protocol.codec import decode_server
from presenced.protocol.messages import RoomBatch, ServerMessage

__all__ = ["ManualClock", "ProtocolClient"]


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self.now = start
        self._wall_offset = wall_offset

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self._wall_offset

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class ProtocolClient:
    """A raw protocol client over ``websockets`` that records every server message."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.received: list[ServerMessage] = []
        self.frames = 0  # frames read (a room.batch counts once)
        self.batches = 0  # room.batch frames among them
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> ProtocolClient:
        """Open a WebSocket to ``url``; keyword arguments go to ``websockets`` connect."""
        from websockets.asyncio.client import connect

        kwargs.setdefault("ping_interval", None)  # the server pings; tests decide on pongs
        ws = await connect(url, **kwargs)
        return cls(ws)

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for frame in self.ws:
                message = decode_server(frame)
                self.frames += 1
                if isinstance(message, RoomBatch):
                    # Unpacked as a client SDK does: each event as if it came alone.
                    self.received.extend(message.events)
                    self.batches += 1
                else:
                    self.received.append(message)
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            rcvd = self.ws.protocol.close_rcvd
            self.close_code = rcvd.code if rcvd is not None else 1006
            self.close_reason = rcvd.reason if rcvd is not None else ""
            self.closed.set()
            self._changed.set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def request(self, message: dict[str, Any], timeout: float = 5.0) -> ServerMessage:
        """Send with a fresh ref and wait for the reply (or error) carrying it."""
        self._ref = getattr(self, "_ref", 0) + 1
        ref = f"r{self._ref}"
        await self.send({**message, "ref": ref})
        return await self.wait_for(lambda m: getattr(m, "ref", None) == ref, timeout=timeout)

    async def wait_for(
        self,
        predicate: Callable[[ServerMessage], bool] | str,
        *,
        timeout: float = 5.0,
        start: int = 0,
    ) -> ServerMessage:
        """The first message from index ``start`` on that matches (a type name or predicate)."""
        match = _matcher(predicate)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for message in self.received[start:]:
                if match(message):
                    return message
            if self.closed.is_set():
                raise AssertionError(f"connection closed ({self.close_code}) before a match")
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                types = [type(m).__name__ for m in self.received]
                raise AssertionError(f"no matching message within {timeout} s; got {types}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code

    def of_type(self, name: str) -> list[ServerMessage]:
        return [m for m in self.received if _type_name(m) == name]

    async def close(self) -> None:
        await self.ws.close()
        await self.wait_closed()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (the client vanished)."""
        self.ws.transport.abort()


def _type_name(message: ServerMessage) -> str:
    return str(type(message).__struct_config__.tag)


def _matcher(predicate: Callable[[ServerMessage], bool] | str) -> Callable[[ServerMessage], bool]:
    if isinstance(predicate, str):
        name = predicate
        return lambda m: _type_name(m) == name
    return predicate
