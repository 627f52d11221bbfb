"""Room membership derived from sessions, returning the transition each change causes.

A user is a member of a room while at least one of its sessions is in it. Adding the user's
first session is JOINED, removing its last is LEFT, a device count or metadata change is
UPDATED; each of those bumps the room's version. A hidden entry (the user is invisible) is a
member nobody else sees: its changes are NONE and it is left out of snapshots and counts.
Each member keeps the wall-clock time its first session joined (``joined_at``, the caller's
time): kept while the user stays a member (hidden or not), new after it left and came back.
This is the memory store's room state and the reference the Redis scripts follow.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import msgspec

from presenced.typing import RoomId, SessionId, UserId

__all__ = [
    "ChangeKind",
    "MemberEntry",
    "MemberRecord",
    "RoomChange",
    "RoomDeletion",
    "RoomInfo",
    "RoomSnapshot",
    "Roster",
    "RosterEntry",
]


class ChangeKind(Enum):
    JOINED = "joined"
    LEFT = "left"
    UPDATED = "updated"
    NONE = "none"  # nothing others can see changed


@dataclass(frozen=True, slots=True)
class RoomChange:
    """What a membership operation did, as the room's other members should learn it."""

    room: RoomId
    user: UserId
    kind: ChangeKind
    version: int
    devices: int = 0
    meta: dict[str, Any] | None = None
    # When the member's first session joined (wall clock), wherever the member is there after
    # the change (JOINED, UPDATED, and NONE for a member that stays); None otherwise.
    joined_at: float | None = None
    # "occupied": this add created the room (its first member, hidden or not); "vacated":
    # this remove took its last one; None otherwise. The event export's room.* events.
    occupancy: str | None = None


class MemberEntry(msgspec.Struct, frozen=True):
    """One visible member in a snapshot; ``joined_at`` is the wall-clock time its first
    session joined (0.0: unknown, a record written before the time was kept).

    A Struct rather than a frozen dataclass: a join reply builds one per member, and a
    Struct is built about 4x faster (a frozen dataclass sets each field through
    ``object.__setattr__``)."""

    user: UserId
    devices: int
    meta: dict[str, Any] | None
    joined_at: float


@dataclass(frozen=True, slots=True)
class RoomSnapshot:
    room: RoomId
    version: int
    members: list[MemberEntry]


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """One room in a listing: its visible members (hidden ones are not counted, though a room
    of hidden members only is listed) and its version."""

    room: RoomId
    members: int
    version: int


class MemberRecord(msgspec.Struct, frozen=True):
    """One member as the store holds it, for an admin's view: hidden members included (with
    ``hidden`` set), its session ids in the order they joined, and ``joined_at`` (the wall
    time its first session joined; 0.0 when unknown). A Struct, as MemberEntry: a members
    page builds one per member."""

    user: UserId
    sessions: tuple[SessionId, ...]
    hidden: bool
    meta: dict[str, Any] | None
    joined_at: float


@dataclass(frozen=True, slots=True)
class RoomDeletion:
    """A room deleted whole: its version after the deletion (0: there was no such room) and
    the members it had, with their sessions (hidden ones included)."""

    room: RoomId
    version: int
    members: dict[UserId, list[SessionId]]


@dataclass(slots=True)
class RosterEntry:
    sessions: dict[SessionId, None] = field(default_factory=dict)  # ordered set
    meta: dict[str, Any] | None = None
    hidden: bool = False
    joined_at: float = 0.0  # wall clock of the member's first session joining


@dataclass(slots=True)
class _Room:
    version: int = 0
    visible: int = 0  # members not hidden, kept so count() is O(1)
    members: dict[UserId, RosterEntry] = field(default_factory=dict)


class Roster:
    """Every room's members and version."""

    __slots__ = ("_rooms",)

    def __init__(self) -> None:
        self._rooms: dict[RoomId, _Room] = {}

    def add(
        self,
        room: RoomId,
        user: UserId,
        session: SessionId,
        meta: dict[str, Any] | None,
        hidden: bool,
        wall: float,
    ) -> RoomChange:
        """Put ``session`` in ``room``; ``meta`` (when not None) replaces the user's metadata.
        ``wall`` (the caller's wall clock) becomes ``joined_at`` when the user was no member."""
        r = self._rooms.get(room)
        occupancy = None
        if r is None:
            r = self._rooms[room] = _Room()
            occupancy = "occupied"
        entry = r.members.get(user)
        if entry is None:
            entry = r.members[user] = RosterEntry(hidden=hidden, joined_at=wall)
            entry.sessions[session] = None
            entry.meta = meta
            if hidden:
                return RoomChange(room, user, ChangeKind.NONE, r.version, 1, meta, wall, occupancy)
            r.visible += 1
            r.version += 1
            return RoomChange(room, user, ChangeKind.JOINED, r.version, 1, meta, wall, occupancy)
        changed = session not in entry.sessions or (meta is not None and meta != entry.meta)
        entry.sessions[session] = None
        if meta is not None:
            entry.meta = meta
        return self._updated(room, r, user, entry, changed)

    def remove(self, room: RoomId, user: UserId, session: SessionId) -> RoomChange:
        """Take ``session`` out of ``room``; LEFT when it was the user's last session there."""
        r = self._rooms.get(room)
        entry = r.members.get(user) if r else None
        if r is None or entry is None or session not in entry.sessions:
            return RoomChange(room, user, ChangeKind.NONE, r.version if r else 0)
        del entry.sessions[session]
        if entry.sessions:
            return self._updated(room, r, user, entry, True)
        del r.members[user]
        kind = ChangeKind.NONE
        if not entry.hidden:
            r.visible -= 1
            r.version += 1
            kind = ChangeKind.LEFT
        occupancy = None
        if not r.members:
            del self._rooms[room]
            occupancy = "vacated"
        return RoomChange(room, user, kind, r.version, occupancy=occupancy)

    def set_meta(self, room: RoomId, user: UserId, meta: dict[str, Any]) -> RoomChange:
        r = self._rooms.get(room)
        entry = r.members.get(user) if r else None
        if r is None or entry is None:
            return RoomChange(room, user, ChangeKind.NONE, r.version if r else 0)
        changed = entry.meta != meta
        entry.meta = meta
        return self._updated(room, r, user, entry, changed)

    def touch(self, room: RoomId, user: UserId) -> RoomChange:
        """Something about the user others see (status) changed: UPDATED with a new version."""
        r = self._rooms.get(room)
        entry = r.members.get(user) if r else None
        if r is None or entry is None:
            return RoomChange(room, user, ChangeKind.NONE, r.version if r else 0)
        return self._updated(room, r, user, entry, True)

    def set_hidden(self, room: RoomId, user: UserId, hidden: bool) -> RoomChange:
        """Hide (LEFT for others) or reveal (JOINED for others) a member."""
        r = self._rooms.get(room)
        entry = r.members.get(user) if r else None
        if r is None or entry is None or entry.hidden == hidden:
            return RoomChange(room, user, ChangeKind.NONE, r.version if r else 0)
        entry.hidden = hidden
        r.version += 1
        if hidden:
            r.visible -= 1
            return RoomChange(room, user, ChangeKind.LEFT, r.version)
        r.visible += 1
        return RoomChange(
            room,
            user,
            ChangeKind.JOINED,
            r.version,
            len(entry.sessions),
            entry.meta,
            entry.joined_at,
        )

    def delete(self, room: RoomId) -> RoomDeletion:
        """Remove the room and every member at once; the deletion takes the next version."""
        r = self._rooms.pop(room, None)
        if r is None:
            return RoomDeletion(room, 0, {})
        members = {user: list(e.sessions) for user, e in r.members.items()}
        return RoomDeletion(room, r.version + 1, members)

    def snapshot(self, room: RoomId) -> RoomSnapshot:
        """The visible members and the version they are current at."""
        r = self._rooms.get(room)
        if r is None:
            return RoomSnapshot(room, 0, [])
        members = [
            MemberEntry(user, len(e.sessions), e.meta, e.joined_at)
            for user, e in r.members.items()
            if not e.hidden
        ]
        return RoomSnapshot(room, r.version, members)

    def count(self, room: RoomId) -> int:
        r = self._rooms.get(room)
        return r.visible if r else 0

    def room_page(self, prefix: str, after: RoomId | None, limit: int) -> list[RoomInfo]:
        """Rooms with members whose id starts with ``prefix`` and sorts after ``after``, in
        id order (code points), at most ``limit``: O(rooms) per page, no index is kept."""
        ids = heapq.nsmallest(
            max(0, limit),
            (r for r in self._rooms if r.startswith(prefix) and (after is None or r > after)),
        )
        return [RoomInfo(r, self._rooms[r].visible, self._rooms[r].version) for r in ids]

    def room_count(self) -> int:
        """How many rooms have members (hidden ones count)."""
        return len(self._rooms)

    def member_page(
        self, room: RoomId, after: UserId | None, limit: int
    ) -> tuple[int, list[MemberRecord]]:
        """The room's version and its members (hidden too) sorted by user id after
        ``after``, at most ``limit``. The meta dicts are the roster's own: copy to hand out."""
        r = self._rooms.get(room)
        if r is None:
            return 0, []
        users = heapq.nsmallest(max(0, limit), (u for u in r.members if after is None or u > after))
        return r.version, [
            MemberRecord(u, tuple(e.sessions), e.hidden, e.meta, e.joined_at)
            for u in users
            for e in (r.members[u],)
        ]

    def version(self, room: RoomId) -> int:
        r = self._rooms.get(room)
        return r.version if r else 0

    def is_member(self, room: RoomId, user: UserId) -> bool:
        r = self._rooms.get(room)
        return r is not None and user in r.members

    def sessions_in(self, room: RoomId, user: UserId) -> list[SessionId]:
        r = self._rooms.get(room)
        entry = r.members.get(user) if r else None
        return list(entry.sessions) if entry else []

    def rooms(self) -> list[RoomId]:
        return list(self._rooms)

    def members_of(self, room: RoomId, *, include_hidden: bool = False) -> set[UserId]:
        r = self._rooms.get(room)
        if r is None:
            return set()
        return {u for u, e in r.members.items() if include_hidden or not e.hidden}

    def _updated(
        self, room: RoomId, r: _Room, user: UserId, entry: RosterEntry, changed: bool
    ) -> RoomChange:
        devices, meta, joined = len(entry.sessions), entry.meta, entry.joined_at
        if not changed or entry.hidden:
            return RoomChange(room, user, ChangeKind.NONE, r.version, devices, meta, joined)
        r.version += 1
        return RoomChange(room, user, ChangeKind.UPDATED, r.version, devices, meta, joined)
