"""Session records in memory: the SessionStore Protocol, with a networked store's value
semantics (records are kept encoded, so what goes in and out are copies)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from presenced.presence.session import Session
from presenced.typing import SessionId, UserId

__all__ = ["MemorySessionStore"]


@dataclass(slots=True)
class _Record:
    """A stored session: the fields the indexes need, and the rest encoded."""

    user: UserId
    node: str
    resume_token: str
    data: bytes
    watching: frozenset[UserId]  # the session's presence subscriptions


# MessagePack rather than JSON: about 300 bytes a record instead of 410.
_session_encoder = msgspec.msgpack.Encoder()
_session_decoder = msgspec.msgpack.Decoder(Session)
_NOBODY: frozenset[UserId] = frozenset()  # shared by every session that watches no one


class MemorySessionStore:
    """Records kept encoded (msgspec MessagePack): value semantics like a networked store, and a
    few hundred bytes each instead of a deep copy of the live object graph."""

    def __init__(self) -> None:
        self._by_id: dict[SessionId, _Record] = {}
        self._by_token: dict[str, SessionId] = {}
        self._by_user: dict[UserId, set[SessionId]] = {}
        self._by_node: dict[str, set[SessionId]] = {}
        self._by_watched: dict[UserId, set[SessionId]] = {}  # user -> sessions subscribed

    async def put(self, session: Session) -> bool:
        old = self._by_id.get(session.id)
        if old is not None:
            if old.node != session.node:
                return False
            if old.resume_token != session.resume_token:
                self._by_token.pop(old.resume_token, None)
        watching = frozenset(session.subscriptions) if session.subscriptions else _NOBODY
        self._by_id[session.id] = _Record(
            session.user,
            session.node,
            session.resume_token,
            _session_encoder.encode(session),
            watching,
        )
        self._by_token[session.resume_token] = session.id
        self._by_user.setdefault(session.user, set()).add(session.id)
        self._by_node.setdefault(session.node, set()).add(session.id)
        before = old.watching if old is not None else _NOBODY
        for user in before - watching:
            _discard(self._by_watched, user, session.id)
        for user in watching - before:
            self._by_watched.setdefault(user, set()).add(session.id)
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
        for user in old.watching:
            _discard(self._by_watched, user, session_id)
        return True

    async def of_user(self, user: UserId) -> list[Session]:
        return self._load_all(self._by_user.get(user, ()))

    async def count(self) -> int:
        return len(self._by_id)

    async def watchers(self, user: UserId) -> list[Session]:
        """The present sessions subscribed to ``user``'s presence, by session id."""
        found = self._load_all(sorted(self._by_watched.get(user, ())))
        return [s for s in found if s.present]


def _discard(index: dict[Any, set[SessionId]], key: Any, session_id: SessionId) -> None:
    ids = index.get(key)
    if ids is not None:
        ids.discard(session_id)
        if not ids:
            del index[key]
