"""Waiting for a condition in tests: poll it, bounded by a timeout (never a bare sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["WAIT", "eventually", "until"]

WAIT = 5.0


async def until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until it holds, bounded by ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.02)  # poll pacing; the deadline above bounds the wait


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT
) -> None:
    """Poll an async ``check`` (an API read, say) until it holds, bounded by ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.02)  # poll pacing; the deadline above bounds the wait
