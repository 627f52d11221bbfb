"""The order checks of the chaos run, (e) and (f), on made-up connections: they pass what the
protocol allows and name the first inversion, repeat or hole they see (fast, no server)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from presenced.protocol.chat import MessageAck, MessageEvent, RoomRecovered
from presenced.protocol.messages import MemberJoined, MemberLeft, RoomJoined, RoomLeft
from tests.chaos.test_chaos import Conn, Span, check_stream, check_versions

__all__: list[str] = []

EPOCH = "e1"


def msg(offset: int, room: str = "r0") -> MessageEvent:
    return MessageEvent(
        room=room, epoch=EPOCH, offset=offset, id=f"m{offset}", user="u", device="d",
        body="x", time=0.0,
    )  # fmt: skip


def ack(offset: int) -> MessageAck:
    return MessageAck(room="r0", epoch=EPOCH, offset=offset, id=f"m{offset}", duplicate=False)


def conn(*received: Any) -> Conn:
    return Conn(SimpleNamespace(received=list(received)), "n1", label="s1 (ann) conn 0")  # type: ignore[arg-type]


def joined(version: int = 3) -> RoomJoined:
    return RoomJoined(room="r0", version=version, members=[])


def fresh(version: int = 3) -> Span:
    """A span begun by the room.joined at index 0."""
    return Span("r0", 0, 0.0, 0, version)


def offsets(c: Conn, span: Span) -> tuple[list[str], list[int]]:
    failures, applied = check_stream(c, span)
    return failures, [m.offset for m in applied]


def test_in_order_with_own_acks_and_other_rooms_passes() -> None:
    c = conn(joined(), msg(4), ack(5), msg(9, room="r1"), msg(6), msg(7), RoomLeft(room="r0"))
    span = fresh()
    span.end = 6
    assert offsets(c, span) == ([], [4, 6, 7])


def test_inversion_repeat_and_hole_are_named() -> None:
    c = conn(joined(), msg(4), msg(6), msg(5))
    failures, _ = check_stream(c, fresh())
    assert len(failures) == 1 and "live offset 5 after 6 (out of order" in failures[0]
    c = conn(joined(), msg(4), msg(5), msg(5))
    failures, _ = check_stream(c, fresh())
    assert len(failures) == 1 and "live offset 5 after 5 (a repeat" in failures[0]
    c = conn(joined(), msg(4), ack(5), msg(7))
    failures, _ = check_stream(c, fresh())
    assert len(failures) == 1 and "offset 6 of epoch e1 never came" in failures[0], failures
    # an own ack overtakes 6, still on its way when the connection ends: only a hole if the
    # span stayed healthy long enough after that ack
    c = conn(joined(), msg(4), msg(5), ack(7))
    assert check_stream(c, fresh(), settled=set())[0] == []
    failures, _ = check_stream(c, fresh(), settled={(EPOCH, 7)})
    assert "offset 6 of epoch e1 never came" in failures[0]
    c = conn(joined(), msg(4), ack(4))
    failures, _ = check_stream(c, fresh())
    assert "offset 4 came as an event and as this connection's own ack" in failures[0]


def test_after_a_resume_the_recovery_and_the_overlap_are_one_stream() -> None:
    recovered = RoomRecovered(
        room="r0", epoch=EPOCH, offset=7, recovered=True, events=[msg(5), msg(6), msg(7)]
    )
    # live 6 before the recovery (held by a client), 7 after it (N <= last: skipped), then on
    c = conn(joined(), msg(6), recovered, msg(7), msg(8), ack(9), msg(10))
    span = Span("r0", 0, 0.0, resumed=True, position=(EPOCH, 4))
    assert offsets(c, span) == ([], [5, 6, 7, 8, 10])
    # a recovery that skips one, or a hole after it
    bad = RoomRecovered(room="r0", epoch=EPOCH, offset=7, recovered=True, events=[msg(5), msg(7)])
    failures, _ = check_stream(conn(joined(), bad), span)
    assert "room.recovered after position ('e1', 4) has offset 7 where 6 was due" in failures[0]
    failures, _ = check_stream(conn(joined(), recovered, msg(9)), span)
    assert "offset 8 of epoch e1 never came" in failures[0]


def test_versions_strictly_increase_after_the_snapshot_holes_allowed() -> None:
    def member(kind: type[MemberJoined] | type[MemberLeft], version: int) -> Any:
        if kind is MemberJoined:
            return MemberJoined(room="r0", version=version, user="bob", status="online", devices=1)
        return MemberLeft(room="r0", version=version, user="bob", reason="left")

    # v2, v3 (in a batch after the reply, covered by the snapshot), then v4, a hole, v6
    c = conn(
        joined(3), member(MemberJoined, 2), member(MemberLeft, 3), member(MemberJoined, 4),
        member(MemberLeft, 6),
    )  # fmt: skip
    assert check_versions(c, fresh()) == ([], [5], 0)
    # v4 written before the room.joined that says v3 (asked for at index 0): no hole
    c = conn(member(MemberJoined, 4), joined(3), member(MemberLeft, 5))
    assert check_versions(c, Span("r0", 1, 0.0, 1, 3, asked=0)) == ([], [], 1)
    c = conn(joined(3), member(MemberJoined, 5), member(MemberLeft, 4))
    failures, _, _ = check_versions(c, fresh())
    assert "member.left bob v4 after member.joined bob v5 (out of order)" in failures[0]
    c = conn(joined(3), member(MemberJoined, 4), member(MemberJoined, 4))
    failures, _, _ = check_versions(c, fresh())
    assert "(a repeat)" in failures[0]
