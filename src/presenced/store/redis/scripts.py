"""Lua scripts: one file each under ``lua/``, loaded once and called by name.

Each file starts with a KEYS/ARGV header comment. Scripts take the time from the caller
(ARGV), never from the server clock, so behaviour is the same as the memory store's. Lua
has no include: a line ``--#include NAME.lua`` is replaced by that file's text when the
script is loaded, so helpers shared by several scripts live in one place.

A script that writes is run at most once per call, though redis-py may send it twice: it
retries a command that failed with a connection error, and a connection can break after
the server ran the script and before its reply came back. Run again, such a script would
append a message a second time, or find its own first run's work already done and report
"nothing changed" (a join nobody is told of). So each writing script (:data:`ONCE`) is
wrapped in a reply memo: the call names a memo key of its own (a random prefix per client
and a counter), the first run stores its reply there for :data:`MEMO_TTL_MS`, and a re-run
of the same call returns that reply without doing anything. The memo key shares the hash
tag of the script's first key, so it lives in the same Cluster slot.
"""

from __future__ import annotations

import itertools
import os
from importlib import resources
from typing import Any

__all__ = ["MEMO_TTL_MS", "ONCE", "Scripts", "load_lua", "script_text"]

_INCLUDE = "--#include "

ONCE = frozenset(
    {
        "message_amend",
        "message_append",
        "message_mark",
        "outbox_append",
        "presence_remove",
        "presence_set",
        "room_add",
        "room_delete",
        "room_remove",
        "room_set_hidden",
        "room_set_meta",
        "room_touch",
        "session_delete",
        "session_put",
        "session_take",
        "typing_start",
        "typing_stop",
    }
)
"""The scripts that write and whose reply depends on what was there before: each runs
under the reply memo. (The others only read, or are idempotent with the same reply:
expiries, the outbox lead and trim, the stream position.)"""

MEMO_TTL_MS = 30_000
"""How long a reply is kept for a re-run of its call. redis-py's retries (connect.py: five,
at most 0.5 s apart) come well within it; a memo is about 100 bytes per write."""

# The script body runs in a closure so that its own ``return`` ends up in the memo. The
# memo key is the last of KEYS, taken off before the body sees them (_export.lua counts
# from the end).
_MEMO_HEAD = """-- The reply memo (store/redis/scripts.py): a re-run of the same call returns the
-- reply of its first run and does nothing.
local memo_key__ = table.remove(KEYS)
local memo_kept__ = redis.call('GET', memo_key__)
if memo_kept__ then return cmsgpack.unpack(memo_kept__) end
local memo_reply__ = (function()
"""
_MEMO_TAIL = f"""
end)()
redis.call('SET', memo_key__, cmsgpack.pack(memo_reply__), 'PX', {MEMO_TTL_MS})
return memo_reply__
"""


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


def script_text(name: str) -> str:
    """What is sent for ``lua/NAME.lua``: its text, in the reply memo if it is in ONCE."""
    text = load_lua(name)
    return _MEMO_HEAD + text + _MEMO_TAIL if name in ONCE else text


def _memo_tag(key: str) -> str:
    """The hash tag (braces included) that puts a memo key in ``key``'s Cluster slot."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start : end + 1]
    return "{" + key + "}"  # no tag: the slot is the whole name's, which this tag hashes to


class Scripts:
    """The registered scripts of one client, by file stem (``room_add.lua`` -> ``room_add``)."""

    def __init__(self, client: Any, prefix: str = "pd") -> None:
        self._client = client
        self._scripts: dict[str, Any] = {}
        # Memo keys: unique per call across nodes and restarts (48 random bits per client).
        self._prefix = prefix
        self._caller = os.urandom(6).hex()
        self._calls = itertools.count()

    def _registered(self, name: str) -> Any:
        # Private: a script in ONCE called without its memo key would take its last real
        # key for one.
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._client.register_script(script_text(name))
        return script

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA the script (loading it on first use, and again after a server restart);
        a script in ONCE gets its call's memo key after its own keys."""
        if name in ONCE:
            memo = f"{self._prefix}:memo:{_memo_tag(keys[0])}:{self._caller}:{next(self._calls)}"
            keys = [*keys, memo]
        return await self._registered(name)(keys=keys, args=args)
