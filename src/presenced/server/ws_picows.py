"""The picows adapter: the HTTP side of presenced's WebSocket port.

picows parses the upgrade request and answers it (101, or 403/404/503), and answers plain
HTTP GETs on the same port through ``http_route`` (health). Once a WebSocket is open, the
socket is handed to presenced's own frame protocol (:mod:`presenced.server.ws_frames`):
picows's per-connection objects, about 4.6 KiB of an idle connection, are then freed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from picows import (
    WSFrame,
    WSListener,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from presenced.server.transport import ConnectRequest, TransportHandler
from presenced.server.ws_frames import FrameTransport

__all__ = ["HARD_FRAME_CAP_FACTOR", "HttpResponse", "start_picows_server"]

log = logging.getLogger(__name__)

HttpResponse = tuple[int, bytes, str]
"""status, body, content type"""

HandlerFactory = Callable[[ConnectRequest], TransportHandler | None]
HttpRoute = Callable[[ConnectRequest], HttpResponse | None]

# Frames over this are refused outright (close 1009); below it, presenced's own
# max_frame_bytes check answers FRAME_TOO_LARGE in-band and keeps the connection.
HARD_FRAME_CAP_FACTOR = 16


class _Listener(WSListener):
    """picows's side of one connection, for as long as picows has it: once the upgrade is
    done it hands the socket to a :class:`FrameTransport` (:meth:`on_ws_connected`), and
    picows's protocol, buffers and WSTransport become garbage. Frames picows parsed before
    that (sent right behind the upgrade request, which RFC 6455 section 4.1 forbids a client)
    reach the same transport (:meth:`on_ws_frame`). Only the bytes of a frame such a client
    had not finished sending are lost with picows's buffer: picows does not give them up,
    so the frame protocol reads the rest as the start of a frame and, as a rule, closes 1002."""

    __slots__ = ("frames", "handler", "max_auth_bytes", "max_frame")  # no __dict__

    def __init__(
        self, handler: TransportHandler, max_frame: int, max_auth_bytes: int | None
    ) -> None:
        self.handler = handler
        self.max_frame = max_frame
        self.max_auth_bytes = max_auth_bytes
        self.frames: FrameTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        socket = transport.underlying_transport
        max_frame = self.max_frame
        frames = FrameTransport(
            socket, self.handler, max_frame, max_frame * HARD_FRAME_CAP_FACTOR, self.max_auth_bytes
        )
        socket.set_protocol(frames)
        self.frames = frames
        self.handler.on_open(frames)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self.frames is not None:
            rsv = frame.rsv1 << 2 | frame.rsv2 << 1 | frame.rsv3
            payload = frame.get_payload_as_bytes()
            self.frames.pipelined(frame.msg_type.value, bool(frame.fin), rsv, payload)


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
