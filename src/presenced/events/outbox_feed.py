"""The export through a shared-store outbox (Valkey/Redis): many nodes write, one dispatches.

Every node hands its events, in the order it made them, to one writer task that appends
them to the outbox (numbered there along their key, so a key's ``seq`` is one sequence for
the whole cluster). One node at a time leads: it renews a lead lease and, for each sink,
reads the outbox through the sink's consumer group, delivers with the runner's retries, and
acks after the sink confirmed (or after dead-lettering the batch in the store). A node that
takes the lead first re-reads the group's pending entries, so what the previous leader read
and did not confirm is delivered again, with the same ids. See store/redis/outbox.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from presenced.events.model import Event

if TYPE_CHECKING:
    from presenced.events.export import DeadLetter, EventExport, SinkRunner

__all__ = ["Outbox", "OutboxFeed"]

log = logging.getLogger(__name__)

FORGET_AFTER = 30.0
"""Seconds after which a stream found empty is no longer read on every pass (a hint or the
next sweep brings it back)."""

SWEEP_EVERY = 5.0
"""Seconds between the leader's scans for every outbox stream (on Cluster, a writer that
died between its append and its hint left a stream only a scan finds)."""

POLL = 0.02
"""Seconds a reader first waits after a read of the outbox found nothing."""

IDLE_MAX = 0.25
"""The longest wait between two reads of an idle outbox: the wait starts at POLL and
doubles while reads find nothing. Events this node writes wake the reader at once; those
of other nodes are found within this (docs/events.md, latency)."""

BATCH_LINGER = 0.1
"""Seconds a reader waits after a read that found events, or after a wake-up, before it
reads again (at least; more if the sink's ``linger`` says so): a pass costs the node three
store round trips whatever its size (read, the sink's batch, ack), so under load this sets
how many it makes (10 a second) and how long an event waits to go out (docs/events.md)."""

REPLAY_EVERY = 1.0
"""Seconds between looks for dead letters to replay (a replay asked on this node wakes the
reader at once; one asked on another node is found within this)."""

TRIM_EVERY = 1.0
"""Seconds between trims of a stream the sinks acked (each trim reads every group's state:
once a second bounds what a stream keeps to a second of events past the slowest sink)."""


def _cancelling() -> bool:
    """Whether the running task is being cancelled: redis-py may turn the cancellation of a
    command into a ConnectionError, which a retry loop would swallow, and the task would
    never stop (a node's shutdown hung on it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _reraise_cancel() -> None:
    if _cancelling():
        raise asyncio.CancelledError


class Outbox(Protocol):
    """What the feed needs of the store's outbox (store/redis/outbox.py RedisOutbox)."""

    store_written: frozenset[str]
    """The types the store's transition scripts write themselves (not to be appended)."""

    def bind(self, node: str, wanted: Any, wall: Any, wrote: Any = None) -> None:
        """Let the store's scripts write this node's events of the types ``wanted`` takes;
        ``wrote()`` is called after a script that may have written one."""
        ...

    def record(self, **fields: Any) -> Any:
        """The store's record of an event (its fields but ``seq``)."""
        ...

    async def append(self, events: Sequence[Any]) -> list[int]: ...

    async def lead(self, node: str, lease_ms: int, *, give_up: bool = False) -> bool: ...

    async def streams(self, *, sweep: bool) -> list[str]: ...

    async def read(self, group: str, stream: str, count: int, *, pending: bool) -> list[Any]: ...

    async def ack(self, group: str, entries: Sequence[Any], trim: Sequence[str]) -> None: ...

    async def trim(self, stream: str, groups: Sequence[str]) -> None: ...

    async def dead_letter(self, letter: DeadLetter, limit: int) -> None: ...

    async def dead_letters(self) -> list[DeadLetter]: ...

    async def take_dead_letter(self, letter_id: str) -> DeadLetter | None: ...

    async def push_replay(self, sink: str, events: list[Event]) -> None: ...

    async def pop_replay(self, sink: str) -> list[Event] | None: ...


class OutboxFeed:
    """The writer, the lead and one reader per sink, for one node."""

    def __init__(
        self,
        export: EventExport,
        outbox: Outbox,
        *,
        lease: float = 3.0,
        poll: float | None = None,
    ) -> None:
        self.export = export
        self.outbox = outbox
        self.lease = lease
        self.poll = POLL if poll is None else poll
        self._pending: list[Any] = []
        self._wrote = asyncio.Event()
        self._written = asyncio.Event()
        self._written.set()
        self._tasks: list[asyncio.Task[None]] = []
        self.leading = False
        self._led = asyncio.Event()
        self.write_failures = 0
        self.known: dict[str, float] = {}  # stream -> when it last had entries
        self._closing = False
        self._next_sweep = 0.0
        self._wakes: list[asyncio.Event] = []  # one per sink reader
        self._trimmed: dict[str, float] = {}  # stream -> when it was last trimmed
        self._untrimmed: set[str] = set()  # streams acked since their last trim
        self._replays_asked: set[str] = set()  # sinks with a replay asked on this node

    def wake(self) -> None:
        """Events were just written to the outbox here: the readers read now instead of at
        the end of their idle wait."""
        for event in self._wakes:
            event.set()

    def replay_asked(self, sink: str) -> None:
        """A dead letter of ``sink`` was queued for a replay here: look for it now."""
        self._replays_asked.add(sink)
        self.wake()

    # --- writing -------------------------------------------------------------------------

    @property
    def unwritten(self) -> int:
        """Events queued here, not yet appended to the store's outbox (the metrics)."""
        return len(self._pending)

    def write(self, **fields: Any) -> None:
        """Queue one event for the outbox (no await: the writer task appends it soon)."""
        self._pending.append(self.outbox.record(**fields))
        self._written.clear()
        self._wrote.set()

    async def _write_loop(self) -> None:
        while True:
            _reraise_cancel()
            if not self._pending:
                self._written.set()
                self._wrote.clear()
                await self._wrote.wait()
                continue
            batch, self._pending = self._pending, []
            while True:
                try:
                    await self.outbox.append(batch)
                    self.wake()
                    break
                except asyncio.CancelledError:
                    self._pending[:0] = batch
                    raise
                except Exception as exc:  # the store is down: keep the order, retry
                    if _cancelling():
                        self._pending[:0] = batch
                        raise asyncio.CancelledError from exc
                    self.write_failures += 1
                    log.warning("event outbox: append failed (%s), retrying", exc)
                    await asyncio.sleep(0.2)

    async def flushed(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._written.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- the lead ------------------------------------------------------------------------

    async def _lead_loop(self) -> None:
        node = self.export.node_id
        lease_ms = int(self.lease * 1000)
        while not self._closing:
            _reraise_cancel()
            try:
                leading = await self.outbox.lead(node, lease_ms)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _reraise_cancel()
                log.warning("event outbox: lead renewal failed (%s)", exc)
                leading = False
            if leading and not self.leading:
                log.info("event outbox: this node dispatches the events now")
            self.leading = leading
            if leading:
                self._led.set()
            else:
                self._led.clear()
            await asyncio.sleep(self.lease / 3)

    # --- reading, per sink ---------------------------------------------------------------

    async def _sink_loop(self, runner: SinkRunner) -> None:
        """Read, deliver, ack, for one sink, while this node leads.

        Cheap when idle, batched under load: a read that finds nothing doubles the wait
        before the next one (from POLL to IDLE_MAX), unless this node writes an event
        meanwhile (:meth:`wake`); after a read that found events, the reader lingers
        BATCH_LINGER (or the sink's longer ``linger``) so that the next batch fills. Each
        pass is a read, the sink's delivery and an ack; replays are looked for every
        REPLAY_EVERY seconds."""
        loop = asyncio.get_running_loop()
        name = runner.sink.name
        groups = [r.sink.name for r in self.export.runners]
        size = runner.policy.batch_size
        linger = max(runner.policy.linger, BATCH_LINGER)
        woken = asyncio.Event()
        self._wakes.append(woken)
        idle = self.poll
        next_replay = 0.0
        was_leading = False
        while not self._closing:
            _reraise_cancel()  # a library may have swallowed the cancellation
            await self._led.wait()
            try:
                if not was_leading:  # new lead: what was read before and not confirmed first
                    await self._drain_pending(runner, groups)
                    was_leading = True
                if name in self._replays_asked or loop.time() >= next_replay:
                    self._replays_asked.discard(name)
                    next_replay = loop.time() + REPLAY_EVERY
                    replay = await self.outbox.pop_replay(name)
                    if replay:
                        await self._deliver(runner, replay, [], groups)
                        next_replay = 0.0  # there may be more
                        continue
                woken.clear()
                got = 0
                for stream in await self._discover():
                    while self.leading:
                        entries = await self.outbox.read(name, stream, size, pending=False)
                        if entries:
                            got += len(entries)
                            self.known[stream] = loop.time()
                            await self._deliver(runner, [e.event for e in entries], entries, groups)
                        if len(entries) < size:  # the stream is read to its end
                            break
                if got:
                    idle = self.poll
                    await asyncio.sleep(linger)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), idle)
                    if woken.is_set():
                        idle = self.poll
                        await asyncio.sleep(linger)  # what this node writes next comes along
                    else:
                        idle = min(idle * 2, IDLE_MAX)
                        await self._trim_idle(groups)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _reraise_cancel()
                log.warning("event outbox: sink %s: reading failed (%s)", name, exc)
                was_leading = False  # read the pending entries again once it works
                await asyncio.sleep(0.2)
            if not self.leading:
                was_leading = False

    async def _discover(self, *, sweep: bool = False) -> list[str]:
        """The streams to read: those known, plus those written since (hinted), plus, every
        SWEEP_EVERY seconds or when asked, all there are; long-empty ones are forgotten.
        Shared by the sinks' readers (a hint is taken once, for all of them)."""
        now = asyncio.get_running_loop().time()
        if sweep or now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY
            sweep = True
        for stream in await self.outbox.streams(sweep=sweep):
            self.known[stream] = now
        for stream, seen in list(self.known.items()):
            if now - seen > FORGET_AFTER:
                del self.known[stream]
        return sorted(self.known)

    async def _drain_pending(self, runner: SinkRunner, groups: list[str]) -> None:
        name = runner.sink.name
        for stream in await self._discover(sweep=True):
            while True:
                entries = await self.outbox.read(
                    name, stream, runner.policy.batch_size, pending=True
                )
                if not entries:
                    break
                await self._deliver(runner, [e.event for e in entries], entries, groups)

    async def _deliver(
        self, runner: SinkRunner, events: list[Event], entries: Sequence[Any], groups: list[str]
    ) -> None:
        events = [e for e in events if runner.policy.filter(e.type)]  # the outbox has all
        error = await runner.deliver(events) if events else None
        if error is not None:
            letter = self.export.make_dead_letter(runner.sink.name, events, error)
            await self.outbox.dead_letter(letter, self.export.dead_limit)
            await runner.forward_dead_letter(letter)
        if entries:
            await self.outbox.ack(runner.sink.name, entries, self._due_trims(entries, groups))

    def _due_trims(self, entries: Sequence[Any], groups: list[str]) -> list[str]:
        """The groups to trim the entries' stream by, if its trim is due (else none: the
        stream is trimmed by a later ack, or by :meth:`_trim_idle`)."""
        now = asyncio.get_running_loop().time()
        streams = {e.stream for e in entries}
        if all(now - self._trimmed.get(s, -TRIM_EVERY) < TRIM_EVERY for s in streams):
            self._untrimmed |= streams
            return []
        for stream in streams:
            self._trimmed[stream] = now
        self._untrimmed -= streams
        return groups

    async def _trim_idle(self, groups: list[str]) -> None:
        """Trim the streams acked since their last trim (the outbox went quiet before
        their next one was due: without this they would keep up to a second of events)."""
        now = asyncio.get_running_loop().time()
        for stream in sorted(self._untrimmed):
            self._untrimmed.discard(stream)
            self._trimmed[stream] = now
            await self.outbox.trim(stream, groups)

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        export = self.export
        if export.runners:  # (without a sink the scripts write nothing)
            self.outbox.bind(export.node_id, export.wanted, export.clock.wall, self.wake)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._write_loop(), name="presenced-outbox-writer"))
        if self.export.runners:
            self._tasks.append(loop.create_task(self._lead_loop(), name="presenced-outbox-lead"))
            for runner in self.export.runners:
                task = loop.create_task(
                    self._sink_loop(runner), name=f"presenced-outbox-{runner.sink.name}"
                )
                self._tasks.append(task)

    async def close(self, drain: float) -> None:
        """Append what is still queued (bounded), give the lead up, stop the tasks."""
        if not await self.flushed(drain):
            log.warning("event outbox: %d event(s) not written at shutdown", len(self._pending))
        self._closing = True
        for task in self._tasks:
            task.cancel()
        # Bounded: a task whose cancellation a library swallowed ends at its next loop turn.
        await asyncio.wait(self._tasks, timeout=2.0)
        self._tasks.clear()
        if self.leading:
            with contextlib.suppress(Exception):
                await self.outbox.lead(self.export.node_id, 0, give_up=True)
            self.leading = False
