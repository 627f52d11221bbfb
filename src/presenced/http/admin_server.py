"""Starting and stopping the admin port's HTTP server on the node's event loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from presenced.http.app import build_app

if TYPE_CHECKING:
    from presenced.server.node import Node

__all__ = ["AdminServer", "start_admin_server"]


@dataclass
class AdminServer:
    """A running admin listener: where it is, and how to stop it."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_admin_server(
    node: Node, host: str, port: int, *, reuse_port: bool = False
) -> AdminServer:
    """Listen on ``host:port`` (0 = a free port) with the node's admin application."""
    # Lines up to 16 KiB: the longest valid query (an id and a cursor of 256 characters,
    # each percent-encoded UTF-8) fits, and anything longer is still refused.
    runner = web.AppRunner(
        build_app(node), access_log=None, handle_signals=False, max_line_size=16384
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses = runner.addresses
    bound_host, bound_port = addresses[0][:2] if addresses else (host, port)
    return AdminServer(runner=runner, host=str(bound_host), port=int(bound_port))
