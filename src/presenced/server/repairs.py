"""Store steps that take back a failed transition, kept until they are done.

A transition that fails half way is undone at once (:mod:`presenced.server.lifecycle`). When
it failed because the store went away, the undo cannot reach the store either, and the store
may well have done the step whose reply was lost: a connect's record and presence entry, a
join's membership, or, for an ending, nothing of it at all. Left there, that is a ghost: the
node forgot the session, so nothing refreshes it and nothing takes it out until its failsafe
ttl runs out (``session_ttl``, 60 s by default).

So the store's part of an undo (or of an ending) that fails is kept here, under a key naming
what it takes back, and the lease keeper runs what is pending on each tick, before it
re-asserts the node's sessions (:mod:`presenced.server.cluster`). Until every pending step is
done the node reports degraded. Each step is idempotent: it removes what is there and
reports an event only for what it removed, so running one again after a partial run, or
after it had in fact landed, is harmless.

Bounded: at most :data:`MAX_PENDING` steps (the oldest goes when more come), and a step that
failed :data:`MAX_TRIES` times in a row is given up; both are logged as errors, and what such
a step would have removed still expires with the failsafe ttl.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

__all__ = ["MAX_PENDING", "MAX_TRIES", "Repairs", "Step"]

log = logging.getLogger(__name__)

MAX_PENDING = 10_000
"""Steps a node keeps at most (a connect storm during an outage fails many at once)."""
MAX_TRIES = 20
"""Runs of one step that may fail in a row before it is given up (one per lease tick)."""

Step = Callable[[], Awaitable[object]]


@dataclass(slots=True)
class _Pending:
    what: str
    step: Step
    failures: int = 0


class Repairs:
    """The pending steps, oldest first; one per key (a newer step for a key replaces it)."""

    def __init__(self, limit: int = MAX_PENDING, tries: int = MAX_TRIES) -> None:
        self.limit = limit
        self.tries = tries
        self._pending: dict[Hashable, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._pending

    def add(self, key: Hashable, what: str, step: Step) -> None:
        """Keep ``step`` (``what`` names it in the log) to be run by :meth:`run`."""
        pending = self._pending
        if not pending:
            log.warning(
                "the store failed mid-transition: %s is to be taken back when it answers", what
            )
        pending.pop(key, None)  # the newest step for a key, and at the end of the line
        pending[key] = _Pending(what, step)
        while len(pending) > self.limit:
            oldest = next(iter(pending))
            dropped = pending.pop(oldest)
            log.error(
                "more than %d store steps pending: %s dropped (its failsafe ttl will expire it)",
                self.limit,
                dropped.what,
            )

    async def run(self) -> int:
        """Run the pending steps, oldest first; returns how many were done. The first that
        fails stops the round and its error is raised (the store is likely away again); it
        is tried first next time, and given up after :attr:`tries` failures."""
        done = 0
        for key, entry in list(self._pending.items()):
            if self._pending.get(key) is not entry:
                continue  # replaced or dropped meanwhile
            try:
                await entry.step()
            except Exception:
                entry.failures += 1
                if entry.failures >= self.tries:
                    log.exception("giving up taking back %s after %d tries", entry.what, self.tries)
                    self._forget(key, entry)
                    continue
                raise
            self._forget(key, entry)
            done += 1
        if done:
            log.info("took back %d store steps left by transitions that failed", done)
        return done

    def _forget(self, key: Hashable, entry: _Pending) -> None:
        if self._pending.get(key) is entry:
            del self._pending[key]
