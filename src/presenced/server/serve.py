"""Start and stop a presenced node: the memory backplane, the picows listener, signals.

:func:`run` is what ``presenced serve`` calls; :func:`start_server` is the same server for
tests and embedding, returning a handle with its URL and an async ``stop``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
from dataclasses import dataclass, replace
from functools import partial

from presenced import __version__
from presenced.auth import TokenVerifier
from presenced.clock import Clock, SystemClock
from presenced.config import Settings
from presenced.http.admin_server import AdminServer, start_admin_server
from presenced.http.health import health_body
from presenced.http.metrics import node_values
from presenced.http.worker_metrics import SnapshotWriter, from_environment
from presenced.server.node import Node
from presenced.server.transport import ConnectRequest, TransportHandler
from presenced.server.ws_picows import HttpResponse, start_picows_server
from presenced.store.base import Backplane
from presenced.store.memory import memory_backplane
from presenced.typing import NodeId
from presenced.web import DEMO, Pages

__all__ = ["WS_PATH", "RunningServer", "run_single", "start_server"]

log = logging.getLogger("presenced")

WS_PATH = "/ws"


@dataclass
class RunningServer:
    """A started node: where it listens, and how to stop it."""

    node: Node
    server: asyncio.Server | None
    """The client listener; None on a node without a client port (``port = off``)."""
    host: str
    port: int
    admin: AdminServer | None = None
    snapshots: SnapshotWriter | None = None
    """Under ``--workers``: this process's metrics, written for the admin node to sum."""

    @property
    def admin_url(self) -> str:
        """The admin port's base URL (``http://127.0.0.1:7401``); raises if it is off."""
        if self.admin is None:
            raise RuntimeError("this server has no admin port (admin_port is off)")
        return self.admin.url

    @property
    def url(self) -> str:
        """The client WebSocket URL; raises on a node without a client port."""
        if self.server is None:
            raise RuntimeError("this node has no client port (port is off)")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{WS_PATH}"

    @property
    def http_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Drain (clients are told to reconnect), close the listeners, release the backplane
        once no work is left that could use it."""
        if self.server is not None:
            self.server.close()
        await self.node.drain()
        if self.admin is not None:
            await self.admin.stop()
        await self.node.settle(1.0)  # what the last admin requests started
        await self.node.export.close()  # deliver what is queued, bounded
        if self.snapshots is not None:
            await self.snapshots.stop()  # the last snapshot, with everything counted
        verifier = self.node.lifecycle.verifier
        if verifier is not None and verifier.jwks is not None:
            await verifier.jwks.close()
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
    jwks = None
    if settings.jwt_jwks_url is not None:
        from presenced.auth.jwks import JwksKeys

        jwks = JwksKeys(settings.jwt_jwks_url, refresh=settings.jwt_jwks_refresh)
    return TokenVerifier(
        jwks=jwks,
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

    def handler_factory(request: ConnectRequest) -> TransportHandler | None:
        return node.new_connection(request)

    # The demo chat page (settings.demo; presenced.web), read once, served from memory.
    demo = Pages(("demo", "client"), DEMO) if settings.demo else None

    def http_route(request: ConnectRequest) -> HttpResponse | None:
        # The client port answers liveness and readiness for load balancers; everything
        # else a backend asks (the API, /metrics) is on the admin port.
        if request.path in ("/health", "/ready"):
            return (*health_body(node, request.path), "application/json")
        page = demo.get(request.path) if demo is not None else None
        if page is not None:
            return (200, *page)
        return None

    jwks = node.lifecycle.verifier.jwks if node.lifecycle.verifier is not None else None
    if jwks is not None:
        await jwks.start()  # the keys before the first client (a failed fetch is logged)
    await node.start()
    server: asyncio.Server | None = None
    host, port = settings.host, 0
    if settings.port is not None:
        server = await start_picows_server(
            settings.host,
            settings.port,
            ws_path=WS_PATH,
            handler_factory=handler_factory,
            http_route=http_route,
            max_frame_bytes=settings.max_frame_bytes,
            reuse_port=reuse_port,
            origin_allowed=settings.origin_allowed,
            max_auth_bytes=settings.max_auth_bytes,
        )
        host, port = server.sockets[0].getsockname()[:2]
    admin = None
    if settings.admin_port is not None:
        try:
            admin = await start_admin_server(
                node, settings.admin_host, settings.admin_port, reuse_port=reuse_port
            )
        except BaseException:
            if server is not None:
                server.close()
            await node.drain()
            raise
    snapshots = None
    workers = from_environment()
    if workers is not None:
        snapshots = SnapshotWriter(node, partial(node_values, node), workers[0])
        snapshots.start()
    return RunningServer(
        node=node, server=server, host=host, port=port, admin=admin, snapshots=snapshots
    )


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
        # aiohttp logs every malformed request (a bad header byte) with a traceback at
        # ERROR; it has already answered 400, so this is noise anyone could flood the log with.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    running = await start_server(settings, reuse_port=reuse_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    mode = settings.effective_auth_mode
    admin = running.admin.url if running.admin is not None else "off"
    clients = "off" if running.server is None else running.url
    health = "off" if running.server is None else f"{running.http_url}/health"
    log.info(
        "presenced %s listening on %s (health: %s, admin API: %s), store=%s, auth=%s, node=%s",
        __version__,
        clients,
        health,
        admin,
        running.node.backplane.name,
        mode,
        running.node.node_id,
    )
    if running.admin is not None and settings.api_keys is None:
        log.warning(
            "the admin API on %s takes requests without a key (loopback only); set api_keys "
            "to require one",
            running.admin.url,
        )
    if settings.demo and running.server is not None:
        log.info("demo chat page: %s/ (--demo)", running.http_url)
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
