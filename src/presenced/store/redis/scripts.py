"""Lua scripts: one file each under ``lua/``, loaded once and called by name.

Each file starts with a KEYS/ARGV header comment. Scripts take the time from the caller
(ARGV), never from the server clock, so behaviour is the same as the memory store's. Lua
has no include: a line ``--#include NAME.lua`` is replaced by that file's text when the
script is loaded, so helpers shared by several scripts live in one place.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

__all__ = ["Scripts", "load_lua"]

_INCLUDE = "--#include "


def load_lua(name: str) -> str:
    """The text of ``lua/NAME.lua`` with its ``--#include`` lines expanded."""
    folder = resources.files("presenced.store.redis.lua")
    lines = []
    for line in folder.joinpath(f"{name}.lua").read_text().splitlines(keepends=True):
        if line.startswith(_INCLUDE):
            lines.append(folder.joinpath(line[len(_INCLUDE) :].strip()).read_text())
        else:
            lines.append(line)
    return "".join(lines)


class Scripts:
    """The registered scripts of one client, by file stem (``room_add.lua`` -> ``room_add``)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._scripts: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._client.register_script(load_lua(name))
        return script

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA the script (loading it on first use, and again after a server restart)."""
        return await self[name](keys=keys, args=args)
