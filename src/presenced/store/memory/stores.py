"""In-memory implementations of the store Protocols, over the core's pure structures.

Each method completes without suspending, so every transition is atomic with respect to the
event loop. Session records are stored as copies, with the same value semantics a networked
store has.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from presenced.clock import Clock, SystemClock
from presenced.presence.history import (
    AppendResult,
    Body,
    HistoryBook,
    MessageState,
    Recovery,
    StreamEvent,
)
from presenced.presence.roster import RoomChange, RoomDeletion, RoomSnapshot, Roster
from presenced.presence.session import Session
from presenced.presence.status import PresenceBook, PresenceChange, UserPresence
from presenced.store.base import Backplane, MessageHandler, TypingChange, next_typing_seq
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


@dataclass(slots=True)
class _Record:
    """A stored session: the fields the indexes need, and the rest encoded."""

    user: UserId
    node: str
    resume_token: str
    data: bytes


_session_encoder = msgspec.json.Encoder()
_session_decoder = msgspec.json.Decoder(Session)


class MemorySessionStore:
    """Records kept encoded (msgspec JSON): value semantics like a networked store, and a
    few hundred bytes each instead of a deep copy of the live object graph."""

    def __init__(self) -> None:
        self._by_id: dict[SessionId, _Record] = {}
        self._by_token: dict[str, SessionId] = {}
        self._by_user: dict[UserId, set[SessionId]] = {}
        self._by_node: dict[str, set[SessionId]] = {}

    async def put(self, session: Session) -> bool:
        old = self._by_id.get(session.id)
        if old is not None:
            if old.node != session.node:
                return False
            if old.resume_token != session.resume_token:
                self._by_token.pop(old.resume_token, None)
        self._by_id[session.id] = _Record(
            session.user, session.node, session.resume_token, _session_encoder.encode(session)
        )
        self._by_token[session.resume_token] = session.id
        self._by_user.setdefault(session.user, set()).add(session.id)
        self._by_node.setdefault(session.node, set()).add(session.id)
        return True

    async def take(self, session_id: SessionId, from_node: str, to_node: str) -> bool:
        record = self._by_id.get(session_id)
        if record is None or record.node != from_node:
            return False
        _discard(self._by_node, from_node, session_id)
        record.node = to_node
        self._by_node.setdefault(to_node, set()).add(session_id)
        return True

    def _load(self, session_id: SessionId) -> Session | None:
        record = self._by_id.get(session_id)
        if record is None:
            return None
        session = _session_decoder.decode(record.data)
        session.node = record.node  # ownership moves without rewriting the record
        return session

    def _load_all(self, ids: Iterable[SessionId]) -> list[Session]:
        return [s for s in map(self._load, ids) if s is not None]

    async def of_node(self, node: str) -> list[Session]:
        return self._load_all(self._by_node.get(node, ()))

    async def get(self, session_id: SessionId) -> Session | None:
        return self._load(session_id)

    async def by_resume_token(self, token: str) -> Session | None:
        sid = self._by_token.get(token)
        return self._load(sid) if sid is not None else None

    async def delete(self, session_id: SessionId, owner: str | None = None) -> bool:
        old = self._by_id.get(session_id)
        if old is None or (owner is not None and old.node != owner):
            return False
        del self._by_id[session_id]
        self._by_token.pop(old.resume_token, None)
        _discard(self._by_user, old.user, session_id)
        _discard(self._by_node, old.node, session_id)
        return True

    async def of_user(self, user: UserId) -> list[Session]:
        return self._load_all(self._by_user.get(user, ()))


def _discard(index: dict[Any, set[SessionId]], key: Any, session_id: SessionId) -> None:
    ids = index.get(key)
    if ids is not None:
        ids.discard(session_id)
        if not ids:
            del index[key]


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
    ) -> RoomChange:
        # Stored by value, as a networked store would: the caller keeps its own dict.
        return self.roster.add(room, user, session, copy.deepcopy(meta), hidden)

    async def remove(self, room: RoomId, user: UserId, session: SessionId) -> RoomChange:
        return self.roster.remove(room, user, session)

    async def set_meta(self, room: RoomId, user: UserId, meta: dict[str, Any]) -> RoomChange:
        return self.roster.set_meta(room, user, copy.deepcopy(meta))

    async def touch(self, room: RoomId, user: UserId) -> RoomChange:
        return self.roster.touch(room, user)

    async def set_hidden(self, room: RoomId, user: UserId, hidden: bool) -> RoomChange:
        return self.roster.set_hidden(room, user, hidden)

    async def snapshot(self, room: RoomId) -> RoomSnapshot:
        snap = self.roster.snapshot(room)
        members = [
            msgspec.structs.replace(m, meta=copy.deepcopy(m.meta)) if m.meta else m
            for m in snap.members
        ]
        return replace(snap, members=members)

    async def count(self, room: RoomId) -> tuple[int, int]:
        return self.roster.count(room), self.roster.version(room)

    async def delete(self, room: RoomId) -> RoomDeletion:
        return self.roster.delete(room)


class MemoryPresenceStore:
    def __init__(self) -> None:
        self.book = PresenceBook()

    async def set(
        self, user: UserId, session: SessionId, status: str, text: str | None, wall: float
    ) -> PresenceChange:
        return self.book.set(user, session, status, text, wall)

    async def remove(self, user: UserId, session: SessionId, wall: float) -> PresenceChange:
        return self.book.remove(user, session, wall)

    async def get_many(self, users: Iterable[UserId]) -> list[UserPresence]:
        return [self.book.public(u) for u in users]

    async def get_private(self, user: UserId) -> UserPresence:
        return self.book.private(user)


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

    async def stop(self, room: RoomId, user: UserId, wall: float) -> TypingChange | None:
        users = self._rooms.get(room)
        if users is None or user not in users:
            return None
        del users[user]
        if not users:
            del self._rooms[room]
        return self._change(room, users, wall)

    async def typing(self, room: RoomId) -> list[UserId]:
        return list(self._rooms.get(room, ()))


class MemoryNodeStore:
    """Leases for nodes sharing one process (tests); time comes from the given clock."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._leases: dict[str, float] = {}  # node -> expiry (monotonic)
        self._listed: set[str] = set()

    async def renew(self, node: str, ttl: float) -> bool:
        now = self._clock.monotonic()
        held = self._leases.get(node, -1.0) > now
        self._leases[node] = now + ttl
        self._listed.add(node)
        return held

    async def drop(self, node: str) -> None:
        self._leases.pop(node, None)

    async def expired(self) -> list[str]:
        now = self._clock.monotonic()
        return sorted(n for n in self._listed if self._leases.get(n, -1.0) <= now)

    async def claim(self, node: str) -> bool:
        if node not in self._listed:
            return False
        self._listed.discard(node)
        self._leases.pop(node, None)
        return True

    async def refresh(self, sessions: Iterable[Session], ttl: float) -> None:
        """Nothing in memory expires by itself."""

    async def watch(self, on_expired: Callable[[], None]) -> None:
        """Expiry is only seen by the sweep here."""

    async def close(self) -> None:
        """Nothing to stop."""


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
