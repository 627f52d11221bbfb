"""The frame protocol (presenced.server.ws_frames) on a recording transport: client frames
parsed however the reads split them, the limits, and the server frames written."""

from __future__ import annotations

import os
from typing import Any

import pytest

from presenced.server.transport import SMALL_FRAME
from presenced.server.ws_frames import (
    MAX_READ_THROTTLED,
    READ_BUFFER_SIZE,
    FrameTransport,
    _unmask,
    text_frame,
    unmask,
)

MASK = b"\x37\xfa\x21\x3d"


class Socket:
    """What FrameTransport uses of uvloop's TCPTransport; writes are recorded."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True
        self.limits: dict[str, Any] = {}

    def write(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        self.written += data

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.written += part

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 7

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = {"high": high, "low": low}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("10.0.0.7", 4242) if name == "peername" else default


class Recorder:
    """A TransportHandler that records every call as a tuple."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_open(self, transport: Any) -> None:
        self.calls.append(("open",))

    def on_text(self, data: bytes) -> None:
        self.calls.append(("text", data))

    def on_binary(self, data: bytes) -> None:
        self.calls.append(("binary", data))

    def on_pong(self) -> None:
        self.calls.append(("pong",))

    def on_peer_close(self, code: int) -> None:
        self.calls.append(("peer_close", code))

    def on_oversize(self, size: int) -> None:
        self.calls.append(("oversize", size))

    def on_cut(self, code: int) -> None:
        self.calls.append(("cut", code))

    def on_write_paused(self) -> None:
        self.calls.append(("paused",))

    def on_write_resumed(self) -> None:
        self.calls.append(("resumed",))

    def on_closed(self) -> None:
        self.calls.append(("closed",))


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
    form: int | None = None,
) -> bytes:
    """A client frame; ``length`` claims another size, ``form`` forces the length
    encoding (125, 126 or 127)."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    if form is None:
        form = size if size < 126 else 126 if size < 1 << 16 else 127
    mask_bit = 0x80 if masked else 0
    head = bytes((first, mask_bit | min(form, 127)))
    if form == 126:
        head += size.to_bytes(2, "big")
    elif form == 127:
        head += size.to_bytes(8, "big")
    if not masked:
        return head + payload
    return head + MASK + unmask(payload, MASK)  # XOR is its own inverse


def make(
    max_frame: int = 64 * 1024, hard_cap: int | None = None, max_auth_bytes: int | None = None
) -> tuple[FrameTransport, Socket, Recorder]:
    socket = Socket()
    handler = Recorder()
    cap = 16 * max_frame if hard_cap is None else hard_cap
    proto = FrameTransport(socket, handler, max_frame, cap, max_auth_bytes)  # type: ignore[arg-type]
    return proto, socket, handler


def feed(proto: FrameTransport, data: bytes, *, chunk: int | None = None) -> list[int]:
    """Read ``data`` into ``proto`` as the event loop does, at most ``chunk`` bytes a read;
    the sizes of the reads."""
    reads = []
    while data:
        view = proto.get_buffer(65536)
        n = min(len(view), len(data), chunk or len(data))
        view[:n] = data[:n]
        proto.buffer_updated(n)
        reads.append(n)
        data = data[n:]
    return reads


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """A server close frame, as written."""
    payload = code.to_bytes(2, "big") + reason
    return bytes((0x88, len(payload))) + payload


def test_unmask_is_the_xor_with_the_repeated_key() -> None:
    for size in [*range(10), 125, 126, 1000, 65536, 70001]:
        data = os.urandom(size)
        want = bytes(b ^ MASK[i % 4] for i, b in enumerate(data))
        for unmasked in (unmask, _unmask):  # websockets's C version, and the fallback
            assert unmasked(data, MASK) == want
            assert unmasked(memoryview(data), MASK) == want
            assert unmasked(bytearray(data), MASK) == want


def test_a_masked_text_frame_is_handed_over_and_an_unmasked_one_closes_1002() -> None:
    proto, socket, handler = make()
    feed(proto, frame(0x1, b'{"type":"heartbeat"}') + frame(0x2, b"\x00\xff"))
    assert handler.calls == [("text", b'{"type":"heartbeat"}'), ("binary", b"\x00\xff")]
    assert socket.written == b"" and not socket.closed
    feed(proto, frame(0x1, b"plain", masked=False) + frame(0x1, b"after"))
    assert handler.calls[2:] == [("cut", 1002)]
    assert socket.written[:1] == b"\x88" and socket.written[2:4] == b"\x03\xea"
    assert b"un-masked" in socket.written and socket.closed


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000])
def test_every_length_encoding(size: int) -> None:
    proto, _, handler = make(max_frame=100_000)
    payload = os.urandom(size)
    feed(proto, frame(0x1, payload))
    assert handler.calls == [("text", payload)]


@pytest.mark.parametrize(("form", "size"), [(126, 100), (127, 1000), (127, 65535), (127, 1 << 63)])
def test_a_length_in_a_longer_form_than_needed_closes_1002(form: int, size: int) -> None:
    proto, socket, handler = make()
    feed(proto, frame(0x1, b"", length=size, form=form))
    assert handler.calls == [("cut", 1002)] and socket.closed


SMALL = frame(0x1, b"first") + frame(0x9, b"ping!") + frame(0x1, b"x" * 300) + frame(0xA, b"")
LARGE = frame(0x2, bytes(range(256)) * 300)  # a 64-bit length
STREAM = SMALL + LARGE + frame(0x1, b"last")
EVENTS = [
    ("text", b"first"),
    ("text", b"x" * 300),
    ("pong",),
    ("binary", bytes(range(256)) * 300),
    ("text", b"last"),
]


def test_frames_split_across_two_reads_at_every_byte() -> None:
    inside = range(len(SMALL) + 20, len(SMALL) + len(LARGE) - 20)
    for cut in range(1, len(STREAM)):
        if cut in inside and cut % 997:  # within the large payload: a sample
            continue
        proto, socket, handler = make(max_frame=100_000)
        feed(proto, STREAM[:cut])
        feed(proto, STREAM[cut:])
        assert handler.calls == EVENTS, cut
        assert socket.written == b"\x8a\x05ping!"  # the pong, once
        assert proto._partial is None and proto._pending is None


def test_frames_read_a_byte_at_a_time_and_all_in_one_read() -> None:
    head = STREAM[:400]
    for chunk in (1, 3, None):
        proto, socket, handler = make(max_frame=100_000)
        feed(proto, head, chunk=chunk)
        feed(proto, STREAM[400:], chunk=None if chunk is None else 4096)
        assert handler.calls == EVENTS
        assert socket.written == b"\x8a\x05ping!"


def test_a_ping_is_answered_with_its_payload() -> None:
    proto, socket, handler = make()
    feed(proto, frame(0x9, b"") + frame(0x9, b"a" * 125))
    assert socket.written == b"\x8a\x00" + b"\x8a\x7d" + b"a" * 125
    assert handler.calls == []


def test_a_close_with_a_code_is_echoed_and_later_input_ignored() -> None:
    proto, socket, handler = make()
    payload = (4001).to_bytes(2, "big") + b"bye"
    feed(proto, frame(0x8, payload) + frame(0x1, b"too late"))
    assert handler.calls == [("peer_close", 4001)]
    assert socket.written == close_frame(4001, b"bye") and socket.closed
    feed(proto, frame(0x1, b"later still"))
    proto.send_text(b"nothing after a close frame")
    proto.close(1000, "")
    assert handler.calls == [("peer_close", 4001)] and socket.written == close_frame(4001, b"bye")


def test_a_close_without_a_code_is_answered_1000() -> None:
    proto, socket, handler = make()
    feed(proto, frame(0x8, b""))
    assert handler.calls == [("peer_close", 1005)]
    assert socket.written == close_frame(1000) and socket.closed


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),  # one byte: no room for a code
        ((1005).to_bytes(2, "big"), 1002),  # a code that never goes on the wire
        ((999).to_bytes(2, "big"), 1002),
        ((5000).to_bytes(2, "big"), 1002),
        ((1000).to_bytes(2, "big") + b"\xff\xfe", 1007),  # a reason that is not UTF-8
    ],
)
def test_a_bad_close_frame_is_refused(payload: bytes, code: int) -> None:
    proto, socket, handler = make()
    feed(proto, frame(0x8, payload))
    assert handler.calls == [("cut", code)]
    assert socket.written[2:4] == code.to_bytes(2, "big") and socket.closed


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (frame(0x1, b"x", rsv=4), 1002, b"reserved bits"),
        (frame(0x1, b"x", rsv=1), 1002, b"reserved bits"),
        (frame(0x3, b"x"), 1002, b"opcode=0x3"),
        (frame(0xB, b"x"), 1002, b"opcode=0xb"),
        (frame(0x9, b"x", fin=False), 1002, b"fragmented control"),
        (frame(0x9, b"x" * 126), 1002, b"> 125"),
        (frame(0x1, b"part", fin=False), 1003, b"fragmented frames"),
        (frame(0x0, b"rest"), 1003, b"fragmented frames"),
        (frame(0x1, b"", length=16 * 65536 + 1), 1009, b"exceeding max allowed size"),
    ],
)
def test_a_bad_frame_closes_the_connection(data: bytes, code: int, reason: bytes) -> None:
    proto, socket, handler = make()
    feed(proto, frame(0x1, b"before") + data + frame(0x1, b"after"))
    assert handler.calls == [("text", b"before"), ("cut", code)]
    assert socket.written[:1] == b"\x88" and socket.written[2:4] == code.to_bytes(2, "big")
    assert reason in socket.written and socket.closed


def test_an_oversize_frame_is_reported_once_whole_and_never_buffered() -> None:
    proto, socket, handler = make(max_frame=1000)
    big = frame(0x1, b"y" * 5000)
    reads = feed(proto, frame(0x1, b"a") + big + frame(0x1, b"b"), chunk=700)
    assert len(reads) > 7
    assert handler.calls == [("text", b"a"), ("oversize", 5000), ("text", b"b")]
    assert not socket.closed
    # While it streams in, nothing of it is kept.
    proto, socket, handler = make(max_frame=1000)
    feed(proto, big[:3000])
    assert proto._pending is not None and proto._pending.payload is None
    assert handler.calls == []
    feed(proto, big[3000:])
    assert handler.calls == [("oversize", 5000)] and proto._pending is None
    # In one read, too.
    proto, socket, handler = make(max_frame=1000)
    feed(proto, big + frame(0x1, b"b"))
    assert handler.calls == [("oversize", 5000), ("text", b"b")]


def test_a_frame_over_the_hard_cap_closes_1009_before_its_payload() -> None:
    proto, socket, handler = make(max_frame=1000, hard_cap=16_000)
    feed(proto, frame(0x1, b"z" * 16_000))
    assert handler.calls == [("oversize", 16_000)]
    feed(proto, frame(0x1, b"", length=16_001)[:14])  # the header alone
    assert handler.calls[1:] == [("cut", 1009)]
    assert socket.written[:1] == b"\x88" and socket.written[2:4] == b"\x03\xf1" and socket.closed


def test_an_unauthenticated_client_may_send_max_auth_bytes() -> None:
    proto, socket, handler = make(max_auth_bytes=100)
    feed(proto, frame(0x1, b"a" * 50))  # 56 bytes
    feed(proto, frame(0x1, b"b" * 38))  # 100 in all
    assert handler.calls == [("text", b"a" * 50), ("text", b"b" * 38)]
    feed(proto, frame(0x1, b""))  # 106: cut, the frame is not handled
    assert handler.calls[2:] == [("cut", 1009)]
    assert socket.written == close_frame(1009, b"too much data before auth") and socket.closed
    # Authenticated, the limit is gone.
    proto, socket, handler = make(max_auth_bytes=100)
    feed(proto, frame(0x1, b"a" * 50))
    proto.authenticated()
    feed(proto, frame(0x1, b"c" * 1000))
    assert handler.calls == [("text", b"a" * 50), ("text", b"c" * 1000)]


def test_a_throttled_socket_is_read_a_few_kib_at_a_time() -> None:
    proto, _, handler = make()
    assert len(proto.get_buffer(65536)) == READ_BUFFER_SIZE
    proto.throttle_reads()
    assert len(proto.get_buffer(65536)) == MAX_READ_THROTTLED
    frames = b"".join(frame(0x1, b"%d" % i + b"p" * 3000) for i in range(20))
    reads = feed(proto, frames)
    assert max(reads) <= MAX_READ_THROTTLED and len(reads) >= len(frames) // MAX_READ_THROTTLED
    assert [c[1] for c in handler.calls] == [b"%d" % i + b"p" * 3000 for i in range(20)]
    # An incomplete header is kept and parsed with the next read, still within the cap.
    feed(proto, frame(0x1, b"q" * 200)[:3])
    assert proto._partial is not None and len(proto.get_buffer(65536)) == MAX_READ_THROTTLED
    feed(proto, frame(0x1, b"q" * 200)[3:])
    assert handler.calls[-1] == ("text", b"q" * 200)


def test_frames_written_by_the_server() -> None:
    proto, socket, _ = make()
    assert proto.peer == "10.0.0.7"
    proto.send_text(b"")
    proto.send_text(b"a" * 125)
    proto.send_text(b"b" * SMALL_FRAME)
    assert socket.written == (
        b"\x81\x00" + b"\x81\x7d" + b"a" * 125 + b"\x81\x7e\x03\xfc" + b"b" * SMALL_FRAME
    )
    for size in (SMALL_FRAME + 1, 8192, 8193, 65535, 65536, 200_000):
        socket.written.clear()
        data = os.urandom(size)
        proto.send_large(data)
        assert socket.written == text_frame(data)
        head = b"\x81\x7e" + size.to_bytes(2, "big") if size < 65536 else None
        assert socket.written[:-size] == (head or b"\x81\x7f" + size.to_bytes(8, "big"))
    socket.written.clear()
    proto.ping()
    assert socket.written == b"\x89\x00"
    assert proto.buffered() == 7
    proto.set_buffer_limit(1234)
    assert socket.limits == {"high": 1234, "low": None}
    proto.pause_reading()
    assert not socket.reading
    proto.resume_reading()
    assert socket.reading


def test_close_sends_one_close_frame_then_closes() -> None:
    proto, socket, _ = make()
    proto.close(4008, "too fast")
    assert socket.written == close_frame(4008, b"too fast") and socket.closed
    proto.close(1000, "again")
    proto.send_large(b"x" * 5000)
    proto.ping()
    assert socket.written == close_frame(4008, b"too fast")
    proto.pause_reading()  # closing: left alone
    assert socket.reading
    proto.abort()
    assert socket.aborted
    # A reason too long for a control frame is cut, on a character boundary.
    proto, socket, _ = make()
    proto.close(1000, "é" * 100)
    assert len(socket.written) == 2 + 2 + 122 and socket.written[1] == 124
    (socket.written[4:]).decode()


def test_write_pauses_and_the_end_reach_the_handler() -> None:
    proto, _, handler = make()
    proto.pause_writing()
    proto.resume_writing()
    assert proto.eof_received() is False
    proto.connection_lost(None)
    assert handler.calls == [("paused",), ("resumed",), ("closed",)]


def test_frames_picows_read_before_the_swap_are_handled_alike() -> None:
    proto, socket, handler = make(max_frame=100, max_auth_bytes=1000)
    proto.pipelined(0x1, True, 0, b"hello")
    proto.pipelined(0x9, True, 0, b"p")
    proto.pipelined(0x1, True, 0, b"x" * 101)
    assert handler.calls == [("text", b"hello"), ("oversize", 101)]
    assert socket.written == b"\x8a\x01p"
    proto.pipelined(0x1, True, 2, b"rsv")
    assert handler.calls[-1] == ("cut", 1002) and socket.closed
    proto.pipelined(0x1, True, 0, b"ignored")
    assert handler.calls[-1] == ("cut", 1002)
    # They count against max_auth_bytes.
    proto, socket, handler = make(max_auth_bytes=100)
    proto.pipelined(0x1, True, 0, b"x" * 200)
    assert handler.calls == [("cut", 1009)]
    proto, socket, handler = make()
    proto.pipelined(0x1, False, 0, b"part")
    assert handler.calls == [("cut", 1003)]


def test_a_failing_handler_closes_1011() -> None:
    proto, socket, handler = make()

    def boom(data: bytes) -> None:
        raise RuntimeError("handler bug")

    handler.on_text = boom  # type: ignore[method-assign]
    feed(proto, frame(0x1, b"x") + frame(0x1, b"y"))
    assert handler.calls == [("cut", 1011)]
    assert socket.written == close_frame(1011) and socket.closed
