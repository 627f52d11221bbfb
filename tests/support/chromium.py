"""Debian's Chromium under Playwright's sync API, for the suite's browser tests (never a
downloaded browser)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

__all__ = ["TIMEOUT_MS", "chromium"]

TIMEOUT_MS = 10_000  # every wait for a page; nothing sleeps


def _executable() -> str:
    path = os.environ.get("PRESENCED_CHROMIUM") or shutil.which("chromium")
    assert path, (
        "Chromium is needed for the browser tests: apt-get install chromium chromium-driver "
        "(Debian), or set PRESENCED_CHROMIUM to a Chromium binary"
    )
    return path


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched Chromium, closed on exit. Open one per test module, not per session:
    Playwright's sync API keeps an event loop running in this thread while it is open, and
    every async test after it in the suite would fail to start its own."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:  # pragma: no cover - the test extra installs it
        pytest.fail("playwright is needed for the browser tests: pip install -e '.[test]'")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(
            executable_path=_executable(), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            launched.close()
