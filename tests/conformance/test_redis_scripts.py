"""Redis only: what the Lua scripts promise of themselves, beyond the stores' semantics.

presence_read (the many-user presence read) is declared read only (``#!lua
flags=no-writes``): the server runs it under EVALSHA_RO, the form a replica or a read-only
connection accepts, and refuses any write in it. The scripts that write run under a reply
memo, so that a retried call is not done twice.
"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from presenced.store.redis.scripts import MEMO_TTL_MS, ONCE, Scripts, load_lua, script_text
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


async def test_a_writing_script_rerun_with_the_same_memo_replies_as_it_first_did(
    valkey: ValkeyProcess,
) -> None:
    """The reply memo (scripts.py): a re-run of the same call (the same memo key, as a
    redis-py retry sends it) does nothing and gives the first run's reply; another call does
    the work. The memo lives in the first key's slot and expires."""
    client = Redis(host="127.0.0.1", port=valkey.port)
    scripts = Scripts(client, prefix="memo-test")
    keys = ["memo-test:{r:lobby}:state", "memo-test:{r:lobby}:members"]
    args = ["carol", "s1", "", "0", 60000, "1.5"]
    try:
        first = await scripts.run("room_add", keys, args)
        assert first[0] == b"joined", first
        (memo,) = [k async for k in client.scan_iter("memo-test:memo:*")]
        assert key_slot(memo) == key_slot(keys[0].encode())
        assert 0 < await client.pttl(memo) <= MEMO_TTL_MS
        sha = await client.script_load(script_text("room_add"))
        again = await client.evalsha(sha, 3, *keys, memo, *args)  # the call, sent again
        assert again == first
        fresh = await scripts.run("room_add", keys, args)  # a new call: nothing to change
        assert fresh[0] == b"none", fresh
        assert len([k async for k in client.scan_iter("memo-test:memo:*")]) == 2
    finally:
        await client.delete(*keys, *[k async for k in client.scan_iter("memo-test:memo:*")])
        await client.aclose()


def test_only_the_scripts_that_write_are_wrapped_in_the_memo() -> None:
    assert "presence_read" not in ONCE and script_text("presence_read") == load_lua("presence_read")
    for name in ONCE:
        text = script_text(name)
        assert text.startswith("-- The reply memo") and load_lua(name) in text
