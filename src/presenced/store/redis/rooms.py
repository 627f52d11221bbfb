"""Room membership in Redis: the RoomStore Protocol, with presence/roster.py's semantics.

A room is two keys under its hash tag (one Cluster slot): a state hash (version and the count of
visible members, so ``count`` is one O(1) HMGET) and a members hash (user -> its session ids,
hidden flag, metadata and joined-at time). Every change is one Lua script (lua/room_*.lua)
that applies it and returns the transition the Roster would return; ``snapshot`` is one
script too, so the version and the members it reports belong together.

The admin reads are plain reads: ``rooms`` and ``room_count`` SCAN the members hashes (there
is no index of rooms, see store/base.py), ``members`` reads the whole room in the snapshot
script and sorts and slices it here (Lua's string order follows the server's locale; Python's
is code points).

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
    MemberRecord,
    RoomChange,
    RoomDeletion,
    RoomInfo,
    RoomSnapshot,
)
from presenced.store.redis.keys import Keys, _tag
from presenced.store.redis.outbox import RedisOutbox, ScriptEvent
from presenced.store.redis.scan import scan_keys
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
    j: str | None = None  # joined at: the caller's wall time as text (absent: written earlier)

    @property
    def joined_at(self) -> float:
        return _joined_at(self.j)


_member_decoder = msgspec.json.Decoder(_Member)


class RedisRoomStore:
    """RoomStore on Redis or Redis Cluster: each call is one script returning its change."""

    def __init__(
        self,
        client: Any,
        keys: Keys,
        scripts: Scripts,
        ttl: float = ROOM_TTL,
        outbox: RedisOutbox | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._ttl_ms = max(1, round(ttl * 1000))
        self._outbox = outbox

    async def add(
        self,
        room: RoomId,
        user: UserId,
        session: SessionId,
        meta: dict[str, Any] | None,
        hidden: bool,
        wall: float,
        *,
        quiet: bool = False,
    ) -> RoomChange:
        """Put ``session`` in ``room``; ``meta`` (when not None) replaces the user's metadata.
        ``wall`` is kept as the member's joined-at, as text (exact: cjson would round a
        number to 14 digits). ``quiet``: the outbox gets no event of it."""
        raw_meta = b"" if meta is None else _meta_encoder.encode(meta)
        hide = "1" if hidden else "0"
        args = [user, session, raw_meta, hide, self._ttl_ms, repr(float(wall))]
        exported = None
        if not quiet:
            exported = self._events(wall, room, ("member.joined", user), ("room.occupied", None))
        result = await self._run("room_add", room, args, exported)
        return _change(room, user, result)

    async def remove(
        self, room: RoomId, user: UserId, session: SessionId, reason: str = "left"
    ) -> RoomChange:
        """Take ``session`` out of ``room``; LEFT when it was the user's last session there
        (exported as member.left with ``reason``)."""
        exported = self._events(None, room, ("member.left", user), ("room.vacated", user))
        args = [user, session, self._ttl_ms, reason]
        return _change(room, user, await self._run("room_remove", room, args, exported))

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
        exported = self._events(None, room, ("member.left", user), ("member.joined", user))
        args = [user, "1" if hidden else "0", self._ttl_ms]
        return _change(room, user, await self._run("room_set_hidden", room, args, exported))

    async def snapshot(self, room: RoomId) -> RoomSnapshot:
        """The visible members and the version they are current at, read in one script."""
        result = await self._run("room_snapshot", room, [])
        members: list[MemberEntry] = []
        for i in range(1, len(result), 2):
            record = _member_decoder.decode(result[i + 1])
            if not record.h:
                user = UserId(result[i].decode())
                members.append(MemberEntry(user, len(record.s), _meta(record.m), record.joined_at))
        return RoomSnapshot(room, int(result[0]), members)

    async def count(self, room: RoomId) -> tuple[int, int]:
        """Visible members and the room version: one HMGET."""
        version, visible = await self._client.hmget(self._keys.room_state(room), "v", "n")
        return int(visible or 0), int(version or 0)

    async def delete(self, room: RoomId, reason: str = "deleted") -> RoomDeletion:
        """The room and its members go in one script; the version moves on and is kept."""
        exported = self._events(None, room, ("room.deleted", None))
        result = await self._run("room_delete", room, [self._ttl_ms, reason], exported)
        members = {
            UserId(result[i].decode()): [
                SessionId(s) for s in _member_decoder.decode(result[i + 1]).s
            ]
            for i in range(1, len(result), 2)
        }
        return RoomDeletion(room, int(result[0]), members)

    async def rooms(self, prefix: str, after: RoomId | None, limit: int) -> list[RoomInfo]:
        """A page of the rooms with members: a SCAN of every room's members hash (all of
        them, on every Cluster primary, whatever the page), sorted here; then the counts and
        versions of the page in a pipeline. A room emptied between the scan and the read is
        left out and the next one taken, so only the last page is short."""
        if limit <= 0:
            return []
        keys = self._keys
        found = await scan_keys(self._client, keys.match_room_members(prefix))
        ids = sorted(
            room
            for room in map(RoomId, (keys.parse_room_members(k.decode()) for k in found))
            if room.startswith(prefix) and (after is None or room > after)
        )
        page: list[RoomInfo] = []
        start = 0
        while start < len(ids) and len(page) < limit:
            chunk = ids[start : start + limit - len(page)]
            start += len(chunk)
            pipe = self._client.pipeline(transaction=False)
            for room in chunk:
                pipe.hmget(keys.room_state(room), "v", "n")
                pipe.exists(keys.room_members(room))
            rows = await pipe.execute()
            for i, room in enumerate(chunk):
                (version, visible), exists = rows[2 * i], rows[2 * i + 1]
                if exists:
                    page.append(RoomInfo(room, int(visible or 0), int(version or 0)))
        return page

    async def room_count(self) -> int:
        """Rooms with members: the size of the same SCAN (counted as it goes)."""
        return len(await scan_keys(self._client, self._keys.match_room_members()))

    async def members(
        self, room: RoomId, after: UserId | None, limit: int
    ) -> tuple[int, list[MemberRecord]]:
        """The version and a page of the members (hidden ones too), from one read of the
        whole room (the snapshot script: both at one instant), sorted and cut here."""
        result = await self._run("room_snapshot", room, [])
        records = {UserId(result[i].decode()): result[i + 1] for i in range(1, len(result), 2)}
        users = sorted(u for u in records if after is None or u > after)[: max(0, limit)]
        page = []
        for user in users:
            record = _member_decoder.decode(records[user])
            sessions = tuple(SessionId(s) for s in record.s)
            page.append(MemberRecord(user, sessions, record.h, _meta(record.m), record.joined_at))
        return int(result[0]), page

    def _events(
        self, wall: float | None, room: RoomId, *events: tuple[str, str | None]
    ) -> list[Any] | None:
        """The outbox ARGV of a script that may write ``events`` (type, user) of ``room``."""
        if self._outbox is None or not self._outbox.exporting:
            return None
        key = f"room:{room}"
        return self._outbox.script_args(wall, [ScriptEvent(t, key, u, room) for t, u in events])

    async def _run(
        self, script: str, room: RoomId, args: list[Any], exported: list[Any] | None = None
    ) -> Any:
        keys = [self._keys.room_state(room), self._keys.room_members(room)]
        if exported is None:
            return await self._scripts.run(script, keys, args)
        assert self._outbox is not None
        tag = f"r:{_tag(room)}"
        keys += self._outbox.script_keys(tag)
        # (without the tail the scripts' export() finds no heads)
        result = await self._scripts.run(script, keys, args + exported)
        await self._outbox.script_wrote(tag, exported)
        return result


def _meta(raw: bytes | str | None) -> dict[str, Any] | None:
    """Metadata from its JSON; a script's "" (and a record's absent field) mean none."""
    return _meta_decoder.decode(raw) if raw else None


def _joined_at(raw: bytes | str | None) -> float:
    """A member's joined-at from its text; 0.0 (unknown) for a record written without one."""
    return float(raw) if raw else 0.0


def _change(room: RoomId, user: UserId, result: list[Any]) -> RoomChange:
    """A room_*.lua reply ``{kind, version, devices, meta JSON or "" [, joined at or ""
    [, occupancy]]}`` as a RoomChange (joined-at only where the member is there after the
    change; occupancy only where the room was created or emptied)."""
    kind, version, devices, meta = result[:4]
    joined = result[4] if len(result) > 4 else None
    occupancy = result[5].decode() if len(result) > 5 and result[5] else None
    return RoomChange(
        room,
        user,
        ChangeKind(kind.decode()),
        int(version),
        int(devices),
        _meta(meta),
        _joined_at(joined) if joined else None,
        occupancy,
    )
