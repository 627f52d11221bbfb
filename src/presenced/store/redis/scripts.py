"""Lua scripts: one file each under ``lua/``, loaded once and called by name.

Each file starts with a KEYS/ARGV header comment. Scripts take the time from the caller
(ARGV), never from the server clock, so behaviour is the same as the memory store's.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

__all__ = ["Scripts"]


class Scripts:
    """The registered scripts of one client, by file stem (``room_add.lua`` -> ``room_add``)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._scripts: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            text = resources.files("presenced.store.redis.lua").joinpath(f"{name}.lua").read_text()
            script = self._scripts[name] = self._client.register_script(text)
        return script

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA the script (loading it on first use, and again after a server restart)."""
        return await self[name](keys=keys, args=args)
