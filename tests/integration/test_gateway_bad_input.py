"""Bad input gets a precise error, and neither the connection nor anyone else suffers."""

from __future__ import annotations

import asyncio
import base64
import json
import os

import pytest
from websockets.exceptions import ConnectionClosed

from presenced.protocol.codec import decode_client
from presenced.protocol.messages import Error, HeartbeatAck, RoomJoined, Welcome
from presenced.server.connection import ANSWER_FACTOR, FLOOD_FACTOR
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from tests.conftest import Connect, ServerFactory
from tests.support.waiting import until


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        ("{not json", "BAD_JSON", None),
        ("[1, 2]", "BAD_JSON", None),
        ('{"type": "room.dance", "ref": "r9"}', "UNKNOWN_TYPE", "type"),
        ('{"type": "room.join", "ref": "r9"}', "BAD_REQUEST", "room"),
        ('{"type": "room.join", "room": 7, "ref": "r9"}', "BAD_REQUEST", "room"),
        ('{"type": "status.set", "status": "sleepy", "ref": "r9"}', "BAD_REQUEST", "status"),
        ('{"type": "presence.subscribe", "users": [], "ref": "r9"}', "BAD_REQUEST", "users"),
        ('{"type": "room.leave", "room": "nowhere", "ref": "r9"}', "NOT_IN_ROOM", "room"),
        (
            '{"type": "auth", "user": "x", "device": "y", "ref": "r9"}',
            "ALREADY_AUTHENTICATED",
            None,
        ),
    ],
)
async def test_each_bad_request_gets_its_code_and_field(
    connect: Connect, frame: str, code: str, field: str | None
) -> None:
    bystander = await connect("carol", "w")
    await bystander.request({"type": "room.join", "room": "r"})
    client = await connect("alice", "p")
    await client.request({"type": "room.join", "room": "r"})
    mark = len(client.received)
    await client.send_raw(frame)
    error = await client.wait_for("error", start=mark)
    assert isinstance(error, Error)
    assert (error.code, error.field) == (code, field)
    if '"ref"' in frame:
        assert error.ref == "r9"
    # The connection survives and still works; the bystander saw nothing of it.
    assert isinstance(await client.request({"type": "room.join", "room": "r"}), RoomJoined)
    members = await bystander.request({"type": "room.members", "room": "r"})
    assert {m.user for m in members.members} == {"alice", "carol"}  # type: ignore[union-attr]


async def test_oversized_frame_is_refused_in_band(make_server: ServerFactory) -> None:
    from presenced.testing import ProtocolClient

    running = await make_server(max_frame_bytes=1024, max_message_bytes=512)
    client = await ProtocolClient.connect(running.url + "?user=a&device=d")
    await client.wait_for("welcome")
    await client.send_raw('{"type":"heartbeat","pad":"' + "x" * 4000 + '"}')
    error = await client.wait_for("error")
    assert isinstance(error, Error) and error.code == "FRAME_TOO_LARGE"
    assert type(await client.request({"type": "heartbeat"})).__name__ == "HeartbeatAck"
    await client.close()


async def test_binary_frames_are_refused(connect: Connect) -> None:
    client = await connect("alice", "p")
    await client.send_raw(b"\x00\x01")
    error = await client.wait_for("error")
    assert isinstance(error, Error) and error.code == "BAD_JSON"


# On Valkey the connection is still busy after `welcome` (the session's presence is being
# published), so these heartbeats queue: their refusals must still come in request order.
async def test_rate_limit_drops_excess_requests_only(make_server: ServerFactory) -> None:
    from presenced.testing import ProtocolClient

    running = await make_server(rate_limit=5, rate_burst=5)
    client = await ProtocolClient.connect(running.url + "?user=a&device=d")
    await client.wait_for("welcome")
    sent = 5 + ANSWER_FACTOR * 5  # the burst, and as many refusals as are answered
    for i in range(sent):
        await client.send({"type": "heartbeat", "ref": i})
    limited = await client.wait_for(lambda m: isinstance(m, Error) and m.code == "RATE_LIMITED")
    assert isinstance(limited, Error)
    acks = client.of_type("heartbeat.ack")
    assert 1 <= len(acks) <= 6

    # Every request gets its answer, in request order: acks first, then the refusals.
    def answers() -> list[object]:
        return [m for m in client.received if type(m).__name__ in ("HeartbeatAck", "Error")]

    await until(lambda: len(answers()) >= sent, "an answer to every request")
    kinds = [type(m).__name__ for m in answers()]
    assert kinds == sorted(kinds, key=lambda k: k == "Error"), kinds
    assert len(kinds) == sent
    assert not client.closed.is_set()
    await client.close()


@pytest.mark.parametrize(("code", "echoed"), [(None, 1000), (1000, 1000), (4321, 4321)])
async def test_client_close_is_echoed_with_a_valid_code(
    server: RunningServer, code: int | None, echoed: int
) -> None:
    # A raw websockets client: code None sends a close frame with an empty payload. The echo
    # must never carry code 0 (RFC 6455 7.4); websockets, like Node's ws, refuses it.
    from websockets.asyncio.client import connect

    async with connect(server.url + "?user=a&device=d", ping_interval=None) as ws:
        await ws.recv()  # welcome
        await ws.close(code, "")  # type: ignore[arg-type]  # (None: no payload at all)
        rcvd = ws.protocol.close_rcvd
        assert rcvd is not None, "the server's close frame was refused"
        assert (rcvd.code, rcvd.reason) == (echoed, "")


async def test_a_sustained_flood_is_cut_and_bystanders_are_served(
    make_server: ServerFactory,
) -> None:
    from presenced.testing import ProtocolClient

    # Heartbeats slower than FAST's: a read pause holds the flooder's pong back, and on a
    # loaded machine a 0.1 s pong deadline could then cut it with 4006 before the 4008.
    running = await make_server(
        rate_limit=5, rate_burst=5, grace=30, heartbeat_interval=5, heartbeat_timeout=2
    )
    bystander = await ProtocolClient.connect(running.url + "?user=b&device=d")
    await bystander.wait_for("welcome")
    flooder = await ProtocolClient.connect(running.url + "?user=f&device=d")
    await flooder.wait_for("welcome")
    # Binary and oversized frames pay their token too: over the rate they are refusals.
    for _ in range(3):
        await flooder.ws.send(b"\x00binary")
    for i in range(200):
        await flooder.send({"type": "heartbeat", "ref": i})
    await cut_for_flooding(running, flooder)
    limited = [m for m in flooder.received if isinstance(m, Error) and m.code == "RATE_LIMITED"]
    # Answered up to ANSWER_FACTOR x burst, no further; on Valkey the flood arrives while the
    # welcome's store step runs, so its refusals wait their turn, and the cut comes first.
    assert len(limited) <= ANSWER_FACTOR * 5
    assert isinstance(await bystander.request({"type": "heartbeat"}), HeartbeatAck)
    # The flooder's session is in grace: it may come back and resume.
    welcome = flooder.of_type("welcome")[0]
    assert isinstance(welcome, Welcome) and running.node.registry.get(welcome.session)
    await bystander.close()


async def test_frames_over_the_rate_are_refused_before_they_are_decoded(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused frame costs a token check and a scan for its ``ref``, not a decode: here
    each is a 2 KB frame nested 1,000 deep, the decoder's slowest input."""
    from presenced.server import connection
    from presenced.testing import ProtocolClient

    decoded: list[bytes] = []

    def counting(data: bytes, **kwargs: int) -> object:
        decoded.append(data)
        return decode_client(data, **kwargs)

    monkeypatch.setattr(connection, "decode_client", counting)
    running = await make_server(rate_limit=5, rate_burst=5)
    client = await ProtocolClient.connect(running.url + "?user=a&device=d")
    await client.wait_for("welcome")
    deep = "[" * 1000 + "]" * 1000
    for _ in range(10):
        await client.send_raw(deep)
    for i in range(3):
        await client.send({"type": "heartbeat", "ref": i})
    await until(lambda: len(client.of_type("error")) >= 13, "an answer to every frame")
    answers = [(e.code, e.ref) for e in client.of_type("error") if isinstance(e, Error)]
    # The first few (the burst, a token or two more) were decoded and refused as too deep;
    # the rest were refused over the rate and never decoded, the heartbeats with their ref.
    assert len(decoded) <= 7
    assert answers[: len(decoded)] == [("BAD_JSON", None)] * len(decoded)
    assert answers[len(decoded) :] == [("RATE_LIMITED", None)] * (10 - len(decoded)) + [
        ("RATE_LIMITED", i) for i in range(3)
    ]
    await client.close()


async def test_a_flooder_paced_just_past_each_new_token_is_cut(make_server: ServerFactory) -> None:
    """Frames 1 ms apart against 50/s: a token is freed every 20 ms, so a frame gets through
    now and then. That does not end the run of refusals (only a calm second does): reading
    is paused, then the connection is cut with 4008, and the bystander is served."""
    from presenced.testing import ProtocolClient

    running = await make_server(
        rate_limit=50, rate_burst=5, grace=30, heartbeat_interval=5, heartbeat_timeout=2
    )
    bystander = await ProtocolClient.connect(running.url + "?user=b&device=d")
    await bystander.wait_for("welcome")
    flooder = await ProtocolClient.connect(running.url + "?user=f&device=d")
    await flooder.wait_for("welcome")
    for i in range(3000):  # 3 s at most: cut long before (50 refusals, about 60 ms)
        try:
            await flooder.send({"type": "heartbeat", "ref": i})
        except ConnectionClosed:
            break
        await asyncio.sleep(0.001)  # the pacing of the flood, not a wait for its effect
    await cut_for_flooding(running, flooder)
    assert running.node.stats.read_pauses >= 1
    limited = [m for m in flooder.received if isinstance(m, Error) and m.code == "RATE_LIMITED"]
    assert 1 <= len(limited) <= ANSWER_FACTOR * 5  # answered up to there, then silence
    assert isinstance(await bystander.request({"type": "heartbeat"}), HeartbeatAck)
    await bystander.close()


async def test_a_read_pause_is_no_calm_a_flood_across_pauses_is_cut(
    make_server: ServerFactory,
) -> None:
    """At 30 frames/s against 5/s, each 1 s read pause ends with a backlog that again runs
    over the answered refusals. The pause does not end the run of refusals (the client did
    not stop, the server stopped reading): the runs add up and the flooder is cut."""
    from presenced.testing import ProtocolClient

    running = await make_server(
        rate_limit=5, rate_burst=5, grace=30, heartbeat_interval=10, heartbeat_timeout=5
    )
    flooder = await ProtocolClient.connect(running.url + "?user=f&device=d")
    await flooder.wait_for("welcome")
    for i in range(300):  # 10 s at most; cut after about three pauses
        try:
            await flooder.send({"type": "heartbeat", "ref": i})
        except ConnectionClosed:
            break
        await asyncio.sleep(0.033)  # the pacing of the flood, not a wait for its effect
    await cut_for_flooding(running, flooder)
    assert running.node.stats.read_pauses >= 2


async def test_a_client_over_the_rate_is_read_a_few_kib_at_a_time(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once refused over the rate, a client's socket is read at most MAX_READ_THROTTLED
    bytes per turn of the loop: 256 KiB of frames sent at once take many small reads, not
    one that would hold every other client up while its frames are handled."""
    from presenced.server import ws_frames
    from presenced.testing import ProtocolClient

    reads: list[int] = []
    updated = ws_frames.FrameTransport.buffer_updated

    def counting(self: ws_frames.FrameTransport, nbytes: int) -> None:
        if self._cap == ws_frames.MAX_READ_THROTTLED:  # the reads of a throttled socket
            reads.append(nbytes)
        updated(self, nbytes)

    monkeypatch.setattr(ws_frames.FrameTransport, "buffer_updated", counting)
    # A burst of 50: these refusals stay answered (no read pause, no cut).
    running = await make_server(rate_limit=5, rate_burst=50)
    flooder = await ProtocolClient.connect(running.url + "?user=f&device=d")
    await flooder.wait_for("welcome")
    for i in range(53):  # three over the burst: refused, and from now on throttled
        await flooder.send({"type": "heartbeat", "ref": i})
    await flooder.wait_for(lambda m: isinstance(m, Error) and m.code == "RATE_LIMITED")
    pad = "x" * 8000
    for _ in range(32):  # 256 KiB in 32 frames, written at once
        await flooder.send_raw('{"type":"heartbeat","pad":"' + pad + '"}')
    await until(lambda: sum(reads) >= 32 * 8000, "the frames read")
    assert max(reads) <= ws_frames.MAX_READ_THROTTLED
    assert len(reads) >= 16
    assert not flooder.closed.is_set() and running.node.stats.read_pauses == 0
    await flooder.close()


async def test_a_flood_of_large_frames_is_cut_after_three_read_pauses(
    make_server: ServerFactory,
) -> None:
    """8 KB frames at 10/s against 5/s: read 4 KiB at a time, each read pause ends with a
    refusal or two, far from the 10 x burst that cuts a fast flood. Three pauses in the run
    are enough: the next refusal cuts it with 4008."""
    from presenced.testing import ProtocolClient

    running = await make_server(
        rate_limit=5, rate_burst=5, grace=30, heartbeat_interval=10, heartbeat_timeout=5
    )
    flooder = await ProtocolClient.connect(running.url + "?user=f&device=d")
    await flooder.wait_for("welcome")
    frame = '{"type":"heartbeat","pad":"' + "x" * 8000 + '"}'
    for _ in range(100):  # 10 s at most; cut after three 1 s pauses
        try:
            await flooder.send_raw(frame)
        except ConnectionClosed:
            break
        await asyncio.sleep(0.1)  # the pacing of the flood, not a wait for its effect
    await cut_for_flooding(running, flooder)
    assert running.node.stats.read_pauses == 3
    assert running.node.stats.rate_limited["request"] < FLOOD_FACTOR * 5  # not by the count


async def cut_for_flooding(running: RunningServer, flooder: ProtocolClient) -> None:
    """The server closed ``flooder`` with 4008, as it counts it. The flooder itself may see
    a reset instead (1006): the server closes a socket it has unread data on, and the
    kernel's reset can overtake the close frame."""
    await flooder.wait_closed(timeout=5)
    await until(lambda: running.node.stats.closed.get("4008") == 1, "the cut counted as 4008")
    assert flooder.close_code in (4008, 1006)


async def _upgraded(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw socket past the WebSocket handshake, not authenticated."""
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def test_an_unauthenticated_socket_may_not_buffer_a_huge_frame(
    make_server: ServerFactory,
) -> None:
    from presenced.testing import ProtocolClient

    running = await make_server(max_frame_bytes="1MiB", auth_timeout=30)
    bystander = await ProtocolClient.connect(running.url + "?user=b&device=d")
    await bystander.wait_for("welcome")
    reader, writer = await _upgraded(running.host, running.port)
    # A masked text frame announcing 1 MiB, and 100 KiB of it: past max_auth_bytes (32 KiB
    # by default) the server closes, long before the auth timeout and the frame's end.
    writer.write(bytes([0x81, 0x80 | 127]) + (1 << 20).to_bytes(8, "big") + os.urandom(4))
    writer.write(b"x" * 100 * 1024)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(64), 5)
    assert data[:1] == b"\x88" and int.from_bytes(data[2:4], "big") == 1009  # close, 1009
    writer.close()
    # Counted under the code it was closed with, not as an abnormal 1006.
    await until(lambda: running.node.stats.closed.get("1009") == 1, "the cut counted as 1009")
    assert "1006" not in running.node.stats.closed
    assert isinstance(await bystander.request({"type": "heartbeat"}), HeartbeatAck)
    # Authenticated, the same client may send frames up to max_frame_bytes.
    big = await ProtocolClient.connect(running.url + "?user=c&device=d", max_size=None)
    await big.wait_for("welcome")
    reply = await big.request({"type": "heartbeat", "pad": "y" * 500_000})
    assert isinstance(reply, HeartbeatAck)
    await big.close()
    await bystander.close()


def _masked(opcode: int, payload: bytes) -> bytes:
    """A client frame of fewer than 126 bytes, masked."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body


async def _server_frames(reader: asyncio.StreamReader, count: int) -> list[tuple[int, bytes]]:
    """The next ``count`` server frames (opcode, payload): unmasked, whole, none fragmented."""
    frames = []
    for _ in range(count):
        first, size = await asyncio.wait_for(reader.readexactly(2), 5)
        assert first & 0x80 and not size & 0x80
        size &= 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await reader.readexactly(8), "big")
        frames.append((first & 0x0F, await asyncio.wait_for(reader.readexactly(size), 5)))
    return frames


async def test_frames_sent_right_behind_the_upgrade_request_are_handled(
    server: RunningServer,
) -> None:
    """A client that does not wait for the 101 (RFC 6455 says it must) and writes frames in
    the same packet as its upgrade request: picows read them; they are still answered, in
    order, and the connection goes on on presenced's own frame protocol."""
    host, port = server.host, server.port
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws?user=pipe&device=d HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    heartbeat = b'{"type":"heartbeat","ref":"h1"}'
    writer.write(request + _masked(0x9, b"early") + _masked(0x1, heartbeat))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    frames = await _server_frames(reader, 3)
    kinds = [json.loads(data)["type"] if op == 0x1 else (op, data) for op, data in frames]
    assert sorted(kinds, key=str) == sorted([(0xA, b"early"), "welcome", "heartbeat.ack"], key=str)
    assert kinds.index((0xA, b"early")) < kinds.index("heartbeat.ack")  # in order
    writer.write(_masked(0x1, b'{"type":"heartbeat","ref":"h2"}') + _masked(0x8, b"\x03\xe8"))
    (_, payload), close = await _server_frames(reader, 2)
    assert b'"h2"' in payload and close == (0x8, b"\x03\xe8")
    writer.close()


async def test_an_unmasked_frame_closes_the_connection_1002(server: RunningServer) -> None:
    reader, writer = await _upgraded(server.host, server.port)
    writer.write(b"\x81\x05hello")  # no mask bit: RFC 6455 section 5.1 forbids this
    ((opcode, payload),) = await _server_frames(reader, 1)
    assert opcode == 0x8 and payload[:2] == (1002).to_bytes(2, "big")
    assert await asyncio.wait_for(reader.read(), 5) == b""  # and the server closed
    writer.close()
    await until(lambda: server.node.stats.closed.get("1002") == 1, "the cut counted as 1002")
