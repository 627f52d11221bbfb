"""Membership events of a busy room, coalesced into one frame per short window.

Forming a room of M members one join at a time costs M(M-1)/2 frames if every member hears
every join separately. Here each room has a budget of frames, a token bucket that refills one
frame per window and holds at most :data:`IMMEDIATE` of them: a membership event goes out at
once while the room has a frame to spend (no added latency when changes are rare, nor for a
leave that follows a join, or a few changes in a row); once the budget is spent, events are
held and go out together, in order, as one ``room.batch`` frame (encoded once for every
local socket) when the next frame is earned. A churning room so sends one frame per window,
plus at most ``IMMEDIATE`` after each quiet spell. Any other event of the room (a message,
typing) flushes the held ones first, so the order a client sees is the order they happened.

The window grows with the room: ``window`` up to ``scale_members`` local members, then in
proportion (``window * members / scale_members``, at most ``max_scale`` times ``window``).
Each held batch costs one frame per member, so a fixed window would let a churning room of
M members cost M / window frames a second; the growing window caps that near
``scale_members / window`` (20,000 frames/s with the defaults) however big the room, which
is what keeps forming a 5,000-member room at a few percent of the naive count. A timer is
armed per room only while that room holds something.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import msgspec

from presenced.typing import RoomId

__all__ = [
    "IMMEDIATE",
    "MEMBER_EVENT_PREFIX",
    "SUMMARY_PREFIX",
    "MembershipBatcher",
    "SummaryThrottle",
]

IMMEDIATE = 2
"""Membership frames a quiet room may send at once, back to back, before its events are
batched: a join and the leave that follows it are never held for the window."""

# Every member.* event is encoded with its tag first (msgspec writes the tag field first).
MEMBER_EVENT_PREFIX = b'{"type":"member.'
SUMMARY_PREFIX = b'{"type":"room.summary"'

Deliver = Callable[[RoomId, bytes], None]


class MembershipBatcher:
    """Holds membership events per room; ``deliver(room, frame)`` writes a frame to the room."""

    __slots__ = (
        "_budget",
        "_deliver",
        "_held",
        "_held_bytes",
        "_timers",
        "burst",
        "max_bytes",
        "max_scale",
        "scale_members",
        "window",
    )

    def __init__(
        self,
        window: float,
        deliver: Deliver,
        max_bytes: int = 65536,
        scale_members: int = 500,
        max_scale: float = 40.0,
        burst: int = IMMEDIATE,
    ) -> None:
        """``max_bytes`` bounds one batch frame: a room holding more is sent at once (client
        libraries refuse frames over their own limit, often 1 MiB). ``burst``: the frames a
        quiet room may send at once (:data:`IMMEDIATE`)."""
        self.window = window
        self.burst = float(burst)
        self.max_bytes = max_bytes
        self.scale_members = scale_members
        self.max_scale = max_scale
        self._deliver = deliver
        self._held: dict[RoomId, list[bytes]] = {}
        self._held_bytes: dict[RoomId, int] = {}
        # Each room's frames to spend, when that was counted, and its window (the refill).
        self._budget: dict[RoomId, list[float]] = {}
        self._timers: dict[RoomId, asyncio.TimerHandle] = {}

    def window_for(self, members: int) -> float:
        """The batch window of a room with ``members`` local members."""
        scale = min(self.max_scale, max(1.0, members / self.scale_members))
        return self.window * scale

    def hold(self, room: RoomId, data: bytes, members: int = 0) -> bool:
        """Take a membership event if it should wait for the room's next batch; False means
        deliver it now (the room had a frame to spend, now spent). ``members`` is the room's
        local member count, which sets the window."""
        held = self._held.get(room)
        if held is not None:
            size = self._held_bytes[room] + len(data)
            if size > self.max_bytes:
                self.flush(room)  # full: out now, and this one opens the next batch
                self._start(room, data, members)
                return True
            held.append(data)
            self._held_bytes[room] = size
            return True
        budget = self._refill(room, self.window_for(members))
        if budget[0] >= 1.0:
            budget[0] -= 1.0
            return False
        self._start(room, data, members)
        return True

    def _refill(self, room: RoomId, window: float) -> list[float]:
        """``room``'s budget, ``[frames, counted at, window]``, refilled up to now (one frame
        per ``window``, the room's current one)."""
        now = asyncio.get_running_loop().time()
        budget = self._budget.get(room)
        if budget is None:
            budget = self._budget[room] = [self.burst, now, window]
        else:
            budget[0] = min(self.burst, budget[0] + (now - budget[1]) / budget[2])
            budget[1], budget[2] = now, window
        return budget

    def _start(self, room: RoomId, data: bytes, members: int) -> None:
        """Open a batch for ``room`` with ``data``, to go out when the room has earned its
        next frame."""
        self._held[room] = [data]
        self._held_bytes[room] = len(data)
        window = self.window_for(members)
        wait = (1.0 - self._refill(room, window)[0]) * window
        loop = asyncio.get_running_loop()
        self._timers[room] = loop.call_later(max(0.0, wait), self.flush, room)

    def flush(self, room: RoomId) -> None:
        """Send what is held for ``room`` now (before another event of the room)."""
        timer = self._timers.pop(room, None)
        if timer is not None:
            timer.cancel()
        held = self._held.pop(room, None)
        self._held_bytes.pop(room, None)
        if held:
            self._send(room, held)

    def forget(self, room: RoomId) -> None:
        """The node has no member in the room any more."""
        timer = self._timers.pop(room, None)
        if timer is not None:
            timer.cancel()
        self._held.pop(room, None)
        self._held_bytes.pop(room, None)
        self._budget.pop(room, None)

    def _send(self, room: RoomId, events: list[bytes]) -> None:
        budget = self._budget.get(room)
        if budget is not None:
            # The frame the batch waited for. One flushed early (for the order of another
            # event of the room) may leave the room one frame in debt, no more.
            budget = self._refill(room, budget[2])
            budget[0] = max(-1.0, budget[0] - 1.0)
        if len(events) == 1:
            self._deliver(room, events[0])
            return
        # Encoded by hand from the already-encoded events: the same bytes msgspec would give
        # RoomBatch, without decoding anything.
        frame = b"".join(
            (
                b'{"type":"room.batch","room":',
                msgspec.json.encode(room),
                b',"events":[',
                b",".join(events),
                b"]}",
            )
        )
        self._deliver(room, frame)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class SummaryThrottle:
    """At most one ``room.summary`` per room per ``interval``: the first at once, then the
    latest one when the interval is over (older ones are superseded, not queued)."""

    __slots__ = ("_deliver", "_last", "_latest", "_timer", "interval")

    def __init__(self, interval: float, deliver: Deliver) -> None:
        self.interval = interval
        self._deliver = deliver
        self._last: dict[RoomId, float] = {}
        self._latest: dict[RoomId, bytes] = {}
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, room: RoomId, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if room not in self._latest and now - self._last.get(room, -math.inf) >= self.interval:
            self._last[room] = now
            self._deliver(room, data)
            return
        self._latest[room] = data
        if self._timer is None:
            self._timer = loop.call_later(self.interval, self._flush)

    def _flush(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        latest, self._latest = self._latest, {}
        for room, data in latest.items():
            self._last[room] = now
            self._deliver(room, data)

    def forget(self, room: RoomId) -> None:
        self._latest.pop(room, None)
        self._last.pop(room, None)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
