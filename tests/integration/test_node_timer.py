"""The node's one timer: deadlines close together share a wake-up, none fires early.

19,000 sessions pinging every 25 s put a deadline every 1.3 ms; firing each on its own (and
re-arming sub-millisecond delays that the event loop rounds to zero) kept an idle node
busy. Deadlines are served on a grid of ticks instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from presenced.presence.liveness import Deadline, DeadlineKind
from presenced.server.node import MAX_PROMPT_TICK, MAX_TIMER_TICK, Node, on_tick, timer_tick
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory


def test_tick_is_finer_for_short_heartbeats_and_capped() -> None:
    assert timer_tick(25.0) == MAX_TIMER_TICK
    assert timer_tick(25.0, MAX_PROMPT_TICK) == MAX_PROMPT_TICK < MAX_TIMER_TICK
    assert timer_tick(0.2) == pytest.approx(0.004)
    assert timer_tick(0.001) == 0.001


async def test_prompt_deadlines_fire_on_the_fine_tick_the_others_on_the_coarse(
    make_server: ServerFactory,
) -> None:
    """With the default heartbeat (25 s) a ping, pong or auth deadline waits for the coarse
    tick, while a prompt one (here a paused reader's resumption) fires within the fine one."""
    running = await make_server(heartbeat_interval=25.0, heartbeat_timeout=10.0)
    node = running.node
    fired: dict[str, float] = {}

    def seen(deadline: Deadline) -> None:
        if deadline.key in ("c-auth", "c-read"):
            fired[deadline.key] = time.monotonic()

    _Watched(node, seen)
    coarse = timer_tick(25.0)
    # The auth deadline just after a coarse tick: it waits most of a tick for the next.
    # The read pause ends just after that one, and so is most of a tick from the one after.
    base = on_tick(node.clock.monotonic() + 0.1, coarse)
    due = {"c-auth": base + 0.05, "c-read": base + coarse + 0.05}
    node.registry.arm(DeadlineKind.AUTH, "c-auth", due["c-auth"])
    node.registry.arm(DeadlineKind.READ, "c-read", due["c-read"])
    node.rearm()

    async def both_fired() -> None:
        while len(fired) < 2:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(both_fired(), timeout=5)
    assert fired["c-auth"] >= base + coarse - 0.0015, (fired, base)
    assert due["c-read"] - 0.0015 <= fired["c-read"] < base + 2 * coarse - 0.0015, (fired, base)
    # Not by chance: on the coarse grid, the read would have fired at base + 2 * coarse.
    assert fired["c-read"] - due["c-read"] < coarse / 2, (fired, due)


@pytest.mark.parametrize("when", [0.0, 0.3, 1.0, 12.34567, 1e6 + 0.7, 1795435200.123])
def test_on_tick_is_the_first_tick_not_before_the_deadline(when: float) -> None:
    tick = 0.02
    at = on_tick(when, tick)
    assert when <= at < when + tick + 1e-9


class _Watched:
    """A node's timer wake-ups counted and its fired deadlines seen (``seen``), by wrapping
    the node's own ``_on_timer`` and ``_on_deadline``."""

    def __init__(self, node: Node, seen: Callable[[Deadline], None]) -> None:
        self.wakes = 0
        on_timer, on_deadline = node._on_timer, node._on_deadline

        def counting_timer() -> None:
            self.wakes += 1
            on_timer()

        def recording(deadline: Deadline) -> None:
            seen(deadline)
            on_deadline(deadline)

        node._on_timer = counting_timer  # type: ignore[method-assign]
        node._on_deadline = recording  # type: ignore[method-assign,assignment]


async def test_spread_deadlines_share_wake_ups_and_none_fires_early(
    make_server: ServerFactory,
) -> None:
    running = await make_server(heartbeat_interval=0.5)  # tick 10 ms
    node = running.node
    tick = timer_tick(0.5)
    fired: dict[str, float] = {}

    def seen(deadline: Deadline) -> None:
        if deadline.kind is DeadlineKind.AUTH and deadline.key in due:
            fired[deadline.key] = time.monotonic()

    watched = _Watched(node, seen)
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
    assert watched.wakes <= 0.2 / tick + 10, watched.wakes


async def test_heartbeating_clients_do_not_wake_the_timer_each(make_server: ServerFactory) -> None:
    """A client that heartbeats within every interval is never pinged, and its ping
    deadline moves with its frames instead of firing to be pushed back: the node's timer
    wakes only now and then (when the deadline it was armed for has moved on), not once an
    interval for every client, as it did when each session's ping deadline fired."""
    running = await make_server(heartbeat_interval=0.6, heartbeat_timeout=0.3)  # slack 0.06
    node = running.node
    pinged: list[str] = []

    def seen(deadline: Deadline) -> None:
        if deadline.kind is DeadlineKind.PING and deadline.session is not None:
            pinged.append(deadline.session.id)

    watched = _Watched(node, seen)
    url = f"{running.url}?device=d1&user="
    clients = [await ProtocolClient.connect(f"{url}u{i}") for i in range(20)]
    for client in clients:
        await client.wait_for("welcome")

    async def heartbeats(rounds: int) -> None:
        # Each client every ~0.22 s, the 20 at phases 11 ms apart (as real clients are).
        for _ in range(rounds):
            for client in clients:
                await client.request({"type": "heartbeat"})
                await asyncio.sleep(0.01)

    try:
        await heartbeats(2)  # each has spoken twice: its ping deadline has moved on
        watched.wakes = 0
        pinged.clear()
        await heartbeats(6)  # about 1.3 s, two intervals
    finally:
        for client in clients:
            client.abort()
    assert pinged == []
    # Each session's deadline firing once an interval would be about 40 wake-ups here.
    wakes = watched.wakes
    assert wakes <= 10, f"the timer woke {wakes} times for clients that heartbeat"
