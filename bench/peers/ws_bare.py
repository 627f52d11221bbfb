"""The floor: the same presence app on a bare ``websockets`` (asyncio API) + uvloop server.

It speaks the subset of presenced's JSON protocol the benchmark uses, with nothing else
(no sessions, grace, history, offsets, rate limits or validation beyond a membership
check), so its cost is about what plain Python pays to move these frames:

- ``/ws?user=U&device=D`` -> ``welcome`` at once;
- ``room.join`` -> ``room.joined`` {room, members: [{user}...]}; the other members get
  ``member.joined`` {room, user};
- ``room.leave`` -> ``room.left``; the others get ``member.left`` {reason: "left"};
- ``message.send`` {room, body} -> ``message.ack`` {room, id}; every other member gets
  ``message`` {room, id, user, body, time}; ``heartbeat`` -> ``heartbeat.ack`` {time};
- a closed connection: ``member.left`` {reason: "closed"} in each of its rooms at once.

Broadcasts encode once and use ``websockets.broadcast`` (no await per recipient).
Liveness is websockets' own keepalive: a ping every HEARTBEAT_INTERVAL s, closed when
no pong comes within HEARTBEAT_TIMEOUT s; ``close_timeout`` is 1 s so that closing a
connection that does not answer does not hold the handler (and the member.left) for
the 10 s default. Compression is off, as on every server in the suite.

Usage: ``python -m bench.peers.ws_bare PORT HEARTBEAT_INTERVAL HEARTBEAT_TIMEOUT``.
"""

from __future__ import annotations

import json
import sys
import time
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["main", "run"]

# room -> {connection: user}
_rooms: dict[str, dict[ServerConnection, str]] = {}
_seq = 0


def _dumps(obj: object) -> str:
    """Compact JSON, as presenced sends it (clients match frames by their first bytes)."""
    return json.dumps(obj, separators=(",", ":"))


def _others(members: dict[ServerConnection, str], ws: ServerConnection) -> list[ServerConnection]:
    return [c for c in members if c is not ws]


def _leave(ws: ServerConnection, user: str, room: str, reason: str) -> None:
    members = _rooms.get(room)
    if members is None or ws not in members:
        return
    del members[ws]
    if not members:
        del _rooms[room]
        return
    event = _dumps({"type": "member.left", "room": room, "user": user, "reason": reason})
    broadcast(members, event)


async def _handler(ws: ServerConnection) -> None:
    global _seq
    assert ws.request is not None
    query = parse_qs(urlsplit(ws.request.path).query)
    user = query.get("user", ["anonymous"])[0]
    joined: set[str] = set()
    try:
        await ws.send(_dumps({"type": "welcome", "user": user}))
        async for data in ws:
            msg = json.loads(data)
            kind = msg.get("type")
            room = str(msg.get("room", ""))
            if kind == "message.send":
                members = _rooms.get(room)
                if members is None or ws not in members:
                    await ws.send('{"type":"error","code":"NOT_IN_ROOM"}')
                    continue
                _seq += 1
                event: dict[str, object] = {"type": "message", "room": room, "id": str(_seq)}
                event |= {"user": user, "body": msg.get("body"), "time": time.time()}
                broadcast(_others(members, ws), _dumps(event))
                await ws.send(_dumps({"type": "message.ack", "room": room, "id": str(_seq)}))
            elif kind == "heartbeat":
                await ws.send(_dumps({"type": "heartbeat.ack", "time": time.time()}))
            elif kind == "room.join":
                members = _rooms.setdefault(room, {})
                if ws not in members:
                    joined_event = {"type": "member.joined", "room": room, "user": user}
                    broadcast(members, _dumps(joined_event))
                    members[ws] = user
                    joined.add(room)
                listing = [{"user": u} for u in members.values()]
                await ws.send(_dumps({"type": "room.joined", "room": room, "members": listing}))
            elif kind == "room.leave":
                _leave(ws, user, room, "left")
                joined.discard(room)
                await ws.send(_dumps({"type": "room.left", "room": room}))
            else:
                await ws.send('{"type":"error","code":"UNKNOWN_TYPE"}')
    except ConnectionClosed:
        pass
    finally:
        for room in joined:
            _leave(ws, user, room, "closed")


async def run(port: int, interval: float, timeout: float) -> None:
    """Serve on 127.0.0.1:``port`` until cancelled."""
    async with serve(
        _handler,
        "127.0.0.1",
        port,
        compression=None,
        ping_interval=interval,
        ping_timeout=timeout,
        close_timeout=1.0,
        backlog=1024,
    ) as server:
        await server.serve_forever()


def main() -> None:
    """Entry point: port, heartbeat interval and timeout (seconds) from argv."""
    import uvloop

    uvloop.run(run(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])))


if __name__ == "__main__":
    main()
