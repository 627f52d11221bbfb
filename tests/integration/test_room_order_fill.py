"""RoomOrder (server/ordering.py) against a real store: baselines, fills and the hold timer.

The frames are the ones a node publishes (wire events encoded once); the store is the memory
backplane's, which numbers and keeps messages exactly as the Redis one does (the conformance
suite holds them to the same contract).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from presenced.presence.history import StreamEvent
from presenced.protocol.codec import encode
from presenced.protocol.messages import MemberJoined, TypingEvent
from presenced.server.ordering import Frame, RoomOrder
from presenced.server.wire import wire_event
from presenced.store.memory import memory_backplane
from presenced.typing import DeviceId, RoomId, UserId

ROOM = RoomId("r")


class Recorder:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.changed = asyncio.Event()

    def __call__(self, room: RoomId, frame: Frame) -> None:
        assert room == ROOM
        self.frames.append(frame)
        self.changed.set()

    def offsets(self) -> list[int]:
        return [msgspec.json.decode(f.data)["offset"] for f in self.frames]

    async def wait(self, count: int, timeout: float = 5.0) -> None:
        async def until() -> None:
            while len(self.frames) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)


async def _append(backplane: Any, n: int) -> StreamEvent:
    result = await backplane.messages.append(
        ROOM, UserId("alice"), DeviceId("d"), None, f"m{n}", 1000.0 + n, f"id{n}"
    )
    return result.event  # type: ignore[no-any-return]


def _order(backplane: Any, recorder: Recorder, hold: float = 5.0) -> RoomOrder:
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return RoomOrder(
        backplane.messages, backplane.rooms, lambda: 2000.0, spawn, recorder, hold=hold
    )


async def test_what_was_numbered_before_the_subscription_is_filled_from_history() -> None:
    backplane = memory_backplane()
    for n in range(1, 4):
        await _append(backplane, n)
    recorder = Recorder()
    order = _order(backplane, recorder)
    await order.opening(ROOM)  # baseline: offset 3
    events = [await _append(backplane, n) for n in range(4, 7)]
    # Only the last one's publish reached this node after it subscribed.
    assert order.offer(ROOM, encode(wire_event(events[-1])), "s-alice")
    assert recorder.frames == []
    await order.opened(ROOM)
    assert recorder.offsets() == [4, 5, 6]
    # Filled frames skip the author's own device; the one that did arrive goes as it came
    # (with its origin); none twice.
    assert [f.author for f in recorder.frames] == [("alice", "d"), ("alice", "d"), None]
    assert recorder.frames[2].origin == "s-alice"


async def test_a_gap_is_filled_when_the_hold_runs_out() -> None:
    backplane = memory_backplane()
    recorder = Recorder()
    order = _order(backplane, recorder, hold=0.02)
    await order.opening(ROOM)
    await order.opened(ROOM)
    first, lost, third = [await _append(backplane, n) for n in range(1, 4)]
    order.offer(ROOM, encode(wire_event(first)), None)
    order.offer(ROOM, encode(wire_event(third)), None)  # 2's publish never arrives
    assert recorder.offsets() == [1]
    await recorder.wait(3)
    assert recorder.offsets() == [1, 2, 3]
    assert recorder.frames[1].author == ("alice", "d")  # from the store
    assert recorder.frames[2].author is None  # the original frame, held
    assert lost.offset == 2


async def test_member_versions_in_order_and_a_lost_one_given_up() -> None:
    backplane = memory_backplane()
    recorder = Recorder()
    order = _order(backplane, recorder, hold=0.02)
    await order.opening(ROOM)
    await order.opened(ROOM)  # version 0

    def joined(version: int) -> bytes:
        event = MemberJoined(
            room=ROOM, version=version, user=f"u{version}", status="online", devices=1
        )
        return encode(event)

    order.offer(ROOM, joined(2), None)
    order.offer(ROOM, joined(1), None)
    assert [msgspec.json.decode(f.data)["version"] for f in recorder.frames] == [1, 2]
    order.offer(ROOM, joined(4), None)  # 3 is lost
    await recorder.wait(3)
    order.offer(ROOM, joined(3), None)  # too late: never out of order
    assert [msgspec.json.decode(f.data)["version"] for f in recorder.frames] == [1, 2, 4]


async def test_a_new_epoch_starts_the_sequence_over() -> None:
    backplane = memory_backplane()
    recorder = Recorder()
    order = _order(backplane, recorder)
    await _append(backplane, 1)
    await order.opening(ROOM)
    await order.opened(ROOM)
    # The store restarted empty: a fresh backplane numbers a new stream from 1.
    restarted = memory_backplane()
    fresh = await _append(restarted, 1)
    assert order.offer(ROOM, encode(wire_event(fresh)), None)
    assert recorder.offsets() == [1]
    assert msgspec.json.decode(recorder.frames[0].data)["epoch"] == fresh.epoch


async def test_typing_changes_published_in_reverse_order_leave_the_newest_shown() -> None:
    backplane = memory_backplane()
    recorder = Recorder()
    order = _order(backplane, recorder)
    await order.opening(ROOM)
    await order.opened(ROOM)
    typing = backplane.typing
    changes = [
        await typing.start(ROOM, UserId("alice"), 1000.0),
        await typing.start(ROOM, UserId("carol"), 1000.0),
        await typing.stop(ROOM, UserId("alice"), 1000.0),  # two deadlines fired at once:
        await typing.stop(ROOM, UserId("carol"), 1000.0),  # their publishes cross
    ]
    frames = [
        encode(TypingEvent(room=ROOM, users=list(c.users), seq=c.seq))
        for c in changes
        if c is not None
    ]
    for data in [frames[0], frames[1], frames[3], frames[2], frames[1]]:
        assert order.offer(ROOM, data, None)  # typing is ordered here, never passed as is
    shown = [msgspec.json.decode(f.data)["users"] for f in recorder.frames]
    assert shown == [["alice"], ["alice", "carol"], []]  # [carol], older, was dropped
