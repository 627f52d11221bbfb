"""The client SDK's room stream rule, pure: apply the next offset, drop duplicates, hold and
recover a gap, re-baseline on a new epoch or a failed recovery (docs/protocol.md, "Keeping a
position" and "Recovery"). No sockets: :class:`StreamPositions` is fed frames and says what to
surface and which ``room.join`` + ``since`` to send."""

from __future__ import annotations

import pytest

from presenced.client.streams import (
    UNKNOWN_EPOCH,
    RecoveryFailed,
    Step,
    StreamPositions,
    classify,
)
from presenced.protocol.chat import (
    MessageAck,
    MessageDeleted,
    MessageEdited,
    MessageEvent,
    Position,
    RoomEvent,
    RoomHistoryReply,
    RoomRecovered,
    TypingEvent,
)
from presenced.protocol.messages import RoomJoined

__all__ = ["ack", "deleted", "edited", "msg", "pos", "recovered"]


def msg(offset: int, room: str = "r", epoch: str = "e1", user: str = "bob") -> MessageEvent:
    return MessageEvent(
        room=room,
        epoch=epoch,
        offset=offset,
        id=f"m{offset}",
        user=user,
        device="d",
        body=f"text {offset}",
        time=1.0,
    )


def edited(
    offset: int, room: str = "r", epoch: str = "e1", ref: int | None = None
) -> MessageEdited:
    return MessageEdited(
        room=room, epoch=epoch, offset=offset, id="m1", user="bob", body="new", time=1.0, ref=ref
    )


def deleted(offset: int, room: str = "r", epoch: str = "e1") -> MessageDeleted:
    return MessageDeleted(room=room, epoch=epoch, offset=offset, id="m1", user="bob", time=1.0)


def ack(offset: int, room: str = "r", epoch: str = "e1", duplicate: bool = False) -> MessageAck:
    return MessageAck(
        room=room,
        epoch=epoch,
        offset=offset,
        id=f"m{offset}",
        duplicate=duplicate,
        temp_id="t",
        ref=7,
    )


def recovered(
    offset: int,
    events: list[RoomEvent],
    *,
    room: str = "r",
    epoch: str = "e1",
    ok: bool = True,
) -> RoomRecovered:
    return RoomRecovered(room=room, epoch=epoch, offset=offset, recovered=ok, events=events)


def pos(epoch: str, offset: int) -> Position:
    return Position(epoch=epoch, offset=offset)


def at(room: str, epoch: str, offset: int) -> StreamPositions:
    streams = StreamPositions()
    streams.known[room] = pos(epoch, offset)
    return streams


# --- the rule itself --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "epoch", "offset", "step"),
    [
        (None, "e1", 7, Step.FIRST),
        (pos("e1", 4), "e1", 5, Step.APPLY),
        (pos("e1", 0), "e1", 1, Step.APPLY),
        (pos("e1", 4), "e1", 4, Step.DUPLICATE),
        (pos("e1", 4), "e1", 1, Step.DUPLICATE),
        (pos("e1", 4), "e1", 6, Step.GAP),
        (pos("e1", 4), "e1", 400, Step.GAP),
        (pos("e1", 4), "e2", 1, Step.NEW_EPOCH),
        (pos("e1", 4), "e2", 5, Step.NEW_EPOCH),
    ],
)
def test_classify(position: Position | None, epoch: str, offset: int, step: Step) -> None:
    assert classify(position, epoch, offset) is step


# --- live events ------------------------------------------------------------------------------


def test_the_next_offset_is_applied_and_the_first_event_is_the_baseline() -> None:
    streams = StreamPositions()
    assert streams.position("r") is None
    for event in (msg(5), edited(6), deleted(7)):
        assert streams.receive(event) == [event]
    assert streams.position("r") == pos("e1", 7)
    # Other rooms and other messages are untouched.
    typing = TypingEvent(room="r", users=["bob"], seq=1)
    assert streams.receive(typing) == [typing]
    assert streams.receive(msg(9, room="other")) == [msg(9, room="other")]
    assert streams.known == {"r": pos("e1", 7), "other": pos("e1", 9)}
    assert streams.take_recoveries() == []


def test_a_duplicate_is_dropped_and_the_position_stays() -> None:
    streams = at("r", "e1", 5)
    assert streams.receive(msg(5)) == []
    assert streams.receive(msg(2)) == []
    assert streams.position("r") == pos("e1", 5)
    assert streams.take_recoveries() == []


def test_a_gap_holds_the_event_and_asks_for_a_recovery_from_the_position() -> None:
    streams = at("r", "e1", 5)
    assert streams.receive(msg(7)) == []  # 6 is missing: 7 is not surfaced as if it were not
    assert streams.receive(msg(8)) == []  # held too, in order
    assert streams.position("r") == pos("e1", 5)
    assert streams.take_recoveries() == [("r", pos("e1", 5))]
    assert streams.take_recoveries() == []  # asked once

    recovery = recovered(8, [msg(6), msg(7), msg(8)])
    # The recovery first (6, 7, 8), then nothing of what was held: it is all inside.
    assert streams.receive(recovery) == [recovery]
    assert streams.position("r") == pos("e1", 8)
    assert streams.awaiting == {}
    assert streams.receive(msg(9)) == [msg(9)]


def test_held_events_past_the_recovery_follow_it_and_a_new_gap_recovers_again() -> None:
    streams = at("r", "e1", 1)
    streams.receive(msg(3))
    streams.receive(msg(5))
    streams.receive(msg(7))
    assert streams.take_recoveries() == [("r", pos("e1", 1))]
    recovery = recovered(4, [msg(2), msg(3), msg(4)])
    # 5 follows 4; 7 is past a new hole (6 did not come): recover again from 5.
    assert streams.receive(recovery) == [recovery, msg(5)]
    assert streams.position("r") == pos("e1", 5)
    assert streams.take_recoveries() == [("r", pos("e1", 5))]
    assert streams.awaiting == {"r": [msg(7)]}


def test_a_new_epoch_recovers_from_the_old_position_and_the_failure_says_reload() -> None:
    streams = at("r", "e1", 40)
    assert streams.receive(msg(2, epoch="e2")) == []
    assert streams.take_recoveries() == [("r", pos("e1", 40))]
    streams.receive(msg(3, epoch="e2"))
    failed = recovered(2, [], epoch="e2", ok=False)
    # room.recovered as it came, the typed "reload" event, then what is past the new position.
    assert streams.receive(failed) == [
        failed,
        RecoveryFailed(room="r", epoch="e2", offset=2),
        msg(3, epoch="e2"),
    ]
    assert streams.position("r") == pos("e2", 3)


def test_a_failed_recovery_in_the_same_epoch_re_baselines_to_the_server() -> None:
    streams = at("r", "e1", 3)
    streams.receive(msg(500))
    streams.take_recoveries()
    streams.receive(msg(501))
    failed = recovered(500, [], ok=False)  # trimmed: the history no longer reaches 4
    assert streams.receive(failed) == [
        failed,
        RecoveryFailed(room="r", epoch="e1", offset=500),
        msg(501),
    ]
    assert streams.position("r") == pos("e1", 501)


def test_a_recovery_never_surfaces_what_was_already_surfaced() -> None:
    streams = at("r", "e1", 4)
    recovery = recovered(6, [msg(3), msg(4), msg(5), edited(6)])
    out = streams.receive(recovery)
    assert len(out) == 1 and isinstance(out[0], RoomRecovered)
    assert out[0].events == [msg(5), edited(6)]
    assert streams.position("r") == pos("e1", 6)


# --- replies ----------------------------------------------------------------------------------


def test_own_acks_and_edit_replies_count_like_events() -> None:
    streams = StreamPositions()
    streams.reply(ack(4))  # the first: the baseline
    streams.reply(edited(5, ref=3))
    streams.reply(ack(5, duplicate=True))  # a re-sent temp_id repeats an offset: no move
    streams.reply(RoomJoined(room="r", version=1, members=[], ref=2))  # no offset: ignored
    assert streams.position("r") == pos("e1", 5)
    assert streams.receive(msg(5)) == []  # the ack counted it
    assert streams.take_recoveries() == []


def test_an_ack_past_a_gap_recovers_and_the_acked_message_comes_back_in_it() -> None:
    streams = at("r", "e1", 2)
    streams.reply(ack(5))  # 3 and 4 never arrived
    assert streams.position("r") == pos("e1", 2)
    assert streams.take_recoveries() == [("r", pos("e1", 2))]
    recovery = recovered(5, [msg(3), msg(4), msg(5, user="alice")])
    assert streams.receive(recovery) == [recovery]
    assert streams.position("r") == pos("e1", 5)


def test_a_history_reply_sets_a_missing_or_other_epoch_position_only() -> None:
    streams = StreamPositions()
    reply = RoomHistoryReply(room="r", epoch="e1", offset=9, messages=[], ref=4)
    streams.reply(reply)
    assert streams.position("r") == pos("e1", 9)
    assert streams.receive(msg(9)) == []  # it is in the history shown
    assert streams.receive(msg(10)) == [msg(10)]
    streams.reply(RoomHistoryReply(room="r", epoch="e1", offset=12, messages=[], ref=5))
    assert streams.position("r") == pos("e1", 10)  # same epoch: events keep the position
    streams.reply(RoomHistoryReply(room="r", epoch="e2", offset=1, messages=[], ref=6))
    assert streams.position("r") == pos("e2", 1)  # the reload after a restart


# --- recoveries due after a welcome -----------------------------------------------------------


def test_awaited_room_holds_live_events_until_its_recovery() -> None:
    streams = at("r", "e1", 2)
    streams.expect("r")
    # Live events while the recovery is due: held, not counted, not surfaced.
    assert streams.receive(msg(5)) == []
    assert streams.receive(msg(6)) == []
    streams.reply(ack(7))  # a reply does not move an awaited room either
    assert streams.position("r") == pos("e1", 2)
    assert streams.take_recoveries() == []  # the welcome's own recovery is on its way
    # Other rooms flow.
    assert streams.receive(msg(1, room="other")) == [msg(1, room="other")]

    recovery = recovered(5, [msg(3), deleted(4), msg(5)])
    out = streams.receive(recovery)
    # The recovery first, then only the held events past it (5 was in both).
    assert out == [recovery, msg(6)]
    assert streams.position("r") == pos("e1", 6)
    assert streams.awaiting == {}
    assert streams.receive(msg(7)) == [msg(7)]


def test_held_events_of_the_dead_epoch_are_dropped_at_the_recovery() -> None:
    streams = at("r", "e1", 40)
    streams.expect("r")
    streams.receive(msg(39, epoch="e1"))  # from the dead epoch
    streams.receive(msg(2, epoch="e2"))  # covered by the reload the app must do
    streams.receive(msg(4, epoch="e2"))
    failed = recovered(3, [], epoch="e2", ok=False)
    assert streams.receive(failed) == [
        failed,
        RecoveryFailed(room="r", epoch="e2", offset=3),
        msg(4, epoch="e2"),
    ]
    assert streams.position("r") == pos("e2", 4)
    assert streams.take_recoveries() == []


def test_unexpected_recovery_passes_through_and_sets_the_position() -> None:
    streams = StreamPositions()
    recovery = recovered(3, [msg(2), msg(3)])
    assert streams.receive(recovery) == [recovery]
    assert streams.position("r") == pos("e1", 3)


def test_settle_releases_the_rooms_awaited_at_the_welcome_by_the_rule() -> None:
    streams = at("b", "e1", 1)
    for room in ("a", "b", "c"):
        streams.expect(room)
    streams.receive(msg(1, room="a"))
    streams.receive(msg(2, room="a"))
    streams.receive(msg(3, room="b"))  # past 2: a gap once released
    awaited = dict(streams.awaiting)
    streams.receive(recovered(0, [], room="c"))
    streams.receive(msg(5, room="c"))  # a gap found after the welcome's recovery: its own
    assert streams.settle(awaited) == [msg(1, room="a"), msg(2, room="a")]
    assert streams.position("a") == pos("e1", 2)
    assert streams.take_recoveries() == [("c", pos("e1", 0)), ("b", pos("e1", 1))]
    assert set(streams.awaiting) == {"b", "c"}


def test_abandon_says_reload_and_releases_what_was_held() -> None:
    streams = at("r", "e1", 2)
    streams.receive(msg(4))
    streams.receive(msg(5))
    assert streams.abandon("r") == [RecoveryFailed(room="r", epoch="e1", offset=2), msg(4), msg(5)]
    assert streams.position("r") == pos("e1", 5)
    assert streams.abandon("r") == []


def test_connection_lost_drops_held_events_so_the_next_recovery_has_them() -> None:
    streams = at("r", "e1", 2)
    streams.receive(msg(4))  # a gap: held, recovery due
    streams.connection_lost()
    assert streams.awaiting == {}
    assert streams.take_recoveries() == []
    assert streams.position("r") == pos("e1", 2)  # 4 was never surfaced
    assert streams.for_auth(["r"]) == {"r": pos("e1", 2)}  # the resume asks from 2


def test_forget_drops_position_and_recovery() -> None:
    streams = at("r", "e1", 2)
    streams.receive(msg(4))
    streams.forget("r")
    assert streams.position("r") is None
    assert streams.awaiting == {}
    assert streams.take_recoveries() == []
    assert streams.since("r") == pos(UNKNOWN_EPOCH, 0)


def test_for_auth_lists_known_positions_of_the_given_rooms() -> None:
    streams = StreamPositions()
    assert streams.for_auth(["r"]) is None
    streams.receive(msg(2))
    streams.receive(msg(9, room="gone"))
    assert streams.for_auth(["r", "quiet"]) == {"r": pos("e1", 2)}
    assert streams.since("r") == pos("e1", 2)
    assert streams.since("quiet") == pos(UNKNOWN_EPOCH, 0)


def test_positions_for_a_resume_come_from_what_was_applied_not_the_highest_seen() -> None:
    streams = at("r", "e1", 3)
    streams.receive(msg(9))  # seen, but 4..8 are missing
    assert streams.for_auth(["r"]) == {"r": pos("e1", 3)}
