"""The store Protocols: what a node needs from shared state, and nothing more.

Every operation that decides a transition others must see exactly once (a user's first or
last session in a room, a user going online or offline, a member hidden or revealed) is one
call that applies the change and returns the transition, so a backend can make it atomic (the
memory store trivially, Redis with one Lua script). Callers never read, decide and write back.

All methods are coroutines so a networked backend fits; the memory backend never suspends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from presenced.presence.roster import RoomChange, RoomSnapshot
from presenced.presence.session import Session
from presenced.presence.status import PresenceChange, UserPresence
from presenced.typing import RoomId, SessionId, UserId

__all__ = ["Backplane", "Broker", "MessageHandler", "PresenceStore", "RoomStore", "SessionStore"]


class SessionStore(Protocol):
    """Session records, so a session can be found by its resume token (on any node)."""

    async def put(self, session: Session) -> None:
        """Insert or replace the record (a copy is kept: later changes need another put)."""

    async def get(self, session_id: SessionId) -> Session | None: ...

    async def by_resume_token(self, token: str) -> Session | None: ...

    async def delete(self, session_id: SessionId) -> None: ...

    async def of_user(self, user: UserId) -> list[Session]:
        """Every live session of ``user``, on every node."""


class RoomStore(Protocol):
    """Room membership per user, backed by sessions; each call returns its transition."""

    async def add(
        self,
        room: RoomId,
        user: UserId,
        session: SessionId,
        meta: dict[str, Any] | None,
        hidden: bool,
    ) -> RoomChange: ...

    async def remove(self, room: RoomId, user: UserId, session: SessionId) -> RoomChange: ...

    async def set_meta(self, room: RoomId, user: UserId, meta: dict[str, Any]) -> RoomChange: ...

    async def touch(self, room: RoomId, user: UserId) -> RoomChange:
        """The member's status changed: UPDATED with a new room version (NONE if hidden)."""

    async def set_hidden(self, room: RoomId, user: UserId, hidden: bool) -> RoomChange: ...

    async def snapshot(self, room: RoomId) -> RoomSnapshot: ...

    async def count(self, room: RoomId) -> tuple[int, int]:
        """Visible members and the room version, in O(1)."""


class PresenceStore(Protocol):
    """Per-user presence aggregated over sessions; each call returns before/after."""

    async def set(
        self, user: UserId, session: SessionId, status: str, text: str | None, wall: float
    ) -> PresenceChange: ...

    async def remove(self, user: UserId, session: SessionId, wall: float) -> PresenceChange: ...

    async def get_many(self, users: Iterable[UserId]) -> list[UserPresence]:
        """What others see of each user (invisible users appear offline)."""

    async def get_private(self, user: UserId) -> UserPresence:
        """What the user's own devices see."""


MessageHandler = Callable[[bytes, str | None], None]
"""Called with an event's encoded bytes and the session id that caused it (to skip)."""


class Broker(Protocol):
    """Fan-out of encoded events by channel, between nodes (or within one)."""

    async def publish(self, channel: str, payload: bytes, origin: str | None = None) -> None: ...

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        """Deliver the channel's messages to ``handler`` (one handler per channel per node)."""

    async def unsubscribe(self, channel: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Backplane:
    """Everything shared, as one object handed to a node."""

    sessions: SessionStore
    rooms: RoomStore
    presence: PresenceStore
    broker: Broker
    name: str = "memory"

    async def close(self) -> None:
        """Release connections (nothing to do for the memory backend)."""
