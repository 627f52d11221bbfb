"""What the transport keeps per connection, and that what it no longer keeps costs nothing:
frames of every size still arrive whole, the connection works once picows's objects are
gone (docs/benchmarks.md, "Memory per idle connection: where the bytes go")."""

from __future__ import annotations

import weakref
from typing import Any

import pytest
from picows import WSListener, WSTransport
from websockets.asyncio.client import connect as ws_connect

from presenced.protocol.chat import MessageAck, MessageEvent
from presenced.protocol.messages import HeartbeatAck, RoomJoined
from presenced.server.connection import Connection
from presenced.server.serve import RunningServer
from presenced.server.transport import SMALL_FRAME
from presenced.server.ws_frames import FrameTransport
from presenced.testing import ProtocolClient
from tests.conftest import Connect

BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0.0.0",
    "Accept-Language": "en-GB,en;q=0.9",
    "Cookie": "session=" + "c" * 64,
}


def server_side(running: RunningServer, user: str) -> Connection:
    """The node's connection of ``user``'s only session."""
    (conn,) = [c for c in running.node.local_connections() if c.session and c.session.user == user]
    return conn


async def ask(client: ProtocolClient, message: dict[str, Any], kind: type) -> Any:
    reply = await client.request(message)
    assert isinstance(reply, kind), reply
    return reply


async def test_frames_of_every_size_arrive_whole(connect: Connect) -> None:
    """Bodies around each boundary of the send path (the precomputed headers up to
    SMALL_FRAME, header and payload written apart past it) reach the other member byte for
    byte, in order."""
    alice = await connect("alice")
    bob = await connect("bob")
    for client in (alice, bob):
        await ask(client, {"type": "room.join", "room": "r"}, RoomJoined)
    sizes = [10, 900, SMALL_FRAME - 150, SMALL_FRAME, 1500, 7000, 8000, 8192, 9000, 15000]
    bodies = [f"{n}:" + "é" * (n // 2) for n in sizes]  # two bytes a character in UTF-8
    for body in bodies:
        await ask(alice, {"type": "message.send", "room": "r", "body": body}, MessageAck)
    await bob.wait_for(lambda m: isinstance(m, MessageEvent) and m.body == bodies[-1])
    got = [m.body for m in bob.received if isinstance(m, MessageEvent)]
    assert got == bodies


async def test_large_frames_do_not_go_through_the_copying_path(
    server: RunningServer, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every frame over SMALL_FRAME bytes is written by ``send_large`` (``send_text`` has
    headers for SMALL_FRAME bytes at most); smaller ones take the fast path."""
    large: list[bytes] = []
    send_large = FrameTransport.send_large

    def counting(self: FrameTransport, data: bytes) -> None:
        large.append(data)
        send_large(self, data)

    monkeypatch.setattr(FrameTransport, "send_large", counting)
    members = [await connect(f"user-with-a-long-name-{i:03d}") for i in range(40)]
    for client in members:
        await ask(client, {"type": "room.join", "room": "big"}, RoomJoined)
    # The last join reply lists 40 members (several KiB); heartbeats are small.
    assert large and min(map(len, large)) > SMALL_FRAME
    before = len(large)
    await ask(members[0], {"type": "heartbeat"}, HeartbeatAck)
    # The joins' presence batches may still be going out (on Valkey they come back through
    # the broker): only the ack itself must not have taken the large path.
    assert not [d for d in large[before:] if b'"heartbeat.ack"' in d]
    assert min(map(len, large)) > SMALL_FRAME


async def test_picows_objects_are_freed_once_open(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the upgrade is done the socket belongs to a FrameTransport: nothing keeps
    picows's WSTransport (and with it its protocol, buffers and the upgrade request with a
    browser's headers and the URL, which may carry the token) or its listener, and the
    connection works on: authenticated from that URL, it joins and answers heartbeats."""
    from presenced.server import ws_picows

    picows: list[weakref.ref[Any]] = []
    connected = ws_picows._Listener.on_ws_connected

    def keeping(self: WSListener, transport: WSTransport) -> None:
        picows.extend((weakref.ref(transport), weakref.ref(self)))
        connected(self, transport)  # type: ignore[arg-type]

    monkeypatch.setattr(ws_picows._Listener, "on_ws_connected", keeping)
    ws = await ws_connect(
        f"{server.url}?user=carol&device=web", additional_headers=BROWSER, ping_interval=None
    )
    carol = ProtocolClient(ws)
    try:
        await carol.wait_for("welcome")
        transport = server_side(server, "carol").transport
        assert isinstance(transport, FrameTransport)
        assert transport._transport.get_protocol() is transport
        # Freed when the last reference went, not left for the cycle collector.
        assert len(picows) == 2 and all(ref() is None for ref in picows)
        await ask(carol, {"type": "room.join", "room": "r"}, RoomJoined)
        await ask(carol, {"type": "heartbeat"}, HeartbeatAck)
    finally:
        await carol.close()
