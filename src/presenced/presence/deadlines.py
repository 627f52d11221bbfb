"""A keyed deadline queue: the one timer of a node, as data.

Each key has at most one deadline. Deadlines are kept in time buckets ``width`` seconds wide
(a bucketed timer wheel): scheduling, moving or cancelling a deadline is O(1), a dict
update in the bucket it leaves and the one it joins; only the bucket indices are ordered, in
a small heap of ints. A node of 19,000 idle sessions moves a deadline for every heartbeat,
and a binary heap of every deadline made each such move cost a walk over ~16 levels of
tuples spread over memory (tens of microseconds each on a loaded machine, cache misses
mostly); a bucket move touches two dicts.

The width is a matter of cost only, never of timing: ``pop_due(now)`` returns exactly the
keys due at or before ``now``, in deadline order (ties in scheduling order), and
``next_deadline()`` is the exact earliest one. Make it the caller's timer resolution
(the node fires deadlines on a tick grid anyway), so one timer wake-up empties one bucket.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable
from operator import itemgetter
from typing import Generic, TypeVar

__all__ = ["DEFAULT_WIDTH", "DeadlineQueue"]

K = TypeVar("K", bound=Hashable)

DEFAULT_WIDTH = 0.02
"""Seconds per bucket unless told: the node timer's coarsest tick (server/node.py)."""

_BEYOND = 1 << 1100  # a bucket index past any finite time's (for +-inf deadlines)

_Entry = tuple[float, int]  # (when, order of scheduling): sorts a bucket, ties by order
_by_entry = itemgetter(1)  # of a (key, entry) pair


class DeadlineQueue(Generic[K]):
    """Deadlines by key; ``pop_due(now)`` returns the keys whose time has come, in order."""

    __slots__ = ("_buckets", "_marks", "_seq", "_when", "_width")

    def __init__(self, width: float = DEFAULT_WIDTH) -> None:
        if not width > 0:
            raise ValueError(f"bucket width must be > 0, not {width!r}")
        self._width = width
        self._when: dict[K, _Entry] = {}
        # Bucket index -> its keys with their entries. A bucket holds the deadlines in
        # ((i - 1) * width, i * width]; it is deleted when its last key leaves.
        self._buckets: dict[int, dict[K, _Entry]] = {}
        # Heap of bucket indices. Lazy: an index whose bucket is gone (or that was pushed
        # again when its bucket came back) is dropped when it reaches the top.
        self._marks: list[int] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._when)

    def __contains__(self, key: object) -> bool:
        return key in self._when

    def schedule(self, key: K, when: float) -> None:
        """Set (or move) the deadline of ``key``."""
        self._seq += 1
        entry = (when, self._seq)
        index = self._index(when)
        buckets = self._buckets
        old = self._when.get(key)
        if old is not None:
            old_index = self._index(old[0])
            if old_index != index:
                self._leave(key, old_index)
        self._when[key] = entry
        bucket = buckets.get(index)
        if bucket is None:
            buckets[index] = bucket = {}
            marks = self._marks
            heapq.heappush(marks, index)
            # Keep dropped indices from piling up when buckets come and go (one key moved
            # back and forth across empty buckets).
            if len(marks) > 64 and len(marks) > 4 * len(buckets):
                self._marks = list(buckets)
                heapq.heapify(self._marks)
        bucket[key] = entry

    def cancel(self, key: K) -> None:
        old = self._when.pop(key, None)
        if old is not None:
            self._leave(key, self._index(old[0]))

    def when(self, key: K) -> float | None:
        entry = self._when.get(key)
        return entry[0] if entry else None

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when nothing is scheduled."""
        marks, buckets = self._marks, self._buckets
        while marks:
            bucket = buckets.get(marks[0])
            if bucket:
                return min(bucket.values())[0]
            heapq.heappop(marks)
        return None

    def pop_due(self, now: float) -> list[K]:
        """Remove and return every key whose deadline is at or before ``now``."""
        due: list[K] = []
        marks, buckets, when = self._marks, self._buckets, self._when
        last = self._index(now)  # no bucket after this one holds a due key
        while marks and marks[0] <= last:
            index = marks[0]
            bucket = buckets.get(index)
            if bucket is None:
                heapq.heappop(marks)
                continue
            fired = sorted(bucket.items(), key=_by_entry)
            if fired[-1][1][0] <= now:  # all of it (every bucket before the last one)
                heapq.heappop(marks)
                del buckets[index]
            else:  # the bucket ``now`` is in: its later keys stay
                fired = [item for item in fired if item[1][0] <= now]
                for key, _ in fired:
                    del bucket[key]
            for key, _ in fired:
                del when[key]
                due.append(key)
            if index == last:
                break
        return due

    def _index(self, when: float) -> int:
        """The bucket of a deadline at ``when``: its time rounded up to the width."""
        try:
            return math.ceil(when / self._width)
        except OverflowError:  # +-inf: after (before) every finite time
            return _BEYOND if when > 0 else -_BEYOND
        except ValueError:
            raise ValueError(f"a deadline must be a time, not {when!r}") from None

    def _leave(self, key: K, index: int) -> None:
        """Take ``key`` out of bucket ``index`` (its mark stays, dropped when reached)."""
        bucket = self._buckets[index]
        del bucket[key]
        if not bucket:
            del self._buckets[index]
