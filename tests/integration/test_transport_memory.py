"""What the picows transport keeps per connection, and that what it no longer keeps costs
nothing: frames of every size still arrive whole, the connection works after its upgrade
request was emptied (docs/benchmarks.md, "Memory per idle connection: where the bytes go")."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

from presenced.protocol.chat import MessageAck, MessageEvent
from presenced.protocol.messages import HeartbeatAck, RoomJoined
from presenced.server.connection import Connection
from presenced.server.serve import RunningServer
from presenced.server.transport import SMALL_FRAME
from presenced.server.ws_picows import PICOWS_COPY_LIMIT, PicowsTransport
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
    """Bodies around each boundary of the send path (picows's 1 KiB buffer, the external
    buffer up to its copy limit, picows's own uncopied path past it) reach the other member
    byte for byte, in order."""
    alice = await connect("alice")
    bob = await connect("bob")
    for client in (alice, bob):
        await ask(client, {"type": "room.join", "room": "r"}, RoomJoined)
    sizes = [10, 900, SMALL_FRAME - 150, SMALL_FRAME, 1500, 7000, PICOWS_COPY_LIMIT - 200]
    sizes += [PICOWS_COPY_LIMIT, 9000, 15000]
    bodies = [f"{n}:" + "é" * (n // 2) for n in sizes]  # two bytes a character in UTF-8
    for body in bodies:
        await ask(alice, {"type": "message.send", "room": "r", "body": body}, MessageAck)
    await bob.wait_for(lambda m: isinstance(m, MessageEvent) and m.body == bodies[-1])
    got = [m.body for m in bob.received if isinstance(m, MessageEvent)]
    assert got == bodies


async def test_large_frames_do_not_go_through_the_copying_path(
    server: RunningServer, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every frame over SMALL_FRAME bytes is written by ``send_large``, so picows's write
    buffer never grows past its first KiB; smaller ones take the fast path."""
    large: list[int] = []
    send_large = PicowsTransport.send_large

    def counting(self: PicowsTransport, data: bytes) -> None:
        large.append(len(data))
        send_large(self, data)

    monkeypatch.setattr(PicowsTransport, "send_large", counting)
    members = [await connect(f"user-with-a-long-name-{i:03d}") for i in range(40)]
    for client in members:
        await ask(client, {"type": "room.join", "room": "big"}, RoomJoined)
    # The last join reply lists 40 members (several KiB); heartbeats are small.
    assert large and min(large) > SMALL_FRAME
    before = len(large)
    await ask(members[0], {"type": "heartbeat"}, HeartbeatAck)
    assert len(large) == before


async def test_the_upgrade_request_is_emptied_once_open(
    server: RunningServer, connect: Connect
) -> None:
    """A browser's upgrade headers and the URL (which may carry the token) are not kept for
    the connection's life, and the connection works on: authenticated from that URL, it
    joins and answers heartbeats."""
    ws = await ws_connect(
        f"{server.url}?user=carol&device=web", additional_headers=BROWSER, ping_interval=None
    )
    carol = ProtocolClient(ws)
    try:
        await carol.wait_for("welcome")
        transport = server_side(server, "carol").transport
        assert isinstance(transport, PicowsTransport)
        picows = transport._ws
        assert len(picows.request.headers) == 0 and picows.request.path == b""
        assert len(picows.response.headers) == 0
        await ask(carol, {"type": "room.join", "room": "r"}, RoomJoined)
        await ask(carol, {"type": "heartbeat"}, HeartbeatAck)
    finally:
        await carol.close()
