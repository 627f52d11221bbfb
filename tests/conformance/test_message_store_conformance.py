"""Message and typing store conformance: what every backend's room streams must do.

Like test_store_conformance.py, every test runs once per backend in ``BACKENDS``
(tests/conformance/conftest.py) and goes only through the MessageStore and TypingStore
Protocols of presenced.store.base; the memory backend (over presence/history.py) is the
reference. The stream's bounds matter here, so this module overrides the ``backplane`` fixture
with one built with a small history (``SIZE`` events, ``TTL`` seconds), and ``open_backplane``
builds others (no history at all, a longer one). A backend added to ``BACKENDS`` needs a branch
in ``_open_with_history`` below too: the fixture fails loudly until it has one.

- Streams: each room numbers its messages, edits and deletes 1, 2, 3... in one epoch;
  rooms are independent; a re-sent temporary id (same user, same room) returns the first
  message while it is kept and takes no offset.
- Current state: ``message`` and ``last_messages`` show edits applied and deletes left out;
  ``amend`` refuses what is unknown, deleted or no longer kept.
- Recovery: ``since`` gives exactly the events after a kept position, in order, or refuses
  (another epoch, a future offset, a gap beyond the kept history).
- Bounds: the stream keeps ``SIZE`` events, none older than ``TTL`` at the wall time passed in;
  what is trimmed stops deduping, counting and being found.
- Receipts: delivered / seen positions only move forward, never past the stream; seen implies
  delivered; one's own message marks it seen; unread counts kept messages by others.
- Typing: start / stop return the new set only when it changes, per room, numbered in order.

A property test drives random sends, edits, deletes and recoveries against a list model.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from presenced.presence.history import (
    AppendResult,
    Body,
    EventKind,
    MessageState,
    Recovery,
    StreamEvent,
)
from presenced.store.base import Backplane, MessageStore, TypingChange
from presenced.typing import RoomId, UserId
from tests.conformance.conftest import BACKENDS, open_backend

__all__: list[str] = []

SIZE, TTL = 5, 100.0  # the history of the ``backplane`` fixture
R1, R2, R3 = RoomId("room-1"), RoomId("room-2"), RoomId("room-3")
ALICE, BOB, CAROL = UserId("alice"), UserId("bob"), UserId("carol")

Opener = Callable[..., Awaitable[Backplane]]


async def _open_with_history(
    request: pytest.FixtureRequest, name: str, history_size: int, history_ttl: float
) -> Backplane:
    """A fresh, empty backplane of backend ``name`` whose streams have the given bounds."""
    return await open_backend(request, name, history_size=history_size, history_ttl=history_ttl)


@pytest.fixture(params=BACKENDS)
async def open_backplane(request: pytest.FixtureRequest) -> AsyncIterator[Opener]:
    """Open fresh backplanes of one backend: ``await open_backplane(history_size=0)``."""
    opened: list[Backplane] = []

    async def opener(history_size: int = SIZE, history_ttl: float = TTL) -> Backplane:
        bp = await _open_with_history(request, request.param, history_size, history_ttl)
        opened.append(bp)
        return bp

    try:
        yield opener
    finally:
        for bp in opened:
            await bp.close()


@pytest.fixture
async def backplane(open_backplane: Opener) -> Backplane:
    """Overrides conftest's: a fresh backplane whose streams keep ``SIZE`` events for ``TTL``."""
    return await open_backplane()


_ids: Iterator[int] = itertools.count(1)


async def send(
    store: MessageStore,
    room: RoomId,
    user: UserId,
    body: Body,
    wall: float,
    temp: str | None = None,
    device: str = "phone",
) -> AppendResult:
    """Append a message with a fresh message id (ignored by the store for a duplicate)."""
    return await store.append(room, user, device, temp, body, wall, f"msg-{next(_ids)}")


def mid(result: AppendResult) -> str:
    return result.event.message_id


def state_of(result: AppendResult, body: Body | None = None) -> MessageState:
    """The current state a just-sent message should have (``body`` after an edit)."""
    event = result.event
    return MessageState(
        id=event.message_id,
        offset=event.offset,
        author=event.user,
        device=event.device,
        body=event.body if body is None else body,
        time=event.time,
        temp_id=event.temp_id,
    )


def amended(event: StreamEvent | None) -> tuple[Any, ...]:
    """The fields an edit or delete event is defined by (it has no device or temp id)."""
    assert event is not None
    return (
        event.kind,
        event.room,
        event.epoch,
        event.offset,
        event.message_id,
        event.user,
        event.time,
        event.body,
    )


def offsets(recovery: Recovery) -> list[int]:
    return [e.offset for e in recovery.events]


# --- Offsets, epochs, dedupe -------------------------------------------------------------------


async def test_offsets_count_from_one_in_one_epoch_per_room(backplane: Backplane) -> None:
    store = backplane.messages
    epoch, latest = await store.position(R1)
    assert isinstance(epoch, str) and epoch
    assert latest == 0
    assert await store.position(R1) == (epoch, 0)  # asking does not start a new stream

    first = await store.append(R1, ALICE, "phone", "t1", "hello", 10.0, "id-a")
    assert not first.duplicate
    assert first.event == StreamEvent(
        EventKind.MESSAGE, R1, epoch, 1, "id-a", ALICE, 10.0, "hello", "phone", "t1"
    )
    body: Body = {"text": "hi", "mentions": ["alice"], "n": 2}
    second = await store.append(R1, BOB, "laptop", None, body, 11.0, "id-b")
    assert second.event == StreamEvent(
        EventKind.MESSAGE, R1, epoch, 2, "id-b", BOB, 11.0, body, "laptop", None
    )
    third = await send(store, R1, ALICE, "again", 12.0)
    assert (third.event.epoch, third.event.offset) == (epoch, 3)
    assert await store.position(R1) == (epoch, 3)

    # Another room has its own stream, from 1; the first is left alone.
    other = await send(store, R2, ALICE, "elsewhere", 13.0)
    assert other.event.offset == 1 and other.event.room == R2
    epoch2, latest2 = await store.position(R2)
    assert (other.event.epoch, latest2) == (epoch2, 1)
    assert await store.position(R1) == (epoch, 3)
    assert (await send(store, R1, BOB, "four", 14.0)).event.offset == 4
    assert await store.position(R2) == (epoch2, 1)


async def test_resent_temp_id_returns_the_first_message(open_backplane: Opener) -> None:
    store = (await open_backplane(history_size=50)).messages
    first = await send(store, R1, ALICE, "hi", 1.0, temp="t1", device="phone")
    epoch = first.event.epoch
    # Re-sent (from another device even, at a later time, with another id): the first message.
    again = await store.append(R1, ALICE, "laptop", "t1", "hi (retry)", 2.0, "fresh-id")
    assert again.duplicate
    assert again.event == first.event
    assert await store.position(R1) == (epoch, 1)
    assert await store.message(R1, "fresh-id") is None  # nothing stored under the new id
    assert await store.last_messages(R1, 10, None, 2.0) == [state_of(first)]

    # The same temp id from someone else, or in another room, is a new message.
    bobs = await send(store, R1, BOB, "hi", 3.0, temp="t1")
    assert not bobs.duplicate and bobs.event.offset == 2 and mid(bobs) != mid(first)
    elsewhere = await send(store, R2, ALICE, "hi", 3.0, temp="t1")
    assert not elsewhere.duplicate and elsewhere.event.offset == 1
    # Another temp id, or none (twice), is a new message each time.
    assert (await send(store, R1, ALICE, "x", 4.0, temp="t2")).event.offset == 3
    assert (await send(store, R1, ALICE, "y", 5.0)).event.offset == 4
    assert (await send(store, R1, ALICE, "y", 6.0)).event.offset == 5

    # Still the first message after it was edited, and after it was deleted: no new offset.
    assert await store.amend(R1, mid(first), ALICE, "edited", 7.0) is not None
    edited = await send(store, R1, ALICE, "hi", 8.0, temp="t1")
    assert edited.duplicate
    assert (edited.event.epoch, edited.event.offset, mid(edited)) == (epoch, 1, mid(first))
    assert await store.amend(R1, mid(first), ALICE, None, 9.0) is not None
    deleted = await send(store, R1, ALICE, "hi", 10.0, temp="t1")
    assert deleted.duplicate
    assert (deleted.event.epoch, deleted.event.offset, mid(deleted)) == (epoch, 1, mid(first))
    assert await store.position(R1) == (epoch, 7)
    # Bob's copy is his own, in both rooms.
    bob_again = await send(store, R1, BOB, "hi", 11.0, temp="t1")
    assert bob_again.duplicate and bob_again.event == bobs.event


# --- Current state: message, amend, last_messages ----------------------------------------------


async def test_message_is_the_current_state(backplane: Backplane) -> None:
    store = backplane.messages
    body: Body = {"text": "hello", "attachments": [{"kind": "image", "size": 3}]}
    sent = await store.append(R1, ALICE, "phone", "t1", body, 5.0, "m-1")
    assert await store.message(R1, "m-1") == MessageState(
        "m-1", 1, ALICE, "phone", body, 5.0, "t1", deleted=False
    )
    # Unknown ids, the id in another room, an unknown room: nothing.
    await send(store, R2, BOB, "other room", 5.0)
    assert await store.message(R1, "no-such-id") is None
    assert await store.message(R2, "m-1") is None
    assert await store.message(R3, "m-1") is None

    # An edit changes the body (and nothing else: offset and time stay the message's own).
    await store.amend(R1, "m-1", ALICE, "plain now", 6.0)
    assert await store.message(R1, "m-1") == state_of(sent, "plain now")
    await store.amend(R1, "m-1", CAROL, {"text": "moderated"}, 7.0)
    assert await store.message(R1, "m-1") == state_of(sent, {"text": "moderated"})
    # A delete makes it unknown.
    await store.amend(R1, "m-1", ALICE, None, 8.0)
    assert await store.message(R1, "m-1") is None


async def test_edits_and_deletes_take_offsets(backplane: Backplane) -> None:
    store = backplane.messages
    a = await send(store, R1, ALICE, "v1", 1.0)
    b = await send(store, R1, BOB, {"text": "b"}, 2.0)
    epoch = a.event.epoch

    edit = await store.amend(R1, mid(a), ALICE, "v2", 3.0)
    assert amended(edit) == (EventKind.EDITED, R1, epoch, 3, mid(a), ALICE, 3.0, "v2")
    # A moderator's delete: the event names who did it.
    delete = await store.amend(R1, mid(b), CAROL, None, 4.0)
    assert amended(delete) == (EventKind.DELETED, R1, epoch, 4, mid(b), CAROL, 4.0, None)
    assert await store.position(R1) == (epoch, 4)

    # Deleted, unknown, in another room, in an unknown room: refused, no offset taken.
    assert await store.amend(R1, mid(b), BOB, "resurrect", 5.0) is None
    assert await store.amend(R1, mid(b), BOB, None, 5.0) is None
    assert await store.amend(R1, "no-such-id", ALICE, "x", 5.0) is None
    await send(store, R2, ALICE, "r2", 5.0)
    assert await store.amend(R2, mid(a), ALICE, "x", 5.0) is None
    assert await store.amend(R3, mid(a), ALICE, None, 5.0) is None
    assert await store.position(R1) == (epoch, 4)
    assert (await store.position(R2))[1] == 1

    # Edits can follow edits, and the stream goes on numbering after them.
    again = await store.amend(R1, mid(a), ALICE, {"text": "v3"}, 6.0)
    assert amended(again) == (EventKind.EDITED, R1, epoch, 5, mid(a), ALICE, 6.0, {"text": "v3"})
    assert await store.message(R1, mid(a)) == state_of(a, {"text": "v3"})
    assert (await send(store, R1, BOB, "next", 7.0)).event.offset == 6


async def test_last_messages_limit_before_edits_and_deletes(open_backplane: Opener) -> None:
    store = (await open_backplane(history_size=50)).messages
    sent = [await send(store, R1, [ALICE, BOB][i % 2], f"m{i + 1}", float(i)) for i in range(8)]
    m = {i + 1: r for i, r in enumerate(sent)}  # by offset
    await store.amend(R1, mid(m[3]), BOB, {"text": "m3 edited"}, 10.0)  # offset 9
    await store.amend(R1, mid(m[5]), ALICE, None, 11.0)  # offset 10
    current = {o: state_of(r) for o, r in m.items() if o != 5}
    current[3] = state_of(m[3], {"text": "m3 edited"})

    wall = 12.0
    everything = [current[o] for o in (1, 2, 3, 4, 6, 7, 8)]
    assert await store.last_messages(R1, 50, None, wall) == everything  # oldest first
    assert await store.last_messages(R1, 7, None, wall) == everything
    assert await store.last_messages(R1, 3, None, wall) == everything[-3:]
    assert await store.last_messages(R1, 1, None, wall) == [current[8]]
    # ``before`` is an offset: messages strictly before it (an edit's own offset is no message).
    assert await store.last_messages(R1, 50, 6, wall) == [current[o] for o in (1, 2, 3, 4)]
    assert await store.last_messages(R1, 2, 6, wall) == [current[3], current[4]]
    assert await store.last_messages(R1, 50, 5, wall) == [current[o] for o in (1, 2, 3, 4)]
    assert await store.last_messages(R1, 50, 2, wall) == [current[1]]
    assert await store.last_messages(R1, 50, 1, wall) == []
    assert await store.last_messages(R1, 50, 100, wall) == everything
    assert await store.last_messages(R2, 50, None, wall) == []  # unknown room


# --- Recovery ----------------------------------------------------------------------------------


async def test_since_gives_exactly_the_missed_events(backplane: Backplane) -> None:
    store = backplane.messages
    a = await send(store, R1, ALICE, "a", 1.0, temp="ta")
    b = await send(store, R1, BOB, {"text": "b"}, 2.0)
    epoch = a.event.epoch
    edit = await store.amend(R1, mid(a), ALICE, "a2", 3.0)
    delete = await store.amend(R1, mid(b), BOB, None, 4.0)
    assert edit is not None and delete is not None
    stream = [a.event, b.event, edit, delete]
    wall = 5.0

    for offset in range(5):
        got = await store.since(R1, epoch, offset, wall)
        assert got == Recovery(True, epoch, 4, stream[offset:]), offset
    assert [e.kind for e in (await store.since(R1, epoch, 0, wall)).events] == [
        EventKind.MESSAGE,
        EventKind.MESSAGE,
        EventKind.EDITED,
        EventKind.DELETED,
    ]
    # Another epoch, or a position the stream never reached: refused, with where it is now.
    refused = Recovery(False, epoch, 4, [])
    assert await store.since(R1, epoch + "-old", 2, wall) == refused
    assert await store.since(R1, epoch + "-old", 4, wall) == refused
    assert await store.since(R1, epoch, 5, wall) == refused
    assert await store.since(R1, epoch, 1000, wall) == refused
    # Asking changed nothing.
    assert await store.position(R1) == (epoch, 4)
    assert await store.since(R1, epoch, 2, wall) == Recovery(True, epoch, 4, [edit, delete])


async def test_since_on_a_quiet_room(backplane: Backplane) -> None:
    store = backplane.messages
    # A room with no events yet: its epoch and offset 0 is the head.
    epoch, latest = await store.position(R1)
    assert latest == 0
    assert await store.since(R1, epoch, 0, 1.0) == Recovery(True, epoch, 0, [])
    assert await store.since(R1, epoch, 1, 1.0) == Recovery(False, epoch, 0, [])
    # Another room's traffic does not reach it.
    await send(store, R2, ALICE, "elsewhere", 2.0)
    assert await store.since(R1, epoch, 0, 2.0) == Recovery(True, epoch, 0, [])
    # A room never seen before answers with its (new) epoch and offset 0.
    fresh = await store.since(R3, "some-epoch-from-before", 7, 2.0)
    assert (fresh.recovered, fresh.offset, fresh.events) == (False, 0, [])
    assert await store.position(R3) == (fresh.epoch, 0)


async def test_since_beyond_the_kept_history(backplane: Backplane) -> None:
    store = backplane.messages
    sent = [await send(store, R1, ALICE, f"m{i}", float(i)) for i in range(1, SIZE + 3)]
    epoch = sent[0].event.epoch
    latest = SIZE + 2  # offsets 3..7 are kept
    for offset in (0, 1):
        assert await store.since(R1, epoch, offset, 10.0) == Recovery(False, epoch, latest, [])
    for offset in range(2, latest + 1):
        got = await store.since(R1, epoch, offset, 10.0)
        assert got == Recovery(True, epoch, latest, [r.event for r in sent[offset:]]), offset


# --- Bounds: size and age ----------------------------------------------------------------------


async def test_size_counts_every_event(backplane: Backplane) -> None:
    store = backplane.messages
    m1 = await send(store, R1, ALICE, "one", 1.0, temp="t1")
    m2 = await send(store, R1, BOB, "two", 2.0, temp="t2")
    m3 = await send(store, R1, ALICE, "three", 3.0)
    epoch = m1.event.epoch
    for i in range(3):  # three edits: six events, so the first message's event goes
        await store.amend(R1, mid(m3), ALICE, f"three v{i + 2}", 4.0 + i)
    assert await store.message(R1, mid(m1)) is None
    assert await store.message(R1, mid(m2)) == state_of(m2)
    assert await store.last_messages(R1, 10, None, 7.0) == [
        state_of(m2),
        state_of(m3, "three v4"),
    ]
    assert offsets(await store.since(R1, epoch, 1, 7.0)) == [2, 3, 4, 5, 6]
    assert not (await store.since(R1, epoch, 0, 7.0)).recovered
    # Trimmed: no edit, no delete, no dedupe.
    assert await store.amend(R1, mid(m1), ALICE, "too late", 8.0) is None
    assert await store.amend(R1, mid(m1), ALICE, None, 8.0) is None
    assert await store.position(R1) == (epoch, 6)
    resent = await send(store, R1, ALICE, "one", 9.0, temp="t1")
    assert not resent.duplicate and resent.event.offset == 7 and mid(resent) != mid(m1)
    # Which trimmed the second message in turn; its temp id goes with it.
    assert await store.message(R1, mid(m2)) is None
    resent2 = await send(store, R1, BOB, "two", 10.0, temp="t2")
    assert not resent2.duplicate and resent2.event.offset == 8
    # The stream goes on numbering; the kept window is the last SIZE events.
    assert offsets(await store.since(R1, epoch, 3, 10.0)) == [4, 5, 6, 7, 8]
    assert not (await store.since(R1, epoch, 2, 10.0)).recovered


async def test_age_trims_at_the_wall_time_passed_in(backplane: Backplane) -> None:
    store = backplane.messages
    m1 = await send(store, R1, ALICE, "at 0", 0.0, temp="t1")
    m2 = await send(store, R1, BOB, "at 50", 50.0)
    epoch = m1.event.epoch
    # Within the ttl, everything is there.
    assert offsets(await store.since(R1, epoch, 0, TTL - 1)) == [1, 2]
    assert await store.last_messages(R1, 10, None, TTL - 1) == [state_of(m1), state_of(m2)]

    # Sending later trims the first message first: its temp id is a new message now.
    m3 = await send(store, R1, ALICE, "at 0, again", TTL + 20, temp="t1")
    assert not m3.duplicate and m3.event.offset == 3
    assert await store.message(R1, mid(m1)) is None
    assert await store.amend(R1, mid(m1), ALICE, "late", TTL + 20) is None
    assert not (await store.since(R1, epoch, 0, TTL + 20)).recovered
    assert offsets(await store.since(R1, epoch, 1, TTL + 20)) == [2, 3]

    # Recovery and history trim at their own wall time too.
    assert await store.since(R1, epoch, 2, 50 + TTL + 1) == Recovery(True, epoch, 3, [m3.event])
    assert not (await store.since(R1, epoch, 1, 50 + TTL + 1)).recovered
    assert await store.message(R1, mid(m2)) is None
    assert await store.last_messages(R1, 10, None, 50 + TTL + 1) == [state_of(m3)]
    much_later = 10 * TTL
    assert await store.last_messages(R1, 10, None, much_later) == []
    # Nothing kept: the head still recovers (nothing missed), anything before it does not.
    assert await store.since(R1, epoch, 3, much_later) == Recovery(True, epoch, 3, [])
    assert await store.since(R1, epoch, 2, much_later) == Recovery(False, epoch, 3, [])
    # The stream keeps its epoch and numbering.
    m4 = await send(store, R1, ALICE, "back", much_later + 1, temp="t1")
    assert (m4.event.epoch, m4.event.offset, m4.duplicate) == (epoch, 4, False)
    assert await store.since(R1, epoch, 3, much_later + 1) == Recovery(True, epoch, 4, [m4.event])


async def test_amend_refuses_a_message_past_its_ttl(backplane: Backplane) -> None:
    store = backplane.messages
    old = await send(store, R1, ALICE, "old", 0.0)
    epoch = old.event.epoch
    # No call with a later wall time in between: the edit itself is the first to come too late.
    late = TTL + 50
    assert await store.amend(R1, mid(old), ALICE, "edited too late", late) is None
    assert await store.amend(R1, mid(old), ALICE, None, late) is None
    assert await store.position(R1) == (epoch, 1)
    assert await store.since(R1, epoch, 1, late) == Recovery(True, epoch, 1, [])


async def test_no_history_still_numbers_events(open_backplane: Opener) -> None:
    store = (await open_backplane(history_size=0)).messages
    first = await send(store, R1, ALICE, "a", 1.0, temp="t1")
    second = await send(store, R1, ALICE, "a", 2.0, temp="t1")  # nothing kept to dedupe
    epoch = first.event.epoch
    assert (first.event.offset, second.event.offset) == (1, 2)
    assert not second.duplicate and second.event.epoch == epoch
    assert await store.position(R1) == (epoch, 2)
    assert await store.message(R1, mid(first)) is None
    assert await store.amend(R1, mid(first), ALICE, "b", 3.0) is None
    assert await store.last_messages(R1, 10, None, 3.0) == []
    assert await store.since(R1, epoch, 2, 3.0) == Recovery(True, epoch, 2, [])
    assert await store.since(R1, epoch, 1, 3.0) == Recovery(False, epoch, 2, [])
    # Positions still work, clamped to the stream.
    assert await store.mark(R1, BOB, "seen", 10) == (0, 2)
    assert await store.read_state(R1, BOB) == (2, 0)
    assert await store.read_state(R1, CAROL) == (0, 0)


# --- Receipts and read state -------------------------------------------------------------------


async def test_delivered_and_seen_move_forward_only(backplane: Backplane) -> None:
    store = backplane.messages
    for i in range(3):
        await send(store, R1, BOB, f"b{i}", float(i))
    assert await store.mark(R1, ALICE, "delivered", 2) == (0, 2)
    assert await store.mark(R1, ALICE, "delivered", 1) == (2, 2)  # never back
    assert await store.mark(R1, ALICE, "delivered", 2) == (2, 2)
    assert await store.mark(R1, ALICE, "delivered", 3) == (2, 3)
    assert await store.mark(R1, ALICE, "delivered", 99) == (3, 3)  # never past the stream
    # Seen is its own position...
    assert await store.mark(R1, ALICE, "seen", 1) == (0, 1)
    assert await store.mark(R1, ALICE, "seen", 0) == (1, 1)
    assert await store.read_state(R1, ALICE) == (1, 2)
    assert await store.mark(R1, ALICE, "seen", 99) == (1, 3)
    assert await store.read_state(R1, ALICE) == (3, 0)
    assert await store.mark(R1, ALICE, "delivered", 3) == (3, 3)

    # ...and moves delivered along with it.
    assert await store.mark(R1, CAROL, "seen", 2) == (0, 2)
    assert await store.mark(R1, CAROL, "delivered", 1) == (2, 2)
    assert await store.mark(R1, CAROL, "delivered", 3) == (2, 3)
    assert await store.mark(R1, CAROL, "seen", 3) == (2, 3)

    # Clamped to where the stream is now: it can go further once the stream does.
    await send(store, R1, BOB, "b3", 4.0)
    await store.amend(R1, "no-such-id", BOB, "x", 4.0)  # takes no offset
    assert await store.mark(R1, ALICE, "seen", 99) == (3, 4)
    assert await store.mark(R1, ALICE, "delivered", 99) == (4, 4)
    # Per room and per user: an unknown room has nothing to mark.
    assert await store.mark(R2, ALICE, "seen", 3) == (0, 0)
    assert await store.mark(R2, ALICE, "delivered", 3) == (0, 0)
    assert await store.read_state(R2, ALICE) == (0, 0)
    assert await store.read_state(R1, CAROL) == (3, 1)
    assert await store.mark(R1, CAROL, "delivered", 0) == (3, 3)


async def test_own_message_marks_the_sender(backplane: Backplane) -> None:
    store = backplane.messages
    await send(store, R1, BOB, "b1", 1.0)
    await send(store, R1, BOB, "b2", 2.0)
    mine = await send(store, R1, ALICE, "a3", 3.0)
    assert mine.event.offset == 3
    assert await store.mark(R1, ALICE, "seen", 0) == (3, 3)
    assert await store.mark(R1, ALICE, "delivered", 0) == (3, 3)
    assert await store.read_state(R1, ALICE) == (3, 0)
    # Bob's own message moved him past Alice's: nothing unread for him either.
    await send(store, R1, BOB, "b4", 4.0)
    assert await store.read_state(R1, BOB) == (4, 0)
    assert await store.read_state(R1, ALICE) == (3, 1)
    # An edit is no message: it neither marks the editor nor counts as unread.
    await store.amend(R1, mid(mine), ALICE, "a3 edited", 5.0)
    assert await store.read_state(R1, ALICE) == (3, 1)
    assert await store.read_state(R1, BOB) == (4, 0)
    assert await store.mark(R1, BOB, "seen", 5) == (4, 5)
    # Only in that room.
    await send(store, R2, CAROL, "c1", 6.0)
    assert await store.read_state(R2, ALICE) == (0, 1)
    assert await store.read_state(R1, CAROL) == (0, 4)


async def test_unread_counts_kept_undeleted_messages_by_others(backplane: Backplane) -> None:
    store = backplane.messages
    a1 = await send(store, R1, ALICE, "a1", 1.0)
    b2 = await send(store, R1, BOB, "b2", 2.0)
    await send(store, R1, BOB, "b3", 3.0)
    assert await store.read_state(R1, CAROL) == (0, 3)
    assert await store.read_state(R1, ALICE) == (1, 2)
    assert await store.read_state(R1, BOB) == (3, 0)
    assert await store.read_state(R1, UserId("dave")) == (0, 3)
    # Deleted messages do not count (edits never do).
    await store.amend(R1, mid(b2), BOB, None, 4.0)  # offset 4
    await store.amend(R1, mid(a1), ALICE, "a1 edited", 5.0)  # offset 5
    assert await store.read_state(R1, CAROL) == (0, 2)
    assert await store.read_state(R1, ALICE) == (1, 1)
    assert await store.mark(R1, CAROL, "seen", 1) == (0, 1)
    assert await store.read_state(R1, CAROL) == (1, 1)
    # Trimmed messages do not count: of Bob's next SIZE messages only the kept ones do.
    for i in range(SIZE):
        await send(store, R1, BOB, f"more {i}", 6.0 + i)
    assert await store.read_state(R1, CAROL) == (1, SIZE)
    assert await store.read_state(R1, ALICE) == (1, SIZE)
    assert await store.read_state(R1, BOB) == (5 + SIZE, 0)


async def test_authors_between(backplane: Backplane) -> None:
    store = backplane.messages
    await send(store, R1, ALICE, "a1", 1.0)
    b2 = await send(store, R1, BOB, "b2", 2.0)
    await send(store, R1, ALICE, "a3", 3.0)
    await store.amend(R1, mid(b2), CAROL, "moderated", 4.0)  # offset 4: an edit, not a message
    await send(store, R1, BOB, "b5", 5.0)
    assert await store.authors_between(R1, 0, 5) == {ALICE, BOB}
    assert await store.authors_between(R1, 0, 1) == {ALICE}
    assert await store.authors_between(R1, 1, 2) == {BOB}  # (after, upto]
    assert await store.authors_between(R1, 1, 3) == {ALICE, BOB}
    assert await store.authors_between(R1, 3, 4) == set()  # Carol only edited
    assert await store.authors_between(R1, 3, 5) == {BOB}
    assert await store.authors_between(R1, 2, 2) == set()
    assert await store.authors_between(R1, 5, 9) == set()
    assert await store.authors_between(R2, 0, 5) == set()  # unknown room
    await send(store, R2, CAROL, "c1", 6.0)
    assert await store.authors_between(R2, 0, 1) == {CAROL}
    assert await store.authors_between(R1, 0, 5) == {ALICE, BOB}
    # Trimmed messages have no authors to tell.
    await send(store, R1, CAROL, "c6", 6.0)
    await send(store, R1, CAROL, "c7", 7.0)  # offsets 3..7 kept
    assert await store.authors_between(R1, 0, 2) == set()
    assert await store.authors_between(R1, 0, 7) == {ALICE, BOB, CAROL}


# --- TypingStore -------------------------------------------------------------------------------


def users(found: TypingChange | None) -> list[UserId] | None:
    """A typing set in a fixed order (the Protocol does not promise one)."""
    return None if found is None else sorted(found.users)


async def test_typing_start_and_stop_report_changes_only(backplane: Backplane) -> None:
    typing = backplane.typing
    assert await typing.typing(R1) == []
    assert users(await typing.start(R1, ALICE, 1.0)) == [ALICE]
    assert await typing.start(R1, ALICE, 1.0) is None  # a renewal changes nothing
    assert users(await typing.start(R1, BOB, 1.0)) == [ALICE, BOB]
    assert sorted(await typing.typing(R1)) == [ALICE, BOB]
    assert await typing.stop(R1, CAROL, 1.0) is None  # was not typing
    assert users(await typing.stop(R1, ALICE, 1.0)) == [BOB]
    assert await typing.stop(R1, ALICE, 1.0) is None
    assert await typing.typing(R1) == [BOB]
    assert users(await typing.stop(R1, BOB, 1.0)) == []
    assert await typing.typing(R1) == []
    assert await typing.stop(R1, BOB, 1.0) is None
    assert await typing.stop(R3, ALICE, 1.0) is None  # a room nobody typed in
    # Typing again after the room emptied.
    assert users(await typing.start(R1, CAROL, 2.0)) == [CAROL]
    assert await typing.typing(R1) == [CAROL]


async def test_typing_changes_are_numbered_in_order_per_room(backplane: Backplane) -> None:
    typing = backplane.typing
    seqs = []
    for change in [
        await typing.start(R1, ALICE, 5.0),
        await typing.start(R1, BOB, 5.0),  # the same wall time: still a greater number
        await typing.stop(R1, ALICE, 4.0),  # a clock behind: still greater
        await typing.stop(R1, BOB, 5.0),  # the room emptied
        await typing.start(R1, ALICE, 6.0),  # later: greater than before it emptied
    ]:
        assert change is not None
        seqs.append(change.seq)
    assert seqs == sorted(set(seqs)), seqs
    assert seqs[-1] >= 6000  # at least the wall time in milliseconds
    # A no-op takes no number; each room numbers its own changes.
    assert await typing.start(R1, ALICE, 7.0) is None
    after = await typing.start(R1, BOB, 6.0)
    assert after is not None and after.seq == seqs[-1] + 1
    other = await typing.start(R2, ALICE, 1.0)
    assert other is not None and other.seq == 1000


async def test_typing_is_per_room(backplane: Backplane) -> None:
    typing = backplane.typing
    assert users(await typing.start(R1, ALICE, 1.0)) == [ALICE]
    assert users(await typing.start(R2, ALICE, 1.0)) == [ALICE]  # new in R2, though typing in R1
    assert users(await typing.start(R2, BOB, 1.0)) == [ALICE, BOB]
    assert await typing.typing(R1) == [ALICE]
    assert users(await typing.stop(R1, ALICE, 1.0)) == []
    assert sorted(await typing.typing(R2)) == [ALICE, BOB]
    assert await typing.stop(R1, BOB, 1.0) is None  # typing in R2 only
    assert users(await typing.stop(R2, BOB, 1.0)) == [ALICE]
    assert await typing.typing(R1) == []
    assert await typing.typing(R2) == [ALICE]


# --- The stream against a model ----------------------------------------------------------------

P_USERS = [UserId("u0"), UserId("u1"), UserId("u2")]
P_TEMPS: list[str | None] = [None, "t0", "t1"]
P_OPS = st.lists(
    st.tuples(
        st.sampled_from(["send", "send", "edit", "delete", "since"]),
        st.integers(0, 40),  # temp id / target message / offset, taken modulo what exists
        st.integers(0, len(P_USERS) - 1),  # who sends or amends; for since: the right epoch?
        st.sampled_from([0.0, 0.0, 0.0, 10.0, 40.0, TTL + 1]),  # time passing (send, since)
    ),
    max_size=40,
)
_examples: Iterator[int] = itertools.count()


@dataclass
class _Model:
    """The stream as a plain list of every event; the kept window is a suffix of it."""

    room: RoomId
    epoch: str
    now: float = 0.0
    events: list[StreamEvent] = field(default_factory=list)
    start: int = 0  # index of the first kept event
    states: dict[str, MessageState] = field(default_factory=dict)  # every message ever sent
    seen: dict[UserId, int] = field(default_factory=dict)  # moved by one's own messages

    def trim(self) -> None:
        """Only ever moves forward: what was trimmed stays trimmed."""
        self.start = max(self.start, len(self.events) - SIZE)
        while self.start < len(self.events) and self.events[self.start].time < self.now - TTL:
            self.start += 1

    def kept(self, message_id: str) -> MessageState | None:
        """A kept message (deleted or not)."""
        state = self.states.get(message_id)
        return state if state is not None and state.offset > self.start else None

    def add(self, event: StreamEvent) -> None:
        self.events.append(event)
        self.trim()


def _view(event: StreamEvent) -> tuple[Any, ...]:
    """An event's defining fields: device and temp id only mean something on a message."""
    if event.kind is EventKind.MESSAGE:
        return (*amended(event), event.device, event.temp_id)
    return amended(event)


# Each example uses a room no other example used, so one backplane (the function-scoped
# fixture) serves every example. Time only moves on send and since, which trim at their wall
# time, so edits and deletes at the same wall time meet an already trimmed stream.
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=P_OPS)
async def test_stream_follows_a_list_model(
    backplane: Backplane, ops: list[tuple[str, int, int, float]]
) -> None:
    store = backplane.messages
    room = RoomId(f"p{next(_examples)}")
    epoch, latest = await store.position(room)
    assert latest == 0
    model = _Model(room, epoch)
    sent_ids: list[str] = []

    for step, (op, pick, who, dt) in enumerate(ops):
        user = P_USERS[who]
        n = len(model.events)
        if op == "send":
            model.now += dt
            model.trim()  # sending trims first, then looks for the temp id
            temp = P_TEMPS[pick % len(P_TEMPS)]
            first = next(
                (
                    s
                    for s in model.states.values()
                    if temp is not None
                    and (s.author, s.temp_id) == (user, temp)
                    and model.kept(s.id) is not None
                ),
                None,
            )
            body: Body = f"body {step}" if step % 2 else {"step": step}
            message_id = f"{room}-m{step}"
            result = await store.append(room, user, f"dev{who}", temp, body, model.now, message_id)
            if first is not None:
                event("send: duplicate")
                assert result.duplicate
                got = (result.event.epoch, result.event.offset, result.event.message_id)
                assert got == (epoch, first.offset, first.id)
            else:
                assert not result.duplicate
                want = StreamEvent(
                    EventKind.MESSAGE, room, epoch, n + 1, message_id, user, model.now, body,
                    f"dev{who}", temp,
                )  # fmt: skip
                assert _view(result.event) == _view(want)
                model.states[message_id] = MessageState(
                    message_id, n + 1, user, f"dev{who}", body, model.now, temp
                )
                model.seen[user] = n + 1
                sent_ids.append(message_id)
                model.add(want)
        elif op in ("edit", "delete"):
            choices = [*sent_ids, f"{room}-unknown"]
            target = choices[pick % len(choices)]
            new_body: Body | None = None if op == "delete" else f"edit {step}"
            state = model.kept(target)
            got_event = await store.amend(room, target, user, new_body, model.now)
            if state is None or state.deleted:
                event(f"{op}: refused")
                assert got_event is None
            else:
                event(f"{op}: applied")
                kind = EventKind.DELETED if op == "delete" else EventKind.EDITED
                want = StreamEvent(kind, room, epoch, n + 1, target, user, model.now, new_body)
                assert got_event is not None
                assert _view(got_event) == _view(want)
                state.body, state.deleted = new_body, op == "delete"
                model.add(want)
        else:
            model.now += dt
            model.trim()
            # Half the time near the head, where the kept window is; else anywhere (or past it).
            offset = max(0, n - (pick // 2) % (SIZE + 2)) if pick % 2 else pick % (n + 3)
            right_epoch = who != 0
            asked = epoch if right_epoch else f"{epoch}-other"
            recovery = await store.since(room, asked, offset, model.now)
            first_kept = model.start + 1  # offsets are index + 1 (n + 1 when nothing is kept)
            assert (recovery.epoch, recovery.offset) == (epoch, n)
            if not right_epoch or offset > n or offset + 1 < first_kept:
                event("since: refused" + (" (trimmed)" if right_epoch and offset <= n else ""))
                assert (recovery.recovered, recovery.events) == (False, [])
            else:
                event(f"since: recovered{' (head)' if offset == n else ''}")
                assert recovery.recovered
                assert [_view(e) for e in recovery.events] == [
                    _view(e) for e in model.events[offset:]
                ]

        # After every step: offsets contiguous, current state and read state as modelled.
        n = len(model.events)
        assert await store.position(room) == (epoch, n)
        current = [
            s for s in model.states.values() if model.kept(s.id) is not None and not s.deleted
        ]
        assert await store.last_messages(room, SIZE + 1, None, model.now) == current
        for message_id in sent_ids:
            state = model.kept(message_id)
            expected = None if state is None or state.deleted else state
            assert await store.message(room, message_id) == expected
        for u in P_USERS:
            last = model.seen.get(u, 0)
            unread = sum(1 for s in current if s.author != u and s.offset > last)
            assert await store.read_state(room, u) == (last, unread)


async def test_drop_deletes_the_stream_and_a_new_one_starts_a_new_epoch(
    backplane: Backplane,
) -> None:
    store = backplane.messages
    for n in range(3):
        await send(store, R1, ALICE, f"m{n}", 10.0 + n)
    await send(store, R2, BOB, "elsewhere", 11.0)
    epoch, offset = await store.position(R1)
    assert offset == 3
    await store.drop(R1)
    assert await store.last_messages(R1, 10, None, 20.0) == []
    new_epoch, new_offset = await store.position(R1)
    assert new_offset == 0 and new_epoch != epoch
    # An old position cannot be recovered in the new stream.
    assert not (await store.since(R1, epoch, 1, 20.0)).recovered
    assert (await send(store, R1, ALICE, "again", 21.0)).event.offset == 1
    # The other room keeps its stream.
    assert [m.body for m in await store.last_messages(R2, 10, None, 20.0)] == ["elsewhere"]
