"""Run a coroutine eagerly: synchronously until its first real suspension.

With the memory backend a request handler never suspends, so running it inline from the
socket callback costs no task, keeps requests of one connection in order for free and
answers within the same loop iteration. If the coroutine does suspend (a networked store),
the rest of it becomes an ordinary Task, returned so the caller can queue what comes next.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["Runner", "run_eager", "run_in_task"]

Runner = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any] | None"]
"""How a node starts work: eagerly (memory backend) or always in a task."""


def run_in_task(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    """Always a Task: for backends whose clients need to run inside one (redis-py's
    timeouts call ``asyncio.current_task()``)."""
    return asyncio.get_running_loop().create_task(coro)


def run_eager(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    """Step ``coro`` now; None if it finished, else the Task that carries on with it.

    Only for work that never needs to know its task: stepping happens outside any Task."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_carry_on(coro, yielded))


@types.coroutine
def _carry_on(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, None]:
    """Hand the coroutine's pending future to the Task, then keep driving the coroutine."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # cancellation or an exception thrown into the task
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration:
                return
