"""The event outbox on Valkey/Redis: events numbered and kept in the store until every sink
confirmed them.

Writing. A node's events go, in the order it made them, to the outbox stream of their key's
slot (``outbox_append.lua`` numbers each along its key and appends it in one step): on a
single server one stream holds everything; on Cluster each slot has its own stream (its
hash tag is a short string that hashes to that slot, :func:`slot_tag`), so a key's stream
lives where the key's room or user lives. The slot's number for each key is kept next to
its stream, so a room's ``seq`` is one sequence for the whole cluster.

Dispatching. One node at a time leads (``outbox_lead.lua``, a lease renewed with the node's
own): it reads the streams through one consumer group per sink, delivers, and acks after the
sink confirmed; entries every group acked are trimmed (``outbox_trim.lua``). A new leader
first reads what the old one had read and not acked (the group's pending entries, with
their ids): a redelivery, never a loss. On Cluster the writers (and the stores, after a
transition script wrote to a stream) add each stream they wrote to a set of streams to look
at; the leader also scans for streams every few seconds, so an
entry whose hint was lost (its writer died in between) is still found.

Dead letters and replays are lists in the store: any node's API lists and replays them.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
from redis.crc import key_slot
from redis.exceptions import ResponseError

from presenced.events.export import DeadLetter
from presenced.events.model import Event, EventRecord, new_event_id
from presenced.store.redis.keys import Keys, _tag
from presenced.store.redis.scan import scan_keys
from presenced.store.redis.scripts import Scripts

__all__ = [
    "STORE_WRITTEN", "Entry", "RedisOutbox", "ScriptEvent", "StoreExport", "slot_tag",
]  # fmt: skip

STORE_WRITTEN: frozenset[str] = frozenset(
    {
        "member.joined", "member.left", "room.occupied", "room.vacated", "room.deleted",
        "user.online", "user.offline", "user.status",
        "session.opened", "session.closed", "force_leave",
        "message.created", "message.edited", "message.deleted", "receipt.seen",
        "typing.started", "typing.stopped",
    }
)  # fmt: skip
"""The event types the transition scripts write themselves, in the step that makes the
change (the others are appended by the node right after it: see docs/events.md)."""

SEQ_TTL_MS = 7 * 24 * 3600 * 1000
"""How long a slot remembers its keys' last numbers without a new event (then the wall
clock floor of ``seq`` takes over)."""

SLOTS = 16384

HINT_EVERY = 1.0
"""Seconds within which a node hints a stream its scripts wrote once (the leader keeps
reading a stream it found for far longer: events/outbox_feed.py FORGET_AFTER)."""


@functools.cache
def _slot_tags() -> tuple[str, ...]:
    """For each Cluster slot, a short hash tag in it (about 0.2 s, once per process)."""
    tags: list[str | None] = [None] * SLOTS
    left, i = SLOTS, 0
    while left:
        tag = f"{i:x}"
        slot = key_slot(tag.encode())
        if tags[slot] is None:
            tags[slot] = tag
            left -= 1
        i += 1
    return tuple(t for t in tags if t is not None)


def slot_tag(tag: str) -> str:
    """A hash tag in the same Cluster slot as the keys tagged ``{tag}``."""
    return _slot_tags()[key_slot(tag.encode())]


_encode = msgspec.json.Encoder().encode
_decode_unnumbered = msgspec.json.Decoder(EventRecord).decode
_decode_letter = msgspec.json.Decoder(DeadLetter).decode
_decode_events = msgspec.json.Decoder(list[Event]).decode


@dataclass(frozen=True, slots=True)
class Entry:
    """One event read from a stream, with what acking it needs."""

    stream: str
    entry_id: str
    event: Event


def _flat(items: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Stream entries as (id, fields) from either RESP2 or RESP3 replies (RESP3 may nest the
    entries one list deeper)."""
    if items and isinstance(items[0], list) and items[0] and isinstance(items[0][0], list):
        items = items[0]
    return [(entry_id, fields or {}) for entry_id, fields in items]


_json = msgspec.json.Encoder().encode


class ScriptEvent(NamedTuple):
    """An event a transition script may write (it decides whether the change happened)."""

    type: str
    key: str  # room:ID or user:ID
    user: str | None
    room: str | None
    data: Mapping[str, Any] | None = None
    """Known before the step (the script then writes it as is), or None: the script's."""


@dataclass(frozen=True, slots=True)
class StoreExport:
    """What a transition script needs to write its events: the node, the types some sink
    takes, the node's wall clock (set by the node when it starts: :meth:`RedisOutbox.bind`)."""

    node: str
    wanted: Callable[[str], bool]
    wall: Callable[[], float]


class RedisOutbox:
    """The outbox streams of one deployment (prefix), their groups, leader, dead letters."""

    store_written = STORE_WRITTEN

    def __init__(self, client: Any, keys: Keys, scripts: Scripts, *, cluster: bool) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._cluster = cluster
        self._groups: set[tuple[str, str]] = set()  # (stream, group) known to exist
        self._hinted: dict[str, float] = {}  # Cluster: stream -> when this node last hinted it
        self.binding: StoreExport | None = None
        self._wrote: Callable[[], None] | None = None

    def bind(
        self,
        node: str,
        wanted: Callable[[str], bool],
        wall: Callable[[], float],
        wrote: Callable[[], None] | None = None,
    ) -> None:
        """Let the transition scripts write this node's events (until then they write
        none); ``wrote()`` is called after a script that may have written one (the feed's
        readers then read at once)."""
        self.binding = StoreExport(node, wanted, wall)
        self._wrote = wrote

    @property
    def exporting(self) -> bool:
        """Whether the scripts write events (a node with sinks bound them): else they run
        without the outbox's keys and arguments."""
        return self.binding is not None

    def script_keys(self, tag: str) -> list[str]:
        """The outbox stream and seq hash a script on the keys tagged ``{tag}`` writes to."""
        stream = self._stream_of_tag(tag)
        return [stream, stream + ":seq"]

    async def script_wrote(self, tag: str, args: Sequence[Any]) -> None:
        """After a transition script that may have written events (``args``: its
        :meth:`script_args`): wake this node's readers (if it leads, the events go out now),
        and on Cluster hint its stream to the leader, at most once a second per stream (a
        stream read is looked at for FORGET_AFTER seconds after; the sweep finds one whose
        hint was lost)."""
        if not any(args[2::2]):
            return
        if self._cluster:  # hint first: the woken reader must find the stream
            stream = self._stream_of_tag(tag)
            now = time.monotonic()
            if now - self._hinted.get(stream, -HINT_EVERY) >= HINT_EVERY:
                self._hinted[stream] = now
                await self._client.sadd(self._dirty, stream)
        if self._wrote is not None:
            self._wrote()

    def script_args(self, wall: float | None, events: Sequence[ScriptEvent]) -> list[Any]:
        """The ARGV tail of a transition script (_export.lua): wall ms, then a (key, head)
        per event it may write; heads empty where no sink wants it. A head is the event's
        JSON up to its data, or with it when the caller knows it (the script adds none)."""
        binding = self.binding
        if binding is None:
            return [0] + ["", ""] * len(events)
        now = binding.wall() if wall is None else wall
        wall_ms = int(now * 1000)
        args: list[Any] = [wall_ms]
        for event_type, key, user, room, data in events:
            if not binding.wanted(event_type):
                args += [key, ""]
                continue
            head = (
                b'{"v":1,"id":"' + new_event_id(wall_ms).encode() + b'","type":"'
                + event_type.encode() + b'","time":' + repr(float(now)).encode()
                + b',"node":' + _json(binding.node) + b',"key":' + _json(key)
                + b',"user":' + _json(user) + b',"room":' + _json(room) + b',"data":'
            )  # fmt: skip
            if data is not None:
                head += _json(data)
            args += [key, head]
        return args

    # --- writing -------------------------------------------------------------------------

    def record(self, **fields: Any) -> EventRecord:
        """An event as the outbox keeps it (its fields, without ``seq``)."""
        return EventRecord(**fields)

    def stream_of(self, event_key: str) -> str:
        """The outbox stream an event of ``event_key`` (``room:ID`` / ``user:ID``) goes to:
        the stream of the slot of that room's (user's) keys."""
        kind, _, ident = event_key.partition(":")
        return self._stream_of_tag(f"{kind[0]}:{_tag(ident)}")

    def _stream_of_tag(self, tag: str) -> str:
        if not self._cluster:
            return f"{self._keys.prefix}:out:{{0}}"
        return f"{self._keys.prefix}:out:{{{slot_tag(tag)}}}"

    async def append(self, events: Sequence[EventRecord]) -> list[int]:
        """Number and append ``events`` (in order along each key); their seqs, in order."""
        by_stream: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            by_stream.setdefault(self.stream_of(event.key), []).append(index)
        seqs = [0] * len(events)
        for stream, indexes in by_stream.items():
            args: list[Any] = [SEQ_TTL_MS]
            for i in indexes:
                e = events[i]
                args += [e.key, int(e.time * 1000), _encode(e)]
            got = await self._scripts.run("outbox_append", [stream, stream + ":seq"], args)
            for i, seq in zip(indexes, got, strict=True):
                seqs[i] = int(seq)
        if self._cluster:
            await self._client.sadd(self._dirty, *by_stream)
        return seqs

    @property
    def _dirty(self) -> str:
        return f"{self._keys.prefix}:out:dirty"

    # --- the lead ------------------------------------------------------------------------

    async def lead(self, node: str, lease_ms: int, *, give_up: bool = False) -> bool:
        """Take or keep the dispatcher's lead for ``lease_ms``; False if another node has it."""
        key = f"{self._keys.prefix}:out:leader"
        args = [node, lease_ms, "1" if give_up else "0"]
        return bool(await self._scripts.run("outbox_lead", [key], args))

    # --- reading -------------------------------------------------------------------------

    async def streams(self, *, sweep: bool) -> list[str]:
        """The streams to read: the one stream of a single server; on Cluster, those written
        since the last call (and, with ``sweep``, every outbox stream there is)."""
        if not self._cluster:
            return [self._stream_of_tag("")]  # the one stream of a single server
        found = {s.decode() for s in await self._client.spop(self._dirty, 10_000) or ()}
        if sweep:
            pattern = f"{self._keys.prefix}:out:{{*}}"
            found |= {k.decode() for k in await scan_keys(self._client, pattern)}
        return sorted(found)

    async def read(self, group: str, stream: str, count: int, *, pending: bool) -> list[Entry]:
        """Up to ``count`` entries of ``stream`` for ``group``: with ``pending``, those read
        before and not acked (a previous leader's, or ours before a failure); else new ones."""
        await self._ensure_group(stream, group)
        reply = await self._client.xreadgroup(
            group, "dispatcher", {stream: "0" if pending else ">"}, count=count
        )
        entries: list[Entry] = []
        streams = reply.values() if isinstance(reply, dict) else (r[1] for r in reply or ())
        for items in streams:
            for entry_id, fields in _flat(items):
                if not fields:  # pending, but trimmed meanwhile: nothing left to deliver
                    await self._client.xack(stream, group, entry_id)
                    continue
                base = _decode_unnumbered(fields[b"ev"])
                event = Event(**msgspec.structs.asdict(base), seq=int(fields[b"sq"]))
                entries.append(Entry(stream, entry_id.decode(), event))
        return entries

    async def ack(self, group: str, entries: Iterable[Entry], trim: Sequence[str]) -> None:
        """Ack ``entries`` for ``group``; with ``trim`` (every sink's group), also drop what
        all of them have acked, in the same call (the trim reads every group's state, so
        the feed asks for it about once a second, not with every batch)."""
        by_stream: dict[str, list[str]] = {}
        for e in entries:
            by_stream.setdefault(e.stream, []).append(e.entry_id)
        for stream, ids in by_stream.items():
            if trim:
                await self._scripts.run("outbox_trim", [stream], [group, len(ids), *ids, *trim])
            else:
                await self._client.xack(stream, group, *ids)

    async def trim(self, stream: str, groups: Sequence[str]) -> None:
        """Drop the entries of ``stream`` that every one of ``groups`` has acked."""
        await self._scripts.run("outbox_trim", [stream], ["", 0, *groups])

    async def _ensure_group(self, stream: str, group: str) -> None:
        if (stream, group) in self._groups:
            return
        try:
            await self._client.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add((stream, group))

    # --- dead letters and replays ---------------------------------------------------------

    async def dead_letter(self, letter: DeadLetter, limit: int) -> None:
        key = f"{self._keys.prefix}:out:dead"
        await self._client.rpush(key, _encode(letter))
        await self._client.ltrim(key, -limit, -1)

    async def dead_letters(self) -> list[DeadLetter]:
        raw = await self._client.lrange(f"{self._keys.prefix}:out:dead", 0, -1)
        return [_decode_letter(r) for r in raw]

    async def take_dead_letter(self, letter_id: str) -> DeadLetter | None:
        """Remove a dead letter from the store and return it (None if there is none)."""
        key = f"{self._keys.prefix}:out:dead"
        for raw in await self._client.lrange(key, 0, -1):
            letter = _decode_letter(raw)
            if letter.id == letter_id:
                removed = await self._client.lrem(key, 1, raw)
                return letter if removed else None
        return None

    async def push_replay(self, sink: str, events: list[Event]) -> None:
        await self._client.rpush(f"{self._keys.prefix}:out:replay:{_tag(sink)}", _encode(events))

    async def pop_replay(self, sink: str) -> list[Event] | None:
        raw = await self._client.lpop(f"{self._keys.prefix}:out:replay:{_tag(sink)}")
        return _decode_events(raw) if raw else None
