"""Redis only: what the Lua scripts promise of themselves, beyond the stores' semantics.

presence_read (the many-user presence read) is declared read only (``#!lua
flags=no-writes``): the server runs it under EVALSHA_RO, the form a replica or a read-only
connection accepts, and refuses any write in it.
"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from presenced.store.redis.scripts import load_lua
from tests.support.valkey import ValkeyProcess

__all__: list[str] = []


async def test_presence_read_runs_read_only(valkey: ValkeyProcess) -> None:
    client = Redis(host="127.0.0.1", port=valkey.port)
    try:
        sha = await client.script_load(load_lua("presence_read"))
        keys = ["ro-test:{u:a}:status", "ro-test:{u:a}:meta"]
        assert await client.evalsha_ro(sha, 2, *keys) == b"[[null,[]]]"
        await client.hset(keys[0], "s1", '{"s":"invisible","r":5,"q":1}')
        await client.hset(keys[1], "ls", "12.5")
        assert await client.evalsha_ro(sha, 2, *keys) == (
            b'[["12.5",[{"s":"invisible","r":5,"q":1}]]]'
        )
        # The flag is what the server goes by: the same header on a write is refused.
        writer = "#!lua flags=no-writes\nreturn redis.call('SET', KEYS[1], 'x')"
        with pytest.raises(ResponseError, match=r"(?i)write"):
            await client.eval(writer, 1, "ro-test:w")
        assert await client.exists("ro-test:w") == 0
    finally:
        await client.delete("ro-test:{u:a}:status", "ro-test:{u:a}:meta")
        await client.aclose()
