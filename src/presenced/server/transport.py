"""The transport seam: what the gateway needs from a WebSocket library, and nothing more.

A library adapter (:mod:`presenced.server.ws_picows`) turns each accepted connection into a
:class:`Transport` and calls the :class:`TransportHandler` it gets for it. Swapping the
library means writing one adapter; the gateway does not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ConnectRequest", "Transport", "TransportHandler"]


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """The HTTP upgrade request, as the gateway needs it."""

    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-cased names
    peer: str


SMALL_FRAME = 1020
"""Frames up to this size go through :meth:`Transport.send_text`, larger ones through
:meth:`Transport.send_large`. picows copies a frame into a per-connection write buffer that
starts at 1 KiB (1,020 bytes of payload and its header) and never shrinks: one 7 KiB join
reply would leave every connection holding 7 KiB for life (docs/benchmarks.md, "Memory per
idle connection: where the bytes go")."""


class Transport(Protocol):
    """One open WebSocket. Every method returns at once; nothing here awaits. ``peer`` is
    the remote address of the socket (``host`` or ``host:port``; '' when unknown)."""

    peer: str

    def send_text(self, data: bytes) -> None:
        """Queue one text frame (UTF-8 JSON bytes) of at most :data:`SMALL_FRAME` bytes: the
        fan-out's path, which must cost as little as a call can."""

    def send_large(self, data: bytes) -> None:
        """Queue one text frame of any size without keeping, per connection, a buffer as
        large as it (a join reply listing a room's members, a history page)."""

    def ping(self) -> None: ...

    def close(self, code: int, reason: str) -> None:
        """Send a close frame and drop the connection once it is flushed."""

    def abort(self) -> None:
        """Drop the connection now, without a close handshake."""

    def buffered(self) -> int:
        """Bytes queued in user space and the kernel-side write buffer not yet sent."""

    def set_buffer_limit(self, high: int) -> None:
        """Above ``high`` queued bytes the handler's ``on_write_paused`` is called."""

    def pause_reading(self) -> None:
        """Stop reading from the socket (a flooder): its data waits in the kernel, whose
        buffers fill until the client's writes block. Frames already read are still
        delivered."""

    def resume_reading(self) -> None: ...

    def throttle_reads(self) -> None:
        """From now on read at most a few KiB per turn of the loop (a client refused over the
        rate): a flooder's backlog is never handed over as one huge read."""

    def authenticated(self) -> None:
        """The client proved who it is: lift the small read budget of unauthenticated
        connections (``max_auth_bytes``)."""


class TransportHandler(Protocol):
    """The gateway's side of one connection; the adapter calls these."""

    def on_open(self, transport: Transport) -> None: ...

    def on_text(self, data: bytes) -> None: ...

    def on_binary(self, data: bytes) -> None: ...

    def on_pong(self) -> None: ...

    def on_peer_close(self, code: int) -> None:
        """The client sent a close frame with ``code`` (before ``on_closed``)."""

    def on_oversize(self, size: int) -> None:
        """A frame larger than the configured limit arrived (its payload is not kept)."""

    def on_cut(self, code: int) -> None:
        """The adapter closed the connection itself with ``code`` (before ``on_closed``):
        too much data before auth, say."""

    def on_write_paused(self) -> None: ...

    def on_write_resumed(self) -> None: ...

    def on_closed(self) -> None:
        """The transport is gone (close handshake, reset, or our own close)."""
