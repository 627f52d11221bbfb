"""The asyncio shell: node, connections, transport adapter, serve."""

from presenced.server.serve import RunningServer, run, start_server

__all__ = ["RunningServer", "run", "start_server"]
