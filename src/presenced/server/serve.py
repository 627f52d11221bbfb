"""Start and stop a presenced node: the memory backplane, the picows listener, signals.

:func:`run` is what ``presenced serve`` calls; :func:`start_server` is the same server for
tests and embedding, returning a handle with its URL and an async ``stop``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
from dataclasses import dataclass, replace

from presenced import __version__
from presenced.auth import TokenVerifier
from presenced.clock import Clock, SystemClock
from presenced.config import Settings
from presenced.http.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from presenced.http.metrics import NodeMetrics
from presenced.server.node import Node
from presenced.server.transport import ConnectRequest, TransportHandler
from presenced.server.ws_picows import HttpResponse, start_picows_server
from presenced.store.base import Backplane
from presenced.store.memory import memory_backplane
from presenced.typing import NodeId

__all__ = ["WS_PATH", "RunningServer", "run_single", "start_server"]

log = logging.getLogger("presenced")

WS_PATH = "/ws"


@dataclass
class RunningServer:
    """A started node: where it listens, and how to stop it."""

    node: Node
    server: asyncio.Server
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{WS_PATH}"

    @property
    def http_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Drain (clients are told to reconnect), close the listener, release the backplane."""
        self.server.close()
        await self.node.drain()
        await self.node.backplane.close()


def make_backplane(settings: Settings) -> Backplane:
    """The in-memory backplane, or Valkey/Redis when ``settings.redis`` is set (with events
    over NATS instead of Redis pub/sub when ``settings.broker`` is set too)."""
    if settings.redis is None:
        return memory_backplane(settings.history_size, settings.history_ttl)
    from presenced.store.redis import redis_backplane

    backplane = redis_backplane(
        settings.redis,
        history_size=settings.history_size,
        history_ttl=settings.history_ttl,
        prefix=settings.redis_prefix,
        session_ttl=settings.session_ttl,
    )
    if settings.broker is None:
        return backplane
    from presenced.store.nats import NatsBroker

    broker = NatsBroker(settings.broker, settings.redis_prefix)
    close_redis = backplane.close  # its unused Redis broker never connected; closing is cheap

    async def close() -> None:
        try:
            await broker.close()
        finally:
            await close_redis()

    return replace(backplane, broker=broker, closer=close)


def make_verifier(settings: Settings) -> TokenVerifier | None:
    if settings.effective_auth_mode != "jwt":
        return None
    return TokenVerifier(
        secret=settings.jwt_secret,
        public_key=settings.jwt_public_key,  # PEM text: config already read any @file
        algorithms=settings.jwt_algorithms,  # None: the verifier derives them from the key
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        leeway=settings.jwt_leeway,
    )


async def start_server(
    settings: Settings,
    *,
    clock: Clock | None = None,
    backplane: Backplane | None = None,
    reuse_port: bool = False,
) -> RunningServer:
    """Start a node listening on ``settings.host:settings.port`` (0 = a free port)."""
    generated = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    node_id = NodeId(settings.node_id or generated)
    node = Node(
        settings,
        backplane or make_backplane(settings),
        clock=clock or SystemClock(),
        node_id=node_id,
        verifier=make_verifier(settings),
    )

    metrics = NodeMetrics(node)

    def handler_factory(request: ConnectRequest) -> TransportHandler | None:
        return node.new_connection(request)

    def http_route(request: ConnectRequest) -> HttpResponse | None:
        if request.path == "/metrics":
            return (200, metrics.render(), METRICS_CONTENT_TYPE)
        if request.path == "/health":
            status = "draining" if node.draining else "degraded" if node.degraded else "ok"
            body = {
                "status": status,
                "node": node.node_id,
                "pid": os.getpid(),
                "version": __version__,
                "store": node.backplane.name,
                "connections": node.connection_count,
                "sessions": node.session_count,
            }
            code = 200 if status == "ok" else 503
            return (code, json.dumps(body).encode(), "application/json")
        return None

    await node.start()
    server = await start_picows_server(
        settings.host,
        settings.port,
        ws_path=WS_PATH,
        handler_factory=handler_factory,
        http_route=http_route,
        max_frame_bytes=settings.max_frame_bytes,
        reuse_port=reuse_port,
    )
    host, port = server.sockets[0].getsockname()[:2]
    return RunningServer(node=node, server=server, host=host, port=port)


def run_single(settings: Settings, *, reuse_port: bool = False) -> int:
    """Serve in this process until SIGINT or SIGTERM; returns the process exit code."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(settings, reuse_port))
    return uvloop.run(_serve(settings, reuse_port))


async def _serve(settings: Settings, reuse_port: bool = False) -> int:
    if settings.log_level != "debug":
        # picows logs every accepted connection at INFO: far too chatty for a gateway.
        logging.getLogger("picows").setLevel(logging.WARNING)
    running = await start_server(settings, reuse_port=reuse_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    mode = settings.effective_auth_mode
    log.info(
        "presenced %s listening on %s (health: %s/health), store=%s, auth=%s, node=%s",
        __version__,
        running.url,
        running.http_url,
        running.node.backplane.name,
        mode,
        running.node.node_id,
    )
    if mode == "insecure":
        log.warning(
            "INSECURE DEVELOPMENT MODE: clients name their own user and nothing is verified. "
            "Set --jwt-secret or --jwt-public-key before exposing this server."
        )
    await stop.wait()
    log.info("shutting down: telling %d clients to reconnect", running.node.connection_count)
    await running.stop()
    log.info("stopped")
    return 0
