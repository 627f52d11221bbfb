"""The presence app on python-socketio 5 (ASGI) served by uvicorn on uvloop.

The same app as ``socketio-node/server.js``, event for event (the generator speaks one
Socket.IO dialect to both):

- connect with ``?user=U&device=D`` in the URL (Engine.IO 4 over a WebSocket only);
- ``join`` {room} -> ack {room, members: [user...]}; the others get ``member.joined``
  {room, user};
- ``leave`` {room} -> ack {room}; the others get ``member.left`` {room, user, reason};
- ``message`` {room, body} -> ack {id}; the other members get ``message`` {room, id, user,
  body, time};
- ``heartbeat`` -> ack {time};
- disconnect: ``member.left`` {reason: "closed"} in each of its rooms at once.

Liveness is Engine.IO's: a ping every HEARTBEAT_INTERVAL s, disconnected when no pong
comes within HEARTBEAT_TIMEOUT s. uvicorn's own WebSocket pings and per-message deflate
are off (Engine.IO pings already; no server in the suite compresses).

Usage: ``python -m bench.peers.socketio_py PORT HEARTBEAT_INTERVAL HEARTBEAT_TIMEOUT``.
"""

from __future__ import annotations

import sys
import time
from typing import Any
from urllib.parse import parse_qs

import socketio  # type: ignore[import-untyped]  # no type hints shipped
import uvicorn

__all__ = ["build_app", "main"]


def build_app(interval: float, timeout: float) -> Any:
    """The ASGI app: a python-socketio server with the presence events."""
    sio = socketio.AsyncServer(
        async_mode="asgi",
        transports=["websocket"],
        ping_interval=interval,
        ping_timeout=timeout,
    )
    users: dict[str, str] = {}
    # Each sid's rooms, kept here: sio.rooms(sid) scans every room of the namespace
    # (one per connection), which would make each request O(connections).
    rooms_of: dict[str, set[str]] = {}
    seq = 0

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: object = None) -> None:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        users[sid] = query.get("user", ["anonymous"])[0]
        rooms_of[sid] = set()

    @sio.on("join")  # type: ignore[untyped-decorator]
    async def join(sid: str, data: dict[str, str]) -> dict[str, Any]:
        room = data["room"]
        mine = rooms_of[sid]
        if room not in mine:
            await sio.emit("member.joined", {"room": room, "user": users[sid]}, room=room)
            await sio.enter_room(sid, room)
            mine.add(room)
        members = [users[s] for s, _ in sio.manager.get_participants("/", room)]
        return {"room": room, "members": members}

    @sio.on("leave")  # type: ignore[untyped-decorator]
    async def leave(sid: str, data: dict[str, str]) -> dict[str, Any]:
        room = data["room"]
        mine = rooms_of[sid]
        if room in mine:
            mine.discard(room)
            await sio.leave_room(sid, room)
            event = {"room": room, "user": users[sid], "reason": "left"}
            await sio.emit("member.left", event, room=room)
        return {"room": room}

    @sio.on("message")  # type: ignore[untyped-decorator]
    async def message(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        nonlocal seq
        room = data["room"]
        if room not in rooms_of.get(sid, ()):
            return {"error": "NOT_IN_ROOM"}
        seq += 1
        event = {"room": room, "id": str(seq), "user": users[sid], "body": data["body"]}
        event["time"] = time.time()
        await sio.emit("message", event, room=room, skip_sid=sid)
        return {"id": str(seq)}

    @sio.on("heartbeat")  # type: ignore[untyped-decorator]
    async def heartbeat(sid: str, data: object = None) -> dict[str, float]:
        return {"time": time.time()}

    @sio.event  # type: ignore[untyped-decorator]
    async def disconnect(sid: str, reason: object = None) -> None:
        user = users.pop(sid, "anonymous")
        for room in rooms_of.pop(sid, set()):
            await sio.leave_room(sid, room)
            event = {"room": room, "user": user, "reason": "closed"}
            await sio.emit("member.left", event, room=room)

    return socketio.ASGIApp(sio)


def main() -> None:
    """Entry point: port, heartbeat interval and timeout (seconds) from argv."""
    port, interval, timeout = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    uvicorn.run(
        build_app(interval, timeout),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        ws="websockets-sansio",
        ws_ping_interval=None,
        ws_per_message_deflate=False,
        lifespan="off",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
