"""Where time comes from.

The presence core never reads a clock: the shell reads one and passes ``now`` in. ``monotonic``
drives deadlines (grace, heartbeats, inactivity); ``wall`` is only for timestamps shown to people
(last seen). ``ManualClock`` for tests lives in :mod:`presenced.testing`.
"""

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """A source of time: monotonic seconds for deadlines, wall seconds for display."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()
