"""The examples (examples/README.md), each started by its one documented command as a
subprocess on free loopback ports and driven by real clients.

- examples/chat_backend.py: protocol clients join and chat; the backend's welcomes and
  deletions reach them, its API writes are in the room's history, and its webhook endpoint
  refuses a bad signature and acts once on a redelivered batch.
- examples/chat_page.py: the page in Debian's Chromium (Playwright, as tests/browser): two
  users see each other and chat; then the page on the chat backend's presenced, where the
  backend's welcome and deletion reach the pages.

Every wait is for an event, bounded; nothing sleeps. The async test comes first: the
browser tests hold Playwright's event loop in this thread until the module ends.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from presenced.api import ApiClient
from presenced.protocol.chat import MessageAck, MessageDeleted, MessageEvent
from presenced.testing import ProtocolClient
from tests.support.chromium import TIMEOUT_MS, chromium
from tests.support.valkey import free_port
from tests.support.waiting import until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET = "example-test-webhook-secret-0123456789"
KEY = "example-test-api-key-0123456789"
START = 30.0  # an example's start-up: it starts presenced itself


class Example:
    """One example script as a subprocess, its output (presenced's too) read by a thread."""

    def __init__(self, script: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        self._ended = False
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._new_line:
                self.lines.append(line.rstrip("\n"))
                self._new_line.notify_all()
        with self._new_line:
            self._ended = True  # the end of the output: a waiter fails at once
            self._new_line.notify_all()

    @property
    def exited(self) -> bool:
        return self.proc.poll() is not None

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    @property
    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def wait_said(self, text: str, timeout: float = START) -> str:
        """Block until a line contains ``text`` (the sync tests'); that line."""
        with self._new_line:
            found = self._new_line.wait_for(lambda: self.said(text) or self._ended, timeout)
        assert found and self.said(text), f"{text!r} not within {timeout}s:\n{self.output}"
        return next(line for line in self.lines if text in line)

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C or a service manager would; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


@pytest.fixture
def run_example() -> Iterator[Callable[..., Example]]:
    started: list[Example] = []

    def run(script: str, *args: str, env: dict[str, str] | None = None) -> Example:
        example = Example(script, *args, env=env)
        started.append(example)
        return example

    yield run
    for example in started:
        example.stop()


def backend_ports() -> dict[str, int]:
    return {"port": free_port(), "admin_port": free_port(), "hook_port": free_port()}


def start_backend(run_example: Callable[..., Example], ports: dict[str, int]) -> Example:
    args = [f"--{name.replace('_', '-')}={value}" for name, value in ports.items()]
    return run_example(
        "chat_backend.py",
        *args,
        "--banned=spam,scam",
        env={"CHAT_WEBHOOK_SECRET": SECRET, "CHAT_API_KEY": KEY},
    )


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "X-Presenced-Timestamp": timestamp,
        "X-Presenced-Signature": f"v1={digest.hexdigest()}",
    }


async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status


def by(user: str, text: str) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, MessageEvent) and m.user == user and text in str(m.body)


def deleted(message_id: str) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, MessageDeleted) and m.id == message_id


async def join(url: str, user: str) -> ProtocolClient:
    client = await ProtocolClient.connect(f"{url}?user={user}&device=d1")
    await client.wait_for("welcome")
    await client.request({"type": "room.join", "room": "lobby"})
    return client


async def test_the_chat_backend_welcomes_logs_and_moderates(
    run_example: Callable[..., Example],
) -> None:
    ports = backend_ports()
    backend = start_backend(run_example, ports)
    await until(lambda: backend.said("chat backend ready") or backend.exited, "ready", START)
    assert backend.said("chat backend ready"), backend.output
    url = f"ws://127.0.0.1:{ports['port']}/ws"

    # a welcome from system for each member who joins, seen by the room
    alice = await join(url, "alice")
    await alice.wait_for(by("system", "welcome to lobby, alice!"))
    bob = await join(url, "bob")
    await alice.wait_for(by("system", "welcome to lobby, bob!"))
    await bob.wait_for(by("system", "welcome to lobby, bob!"))

    # a clean message stays; one with a banned word (any case) goes, and so does an edit
    # into one. The backend acts on each batch in order, so once the deletions are seen
    # the clean message was judged (and kept) before them.
    await bob.request({"type": "message.send", "room": "lobby", "body": "hello alice"})
    spam = await bob.request({"type": "message.send", "room": "lobby", "body": "cheap SPAM!"})
    typo = await bob.request({"type": "message.send", "room": "lobby", "body": {"text": "hi"}})
    assert isinstance(spam, MessageAck) and isinstance(typo, MessageAck)
    await bob.request(
        {"type": "message.edit", "room": "lobby", "id": typo.id, "body": {"text": "a scam"}}
    )
    for gone in (spam.id, typo.id):
        await alice.wait_for(deleted(gone))
        await bob.wait_for(deleted(gone))
    removed = by("system", "a message by bob was removed")
    await until(lambda: len(list(filter(removed, alice.received))) == 2, "two notices")

    hook = f"http://127.0.0.1:{ports['hook_port']}/hooks/presenced"
    carol = {
        "v": 1,
        "id": "0190000000000000000000000001",
        "type": "member.joined",
        "time": time.time(),
        "node": "n",
        "key": "room:lobby",
        "seq": 1,
        "user": "carol",
        "room": "lobby",
        "data": {"devices": 1, "meta": {}, "joined_at": time.time()},
    }
    mallory = {**carol, "id": "0190000000000000000000000002", "user": "mallory"}
    forged = json.dumps({"events": [mallory]}).encode()
    # refused: no signature, another secret, a replay of an old one
    assert await post(hook, forged, {"Content-Type": "application/json"}) == 401
    assert await post(hook, forged, signed(forged, "another-secret-0123456789")) == 401
    assert await post(hook, forged, signed(forged, at=time.time() - 3600)) == 401
    # a batch delivered twice is acted on once (answered after it was acted on)
    batch = json.dumps({"events": [carol]}).encode()
    assert await post(hook, batch, signed(batch)) == 200
    assert await post(hook, batch, signed(batch)) == 200

    async with ApiClient(f"http://127.0.0.1:{ports['admin_port']}", key=KEY) as api:
        history = await api.history("lobby")
    assert [(m.user, m.body) for m in history.messages] == [
        ("system", "welcome to lobby, alice!"),
        ("system", "welcome to lobby, bob!"),
        ("bob", "hello alice"),
        ("system", "a message by bob was removed: it contained a banned word"),
        ("system", "a message by bob was removed: it contained a banned word"),
        ("system", "welcome to lobby, carol!"),
    ]

    # the log: joins, messages, deletions, refusals, leaves
    await bob.send({"type": "logout"})
    await bob.wait_closed()
    await until(lambda: backend.said("lobby: bob left (left)"), backend.output)
    await alice.close()
    for line in (
        "lobby: alice joined",
        "lobby: <bob> hello alice",
        "lobby: <bob> (edited) a scam",
        f"lobby: deleted message {spam.id} by bob (banned word)",
        f"lobby: deleted message {typo.id} by bob (banned word)",
        "refused a delivery: bad or old signature",
    ):
        assert backend.said(line), (line, backend.output)
    assert backend.stop() == 0, backend.output


# --- the chat page, in Chromium ---------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium for this module's browser tests (never a downloaded one)."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[[str], Any]]:
    """A page in a browser context of its own (a separate user); page errors fail the test."""
    contexts: list[Any] = []
    errors: list[str] = []

    def opener(url: str) -> Any:
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        return page

    yield opener
    for context in contexts:
        context.close()
    assert errors == [], errors


def page_url(example: Example) -> str:
    """The URL the example says to open."""
    line = example.wait_said("chat page ready: open ")
    return line.split("open ", 1)[1].split()[0]


def sign_in(page: Any, user: str) -> None:
    from playwright.sync_api import expect

    page.fill("#login input[name=user]", user)
    page.click("#login button[type=submit]")
    expect(page.locator("#state")).to_have_attribute("data-state", "connected")
    expect(page.locator("#chat")).to_be_visible()


def say(page: Any, body: str) -> None:
    page.fill("#compose input[name=body]", body)
    page.press("#compose input[name=body]", "Enter")


def line(page: Any, text: str) -> Any:
    return page.locator("#messages li", has_text=text)


def test_the_chat_page_two_users_see_each_other_and_chat(
    run_example: Callable[..., Example], open_page: Callable[[str], Any]
) -> None:
    from playwright.sync_api import expect

    ws_port = free_port()
    example = run_example(
        "chat_page.py", f"--port={free_port()}", f"--presenced-port={ws_port}", "--admin-port=off"
    )
    url = page_url(example)
    assert f"presenced=ws://127.0.0.1:{ws_port}/ws" in url
    alice, bob = open_page(url), open_page(url)
    sign_in(alice, "alice")
    sign_in(bob, "bob")
    for page, other in ((alice, "bob"), (bob, "alice")):
        expect(page.locator(f"#members li[data-user={other}]")).to_have_text(f"{other} (online)")
        expect(page.locator("#members li")).to_have_count(2)

    say(alice, "hello bob")
    expect(line(bob, "alice: hello bob")).to_be_visible()
    say(bob, "hi alice")
    expect(line(alice, "bob: hi alice")).to_be_visible()
    expect(alice.locator("#messages li")).to_have_text(["alice: hello bob", "bob: hi alice"])
    expect(bob.locator("#messages li")).to_have_text(["alice: hello bob", "bob: hi alice"])

    # a third page joins late: it sees both members and the history
    carol = open_page(url)
    sign_in(carol, "carol")
    expect(carol.locator("#messages li")).to_have_text(["alice: hello bob", "bob: hi alice"])
    expect(alice.locator("#members li[data-user=carol]")).to_be_visible()
    expect(carol.locator("#members li")).to_have_count(3)
    assert example.stop() == 0, example.output


def test_the_chat_page_on_the_chat_backend(
    run_example: Callable[..., Example], open_page: Callable[[str], Any]
) -> None:
    from playwright.sync_api import expect

    ports = backend_ports()
    backend = start_backend(run_example, ports)
    backend.wait_said("chat backend ready")
    example = run_example(
        "chat_page.py", f"--port={free_port()}", f"--presenced=ws://127.0.0.1:{ports['port']}/ws"
    )
    url = page_url(example)
    alice, bob = open_page(url), open_page(url)
    sign_in(alice, "alice")
    expect(line(alice, "system: welcome to lobby, alice!")).to_be_visible()
    sign_in(bob, "bob")
    expect(line(alice, "system: welcome to lobby, bob!")).to_be_visible()
    expect(line(bob, "system: welcome to lobby, bob!")).to_be_visible()

    say(bob, "hello")
    say(bob, "buy my spam")
    expect(line(alice, "system: a message by bob was removed")).to_be_visible()
    for page in (alice, bob):
        expect(line(page, "spam")).to_have_count(0)
        expect(line(page, "bob: hello")).to_be_visible()
    assert example.stop() == 0, example.output
    assert backend.stop() == 0, backend.output
