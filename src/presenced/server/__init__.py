"""The asyncio shell: node, connections, transport adapter, serve."""

from presenced.server.serve import RunningServer, start_server
from presenced.server.workers import run

__all__ = ["RunningServer", "run", "start_server"]
