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
from presenced.store.redis.keys import Keys, _tag
from presenced.store.redis.outbox import RedisOutbox, ScriptEvent
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

    def __init__(
        self, client: Any, keys: Keys, scripts: Scripts, outbox: RedisOutbox | None = None
    ) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._outbox = outbox

    async def start(self, room: RoomId, user: UserId, wall: float) -> TypingChange | None:
        return _change(await self._run("typing_start", room, user, wall, "typing.started", {}))

    async def stop(
        self, room: RoomId, user: UserId, wall: float, *, expired: bool = False
    ) -> TypingChange | None:
        data = {"expired": True} if expired else {}
        return _change(await self._run("typing_stop", room, user, wall, "typing.stopped", data))

    async def _run(
        self, script: str, room: RoomId, user: UserId, wall: float, event: str, data: Any
    ) -> Any:
        """Run a typing script; with an outbox, with the one event it writes on a change."""
        keys = [self._keys.room_typing(room), self._keys.room_typing_seq(room)]
        args: list[Any] = [user, TYPING_KEY_TTL, int(wall * 1000)]
        outbox = self._outbox
        if outbox is None or not outbox.exporting:
            return await self._scripts.run(script, keys, args)
        tail = outbox.script_args(wall, [ScriptEvent(event, f"room:{room}", user, room, data)])
        tag = f"r:{_tag(room)}"
        result = await self._scripts.run(script, keys + outbox.script_keys(tag), args + tail)
        await outbox.script_wrote(tag, tail)
        return result

    async def typing(self, room: RoomId) -> list[UserId]:
        return _users(await self._client.lrange(self._keys.room_typing(room), 0, -1))
