"""TypingStore on Redis/Valkey: who is typing in each room, shared by every node.

Each room's typing users are one list (Keys.room_typing), in the order they started, as the
memory store keeps them. Start and stop are one script each (lua/typing_start.lua,
lua/typing_stop.lua) that change the list and return the new one, or nothing when the set did
not change, so exactly one caller sees each change and broadcasts it.
"""

from __future__ import annotations

from typing import Any

from presenced.store.redis.keys import Keys
from presenced.store.redis.scripts import Scripts
from presenced.typing import RoomId, UserId

__all__ = ["TYPING_KEY_TTL", "RedisTypingStore"]

TYPING_KEY_TTL = 600
"""Seconds a room's typing list outlives its last typing start: a failsafe only (the node
stops each typing user after typing_timeout), so a crashed node's typists do not stay."""


def _users(found: list[bytes | str]) -> list[UserId]:
    return [UserId(u.decode() if isinstance(u, bytes) else u) for u in found]


class RedisTypingStore:
    """Typing sets per room; each change returns the new set, or None if unchanged."""

    def __init__(self, client: Any, keys: Keys, scripts: Scripts) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts

    async def start(self, room: RoomId, user: UserId) -> list[UserId] | None:
        found = await self._scripts.run(
            "typing_start", [self._keys.room_typing(room)], [user, TYPING_KEY_TTL]
        )
        return None if found is None else _users(found)

    async def stop(self, room: RoomId, user: UserId) -> list[UserId] | None:
        found = await self._scripts.run("typing_stop", [self._keys.room_typing(room)], [user])
        return None if found is None else _users(found)

    async def typing(self, room: RoomId) -> list[UserId]:
        return _users(await self._client.lrange(self._keys.room_typing(room), 0, -1))
