"""The exported event: one envelope for every type in the catalogue (docs/events.md).

An event says what happened, where (``user`` and/or ``room``), when (the node's wall clock),
on which node, and its place in the order of its key: ``key`` is ``room:<id>`` for room
events and ``user:<id>`` for user and session events, and ``seq`` increases strictly along
a key, so a consumer can put a key's events back in order and spot a redelivery (same
``id``). The envelope is versioned (``v``); a new field is added with a default, never
renamed, and a change that would break a consumer gets a new ``v``.
"""

from __future__ import annotations

import fnmatch
import secrets
from collections.abc import Iterable
from typing import Any

import msgspec

__all__ = [
    "CATALOGUE",
    "EVENTS_VERSION",
    "ROOM_EVENTS",
    "USER_EVENTS",
    "Event",
    "EventFilter",
    "EventRecord",
    "encode_event",
    "new_event_id",
]

EVENTS_VERSION = 1

USER_EVENTS: tuple[str, ...] = (
    "user.online",
    "user.offline",
    "user.status",
    "session.opened",
    "session.closed",
    "force_leave",
)
"""Ordered per user (``key = user:<id>``)."""

ROOM_EVENTS: tuple[str, ...] = (
    "member.joined",
    "member.left",
    "room.occupied",
    "room.vacated",
    "room.deleted",
    "message.created",
    "message.edited",
    "message.deleted",
    "receipt.seen",
    "typing.started",
    "typing.stopped",
)
"""Ordered per room (``key = room:<id>``)."""

CATALOGUE: tuple[str, ...] = USER_EVENTS + ROOM_EVENTS

OPT_IN: frozenset[str] = frozenset({"typing.started", "typing.stopped"})
"""Sent only to sinks that name them: typing is chatty and rarely wanted downstream."""


class EventRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An event before it is numbered: what a node hands a store's outbox (which assigns
    ``seq``), and the base of :class:`Event`."""

    v: int = EVENTS_VERSION
    id: str
    """Unique, kept on redelivery: a consumer de-duplicates on it."""
    type: str
    time: float
    """The node's wall clock, seconds since the epoch."""
    node: str
    key: str
    user: str | None = None
    room: str | None = None
    data: dict[str, Any] = {}


class Event(EventRecord, frozen=True, kw_only=True):
    """One exported event (the wire form sinks receive, as JSON)."""

    seq: int


encode_event = msgspec.json.Encoder().encode
"""An event as JSON bytes: exactly as it appears in a webhook body's ``events``, and as the
stream sinks (Redis, NATS, Kafka) carry it, one event per entry or message."""


def new_event_id(wall_ms: int) -> str:
    """A unique id that sorts by time: 12 hex digits of milliseconds, 16 random."""
    return f"{wall_ms:012x}{secrets.token_hex(8)}"


class EventFilter:
    """Which event types a sink takes: glob patterns over the type (``member.*``, ``*``).

    ``*`` (the default) means the whole catalogue except the opt-in types (typing), which a
    sink gets only by naming them (``typing.*`` or ``typing.started``)."""

    __slots__ = ("_cache", "patterns")

    def __init__(self, patterns: Iterable[str] = ("*",)) -> None:
        self.patterns = tuple(patterns)
        self._cache: dict[str, bool] = {}

    def __call__(self, event_type: str) -> bool:
        hit = self._cache.get(event_type)
        if hit is None:
            hit = self._cache[event_type] = self._matches(event_type)
        return hit

    def _matches(self, event_type: str) -> bool:
        for pattern in self.patterns:
            if not fnmatch.fnmatchcase(event_type, pattern):
                continue
            if event_type in OPT_IN and not pattern.startswith("typing"):
                continue  # a wildcard does not opt in
            return True
        return False

    @staticmethod
    def unknown(patterns: Iterable[str]) -> list[str]:
        """The patterns that match no type of the catalogue (a typo, most likely)."""
        return [p for p in patterns if not any(fnmatch.fnmatchcase(t, p) for t in CATALOGUE)]
