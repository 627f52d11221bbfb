"""A keyed deadline queue: the one timer of a node, as data.

Each key has at most one deadline. Rescheduling or cancelling is O(log n) amortized: old heap
entries are left in place and skipped when popped (lazy deletion), which is far cheaper than
rebuilding the heap for every heartbeat.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["DeadlineQueue"]

K = TypeVar("K", bound=Hashable)


class DeadlineQueue(Generic[K]):
    """Deadlines by key; ``pop_due(now)`` returns the keys whose time has come, in order."""

    __slots__ = ("_heap", "_seq", "_when")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._when: dict[K, tuple[float, int]] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._when)

    def __contains__(self, key: object) -> bool:
        return key in self._when

    def schedule(self, key: K, when: float) -> None:
        """Set (or move) the deadline of ``key``."""
        self._seq += 1
        entry = (when, self._seq)
        self._when[key] = entry
        heapq.heappush(self._heap, (when, self._seq, key))
        # Keep stale entries from piling up when deadlines move often (heartbeats).
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._when):
            self._compact()

    def cancel(self, key: K) -> None:
        self._when.pop(key, None)

    def when(self, key: K) -> float | None:
        entry = self._when.get(key)
        return entry[0] if entry else None

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when nothing is scheduled."""
        heap = self._heap
        while heap:
            when, seq, key = heap[0]
            if self._when.get(key) == (when, seq):
                return when
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[K]:
        """Remove and return every key whose deadline is at or before ``now``."""
        due: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, seq, key = heapq.heappop(heap)
            if self._when.get(key) == (when, seq):
                del self._when[key]
                due.append(key)
        return due

    def _compact(self) -> None:
        self._heap = [(w, s, k) for k, (w, s) in self._when.items()]
        heapq.heapify(self._heap)
