"""What a benchmark client says on the wire, per server kind.

Every server runs the same small presence app: authenticate, join a room (the reply lists
its members; the others get ``member.joined``), leave (``member.left``), heartbeat (acked),
and room messages (acked to the sender, delivered to every other member). Two wire
dialects carry it:

- ``presenced`` JSON (docs/protocol.md), spoken by presenced and by the bare
  ``websockets`` peer (``bench/peers/ws_bare.py``), which implements just these messages;
- Socket.IO 5 over Engine.IO 4 on a WebSocket, spoken by both Socket.IO peers
  (``bench/peers/socketio-node/server.js``, ``bench/peers/socketio_py.py``), whose app
  uses the same event names and payloads.

The client classifies frames by their first bytes only (no JSON parsing on the hot path):
a room message is recognised by :attr:`Dialect.message`, and its send time is read from
the ``~T<20 digits>`` marker that every benchmark body starts with.
"""

from __future__ import annotations

import json
from enum import Enum
from urllib.parse import quote

__all__ = [
    "BROWSER_HEADERS",
    "DIALECTS",
    "TS_MARK",
    "Dialect",
    "Frame",
    "PresencedDialect",
    "SocketIODialect",
    "body_with_time",
    "sent_ns",
    "user_of",
]

TS_MARK = b"~T"

# What Chrome adds to a WebSocket upgrade besides the handshake's own headers (Host,
# Upgrade, Connection, Sec-WebSocket-Key/-Version, which picows writes): every benchmark
# client sends them, so a server that keeps the upgrade request pays for a real one.
BROWSER_HEADERS: dict[str, str] = {
    "Pragma": "no-cache",
    "Cache-Control": "no-cache",
    "User-Agent": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36"
    ),
    "Origin": "http://127.0.0.1:8080",
    "Accept-Encoding": "gzip, deflate, br, zstd",
    "Accept-Language": "en-GB,en-US;q=0.9,en;q=0.8",
    "Cookie": "_ga=GA1.1.1234567890.1733212345; session=4f6a1c2e9b8d7a6f5e4d3c2b1a0f9e8d",
    "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
}
_TS_DIGITS = 20


def body_with_time(now_ns: int, size: int) -> str:
    """A message body of ``size`` characters that starts with the send time in ns."""
    head = f"~T{now_ns:0{_TS_DIGITS}d}"
    return head + "x" * max(0, size - len(head))


def sent_ns(data: bytes) -> int:
    """The send time carried by a delivered message frame (``-1`` if it has none)."""
    i = data.find(TS_MARK)
    if i < 0:
        return -1
    return int(data[i + 2 : i + 2 + _TS_DIGITS])


def user_of(data: bytes) -> str:
    """The ``"user":"..."`` field of a frame, found without parsing the JSON."""
    i = data.find(b'"user":')
    if i < 0:
        return ""
    i = data.find(b'"', i + 7) + 1  # python-socketio writes '"user": "..."' (a space)
    return data[i : data.find(b'"', i)].decode()


class Frame(Enum):
    """What an incoming frame is, as far as the generator cares."""

    READY = "ready"  # authenticated: welcome / Socket.IO CONNECT ack
    JOINED = "joined"  # reply to a join
    LEFT = "left"  # reply to a leave
    HB_ACK = "hb_ack"  # reply to a heartbeat
    PUB_ACK = "pub_ack"  # reply to a room message
    MEMBER_JOINED = "member_joined"
    MEMBER_LEFT = "member_left"
    BATCH = "batch"  # presenced's room.batch: several member events in one frame
    ERROR = "error"
    TYPING = "typing"  # presenced's typing event (a room's typing set changed)
    PING = "ping"  # Engine.IO ping: answer with Dialect.pong
    OPEN = "open"  # Engine.IO open: answer with Dialect.after_open
    OTHER = "other"


class Dialect:
    """Base: how to build the URL and requests, and how to recognise replies."""

    name = "base"
    message: bytes = b""  # prefix of a delivered room message
    after_open: bytes = b""
    pong: bytes = b""

    def path(self, user: str, device: str) -> str:
        """The request target (path and query) of a client's connection."""
        raise NotImplementedError

    def classify(self, data: bytes) -> Frame:
        """Kind of a frame that is not a room message."""
        raise NotImplementedError

    def join(self, room: str) -> bytes:
        """Join ``room``."""
        raise NotImplementedError

    def leave(self, room: str) -> bytes:
        """Leave ``room``."""
        raise NotImplementedError

    def heartbeat(self) -> bytes:
        """Application heartbeat (acknowledged by the server)."""
        raise NotImplementedError

    def timed_heartbeat(self, now_ns: int) -> bytes:
        """A heartbeat that carries its send time, for round-trip timing (presenced only)."""
        raise NotImplementedError(f"{self.name}: no timed heartbeat")

    def publish(self, room: str, body: str) -> bytes:
        """Send a room message."""
        raise NotImplementedError


class PresencedDialect(Dialect):
    """presenced's JSON protocol, insecure dev mode (``?user=U&device=D`` in the URL)."""

    name = "presenced"
    message = b'{"type":"message",'
    _prefixes: tuple[tuple[bytes, Frame], ...] = (
        (b'{"type":"member.joined"', Frame.MEMBER_JOINED),
        (b'{"type":"member.left"', Frame.MEMBER_LEFT),
        (b'{"type":"room.batch"', Frame.BATCH),
        (b'{"type":"message.ack"', Frame.PUB_ACK),
        (b'{"type":"heartbeat.ack"', Frame.HB_ACK),
        (b'{"type":"welcome"', Frame.READY),
        (b'{"type":"room.joined"', Frame.JOINED),
        (b'{"type":"room.left"', Frame.LEFT),
        (b'{"type":"error"', Frame.ERROR),
        (b'{"type":"typing"', Frame.TYPING),
    )

    def path(self, user: str, device: str) -> str:
        return f"/ws?user={quote(user)}&device={quote(device)}"

    def classify(self, data: bytes) -> Frame:
        for prefix, kind in self._prefixes:
            if data.startswith(prefix):
                return kind
        return Frame.OTHER

    def join(self, room: str) -> bytes:
        return json.dumps({"type": "room.join", "room": room}).encode()

    def leave(self, room: str) -> bytes:
        return json.dumps({"type": "room.leave", "room": room}).encode()

    def heartbeat(self) -> bytes:
        return b'{"type":"heartbeat"}'

    def timed_heartbeat(self, now_ns: int) -> bytes:
        """A heartbeat whose ``ref`` is its send time (ns), echoed in ``heartbeat.ack``."""
        return b'{"type":"heartbeat","ref":%d}' % now_ns

    def publish(self, room: str, body: str) -> bytes:
        return json.dumps({"type": "message.send", "room": room, "body": body}).encode()


class SocketIODialect(Dialect):
    """Socket.IO 5 / Engine.IO 4 packets, one per WebSocket frame, user in the query.

    Requests carry fixed ack ids that name the request kind (1 join, 2 leave,
    3 heartbeat, 4 message): the server echoes them in its ack (``43<id>[...]``).
    """

    name = "socketio"
    message = b'42["message",'
    after_open = b"40"  # CONNECT to the default namespace
    pong = b"3"

    def path(self, user: str, device: str) -> str:
        return f"/socket.io/?EIO=4&transport=websocket&user={quote(user)}&device={quote(device)}"

    def classify(self, data: bytes) -> Frame:
        if data.startswith(b'42["member.joined"'):
            return Frame.MEMBER_JOINED
        if data.startswith(b'42["member.left"'):
            return Frame.MEMBER_LEFT
        if data.startswith(b"43"):
            return _SIO_ACKS.get(data[2:3], Frame.OTHER)
        if data == b"2":
            return Frame.PING
        if data.startswith(b"40"):
            return Frame.READY
        if data.startswith(b"0"):
            return Frame.OPEN
        if data.startswith(b"44"):
            return Frame.ERROR
        return Frame.OTHER

    def join(self, room: str) -> bytes:
        return b"421" + json.dumps(["join", {"room": room}]).encode()

    def leave(self, room: str) -> bytes:
        return b"422" + json.dumps(["leave", {"room": room}]).encode()

    def heartbeat(self) -> bytes:
        return b'423["heartbeat"]'

    def publish(self, room: str, body: str) -> bytes:
        return b"424" + json.dumps(["message", {"room": room, "body": body}]).encode()


_SIO_ACKS = {b"1": Frame.JOINED, b"2": Frame.LEFT, b"3": Frame.HB_ACK, b"4": Frame.PUB_ACK}

DIALECTS: dict[str, Dialect] = {d.name: d for d in (PresencedDialect(), SocketIODialect())}
