"""Room event streams: messages, edits and deletes with offsets, bounded for recovery.

Each room's stream numbers its events 1, 2, 3... within an *epoch* (a name the caller gives
the stream when it starts; if the stream is lost and restarted, the new epoch tells clients
that their old offsets mean nothing). The stream keeps at most ``size`` events, none older
than ``ttl``; a client whose position is still covered gets exactly what it missed
(``recovered``), anyone else is told to reload. Re-sent temporary ids map to the first
message while it is still kept. Pure: ids, epochs and times are passed in.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from presenced.typing import RoomId, UserId

__all__ = [
    "AppendResult",
    "EventKind",
    "HistoryBook",
    "MessageState",
    "Recovery",
    "RoomLog",
    "StreamEvent",
]

Body = str | dict[str, object]


class EventKind(Enum):
    MESSAGE = "message"
    EDITED = "edited"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event in a room's stream, as it happened."""

    kind: EventKind
    room: RoomId
    epoch: str
    offset: int
    message_id: str
    user: UserId  # author for MESSAGE, editor / deleter otherwise
    time: float
    body: Body | None = None
    device: str = ""
    temp_id: str | None = None


@dataclass(slots=True)
class MessageState:
    """A kept message as it is now (edits applied)."""

    id: str
    offset: int
    author: UserId
    device: str
    body: Body | None
    time: float
    temp_id: str | None
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class AppendResult:
    event: StreamEvent
    duplicate: bool
    seen_before: int = 0  # the sender's seen position before sending marked it up to here


@dataclass(frozen=True, slots=True)
class Recovery:
    recovered: bool
    epoch: str
    offset: int  # the stream's latest offset
    events: list[StreamEvent]


@dataclass(slots=True)
class RoomLog:
    """One room's bounded stream."""

    room: RoomId
    epoch: str
    offset: int = 0
    events: deque[StreamEvent] = field(default_factory=deque)
    messages: dict[str, MessageState] = field(default_factory=dict)
    by_temp: dict[tuple[UserId, str], str] = field(default_factory=dict)
    read: dict[UserId, int] = field(default_factory=dict)  # seen up to, per user
    delivered: dict[UserId, int] = field(default_factory=dict)  # delivered up to, per user
    written: float = 0.0  # the time of its last event (0: none yet)

    def trim(self, size: int, ttl: float, now: float) -> None:
        """Drop events beyond ``size`` or older than ``ttl``, and what only they kept."""
        events = self.events
        while events and (len(events) > size or events[0].time < now - ttl):
            gone = events.popleft()
            if gone.kind is EventKind.MESSAGE:
                state = self.messages.pop(gone.message_id, None)
                if state is not None and state.temp_id is not None:
                    self.by_temp.pop((state.author, state.temp_id), None)

    @property
    def first_kept(self) -> int:
        """The lowest offset still kept (latest + 1 when nothing is)."""
        return self.events[0].offset if self.events else self.offset + 1


class HistoryBook:
    """Every room's stream; the memory store's message state."""

    __slots__ = ("_logs", "size", "ttl")

    def __init__(self, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl
        self._logs: dict[RoomId, RoomLog] = {}

    def log(self, room: RoomId) -> RoomLog | None:
        return self._logs.get(room)

    def _log(self, room: RoomId, new_epoch: str) -> RoomLog:
        log = self._logs.get(room)
        if log is None:
            log = self._logs[room] = RoomLog(room, new_epoch)
        return log

    def append(
        self,
        room: RoomId,
        user: UserId,
        device: str,
        temp_id: str | None,
        body: Body,
        now: float,
        message_id: str,
        new_epoch: str,
    ) -> AppendResult:
        """Add a message, or return the first one sent with the same ``temp_id``."""
        log = self._log(room, new_epoch)
        log.trim(self.size, self.ttl, now)
        if temp_id is not None:
            existing = log.by_temp.get((user, temp_id))
            if existing is not None:
                state = log.messages[existing]
                first = StreamEvent(
                    EventKind.MESSAGE, room, log.epoch, state.offset, state.id, user,
                    state.time, state.body, state.device, temp_id,
                )  # fmt: skip
                return AppendResult(first, duplicate=True)
        log.offset += 1
        event = StreamEvent(
            EventKind.MESSAGE, room, log.epoch, log.offset, message_id, user, now, body,
            device, temp_id,
        )  # fmt: skip
        self._keep(log, event)
        if self.size > 0:
            log.messages[message_id] = MessageState(
                message_id, log.offset, user, device, body, now, temp_id
            )
            if temp_id is not None:
                log.by_temp[(user, temp_id)] = message_id
        # Sending marks the room seen (and so delivered) up to one's own message.
        seen_before = log.read.get(user, 0)
        log.read[user] = max(seen_before, log.offset)
        log.delivered[user] = max(log.delivered.get(user, 0), log.offset)
        return AppendResult(event, duplicate=False, seen_before=seen_before)

    def message(self, room: RoomId, message_id: str) -> MessageState | None:
        log = self._logs.get(room)
        if log is None:
            return None
        state = log.messages.get(message_id)
        return None if state is None or state.deleted else state

    def amend(
        self,
        room: RoomId,
        message_id: str,
        user: UserId,
        body: Body | None,
        now: float,
    ) -> StreamEvent | None:
        """Edit (``body`` given) or delete (``body`` None) a kept message; the caller has
        checked authority. None when the message is not kept."""
        log = self._logs.get(room)
        if log is None:
            return None
        log.trim(self.size, self.ttl, now)  # a message past its age is gone, even if untouched
        state = log.messages.get(message_id)
        if state is None or state.deleted:
            return None
        log.offset += 1
        if body is None:
            state.deleted, state.body = True, None
            kind = EventKind.DELETED
        else:
            state.body = body
            kind = EventKind.EDITED
        event = StreamEvent(kind, room, log.epoch, log.offset, message_id, user, now, body)
        self._keep(log, event)
        return event

    def since(self, room: RoomId, epoch: str, offset: int, now: float, new_epoch: str) -> Recovery:
        """The events after ``offset``, if the stream still covers them."""
        log = self._log(room, new_epoch)
        log.trim(self.size, self.ttl, now)
        if epoch != log.epoch or offset > log.offset:
            return Recovery(False, log.epoch, log.offset, [])
        if offset + 1 < log.first_kept:
            return Recovery(False, log.epoch, log.offset, [])
        return Recovery(True, log.epoch, log.offset, [e for e in log.events if e.offset > offset])

    def drop(self, room: RoomId) -> None:
        """Forget the room's stream (the room was deleted): a new one starts a new epoch."""
        self._logs.pop(room, None)

    def position(self, room: RoomId, new_epoch: str) -> tuple[str, int]:
        """The stream's epoch and latest offset (starting the stream if needed)."""
        log = self._log(room, new_epoch)
        return log.epoch, log.offset

    def last_messages(
        self, room: RoomId, limit: int, before: int | None, now: float
    ) -> list[MessageState]:
        """Up to ``limit`` kept, undeleted messages, oldest first, with edits applied."""
        log = self._logs.get(room)
        if log is None:
            return []
        log.trim(self.size, self.ttl, now)
        found = [
            m
            for m in log.messages.values()
            if not m.deleted and (before is None or m.offset < before)
        ]
        return found[-limit:]

    def mark(self, room: RoomId, user: UserId, kind: str, offset: int) -> tuple[int, int]:
        """Move the user's ``"delivered"`` or ``"seen"`` position forward (never back, never
        past the stream); seen implies delivered. Returns (old, new) of that position."""
        log = self._logs.get(room)
        if log is None:
            return 0, 0
        positions = log.read if kind == "seen" else log.delivered
        old = positions.get(user, 0)
        new = max(old, min(offset, log.offset))
        positions[user] = new
        if kind == "seen" and log.delivered.get(user, 0) < new:
            log.delivered[user] = new
        return old, new

    def read_state(self, room: RoomId, user: UserId) -> tuple[int, int]:
        """(last read offset, unread messages by others after it, as far as history tells)."""
        log = self._logs.get(room)
        if log is None:
            return 0, 0
        last = log.read.get(user, 0)
        unread = sum(
            1
            for m in log.messages.values()
            if m.offset > last and m.author != user and not m.deleted
        )
        return last, unread

    def authors_between(self, room: RoomId, after: int, upto: int) -> set[UserId]:
        """Authors of kept messages with offsets in (after, upto]."""
        log = self._logs.get(room)
        if log is None:
            return set()
        return {m.author for m in log.messages.values() if after < m.offset <= upto}

    def expire(self, now: float) -> int:
        """Trim every stream by age as of ``now`` (old history goes without the room being
        touched again), and forget the streams left empty whose last event is older than
        the ttl: their epoch, offset and read positions (a client's position in a forgotten
        stream recovers as ``recovered: false``). Returns how many streams were forgotten."""
        if not math.isfinite(self.ttl):
            return 0
        cutoff = now - self.ttl
        gone = []
        for room, log in self._logs.items():
            log.trim(self.size, self.ttl, now)
            if not log.events and log.written < cutoff:
                gone.append(room)
        for room in gone:
            del self._logs[room]
        return len(gone)

    def _keep(self, log: RoomLog, event: StreamEvent) -> None:
        log.written = event.time
        if self.size > 0:
            log.events.append(event)
            log.trim(self.size, self.ttl, event.time)
