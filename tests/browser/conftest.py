"""Real Chromium (Debian's ``chromium``) driven by Playwright for Python, against real
``presenced serve --demo`` processes.

Nothing downloads a browser: Playwright launches the system Chromium (``executable_path``;
``$PRESENCED_CHROMIUM`` to use another). A machine without it fails these tests with the
install line, never skips them (.ci/run installs it). Screenshots go to
tests/browser/screenshots/ (not committed; docs/images/ holds copies of a few).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.chromium import TIMEOUT_MS, chromium
from tests.support.nodes import PresencedNode
from tests.support.valkey import ValkeyProcess

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
ADMIN_KEY = "dashboard-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module (tests/support/chromium.py says why not the session)."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """Open a page in a browser context of its own (its own sessionStorage: a separate tab
    of a separate user); page errors fail the test."""
    contexts: list[Any] = []
    errors: list[str] = []

    def opener(url: str) -> Any:
        context = browser.new_context(viewport={"width": 1200, "height": 720})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{url}: {exc}"))
        page.goto(url)
        return page

    yield opener
    for context in contexts:
        context.close()
    assert errors == [], errors


@pytest.fixture
def start_node(request: pytest.FixtureRequest) -> Iterator[Callable[..., PresencedNode]]:
    """Start ``presenced serve`` processes (``store="valkey"``: on the session's Valkey, with
    a key prefix of their own); all are ended at teardown."""
    nodes: list[PresencedNode] = []

    def start(store: str = "memory", **settings: Any) -> PresencedNode:
        if store == "valkey":
            valkey: ValkeyProcess = request.getfixturevalue("valkey")
            settings = {
                **settings,
                "redis": valkey.url,
                "redis_prefix": f"br-{uuid.uuid4().hex[:10]}",
            }
        node = PresencedNode(f"browser-{len(nodes)}", **settings)
        nodes.append(node)
        return node.start()

    yield start
    for node in nodes:
        node.cleanup()


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
