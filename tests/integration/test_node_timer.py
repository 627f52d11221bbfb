"""The node's one timer: deadlines close together share a wake-up, none fires early.

19,000 sessions pinging every 25 s put a deadline every 1.3 ms; firing each on its own (and
re-arming sub-millisecond delays that the event loop rounds to zero) kept an idle node
busy. Deadlines are served on a grid of ticks instead.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from presenced.presence.liveness import Deadline, DeadlineKind
from presenced.server.node import MAX_TIMER_TICK, on_tick, timer_tick
from tests.conftest import ServerFactory


def test_tick_is_finer_for_short_heartbeats_and_capped() -> None:
    assert timer_tick(25.0) == MAX_TIMER_TICK
    assert timer_tick(0.2) == pytest.approx(0.004)
    assert timer_tick(0.001) == 0.001


@pytest.mark.parametrize("when", [0.0, 0.3, 1.0, 12.34567, 1e6 + 0.7, 1795435200.123])
def test_on_tick_is_the_first_tick_not_before_the_deadline(when: float) -> None:
    tick = 0.02
    at = on_tick(when, tick)
    assert when <= at < when + tick + 1e-9


async def test_spread_deadlines_share_wake_ups_and_none_fires_early(
    make_server: ServerFactory,
) -> None:
    running = await make_server(heartbeat_interval=0.5)  # tick 10 ms
    node = running.node
    tick = timer_tick(0.5)
    wakes = 0
    fired: dict[str, float] = {}
    on_timer, on_deadline = node._on_timer, node._on_deadline

    def counting_timer() -> None:
        nonlocal wakes
        wakes += 1
        on_timer()

    def recording(deadline: Deadline) -> None:
        if deadline.kind is DeadlineKind.AUTH and deadline.key in due:
            fired[deadline.key] = time.monotonic()
        on_deadline(deadline)

    node._on_timer = counting_timer  # type: ignore[method-assign]
    node._on_deadline = recording  # type: ignore[method-assign]
    # 400 deadlines spread evenly over 0.2 s: 0.5 ms apart, 20 ticks in all.
    start = node.clock.monotonic() + 0.05
    due = {f"c-timer-{i}": start + i * 0.0005 for i in range(400)}
    node.stop_timer()
    for key, when in due.items():
        node.registry.arm(DeadlineKind.AUTH, key, when)
    node.rearm()

    async def all_fired() -> None:
        while len(fired) < len(due):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(all_fired(), timeout=5)
    early = {k: due[k] - t for k, t in fired.items() if t < due[k] - 0.0015}
    assert not early, f"fired before their deadline: {early}"
    # One wake-up per tick (plus a few for the other deadlines of an idle node), not one
    # per deadline.
    assert wakes <= 0.2 / tick + 10, wakes
