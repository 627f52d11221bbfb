"""The node's event export: events born at transitions, queued, and delivered to each sink.

:meth:`EventExport.emit` is called by the node's transitions (the lifecycle, the messaging
handlers) right after the store step that made the change, with no await in between: the
event gets its id, its time, and the next ``seq`` of its key, and is put on the queue of every
sink whose filter takes its type. Nothing is awaited on the caller's path; with no sink
configured, ``emit`` returns at once.

Each sink has a :class:`SinkRunner`: one task that takes batches off its queue in order and
delivers them, one batch at a time, so a sink sees every key's events in ``seq`` order. A
failed delivery is retried with exponential backoff and jitter; a batch that still fails
after ``tries`` goes to the dead letters (listed and replayed through the admin API) and the
runner goes on with the next. A queue that is full drops the newest events and counts them.

This is the export of one node, in its memory: an event queued here is lost if the process is
killed before its sink confirmed it (on a graceful stop, the queues are drained for a bounded
time). docs/events.md says so; the shared-store outbox that closes that window is planned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from presenced.clock import Clock
from presenced.events.model import (
    EVENTS_VERSION,
    USER_EVENTS,
    Event,
    EventFilter,
    new_event_id,
)
from presenced.events.outbox_feed import Outbox, OutboxFeed

__all__ = ["DeadLetter", "EventExport", "Sink", "SinkPolicy", "SinkRunner", "SinkStats"]

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where a batch of events goes. ``deliver`` returns once the receiver confirmed the
    whole batch, or raises (any exception: the batch is retried).

    A sink with a dead-letter destination of its own (a Kafka dead-letter topic) also has
    ``async dead_letter(letter: DeadLetter)``: called once a batch used up its tries, after
    the letter was kept with the others (it is replayable either way); it may raise, which
    is logged."""

    name: str

    async def deliver(self, events: Sequence[Event]) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SinkPolicy:
    """How a runner feeds its sink."""

    filter: EventFilter = field(default_factory=EventFilter)
    batch_size: int = 100
    linger: float = 0.02
    """Seconds to wait for a batch to fill once an event is queued (0: send at once)."""
    tries: int = 8
    backoff_min: float = 0.5
    backoff_max: float = 60.0
    queue_size: int = 100_000


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A batch its sink refused ``tries`` times, kept for a replay."""

    id: str
    sink: str
    events: list[Event]
    error: str
    tries: int
    failed_at: float


class SinkStats(msgspec.Struct, kw_only=True):
    """Counters of one sink (the admin API's and the metrics' view)."""

    sink: str
    queued: int = 0
    delivered: int = 0
    batches: int = 0
    failures: int = 0
    """Failed delivery attempts (each retry counts)."""
    dead: int = 0
    """Events moved to the dead letters."""
    dropped: int = 0
    """Events not queued because the queue was full."""


class SinkRunner:
    """One sink's queue and the task that delivers it, in order, batch by batch."""

    def __init__(self, sink: Sink, policy: SinkPolicy, export: EventExport) -> None:
        self.sink = sink
        self.policy = policy
        self.export = export
        self.queue: deque[Event] = deque()
        self.stats = SinkStats(sink=sink.name)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def put(self, event: Event) -> None:
        if len(self.queue) >= self.policy.queue_size:
            self.stats.dropped += 1
            return
        self.queue.append(event)
        self.stats.queued = len(self.queue)
        self._idle.clear()
        self._wake.set()

    def put_front(self, events: Sequence[Event]) -> None:
        """Events to go before everything queued (a replay)."""
        self.queue.extendleft(reversed(events))
        self.stats.queued = len(self.queue)
        self._idle.clear()
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"presenced-sink-{self.sink.name}"
            )

    async def drained(self, timeout: float) -> bool:
        """Wait until the queue is empty and nothing is in flight (at most ``timeout``)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.close_sink()

    async def close_sink(self) -> None:
        """Close the sink's connections. A failure here (the broker's link already lost, a
        refused goodbye) is logged: it must not stop the node's shutdown half way."""
        try:
            await self.sink.close()
        except Exception as exc:
            log.warning("sink %s: closing failed: %s: %s", self.sink.name, type(exc).__name__, exc)

    async def _run(self) -> None:
        policy = self.policy
        while True:
            if not self.queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self.queue) < policy.batch_size and policy.linger > 0:
                await asyncio.sleep(policy.linger)  # let the batch fill
            size = min(policy.batch_size, len(self.queue))
            batch = [self.queue.popleft() for _ in range(size)]
            self.stats.queued = len(self.queue)
            try:
                error = await self.deliver(batch)
            except asyncio.CancelledError:
                self.put_front(batch)  # stopped mid-delivery: keep it for a drain's report
                raise
            if error is not None:
                letter = self.export.make_dead_letter(self.sink.name, batch, error)
                self.export.dead.append(letter)
                await self.forward_dead_letter(letter)

    async def deliver(self, batch: list[Event]) -> str | None:
        """Deliver ``batch``, retrying with backoff; None once confirmed, else (after the
        last try) the last error, for its dead letter."""
        policy = self.policy
        error = ""
        for attempt in range(1, policy.tries + 1):
            try:
                await self.sink.deliver(batch)
            except Exception as exc:
                self.stats.failures += 1
                error = f"{type(exc).__name__}: {exc}"[:500]
                level = logging.WARNING if attempt == 1 else logging.DEBUG
                log.log(
                    level, "sink %s: delivery failed (try %d): %s", self.sink.name, attempt, error
                )
                if attempt < policy.tries:
                    await asyncio.sleep(_backoff(attempt, policy))
                continue
            self.stats.delivered += len(batch)
            self.stats.batches += 1
            return None
        self.stats.dead += len(batch)
        log.error(
            "sink %s: %d event(s) dead-lettered after %d tries: %s",
            self.sink.name, len(batch), policy.tries, error,
        )  # fmt: skip
        return error

    async def forward_dead_letter(self, letter: DeadLetter) -> None:
        """Hand a dead letter, once kept, to the sink's own dead-letter destination if it
        has one (one try: the kept letter is what a replay uses)."""
        forward = getattr(self.sink, "dead_letter", None)
        if forward is None:
            return
        try:
            await forward(letter)
        except Exception as exc:
            log.error(
                "sink %s: dead letter %s not forwarded to the sink's dead-letter destination: "
                "%s: %s", self.sink.name, letter.id, type(exc).__name__, exc,
            )  # fmt: skip


def _backoff(attempt: int, policy: SinkPolicy) -> float:
    """Exponential backoff with "equal jitter": half the step fixed, half random, so many
    nodes retrying one receiver spread out but none retries at once."""
    step = min(policy.backoff_max, policy.backoff_min * 2.0 ** (attempt - 1))
    return step / 2 + random.uniform(0, step / 2)


class EventExport:
    """Every sink of one node, the per-key sequence numbers, and the dead letters."""

    def __init__(
        self,
        node_id: str,
        clock: Clock,
        sinks: Iterable[tuple[Sink, SinkPolicy]] = (),
        *,
        dead_letter_limit: int = 10_000,
        outbox: Outbox | None = None,
        lead_lease: float = 3.0,
    ) -> None:
        self.node_id = node_id
        self.clock = clock
        self.runners = [SinkRunner(sink, policy, self) for sink, policy in sinks]
        self._seq: dict[str, int] = {}
        self.dead_limit = dead_letter_limit
        self.dead: deque[DeadLetter] = deque(maxlen=dead_letter_limit)
        self._dead_seq = 0
        # With a shared store the events go through its outbox (numbered there) and one
        # node dispatches them; else through the runners' in-memory queues.
        self.feed: OutboxFeed | None = None
        if outbox is not None:
            self.feed = OutboxFeed(self, outbox, lease=lead_lease)

    @property
    def enabled(self) -> bool:
        return bool(self.runners)

    def wanted(self, event_type: str) -> bool:
        """Whether some sink takes events of ``event_type``."""
        return any(r.policy.filter(event_type) for r in self.runners)

    def emit(
        self,
        event_type: str,
        *,
        user: str | None = None,
        room: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Queue one event for every sink that takes its type (no await: call it right
        after the store step that made the change)."""
        runners = self.runners
        if not runners:
            return
        wanted = [r for r in runners if r.policy.filter(event_type)]
        if not wanted:
            return
        key = f"user:{user}" if event_type in USER_EVENTS or room is None else f"room:{room}"
        wall = self.clock.wall()
        wall_ms = int(wall * 1000)
        if self.feed is not None:  # numbered by the store, for every node alike
            if event_type in self.feed.outbox.store_written:
                return  # the transition's own script wrote it, in the same step
            self.feed.write(
                v=EVENTS_VERSION, id=new_event_id(wall_ms), type=event_type, time=wall,
                node=self.node_id, key=key, user=user, room=room, data=data or {},
            )  # fmt: skip
            return
        # Strictly increasing along the key while remembered, and still increasing (by the
        # wall clock) after it was forgotten: a key is dropped when its room or user goes.
        seq = max(self._seq.get(key, 0) + 1, wall_ms)
        if event_type in ("room.vacated", "room.deleted", "user.offline"):
            self._seq.pop(key, None)
        else:
            self._seq[key] = seq
        event = Event(
            id=new_event_id(wall_ms),
            type=event_type,
            time=wall,
            node=self.node_id,
            key=key,
            seq=seq,
            user=user,
            room=room,
            data=data or {},
        )
        for runner in wanted:
            runner.put(event)

    # --- dead letters --------------------------------------------------------------------

    def make_dead_letter(self, sink: str, events: list[Event], error: str) -> DeadLetter:
        self._dead_seq += 1
        runner = self._runner(sink)
        return DeadLetter(
            id=f"{self.node_id}-{self._dead_seq}-{secrets.token_hex(3)}",
            sink=sink,
            events=events,
            error=error,
            tries=runner.policy.tries if runner else 0,
            failed_at=self.clock.wall(),
        )

    async def list_dead(self, sink: str | None = None) -> list[DeadLetter]:
        """The dead letters, oldest first (the store's, with an outbox: every node's)."""
        if self.feed is not None:
            letters = await self.feed.outbox.dead_letters()
            return [d for d in letters if sink is None or d.sink == sink]
        return self.dead_letters(sink)

    async def replay_dead(self, letter_id: str) -> DeadLetter | None:
        """Deliver a dead letter's events again on its sink, ahead of the rest; it is
        removed. None if there is no such letter or its sink is not configured here."""
        if self.feed is None:
            return self.replay(letter_id)
        outbox = self.feed.outbox
        letters = {d.id: d for d in await outbox.dead_letters()}
        if letter_id not in letters or self._runner(letters[letter_id].sink) is None:
            return None
        letter = await outbox.take_dead_letter(letter_id)
        if letter is not None:
            await outbox.push_replay(letter.sink, letter.events)
            self.feed.replay_asked(letter.sink)
        return letter

    async def discard_dead(self, letter_id: str) -> DeadLetter | None:
        if self.feed is None:
            return self.discard(letter_id)
        return await self.feed.outbox.take_dead_letter(letter_id)

    def dead_letters(self, sink: str | None = None) -> list[DeadLetter]:
        return [d for d in self.dead if sink is None or d.sink == sink]

    def replay(self, letter_id: str) -> DeadLetter | None:
        """Queue a dead letter's events again, ahead of what is queued, on its sink; the
        letter is removed. None if there is no such letter (or its sink is gone)."""
        for letter in self.dead:
            if letter.id == letter_id:
                runner = self._runner(letter.sink)
                if runner is None:
                    return None
                self.dead.remove(letter)
                runner.put_front(letter.events)
                return letter
        return None

    def discard(self, letter_id: str) -> DeadLetter | None:
        for letter in self.dead:
            if letter.id == letter_id:
                self.dead.remove(letter)
                return letter
        return None

    def _runner(self, name: str) -> SinkRunner | None:
        return next((r for r in self.runners if r.sink.name == name), None)

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self.feed is not None:
            self.feed.start()
            return
        for runner in self.runners:
            runner.start()

    async def close(self, drain: float = 5.0) -> None:
        """Deliver what is queued (at most ``drain`` seconds), then stop every runner; what
        could not be delivered is logged, with its count."""
        if not self.runners:
            return
        if self.feed is not None:
            await self.feed.close(drain)
            for runner in self.runners:
                await runner.close_sink()
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        for runner in self.runners:
            await runner.drained(max(0.0, deadline - loop.time()))
        for runner in self.runners:
            await runner.stop()
            if runner.queue:
                log.warning(
                    "sink %s: %d event(s) not delivered at shutdown",
                    runner.sink.name, len(runner.queue),
                )  # fmt: skip
