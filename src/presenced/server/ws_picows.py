"""The picows adapter: presenced's WebSocket transport, chosen by measurement.

picows is callback based (no task per connection) and writes frames straight to the asyncio
transport, which keeps idle memory per connection and fan-out cost low; docs/benchmarks.md has
the figures. Plain HTTP GETs on the same port are answered by ``http_routes`` (health).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from presenced.server.transport import ConnectRequest, TransportHandler

__all__ = ["HttpResponse", "PicowsTransport", "start_picows_server"]

log = logging.getLogger(__name__)

HttpResponse = tuple[int, bytes, str]
"""status, body, content type"""

HandlerFactory = Callable[[ConnectRequest], TransportHandler | None]
HttpRoute = Callable[[ConnectRequest], HttpResponse | None]

# picows refuses frames over this outright (close 1009); below it, presenced's own
# max_frame_bytes check answers FRAME_TOO_LARGE in-band and keeps the connection.
HARD_FRAME_CAP_FACTOR = 16


class _ProtocolProxy(asyncio.BufferedProtocol):
    """Stands between the socket and picows's protocol (``_inner``), passing every callback
    on; a subclass changes what it reads."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def get_buffer(self, sizehint: int) -> Any:
        return self._inner.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self._inner.buffer_updated(nbytes)

    def eof_received(self) -> bool | None:
        return cast("bool | None", self._inner.eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _PreAuthGuard(_ProtocolProxy):
    """Stands between the socket and picows until the client authenticated, counting what it
    reads: past ``limit`` bytes (a frame that could only be huge, or a flood) the connection
    is closed with 1009 before picows buffers more. picows buffers a frame whole before it
    hands it on, up to its hard cap: without this, an anonymous socket could make it hold
    sixteen times max_frame_bytes for the whole auth timeout. Removed once authenticated,
    so the hot path reads straight into picows."""

    __slots__ = ("_cut", "_inner", "_left", "_ws")

    def __init__(self, inner: Any, ws: WSTransport, limit: int, cut: Callable[[int], None]) -> None:
        self._inner = inner
        self._ws = ws
        self._left = limit
        self._cut = cut  # tells the handler the code it closed with

    def buffer_updated(self, nbytes: int) -> None:
        self._left -= nbytes
        if self._left >= 0:
            self._inner.buffer_updated(nbytes)
            return
        if not self._ws.is_disconnected:
            log.info("closing an unauthenticated connection: over max_auth_bytes before auth")
            self._cut(WSCloseCode.MESSAGE_TOO_BIG.value)
            self._ws.send_close(WSCloseCode.MESSAGE_TOO_BIG, b"too much data before auth")
            self._ws.disconnect(graceful=True)


MAX_READ_THROTTLED = 4096
"""Bytes read from a throttled socket (a client once refused over the rate) per turn of the
loop. picows hands every frame of a read to presenced in one callback and grows its buffer
to what the socket holds, so one read of a flooder's could otherwise be megabytes of
frames, handled while every other client waits."""


class _ReadCap(_ProtocolProxy):
    """Stands between the socket and picows for a throttled client: at most ``cap`` bytes per
    read; the rest waits in the kernel for the next turn of the loop."""

    __slots__ = ("_cap",)

    def __init__(self, inner: Any, cap: int) -> None:
        super().__init__(inner)
        self._cap = cap

    def get_buffer(self, sizehint: int) -> Any:
        return self._inner.get_buffer(sizehint)[: self._cap]


# picows writes a frame over this many bytes as its header and the caller's bytes, without
# copying it into its own write buffer (picows.pyx, WSTransport._send).
PICOWS_COPY_LIMIT = 8192
# The room send_reuse_external_bytearray wants in front of a payload for the frame header.
FRAME_HEADROOM = 14


def _forget_upgrade(ws: WSTransport) -> None:
    """Empty what picows keeps of the upgrade for the connection's life: the request's
    headers and target (the token, when the URL carries it) and the response's headers, 3 -
    4 KiB with a browser's headers. presenced read what it needs in the upgrade factory, and
    picows reads neither again on the server side; ``clear`` frees a CIMultiDict's storage."""
    request = ws.request
    request.headers.clear()
    request.path = b""
    ws.response.headers.clear()


class PicowsTransport:
    """:class:`presenced.server.transport.Transport` over a picows WSTransport."""

    __slots__ = ("_capped", "_inner", "_ws", "peer", "send_text")

    def __init__(
        self,
        ws: WSTransport,
        max_auth_bytes: int | None = None,
        on_cut: Callable[[int], None] = lambda code: None,
    ) -> None:
        self._ws = ws
        self._inner: Any = None  # picows's own protocol, while the guard stands before it
        self._capped = False  # reads bounded to MAX_READ_THROTTLED (throttle_reads)
        if max_auth_bytes is not None:
            socket = ws.underlying_transport
            self._inner = socket.get_protocol()
            socket.set_protocol(_PreAuthGuard(self._inner, ws, max_auth_bytes, on_cut))
        peername = ws.underlying_transport.get_extra_info("peername")
        self.peer = str(peername[0]) if isinstance(peername, tuple) and peername else ""
        # The fan-out hot path: a C-level partial, so a delivery costs no Python frame here.
        self.send_text: Callable[[bytes], None] = partial(ws.send, WSMsgType.TEXT)
        _forget_upgrade(ws)

    def send_large(self, data: bytes) -> None:
        if len(data) > PICOWS_COPY_LIMIT:
            self._ws.send(WSMsgType.TEXT, data)  # written as header + data, not copied
            return
        # picows would copy the frame into its write buffer, which would stay this large;
        # here it writes the header into the room left at the front and sends from there.
        frame = bytearray(FRAME_HEADROOM + len(data))
        frame[FRAME_HEADROOM:] = data
        self._ws.send_reuse_external_bytearray(WSMsgType.TEXT, frame, FRAME_HEADROOM)

    def ping(self) -> None:
        self._ws.send_ping()

    def close(self, code: int, reason: str) -> None:
        if not self._ws.is_close_frame_sent:
            self._ws.send_close(WSCloseCode(code), reason.encode())
        self._ws.disconnect(graceful=True)

    def abort(self) -> None:
        self._ws.disconnect(graceful=False)

    def buffered(self) -> int:
        return int(self._ws.underlying_transport.get_write_buffer_size())

    def set_buffer_limit(self, high: int) -> None:
        self._ws.underlying_transport.set_write_buffer_limits(high=high)

    def pause_reading(self) -> None:
        socket = self._ws.underlying_transport
        if not socket.is_closing():
            socket.pause_reading()

    def resume_reading(self) -> None:
        socket = self._ws.underlying_transport
        if not socket.is_closing():
            socket.resume_reading()

    def throttle_reads(self) -> None:
        if self._capped:
            return
        self._capped = True
        socket = self._ws.underlying_transport
        socket.set_protocol(_ReadCap(socket.get_protocol(), MAX_READ_THROTTLED))

    def authenticated(self) -> None:
        if self._inner is not None:
            inner = self._inner
            self._inner = None
            if self._capped:  # throttled before it authenticated: stays so
                inner = _ReadCap(inner, MAX_READ_THROTTLED)
            self._ws.underlying_transport.set_protocol(inner)


class _Listener(WSListener):
    """Bridges picows callbacks to a TransportHandler."""

    __slots__ = ("handler", "max_auth_bytes", "max_frame")  # no __dict__ per connection

    def __init__(
        self, handler: TransportHandler, max_frame: int, max_auth_bytes: int | None
    ) -> None:
        self.handler = handler
        self.max_frame = max_frame
        self.max_auth_bytes = max_auth_bytes

    def on_ws_connected(self, transport: WSTransport) -> None:
        handler = self.handler
        handler.on_open(PicowsTransport(transport, self.max_auth_bytes, handler.on_cut))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if not frame.fin:
                # Fragmented messages are not part of the protocol: clients send whole frames.
                transport.send_close(WSCloseCode.UNSUPPORTED_DATA, b"fragmented frames")
                transport.disconnect()
                return
            if frame.payload_size > self.max_frame:
                self.handler.on_oversize(frame.payload_size)
            elif kind is WSMsgType.TEXT:
                self.handler.on_text(frame.get_payload_as_bytes())
            else:
                self.handler.on_binary(frame.get_payload_as_bytes())
        elif kind is WSMsgType.PONG:
            self.handler.on_pong()
        elif kind is WSMsgType.CLOSE:
            code: int = frame.get_close_code().value if frame.payload_size >= 2 else 1005
            self.handler.on_peer_close(code)
            if not transport.is_close_frame_sent:
                if frame.payload_size < 2:
                    # A close without a code: picows reports it as NO_INFO (0), a code RFC
                    # 6455 forbids on the wire (clients such as Node's ws refuse it), and its
                    # send_close always writes a code. Answer 1000, as the RFC allows.
                    transport.send_close(WSCloseCode.OK)
                else:
                    transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.handler.on_closed()

    def pause_writing(self) -> None:
        self.handler.on_write_paused()

    def resume_writing(self) -> None:
        self.handler.on_write_resumed()


_PICOWS_LOG = logging.LoggerAdapter(logging.getLogger("picows.server"), {})


def _request(req: WSUpgradeRequest) -> ConnectRequest:
    raw = req.path.decode("latin-1")
    parts = urlsplit(raw)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    headers = {k.lower(): v for k, v in req.headers.items()}
    return ConnectRequest(path=parts.path, query=query, headers=headers, peer="")


async def start_picows_server(
    host: str,
    port: int,
    *,
    ws_path: str,
    handler_factory: HandlerFactory,
    http_route: HttpRoute,
    max_frame_bytes: int,
    reuse_port: bool = False,
    origin_allowed: Callable[[str | None, str], bool] = lambda origin, host: True,
    max_auth_bytes: int | None = None,
) -> asyncio.Server:
    """Listen on host:port; WebSocket upgrades on ``ws_path``, plain GETs to ``http_route``.
    An upgrade whose ``Origin`` (and ``Host``) ``origin_allowed`` refuses gets HTTP 403."""

    def factory(
        req: WSUpgradeRequest,
    ) -> WSListener | WSUpgradeResponseWithListener | None:
        request = _request(req)
        is_upgrade = "websocket" in request.headers.get("upgrade", "").lower()
        if is_upgrade and request.path == ws_path:
            origin = request.headers.get("origin")
            if not origin_allowed(origin, request.headers.get("host", "")):
                log.info("upgrade refused: origin %r is not allowed (allowed_origins)", origin)
                return WSUpgradeResponseWithListener(
                    WSUpgradeResponse.create_error_response(
                        403, b"origin not allowed: the server's allowed_origins does not list it"
                    ),
                    None,
                )
            handler = handler_factory(request)
            if handler is None:
                return WSUpgradeResponseWithListener(
                    WSUpgradeResponse.create_error_response(503, b"shutting down"), None
                )
            return _Listener(handler, max_frame_bytes, max_auth_bytes)
        routed = http_route(request)
        if routed is None:
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_error_response(404, b"not found"), None
            )
        status, body, content_type = routed
        headers = {"Content-Type": content_type, "Cache-Control": "no-store"}
        if status < 400:
            response = WSUpgradeResponse.create_ok_response(body, headers)
        else:
            response = WSUpgradeResponse.create_error_response(status, body, headers)
        return WSUpgradeResponseWithListener(response, None)

    return await ws_create_server(
        factory,
        host,
        port,
        max_frame_size=max_frame_bytes * HARD_FRAME_CAP_FACTOR,
        enable_auto_ping=False,  # presenced pings from its own deadline queue, jittered
        enable_auto_pong=True,
        websocket_handshake_timeout=10,
        # Grows on demand; 2 KiB instead of 16 KiB halves idle memory per connection
        # (docs/benchmarks.md, "Choosing the WebSocket library").
        read_buffer_init_size=2048,
        # The event loop's own transport (uvloop's, in C) instead of aiofastnet's Python
        # one: about 5 KiB less per idle connection for the same CPU per delivery
        # (docs/benchmarks.md, "Memory per connection").
        use_aiofastnet=False,
        reuse_port=reuse_port,
        # An adapter rather than a Logger: given a Logger, picows builds a child Logger per
        # connection (about 0.5 KiB each, kept for the connection's life) only to put the
        # socket's number in its name.
        logger_name=_PICOWS_LOG,
    )
