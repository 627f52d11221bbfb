"""Starting test servers without their launchers' ResourceWarnings failing the run."""

from __future__ import annotations

import contextlib
import gc
import warnings
from collections.abc import Iterator

__all__ = ["quiet_launcher"]


@contextlib.contextmanager
def quiet_launcher() -> Iterator[None]:
    """tests/support/valkey.py leaves each server's log file to the garbage collector; its
    ResourceWarning would fail the run (warnings are errors), so it is collected here, while
    ResourceWarnings are ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()
