"""The examples (examples/README.md), each started by its one documented command as a
subprocess on free loopback ports and driven by real clients.

- examples/chat_backend.py: protocol clients join and chat; the backend's welcomes and
  deletions reach them, its API writes are in the room's history, and its webhook endpoint
  refuses a bad signature and acts once on a redelivered batch.

Every wait is for an event, bounded; nothing sleeps.
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
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from presenced.api import ApiClient
from presenced.protocol.chat import MessageAck, MessageDeleted, MessageEvent
from presenced.testing import ProtocolClient
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
            self.lines.append(line.rstrip("\n"))

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    @property
    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def wait_said(self, text: str, timeout: float = START) -> None:
        """Block until a line contains ``text`` (for the sync tests; the reader thread
        sets no event, so this polls, bounded)."""
        deadline = time.monotonic() + timeout
        while not self.said(text):
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.output}"
            assert time.monotonic() < deadline, f"not within {timeout}s: {text!r}\n{self.output}"
            time.sleep(0.02)  # poll pacing; the deadline bounds the wait

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


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


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
    await until(lambda: backend.said("chat backend ready"), backend.output, START)
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
    await alice.wait_for(by("system", "a message by bob was removed"))

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
    assert post(hook, forged, {"Content-Type": "application/json"}) == 401
    assert post(hook, forged, signed(forged, "another-secret-0123456789")) == 401
    assert post(hook, forged, signed(forged, at=time.time() - 3600)) == 401
    # a batch delivered twice is acted on once (answered after it was acted on)
    batch = json.dumps({"events": [carol]}).encode()
    assert post(hook, batch, signed(batch)) == 200
    assert post(hook, batch, signed(batch)) == 200

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
