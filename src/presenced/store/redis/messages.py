"""MessageStore on Redis/Valkey: each room's event stream, receipts and read positions.

The semantics are HistoryBook's (presence/history.py), which the memory store uses; each
operation that changes a stream is one Lua script (lua/message_*.lua) on the room's keys
(Keys.room_message_keys: one hash tag, so one Cluster slot), trimming at the wall time the
caller passes in. Python only encodes arguments and decodes replies.

Records, written by the scripts with cjson and read here with msgspec: an event is
``{id, o: offset, t: time, u: user, k: "m"|"e"|"d", d: device, b: body, x: temp id}`` and a
message's current state the same without ``k``, plus ``gone: true`` once deleted. The body is
kept as the JSON text Python encoded (a string inside the record) and the time as the float's
``repr``, so neither passes through Lua's numbers and both come back exactly.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

import msgspec

from presenced.presence.history import (
    AppendResult,
    Body,
    EventKind,
    MessageState,
    Recovery,
    StreamEvent,
)
from presenced.store.redis.keys import Keys, _tag
from presenced.store.redis.outbox import RedisOutbox, ScriptEvent
from presenced.store.redis.scripts import Scripts
from presenced.typing import RoomId, UserId

__all__ = ["KEY_TTL_MARGIN", "RedisMessageStore"]

KEY_TTL_MARGIN = 86_400
"""Seconds a room's stream keys outlive the history ttl after the last write (a failsafe)."""

_KINDS = {"m": EventKind.MESSAGE, "e": EventKind.EDITED, "d": EventKind.DELETED}


class _Record(msgspec.Struct):
    """An event (``k`` set) or a message's current state, as the scripts store them."""

    id: str
    o: int
    t: str
    u: str
    k: str = "m"
    d: str = ""
    b: str | None = None
    x: str | None = None
    gone: bool = False


_decode_record = msgspec.json.Decoder(_Record).decode
_encode = msgspec.json.encode
_decode = msgspec.json.decode


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _body(text: str | None) -> Body | None:
    return None if text is None else _decode(text)


def _event(room: RoomId, epoch: str, raw: bytes | str) -> StreamEvent:
    rec = _decode_record(raw)
    return StreamEvent(
        _KINDS[rec.k], room, epoch, rec.o, rec.id, UserId(rec.u), float(rec.t), _body(rec.b),
        rec.d, rec.x,
    )  # fmt: skip


def _state(raw: bytes | str) -> MessageState:
    rec = _decode_record(raw)
    return MessageState(
        rec.id, rec.o, UserId(rec.u), rec.d, _body(rec.b), float(rec.t), rec.x, rec.gone
    )


def _epoch() -> str:
    """A new stream epoch, used only if the room has no stream yet (as the memory store)."""
    return secrets.token_hex(4)


class RedisMessageStore:
    """Room event streams bounded by ``history_size`` events and ``history_ttl`` seconds."""

    def __init__(
        self,
        client: Any,
        keys: Keys,
        scripts: Scripts,
        history_size: int,
        history_ttl: float,
        outbox: RedisOutbox | None = None,
    ) -> None:
        self._outbox = outbox
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self.history_size = history_size
        self.history_ttl = history_ttl
        # Every write refreshes the room's keys to this TTL (documented in keys.py).
        span = history_ttl if math.isfinite(history_ttl) else 365 * 86_400.0
        self._key_ttl = math.ceil(min(max(span, 0.0), 365 * 86_400.0)) + KEY_TTL_MARGIN

    def _cutoff(self, wall: float) -> str:
        """``wall - history_ttl`` as text Lua reads back exactly (events older are trimmed)."""
        return repr(float(wall) - self.history_ttl)

    async def _run(
        self,
        name: str,
        room: RoomId,
        args: list[Any],
        events: tuple[tuple[str, str], ...] = (),
        wall: float | None = None,
    ) -> Any:
        """Run a stream script; with an outbox, with the ``events`` (type, user) it may
        write in the same step (their data is the script's: it knows the offset)."""
        keys = self._keys.room_message_keys(room)
        outbox = self._outbox
        if outbox is None or not outbox.exporting or not events:
            return await self._scripts.run(name, keys, args)
        key = f"room:{room}"
        tail = outbox.script_args(wall, [ScriptEvent(t, key, u, room) for t, u in events])
        tag = f"r:{_tag(room)}"
        result = await self._scripts.run(name, keys + outbox.script_keys(tag), args + tail)
        await outbox.script_wrote(tag, tail)
        return result

    async def append(
        self,
        room: RoomId,
        user: UserId,
        device: str,
        temp_id: str | None,
        body: Body,
        wall: float,
        message_id: str,
    ) -> AppendResult:
        wall = float(wall)
        found = await self._run(
            "message_append",
            room,
            [
                _epoch(), user, device, "0" if temp_id is None else "1", temp_id or "",
                _encode(body), repr(wall), message_id, self.history_size, self._cutoff(wall),
                self._key_ttl,
            ],
            (("message.created", user), ("receipt.seen", user)),
            wall,
        )  # fmt: skip
        duplicate, epoch = bool(found[0]), _text(found[1])
        if duplicate:
            first = _state(found[2])
            event = StreamEvent(
                EventKind.MESSAGE, room, epoch, first.offset, first.id, user, first.time,
                first.body, first.device, temp_id,
            )  # fmt: skip
            return AppendResult(event, duplicate=True)
        event = StreamEvent(
            EventKind.MESSAGE, room, epoch, int(found[2]), message_id, user, wall, body, device,
            temp_id,
        )  # fmt: skip
        return AppendResult(event, duplicate=False, seen_before=int(found[3]))

    async def message(self, room: RoomId, message_id: str) -> MessageState | None:
        raw = await self._client.hget(self._keys.room_messages(room), message_id)
        if raw is None:
            return None
        state = _state(raw)
        return None if state.deleted else state

    async def amend(
        self, room: RoomId, message_id: str, user: UserId, body: Body | None, wall: float
    ) -> StreamEvent | None:
        wall = float(wall)
        found = await self._run(
            "message_amend",
            room,
            [
                message_id, user, "0" if body is None else "1",
                b"" if body is None else _encode(body), repr(wall), self.history_size,
                self._cutoff(wall), self._key_ttl,
            ],
            (("message.edited", user), ("message.deleted", user)),
            wall,
        )  # fmt: skip
        if found is None:
            return None
        kind = EventKind.DELETED if body is None else EventKind.EDITED
        return StreamEvent(kind, room, _text(found[0]), int(found[1]), message_id, user, wall, body)

    async def since(self, room: RoomId, epoch: str, offset: int, wall: float) -> Recovery:
        found = await self._run(
            "message_since",
            room,
            [_epoch(), epoch, offset, self.history_size, self._cutoff(wall), self._key_ttl],
        )
        current, latest = _text(found[1]), int(found[2])
        events = [_event(room, current, raw) for raw in found[3:]]
        return Recovery(bool(found[0]), current, latest, [e for e in events if e.offset > offset])

    async def position(self, room: RoomId) -> tuple[str, int]:
        epoch, offset = await self._scripts.run(
            "message_position", [self._keys.room_stream(room)], [_epoch(), self._key_ttl]
        )
        return _text(epoch), int(offset)

    async def last_messages(
        self, room: RoomId, limit: int, before: int | None, wall: float
    ) -> list[MessageState]:
        found = await self._run(
            "message_history",
            room,
            [
                max(limit, 0), "" if before is None else before, self.history_size,
                self._cutoff(wall), self._key_ttl,
            ],
        )  # fmt: skip
        states = [_state(raw) for raw in reversed(found)]
        # The script returns at most ``limit`` (all for limit <= 0); slicing as HistoryBook
        # does keeps its meaning for limit <= 0 too.
        return states[-limit:]

    async def expire(self, wall: float) -> int:
        """Nothing to do: every stream key carries the history ttl (plus KEY_TTL_MARGIN),
        refreshed on each write, so Redis drops an untouched room's stream itself."""
        return 0

    async def mark(self, room: RoomId, user: UserId, kind: str, offset: int) -> tuple[int, int]:
        events = (("receipt.seen", user),) if kind == "seen" else ()
        old, new = await self._run(
            "message_mark", room, [user, kind, offset, self._key_ttl], events
        )
        return int(old), int(new)

    async def read_state(self, room: RoomId, user: UserId) -> tuple[int, int]:
        last, unread = await self._run("message_read_state", room, [user])
        return int(last), int(unread)

    async def authors_between(self, room: RoomId, after: int, upto: int) -> set[UserId]:
        found = await self._run("message_authors", room, [after, upto])
        return {UserId(_text(u)) for u in found}

    async def drop(self, room: RoomId) -> None:
        """One DEL of every stream key of the room (one hash slot: one command on Cluster)."""
        await self._client.delete(*self._keys.room_message_keys(room))
