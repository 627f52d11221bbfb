"""In-memory implementations of the store Protocols, over the core's pure structures.

Each method completes without suspending, so every transition is atomic with respect to the
event loop. Session records are stored as copies, with the same value semantics a networked
store has (memory/sessions.py); node leases are in memory/nodes.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, overload

import msgspec

from presenced.errors import SessionLimitReached
from presenced.presence.history import (
    AppendResult,
    Body,
    HistoryBook,
    MessageState,
    Recovery,
    StreamEvent,
)
from presenced.presence.roster import (
    MemberRecord,
    RoomChange,
    RoomDeletion,
    RoomInfo,
    RoomSnapshot,
    Roster,
)
from presenced.presence.status import PresenceBook, PresenceChange, UserPresence
from presenced.store.base import (
    Backplane,
    Exported,
    MessageHandler,
    TypingChange,
    next_typing_seq,
)
from presenced.store.memory.nodes import MemoryNodeStore
from presenced.store.memory.sessions import MemorySessionStore
from presenced.typing import RoomId, SessionId, UserId

__all__ = [
    "MemoryBroker",
    "MemoryMessageStore",
    "MemoryNodeStore",
    "MemoryPresenceStore",
    "MemoryRoomStore",
    "MemorySessionStore",
    "MemoryTypingStore",
    "memory_backplane",
]


class MemoryRoomStore:
    def __init__(self) -> None:
        self.roster = Roster()

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
        # Stored by value, as a networked store would: the caller keeps its own dict.
        return self.roster.add(room, user, session, _by_value(meta), hidden, wall)

    async def remove(
        self, room: RoomId, user: UserId, session: SessionId, reason: str = "left"
    ) -> RoomChange:
        return self.roster.remove(room, user, session)

    async def set_meta(self, room: RoomId, user: UserId, meta: dict[str, Any]) -> RoomChange:
        return self.roster.set_meta(room, user, _by_value(meta))

    async def touch(self, room: RoomId, user: UserId) -> RoomChange:
        return self.roster.touch(room, user)

    async def set_hidden(self, room: RoomId, user: UserId, hidden: bool) -> RoomChange:
        return self.roster.set_hidden(room, user, hidden)

    async def snapshot(self, room: RoomId) -> RoomSnapshot:
        snap = self.roster.snapshot(room)
        members = [
            msgspec.structs.replace(m, meta=_by_value(m.meta)) if m.meta else m
            for m in snap.members
        ]
        return replace(snap, members=members)

    async def count(self, room: RoomId) -> tuple[int, int]:
        return self.roster.count(room), self.roster.version(room)

    async def delete(self, room: RoomId, reason: str = "deleted") -> RoomDeletion:
        return self.roster.delete(room)

    async def rooms(self, prefix: str, after: RoomId | None, limit: int) -> list[RoomInfo]:
        return self.roster.room_page(prefix, after, limit)

    async def room_count(self) -> int:
        return self.roster.room_count()

    async def members(
        self, room: RoomId, after: UserId | None, limit: int
    ) -> tuple[int, list[MemberRecord]]:
        version, page = self.roster.member_page(room, after, limit)
        return version, [
            msgspec.structs.replace(m, meta=_by_value(m.meta)) if m.meta else m for m in page
        ]


class MemoryPresenceStore:
    def __init__(self) -> None:
        self.book = PresenceBook()

    async def set(
        self,
        user: UserId,
        session: SessionId,
        status: str,
        text: str | None,
        wall: float,
        exported: Exported = None,
        *,
        quiet: bool = False,
        limit: int | None = None,
    ) -> PresenceChange:
        if limit:
            have = self.book.sessions(user)
            if session not in have and len(have) >= limit:
                raise SessionLimitReached(user, limit, len(have))
        return self.book.set(user, session, status, text, wall)  # (the node exports)

    async def remove(
        self, user: UserId, session: SessionId, wall: float, exported: Exported = None
    ) -> PresenceChange:
        return self.book.remove(user, session, wall)

    async def get_many(self, users: Iterable[UserId]) -> list[UserPresence]:
        return [self.book.public(u) for u in users]

    async def get_private(self, user: UserId) -> UserPresence:
        return self.book.private(user)

    async def online(self, after: UserId | None, limit: int) -> list[UserId]:
        return self.book.online_page(after, limit)

    async def online_count(self) -> int:
        return self.book.online_count()

    async def sessions_of(self, user: UserId) -> list[SessionId]:
        return self.book.sessions_of(user)


class MemoryMessageStore:
    def __init__(self, history_size: int, history_ttl: float) -> None:
        self.book = HistoryBook(history_size, history_ttl)

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
        return self.book.append(room, user, device, temp_id, body, wall, message_id, _epoch())

    async def message(self, room: RoomId, message_id: str) -> MessageState | None:
        return self.book.message(room, message_id)

    async def expire(self, wall: float) -> int:
        return self.book.expire(wall)

    async def amend(
        self, room: RoomId, message_id: str, user: UserId, body: Body | None, wall: float
    ) -> StreamEvent | None:
        return self.book.amend(room, message_id, user, body, wall)

    async def since(self, room: RoomId, epoch: str, offset: int, wall: float) -> Recovery:
        return self.book.since(room, epoch, offset, wall, _epoch())

    async def position(self, room: RoomId) -> tuple[str, int]:
        return self.book.position(room, _epoch())

    async def last_messages(
        self, room: RoomId, limit: int, before: int | None, wall: float
    ) -> list[MessageState]:
        return self.book.last_messages(room, limit, before, wall)

    async def mark(self, room: RoomId, user: UserId, kind: str, offset: int) -> tuple[int, int]:
        return self.book.mark(room, user, kind, offset)

    async def read_state(self, room: RoomId, user: UserId) -> tuple[int, int]:
        return self.book.read_state(room, user)

    async def authors_between(self, room: RoomId, after: int, upto: int) -> set[UserId]:
        return self.book.authors_between(room, after, upto)

    async def drop(self, room: RoomId) -> None:
        self.book.drop(room)


class MemoryTypingStore:
    """Typing sets per room; a room's change number is kept while someone types there (then
    the wall clock keeps it increasing, see TypingChange)."""

    def __init__(self) -> None:
        self._rooms: dict[RoomId, dict[UserId, None]] = {}
        self._seqs: dict[RoomId, int] = {}

    def _change(self, room: RoomId, users: dict[UserId, None], wall: float) -> TypingChange:
        seq = next_typing_seq(self._seqs.get(room, 0), wall)
        if users:
            self._seqs[room] = seq
        else:
            self._seqs.pop(room, None)
        return TypingChange(list(users), seq)

    async def start(self, room: RoomId, user: UserId, wall: float) -> TypingChange | None:
        users = self._rooms.setdefault(room, {})
        if user in users:
            return None
        users[user] = None
        return self._change(room, users, wall)

    async def stop(
        self, room: RoomId, user: UserId, wall: float, *, expired: bool = False
    ) -> TypingChange | None:
        users = self._rooms.get(room)
        if users is None or user not in users:
            return None
        del users[user]
        if not users:
            del self._rooms[room]
        return self._change(room, users, wall)

    async def typing(self, room: RoomId) -> list[UserId]:
        return list(self._rooms.get(room, ()))


class MemoryBroker:
    """Delivers synchronously to this process's one handler per channel."""

    inline = True  # delivered during publish, in call order

    def __init__(self) -> None:
        self._handlers: dict[str, MessageHandler] = {}
        self.on_resubscribed: Callable[[], None] | None = None  # never: nothing to lose

    @property
    def connected(self) -> bool:
        return True

    async def publish(self, channel: str, payload: bytes, origin: str | None = None) -> None:
        handler = self._handlers.get(channel)
        if handler is not None:
            handler(payload, origin)

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        self._handlers[channel] = handler

    async def unsubscribe(self, channel: str) -> None:
        self._handlers.pop(channel, None)

    @property
    def channels(self) -> list[str]:
        return list(self._handlers)


_encode_meta = msgspec.json.Encoder().encode
_decode_meta = msgspec.json.Decoder(dict[str, Any]).decode


@overload
def _by_value(meta: dict[str, Any]) -> dict[str, Any]: ...
@overload
def _by_value(meta: None) -> None: ...
def _by_value(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of member metadata sharing nothing with ``meta``, as a networked store hands
    back: the caller may change what it gets (or gave) without touching the store. Metadata
    is JSON (the protocol and the API decode it from JSON), so a msgspec round trip copies
    it, about 7x faster than ``copy.deepcopy``: a members page copies one per member."""
    return None if meta is None else _decode_meta(_encode_meta(meta))


def _epoch() -> str:
    """A new stream epoch: unique enough that an old position can never match by chance."""
    return secrets.token_hex(4)


def memory_backplane(history_size: int = 100, history_ttl: float = 3600.0) -> Backplane:
    """A fresh in-memory backplane."""
    return Backplane(
        sessions=MemorySessionStore(),
        rooms=MemoryRoomStore(),
        presence=MemoryPresenceStore(),
        messages=MemoryMessageStore(history_size, history_ttl),
        typing=MemoryTypingStore(),
        nodes=MemoryNodeStore(),
        broker=MemoryBroker(),
        name="memory",
    )
