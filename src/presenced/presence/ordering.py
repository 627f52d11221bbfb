"""Receive order of one numbered stream: deliver in number order, once, and say what is missing.

A room has two numbered streams: its message stream (offsets within an epoch: messages,
edits, deletes) and its membership (the room version: member events and summaries). Nodes
publish a number's event after the store assigned it, in separate steps and over separate
connections, so events can reach a receiving node out of order, twice (a gap filled from the
store, then the late original), or not at all (the publisher died in between, the pub/sub
link dropped). A :class:`Sequence` sits at the receiver: an event whose number is next goes
out at once (with whatever it unblocks); an earlier or repeated number is dropped; a later
one is held until the missing ones come, are filled from the store, or the caller gives up
on them (:meth:`Sequence.skip`). Until the stream's baseline is known (the node just
subscribed), everything is held.

Pure: no clock, no I/O. The shell arms the hold timer and fetches the missing numbers.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Sequence"]

T = TypeVar("T")


class Sequence(Generic[T]):
    """One stream's delivery order: ``last`` delivered number and the items held after it."""

    __slots__ = ("held", "last")

    def __init__(self, last: int | None = None) -> None:
        self.last = last  # None: the baseline is not known yet, hold everything
        self.held: dict[int, T] = {}

    @property
    def waiting(self) -> bool:
        """Something is held: a number before it is missing (or the baseline is unknown)."""
        return bool(self.held)

    def offer(self, number: int, item: T) -> list[T]:
        """The items to deliver now, in order, after ``item`` numbered ``number`` arrived."""
        last = self.last
        if last is None:
            self.held.setdefault(number, item)
            return []
        if number <= last:
            return []  # delivered already, or from before the baseline
        if number != last + 1:
            self.held.setdefault(number, item)
            return []
        self.last = number
        out = [item]
        if self.held:
            out.extend(self._release())
        return out

    def start(self, last: int) -> list[T]:
        """Set (or move forward) the baseline: numbers up to ``last`` are not delivered here.
        Returns what the held items after it release."""
        if self.last is None or last > self.last:
            self.last = last
        for number in [n for n in self.held if n <= self.last]:
            del self.held[number]
        return self._release()

    def reset(self, last: int) -> list[T]:
        """Restart at ``last`` (the stream was recreated, or numbered anew): drop what is held."""
        self.last = last
        self.held.clear()
        return []

    def skip(self) -> list[T]:
        """Give up on the missing numbers: deliver everything held, in number order."""
        if not self.held:
            return []
        out = [self.held[n] for n in sorted(self.held)]
        top = max(self.held)
        self.held.clear()
        if self.last is None or top > self.last:
            self.last = top
        return out

    def jump(self, number: int, item: T) -> list[T]:
        """An item that moves the stream to ``number`` without needing the numbers before it
        (a room summary; a typing set, whose stream only ever jumps): held items before it go
        first, in order; it goes if it is new."""
        out = [self.held.pop(n) for n in sorted(n for n in self.held if n < number)]
        if self.last is None or number > self.last:
            self.last = number
            out.append(item)
        self.held.pop(number, None)
        out.extend(self._release())
        return out

    def _release(self) -> list[T]:
        out: list[T] = []
        held = self.held
        last = self.last
        assert last is not None
        while held:
            item = held.pop(last + 1, None)
            if item is None:
                break
            last += 1
            out.append(item)
        self.last = last
        return out
