"""RFC 6455 frames, server side, read and written straight on the event loop's transport.

picows answers the HTTP upgrade (:mod:`presenced.server.ws_picows`); once the connection is
open its uvloop transport is handed to a :class:`FrameTransport` and picows's objects (its
protocol with a read buffer of at least 2 KiB, a 1 KiB write buffer, its WSTransport, two
futures) become garbage: about 4 KiB less per idle connection.

Every connection reads into one shared buffer (a server process is single-threaded; a read
is parsed before the next one starts), so an idle connection holds no read buffer at all.
Only a frame that has not fully arrived is kept per connection: an incomplete header (a few
bytes), or the payload received so far. A frame over ``max_frame`` is discarded as it
streams in and reported (``on_oversize``); one over ``hard_cap`` closes the connection.

The same object is the gateway's :class:`presenced.server.transport.Transport`: server
frames are unmasked, their header depends only on the length, so ``send_text`` is a lookup
of a precomputed header and one write.
"""

from __future__ import annotations

import asyncio
import logging

from presenced.server.transport import SMALL_FRAME, TransportHandler

__all__ = [
    "MAX_READ_THROTTLED",
    "READ_BUFFER_SIZE",
    "FrameTransport",
    "text_frame",
    "unmask",
]

log = logging.getLogger(__name__)

READ_BUFFER_SIZE = 256 * 1024
"""The shared read buffer: the most one read of one socket can bring."""

MAX_READ_THROTTLED = 4096
"""Bytes read from a throttled socket (a client once refused over the rate) per turn of the
loop. Every frame of a read is handled before the loop moves on, so one read of a flooder's
could otherwise be 256 KiB of frames, handled while every other client waits."""

_BUFFER = bytearray(READ_BUFFER_SIZE)
_VIEW = memoryview(_BUFFER)

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODES = frozenset((CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG))
_VALID_CLOSE = frozenset([*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)])
"""Close codes a peer may send (RFC 6455 section 7.4; 1004-1006 and 1015 never on the wire)."""


def _header(opcode: int, size: int) -> bytes:
    """A final, unmasked frame's header (server to client)."""
    first = 0x80 | opcode
    if size < 126:
        return bytes((first, size))
    if size < 1 << 16:
        return bytes((first, 126)) + size.to_bytes(2, "big")
    return bytes((first, 127)) + size.to_bytes(8, "big")


_TEXT_HEADERS = tuple(_header(TEXT, n) for n in range(SMALL_FRAME + 1))


def text_frame(data: bytes) -> bytes:
    """``data`` as one whole text frame, ready to write."""
    if len(data) <= SMALL_FRAME:
        return _TEXT_HEADERS[len(data)] + data
    return _header(TEXT, len(data)) + data


def _unmask(data: bytes | bytearray | memoryview, mask: bytes | bytearray) -> bytes:
    """``data`` (bytes-like) XOR the 4-byte ``mask`` repeated: a client frame's payload.
    One big-integer XOR over the whole payload, where websockets's C version is missing."""
    size = len(data)
    if not size:
        return b""
    key = int.from_bytes(mask * ((size >> 2) + 1), "little") & ((1 << (size << 3)) - 1)
    return (int.from_bytes(data, "little") ^ key).to_bytes(size, "little")


try:
    # websockets (a dependency, for the client SDK) has it in C, SIMD: 0.3 us for 150 bytes
    # and 1 us for 8 KiB where the big-integer XOR takes 1.2 and 23 us (measured here).
    from websockets.speedups import apply_mask as unmask
except ImportError:  # pragma: no cover - a build of websockets without its C extension
    unmask = _unmask


class _Pending:
    """A frame whose header has arrived and whose payload is still coming."""

    __slots__ = ("mask", "need", "opcode", "payload", "size")

    def __init__(
        self, opcode: int, size: int, mask: bytes, payload: bytearray | None, need: int
    ) -> None:
        self.opcode = opcode
        self.size = size
        self.mask = mask
        self.payload = payload  # None: over max_frame, discarded as it arrives
        self.need = need  # payload bytes still to come


class FrameTransport(asyncio.BufferedProtocol):
    """One open WebSocket on an asyncio (uvloop) transport: the protocol reading client
    frames and the gateway's :class:`~presenced.server.transport.Transport` writing server
    frames. ``max_auth_bytes`` bounds what an unauthenticated client may send (None: no
    bound); ``max_frame`` and ``hard_cap`` are the two frame limits (see the module)."""

    __slots__ = (
        "_cap",
        "_closing",
        "_handler",
        "_hard_cap",
        "_left",
        "_max_frame",
        "_partial",
        "_pending",
        "_transport",
        "peer",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        handler: TransportHandler,
        max_frame: int,
        hard_cap: int,
        max_auth_bytes: int | None = None,
    ) -> None:
        self._transport = transport
        self._handler = handler
        self._max_frame = max_frame
        self._hard_cap = hard_cap
        self._left = max_auth_bytes  # bytes an unauthenticated client may still send
        self._cap = READ_BUFFER_SIZE  # the most one read may bring (throttle_reads)
        self._partial: bytes | None = None  # an incomplete header, from the last read
        self._pending: _Pending | None = None  # a frame whose payload is still coming
        self._closing = False  # a close frame was sent or received: input is ignored
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if isinstance(peername, tuple) and peername else ""

    # --- reading ----------------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        partial = self._partial
        if partial is None:
            return _VIEW[: self._cap]
        # An incomplete header goes in front of what is read next, to be parsed with it.
        start = len(partial)
        _VIEW[:start] = partial
        return _VIEW[start : start + self._cap]

    def buffer_updated(self, nbytes: int) -> None:
        if self._closing:
            return
        left = self._left
        if left is not None:
            left -= nbytes
            self._left = left
            if left < 0:
                log.info("closing an unauthenticated connection: over max_auth_bytes before auth")
                self._fail(1009, b"too much data before auth")
                return
        end = nbytes
        pos = 0
        partial = self._partial
        if partial is not None:
            self._partial = None
            end += len(partial)
        try:
            pending = self._pending
            if pending is not None:
                pos = self._feed(pending, end)
                if pos < 0:
                    return
            self._parse(pos, end)
        except Exception:
            # As picows did with an exception from its listener: say so and close.
            log.exception("closing a connection: a frame handler failed")
            self._fail(1011, b"")

    def _feed(self, pending: _Pending, end: int) -> int:
        """Add what the read brought of ``pending``'s payload; where the next frame starts,
        or -1 when the payload is still incomplete."""
        take = pending.need if pending.need < end else end
        pending.need -= take
        if pending.payload is not None:
            pending.payload += _VIEW[:take]
        if pending.need:
            return -1
        self._pending = None
        if pending.payload is None:
            self._handler.on_oversize(pending.size)
        else:
            self._dispatch(pending.opcode, unmask(pending.payload, pending.mask))
        return take

    def _parse(self, pos: int, end: int) -> None:
        """Handle every whole frame in ``_BUFFER[pos:end]``; keep the incomplete rest."""
        buf = _BUFFER
        while pos < end and not self._closing:
            avail = end - pos
            if avail < 2:
                self._partial = bytes(buf[pos:end])
                return
            first = buf[pos]
            second = buf[pos + 1]
            size = second & 0x7F
            if size < 126:
                head = 6
            elif size == 126:
                head = 8
                if avail < head:
                    self._partial = bytes(buf[pos:end])
                    return
                size = buf[pos + 2] << 8 | buf[pos + 3]
                if size < 126:
                    self._fail(1002, b"Received frame with invalid 16-bit payload len")
                    return
            else:
                head = 14
                if avail < head:
                    self._partial = bytes(buf[pos:end])
                    return
                size = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                if size >> 63 or size < 1 << 16:
                    self._fail(1002, b"Received frame with invalid 64-bit payload length")
                    return
            if not second & 0x80:
                self._fail(
                    1002,
                    b"Received un-masked frame from client, RFC 6455 section 5.1 forbids this",
                )
                return
            error = self._refusal(first, size)
            if error is not None:
                self._fail(*error)
                return
            if avail < head:
                self._partial = bytes(buf[pos:end])
                return
            start = pos + head
            mask = bytes(buf[start - 4 : start])
            if avail < head + size:  # the payload is still coming
                need = size - (end - start)
                opcode = first & 0x0F
                if size > self._max_frame and not opcode & 0x8:
                    self._pending = _Pending(opcode, size, mask, None, need)
                else:
                    self._pending = _Pending(opcode, size, mask, bytearray(buf[start:end]), need)
                return
            pos = start + size
            if size > self._max_frame and not first & 0x8:
                self._handler.on_oversize(size)
            else:
                self._dispatch(first & 0x0F, unmask(_VIEW[start:pos], mask))

    def _refusal(self, first: int, size: int) -> tuple[int, bytes] | None:
        """Why a frame whose first byte is ``first`` and length ``size`` is refused (the
        close code and reason), or None."""
        opcode = first & 0x0F
        if first & 0x70:
            return 1002, b"Received frame with reserved bits set, no extension was negotiated"
        if opcode not in _OPCODES:
            return 1002, f"Received frame with invalid opcode={opcode:#x}".encode()
        if opcode & 0x8:
            if not first & 0x80:
                return 1002, b"Received fragmented control frame"
            if size > 125:
                return 1002, b"Received control frame with payload size > 125 bytes"
            return None
        if size > self._hard_cap:
            return 1009, (
                f"Received frame with payload size exceeding max allowed size, "
                f"{size} > {self._hard_cap}"
            ).encode()
        if opcode == CONTINUATION or not first & 0x80:
            # Fragmented messages are not part of the protocol: clients send whole frames.
            return 1003, b"fragmented frames"
        return None

    def _dispatch(self, opcode: int, payload: bytes) -> None:
        handler = self._handler
        if opcode == TEXT:
            handler.on_text(payload)
        elif opcode == BINARY:
            handler.on_binary(payload)
        elif opcode == PONG:
            handler.on_pong()
        elif opcode == PING:
            self._transport.write(_header(PONG, len(payload)) + payload)
        else:
            self._peer_closed(payload)

    def _peer_closed(self, payload: bytes) -> None:
        """The client's close frame: answered with the same code (1000 when it sent none),
        then the connection is closed."""
        if len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            if code not in _VALID_CLOSE:
                self._fail(1002, f"Received CLOSE with invalid close code: {code}".encode())
                return
            try:
                payload[2:].decode()
            except UnicodeDecodeError:
                self._fail(1007, b"Received CLOSE with invalid UTF-8 reason")
                return
        elif payload:
            self._fail(1002, b"Received CLOSE with invalid close code size")
            return
        else:
            code = 1005
            # 1005 means "no code" and may not be sent: the RFC's answer to a bare close.
            payload = b"\x03\xe8"
        self._handler.on_peer_close(code)
        self._send_close(payload)
        self._transport.close()

    def _fail(self, code: int, reason: bytes) -> None:
        """Close the connection ourselves with ``code``, telling the handler first."""
        self._handler.on_cut(code)
        self._send_close(code.to_bytes(2, "big") + reason[:123])
        self._transport.close()

    def _send_close(self, payload: bytes) -> None:
        if not self._closing:
            self._closing = True
            self._pending = None
            self._partial = None
            self._transport.write(_header(CLOSE, len(payload)) + payload)

    def pipelined(self, opcode: int, fin: bool, rsv: int, payload: bytes) -> None:
        """A frame picows parsed before this took the socket over (a client that sent it
        right behind its upgrade request): checked and handled as if read here."""
        if self._closing:
            return
        if self._left is not None:
            self._left -= len(payload) + 6
            if self._left < 0:
                self._fail(1009, b"too much data before auth")
                return
        first = (0x80 if fin else 0) | (rsv & 7) << 4 | opcode
        error = self._refusal(first, len(payload))
        if error is not None:
            self._fail(*error)
        elif len(payload) > self._max_frame and not opcode & 0x8:
            self._handler.on_oversize(len(payload))
        else:
            self._dispatch(opcode, payload)

    def eof_received(self) -> bool:
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._pending = None
        self._handler.on_closed()

    def pause_writing(self) -> None:
        self._handler.on_write_paused()

    def resume_writing(self) -> None:
        self._handler.on_write_resumed()

    # --- the gateway's Transport ------------------------------------------------------------

    def send_text(self, data: bytes) -> None:
        if not self._closing:  # nothing may follow a close frame
            self._transport.write(_TEXT_HEADERS[len(data)] + data)

    def send_large(self, data: bytes) -> None:
        # Header and payload as two buffers: over 1 KiB that is cheaper than a copy into
        # one (uvloop writes them with one writev; docs/benchmarks.md).
        if not self._closing:
            self._transport.writelines((_header(TEXT, len(data)), data))

    def ping(self) -> None:
        if not self._closing:
            self._transport.write(b"\x89\x00")

    def close(self, code: int, reason: str) -> None:
        text = reason.encode()
        if len(text) > 123:  # a control frame's limit; cut on a character boundary
            text = text[:123].decode(errors="ignore").encode()
        self._send_close(code.to_bytes(2, "big") + text)
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def buffered(self) -> int:
        return self._transport.get_write_buffer_size()

    def set_buffer_limit(self, high: int) -> None:
        self._transport.set_write_buffer_limits(high=high)

    def pause_reading(self) -> None:
        transport = self._transport
        if not transport.is_closing():
            transport.pause_reading()

    def resume_reading(self) -> None:
        transport = self._transport
        if not transport.is_closing():
            transport.resume_reading()

    def throttle_reads(self) -> None:
        self._cap = MAX_READ_THROTTLED

    def authenticated(self) -> None:
        self._left = None
