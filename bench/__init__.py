"""presenced's benchmark suite: servers driven by real clients over loopback.

``python -m bench.run`` runs every scenario against presenced and its peers (Socket.IO 4
on Node, python-socketio 5, a bare ``websockets`` server) in one invocation and prints the
tables that docs/benchmarks.md quotes. ``bench/wslib/`` is the older, separate measurement
that chose the WebSocket library.
"""

__all__: list[str] = []
