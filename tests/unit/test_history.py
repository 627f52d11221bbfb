"""The room event stream, pure: offsets, dedupe, edits, trimming, recovery, receipts."""

from __future__ import annotations

from presenced.presence.history import EventKind, HistoryBook
from presenced.typing import RoomId, UserId

R = RoomId("r")
ALICE, BOB = UserId("alice"), UserId("bob")


def send(book: HistoryBook, user: UserId, body: str, now: float, temp: str | None = None) -> int:
    result = book.append(R, user, "d", temp, body, now, f"m{now}", "E1")
    return result.event.offset


def test_offsets_increase_and_the_epoch_is_fixed_at_the_first_event() -> None:
    book = HistoryBook(size=10, ttl=100)
    first = book.append(R, ALICE, "d", None, "a", 1.0, "m1", "E1")
    second = book.append(R, BOB, "d", None, "b", 2.0, "m2", "E2")  # new_epoch ignored now
    assert (first.event.offset, second.event.offset) == (1, 2)
    assert first.event.epoch == second.event.epoch == "E1"
    assert book.position(R, "E9") == ("E1", 2)


def test_resent_temp_id_returns_the_first_event() -> None:
    book = HistoryBook(size=10, ttl=100)
    first = book.append(R, ALICE, "d", "t1", "hi", 1.0, "m1", "E1")
    again = book.append(R, ALICE, "d", "t1", "hi", 2.0, "m2", "E1")
    assert again.duplicate and again.event.offset == first.event.offset
    assert again.event.message_id == "m1"
    other_user = book.append(R, BOB, "d", "t1", "hi", 3.0, "m3", "E1")
    assert not other_user.duplicate and other_user.event.offset == 2


def test_edits_and_deletes_take_offsets_and_change_the_current_state() -> None:
    book = HistoryBook(size=10, ttl=100)
    send(book, ALICE, "v1", 1.0)
    edited = book.amend(R, "m1.0", ALICE, "v2", 2.0)
    assert edited is not None and (edited.kind, edited.offset) == (EventKind.EDITED, 2)
    state = book.message(R, "m1.0")
    assert state is not None and state.body == "v2"
    deleted = book.amend(R, "m1.0", ALICE, None, 3.0)
    assert deleted is not None and (deleted.kind, deleted.offset) == (EventKind.DELETED, 3)
    assert book.message(R, "m1.0") is None
    assert book.amend(R, "m1.0", ALICE, "v3", 4.0) is None  # deleted messages stay deleted
    assert book.last_messages(R, 10, None, 4.0) == []


def test_recovery_returns_exactly_what_was_missed() -> None:
    book = HistoryBook(size=10, ttl=100)
    for i in range(5):
        send(book, ALICE, f"m{i}", float(i))
    found = book.since(R, "E1", 2, 5.0, "E?")
    assert found.recovered and [e.offset for e in found.events] == [3, 4, 5]
    nothing = book.since(R, "E1", 5, 5.0, "E?")
    assert nothing.recovered and nothing.events == []


def test_recovery_beyond_the_kept_history_or_another_epoch_is_refused() -> None:
    book = HistoryBook(size=3, ttl=100)
    for i in range(10):
        send(book, ALICE, f"m{i}", float(i))
    assert not book.since(R, "E1", 2, 10.0, "E?").recovered
    assert book.since(R, "E1", 7, 10.0, "E?").recovered  # 8, 9, 10 are kept
    assert not book.since(R, "E0", 9, 10.0, "E?").recovered
    assert not book.since(R, "E1", 11, 10.0, "E?").recovered  # from the future


def test_old_events_expire_and_take_their_temp_ids_with_them() -> None:
    book = HistoryBook(size=10, ttl=5)
    book.append(R, ALICE, "d", "t1", "old", 0.0, "m0", "E1")
    send(book, ALICE, "new", 10.0)
    assert [m.body for m in book.last_messages(R, 10, None, 10.0)] == ["new"]
    again = book.append(R, ALICE, "d", "t1", "old", 11.0, "m11", "E1")
    assert not again.duplicate  # the first was trimmed: a new message
    assert not book.since(R, "E1", 0, 11.0, "E?").recovered


def test_housekeeping_trims_untouched_rooms_and_forgets_empty_streams() -> None:
    book = HistoryBook(size=10, ttl=5)
    quiet, busy = RoomId("quiet"), RoomId("busy")
    book.append(quiet, ALICE, "d", "t1", "old", 0.0, "m0", "E1")
    book.append(busy, ALICE, "d", None, "old", 0.0, "m1", "E2")
    assert book.expire(4.0) == 0  # nothing is past the ttl yet
    book.append(busy, BOB, "d", None, "new", 4.0, "m2", "E2")
    # At 6 s the quiet room's message is past its age: trimmed, its temp id with it, and the
    # stream (nothing left, nothing written for the ttl) forgotten; the busy one keeps its
    # newest message and its epoch.
    assert book.expire(6.0) == 1
    assert book.log(quiet) is None
    assert [m.body for m in book.last_messages(busy, 10, None, 6.0)] == ["new"]
    assert book.position(busy, "E?") == ("E2", 2)
    assert book.expire(20.0) == 1 and book.log(busy) is None
    # A room used again later starts a new stream; an old position does not recover into it.
    assert book.position(quiet, "E3") == ("E3", 0)
    assert not book.since(quiet, "E1", 1, 21.0, "E?").recovered


def test_housekeeping_without_an_age_limit_keeps_everything() -> None:
    book = HistoryBook(size=10, ttl=float("inf"))
    send(book, ALICE, "kept", 0.0)
    assert book.expire(1e9) == 0 and book.log(R) is not None


def test_history_limit_and_before() -> None:
    book = HistoryBook(size=10, ttl=100)
    for i in range(6):
        send(book, ALICE, f"m{i}", float(i))
    assert [m.offset for m in book.last_messages(R, 2, None, 6.0)] == [5, 6]
    assert [m.offset for m in book.last_messages(R, 2, 4, 6.0)] == [2, 3]


def test_read_positions_move_forward_only_and_count_unread_by_others() -> None:
    book = HistoryBook(size=10, ttl=100)
    send(book, ALICE, "a1", 1.0)
    send(book, ALICE, "a2", 2.0)
    send(book, BOB, "b1", 3.0)  # bob's own message marks bob read up to 3
    assert book.read_state(R, BOB) == (3, 0)
    assert book.read_state(R, ALICE) == (2, 1)
    assert book.mark(R, ALICE, "seen", 3) == (2, 3)
    assert book.mark(R, ALICE, "seen", 1) == (3, 3)  # never back
    assert book.mark(R, ALICE, "seen", 99) == (3, 3)  # never past the stream
    assert book.mark(R, BOB, "delivered", 1) == (3, 3)  # seen implied delivered
    assert book.authors_between(R, 0, 3) == {ALICE, BOB}
    assert book.authors_between(R, 2, 3) == {BOB}


def test_no_history_still_numbers_events() -> None:
    book = HistoryBook(size=0, ttl=100)
    assert send(book, ALICE, "a", 1.0) == 1
    assert send(book, ALICE, "b", 2.0) == 2
    assert book.last_messages(R, 10, None, 2.0) == []
    assert not book.since(R, "E1", 1, 2.0, "E?").recovered
    assert book.since(R, "E1", 2, 2.0, "E?").recovered  # nothing was missed
