"""The servers presenced is measured against, each running the same small presence app.

- ``socketio-node/server.js``: Socket.IO 4 on Node (npm ``socket.io``);
- ``socketio_py.py``: python-socketio 5 (ASGI) on uvicorn + uvloop;
- ``ws_bare.py``: a bare ``websockets`` + uvloop server, the floor of what plain Python
  costs for the same job.
"""

__all__: list[str] = []
