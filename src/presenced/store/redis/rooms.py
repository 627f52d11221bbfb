"""Room membership in Redis: the RoomStore Protocol, with presence/roster.py's semantics.

A room is two keys under its hash tag (one Cluster slot): a state hash (version and the count of
visible members, so ``count`` is one O(1) HMGET) and a members hash (user -> its session ids,
hidden flag and metadata). Every change is one Lua script (lua/room_*.lua) that applies it and
returns the transition the Roster would return; ``snapshot`` is one script too, so the version
and the members it reports belong together.

Metadata goes to Redis as canonical JSON (sorted keys), and the scripts compare those strings:
the same dict always encodes the same way, so "did the meta change" is the Roster's dict
comparison, except that JSON tells 1 from 1.0 and True from 1 where Python's ``==`` does not.
"""

from __future__ import annotations

from typing import Any

import msgspec

from presenced.presence.roster import (
    ChangeKind,
    MemberEntry,
    RoomChange,
    RoomDeletion,
    RoomSnapshot,
)
from presenced.store.redis.keys import Keys
from presenced.store.redis.scripts import Scripts
from presenced.typing import RoomId, SessionId, UserId

__all__ = ["ROOM_TTL", "RedisRoomStore"]

ROOM_TTL = 86400.0
"""Seconds a room's keys live after its last change: a failsafe, not an expiry of members."""

_meta_encoder = msgspec.json.Encoder(order="deterministic")
_meta_decoder = msgspec.json.Decoder(dict[str, Any])


class _Member(msgspec.Struct):
    """A member record as room_*.lua writes it (cjson)."""

    s: list[str]  # session ids
    h: bool = False  # hidden
    m: str | None = None  # metadata, canonical JSON


_member_decoder = msgspec.json.Decoder(_Member)


class RedisRoomStore:
    """RoomStore on Redis or Redis Cluster: each call is one script returning its change."""

    def __init__(self, client: Any, keys: Keys, scripts: Scripts, ttl: float = ROOM_TTL) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._ttl_ms = max(1, round(ttl * 1000))

    async def add(
        self,
        room: RoomId,
        user: UserId,
        session: SessionId,
        meta: dict[str, Any] | None,
        hidden: bool,
    ) -> RoomChange:
        """Put ``session`` in ``room``; ``meta`` (when not None) replaces the user's metadata."""
        raw_meta = b"" if meta is None else _meta_encoder.encode(meta)
        result = await self._run(
            "room_add", room, [user, session, raw_meta, "1" if hidden else "0", self._ttl_ms]
        )
        return _change(room, user, result)

    async def remove(self, room: RoomId, user: UserId, session: SessionId) -> RoomChange:
        """Take ``session`` out of ``room``; LEFT when it was the user's last session there."""
        return _change(
            room, user, await self._run("room_remove", room, [user, session, self._ttl_ms])
        )

    async def set_meta(self, room: RoomId, user: UserId, meta: dict[str, Any]) -> RoomChange:
        """Replace a member's metadata: UPDATED if it differs (NONE if hidden or no member)."""
        raw_meta = _meta_encoder.encode(meta)
        result = await self._run("room_set_meta", room, [user, raw_meta, self._ttl_ms])
        return _change(room, user, result)

    async def touch(self, room: RoomId, user: UserId) -> RoomChange:
        """The member's status changed: UPDATED with a new room version (NONE if hidden)."""
        return _change(room, user, await self._run("room_touch", room, [user, self._ttl_ms]))

    async def set_hidden(self, room: RoomId, user: UserId, hidden: bool) -> RoomChange:
        """Hide (LEFT for others) or reveal (JOINED for others) a member."""
        result = await self._run(
            "room_set_hidden", room, [user, "1" if hidden else "0", self._ttl_ms]
        )
        return _change(room, user, result)

    async def snapshot(self, room: RoomId) -> RoomSnapshot:
        """The visible members and the version they are current at, read in one script."""
        result = await self._run("room_snapshot", room, [])
        members: list[MemberEntry] = []
        for i in range(1, len(result), 2):
            record = _member_decoder.decode(result[i + 1])
            if not record.h:
                members.append(
                    MemberEntry(UserId(result[i].decode()), len(record.s), _meta(record.m))
                )
        return RoomSnapshot(room, int(result[0]), members)

    async def count(self, room: RoomId) -> tuple[int, int]:
        """Visible members and the room version: one HMGET."""
        version, visible = await self._client.hmget(self._keys.room_state(room), "v", "n")
        return int(visible or 0), int(version or 0)

    async def delete(self, room: RoomId) -> RoomDeletion:
        """The room and its members go in one script; the version moves on and is kept."""
        result = await self._run("room_delete", room, [self._ttl_ms])
        members = {
            UserId(result[i].decode()): [
                SessionId(s) for s in _member_decoder.decode(result[i + 1]).s
            ]
            for i in range(1, len(result), 2)
        }
        return RoomDeletion(room, int(result[0]), members)

    async def _run(self, script: str, room: RoomId, args: list[Any]) -> Any:
        keys = [self._keys.room_state(room), self._keys.room_members(room)]
        return await self._scripts.run(script, keys, args)


def _meta(raw: bytes | str | None) -> dict[str, Any] | None:
    """Metadata from its JSON; a script's "" (and a record's absent field) mean none."""
    return _meta_decoder.decode(raw) if raw else None


def _change(room: RoomId, user: UserId, result: list[Any]) -> RoomChange:
    """A room_*.lua reply ``{kind, version, devices, meta JSON or ""}`` as a RoomChange."""
    kind, version, devices, meta = result
    return RoomChange(
        room, user, ChangeKind(kind.decode()), int(version), int(devices), _meta(meta)
    )
