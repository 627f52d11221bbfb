"""TypingStore on Redis/Valkey: who is typing in each room, shared by every node.

Each room's typing users are one list (Keys.room_typing), in the order they started, as the
memory store keeps them. Start and stop are one script each (lua/typing_start.lua,
lua/typing_stop.lua) that change the list and return the new one with the change's number
(Keys.room_typing_seq, in the same slot), or nothing when the set did not change, so exactly
one caller sees each change and broadcasts it, and receivers can order the broadcasts.
"""

from __future__ import annotations

from typing import Any

from presenced.store.base import TypingChange
from presenced.store.redis.keys import Keys
from presenced.store.redis.scripts import Scripts
from presenced.typing import RoomId, UserId

__all__ = ["TYPING_KEY_TTL", "RedisTypingStore"]

TYPING_KEY_TTL = 600
"""Seconds a room's typing list outlives its last typing start: a failsafe only (the node
stops each typing user after typing_timeout), so a crashed node's typists do not stay."""


def _users(found: list[bytes | str]) -> list[UserId]:
    return [UserId(u.decode() if isinstance(u, bytes) else u) for u in found]


def _change(found: list[Any] | None) -> TypingChange | None:
    if found is None:
        return None
    seq, users = found
    return TypingChange(_users(users), int(seq))


class RedisTypingStore:
    """Typing sets per room; each change returns the new set and its number, or None if
    unchanged."""

    def __init__(self, client: Any, keys: Keys, scripts: Scripts) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts

    async def start(self, room: RoomId, user: UserId, wall: float) -> TypingChange | None:
        keys = [self._keys.room_typing(room), self._keys.room_typing_seq(room)]
        args = [user, TYPING_KEY_TTL, int(wall * 1000)]
        return _change(await self._scripts.run("typing_start", keys, args))

    async def stop(self, room: RoomId, user: UserId, wall: float) -> TypingChange | None:
        keys = [self._keys.room_typing(room), self._keys.room_typing_seq(room)]
        args = [user, TYPING_KEY_TTL, int(wall * 1000)]
        return _change(await self._scripts.run("typing_stop", keys, args))

    async def typing(self, room: RoomId) -> list[UserId]:
        return _users(await self._client.lrange(self._keys.room_typing(room), 0, -1))
