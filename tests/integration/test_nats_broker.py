"""NatsBroker between two nodes: two brokers (as two gateway processes would have) on one real
nats-server.

- Channel names become one NATS subject token each: reversibly, without collisions, whatever
  the room or user id holds (dots, stars, ``>``, spaces, ``%``, non-ASCII, nothing at all).
- An event published by either node reaches the handler of every node subscribed to the
  channel, with its origin; in order from one publisher.
- Unsubscribing stops delivery (proved by a later marker, not by waiting); (un)subscribing is
  idempotent; subscribing again replaces the handler; a handler that raises is logged and
  delivery goes on; close() drains what was published.
- Channels with odd ids reach their own handler only, each on the one subject checked on the
  server (its monitoring endpoint).
- NATS unreachable at first: subscribing records the wish, publishing fails; once the server
  is up the subscription is made.
- The server restarts: nats-py reconnects, replays the subscriptions (logged) and delivery
  resumes; the test probes until it does, every wait bounded.

The server is session-scoped; each test takes a fresh subject prefix, so channels never meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.errors import Error as NatsError

from presenced.store.nats import NatsBroker, escape_channel, unescape_channel
from tests.support.nats import NatsProcess

__all__: list[str] = []

WAIT = 5.0  # seconds to wait for one message before failing
RESUME = 30.0  # seconds for delivery to resume after a restart
LOGGER = "presenced.store.nats.broker"

ODD = [
    "",
    "room:plain",
    "room:a.b",
    "room:a..b.",
    "room:*",
    "room:>",
    "room:a.*.>",
    "room:%2E",
    "room:%",
    "room:%%41",
    "room:with space",
    "room:tab\there",
    "room:line\r\nbreak",
    "room:ümlaut-日本",
    "room:emoji-🙂",
    "room:\x00\x7f",
    "room:a/b\\c",
    "room:$SYS",
    "user:alice@example.com",
    "presence:a.b",
]


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsProcess]:
    server = NatsProcess()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@dataclass
class Inbox:
    """A broker handler that records what it gets and lets a test wait for the next one."""

    got: list[tuple[bytes, str | None]] = field(default_factory=list)
    queue: asyncio.Queue[tuple[bytes, str | None]] = field(default_factory=asyncio.Queue)

    def __call__(self, payload: bytes, origin: str | None) -> None:
        self.got.append((payload, origin))
        self.queue.put_nowait((payload, origin))

    async def next(self, timeout: float = WAIT) -> tuple[bytes, str | None]:
        return await asyncio.wait_for(self.queue.get(), timeout)


@dataclass
class Nodes:
    """Two brokers sharing one server and subject prefix, as two gateway nodes."""

    a: NatsBroker
    b: NatsBroker
    prefix: str


def _prefix() -> str:
    return f"bt{uuid4().hex[:10]}"


@pytest.fixture
async def nodes(nats_server: NatsProcess) -> AsyncIterator[Nodes]:
    prefix = _prefix()
    a, b = NatsBroker(nats_server.url, prefix), NatsBroker(nats_server.url, prefix)
    try:
        yield Nodes(a, b, prefix)
    finally:
        await a.close()
        await b.close()


async def _until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until it holds, bounded by ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.02)  # poll pacing; the deadline above bounds the wait


# --- subjects ----------------------------------------------------------------------------------


def _valid_token(token: str) -> bool:
    """One NATS subject token, and a tame one: printable ASCII, no separator or wildcard."""
    return (
        bool(token)
        and token.isascii()
        and token.isprintable()
        and not any(c in token for c in ". *>\t\r\n")
    )


def test_odd_channel_names_map_to_one_distinct_token_each() -> None:
    tokens = [escape_channel(name) for name in ODD]
    assert all(_valid_token(t) for t in tokens), tokens
    assert len(set(tokens)) == len(ODD)
    assert [unescape_channel(t) for t in tokens] == ODD
    assert escape_channel("room:plain-id_9") == "room:plain-id_9"  # readable when it can be
    assert escape_channel("room:a.b") == "room:a%2Eb"
    assert escape_channel("") == "%"
    assert escape_channel("%") == "%25"
    for bad in ("%2e", "a%2", "a%", "%%", "a.b", "room:a%41", "%FF", "%C3", "a b"):
        with pytest.raises(ValueError):
            unescape_channel(bad)


@given(st.text())
def test_any_name_round_trips_through_one_valid_token(name: str) -> None:
    token = escape_channel(name)
    assert _valid_token(token)
    assert unescape_channel(token) == name  # so two names never share a token


@given(st.text(), st.text())
def test_distinct_names_get_distinct_tokens(a: str, b: str) -> None:
    assert (escape_channel(a) == escape_channel(b)) == (a == b)


def test_subject_is_prefix_and_token() -> None:
    broker = NatsBroker("nats://127.0.0.1:1", "pd.prod")
    assert broker.subject("room:a.b") == "pd.prod.room:a%2Eb"
    for bad in ("", "a..b", "a.", "a b", "a.*", "x>"):
        with pytest.raises(ValueError):
            NatsBroker("nats://127.0.0.1:1", bad)


# --- delivery between nodes --------------------------------------------------------------------


async def test_every_subscribed_node_gets_payload_and_origin(nodes: Nodes) -> None:
    a, b = nodes.a, nodes.b
    in_a, in_b = Inbox(), Inbox()
    await a.subscribe("room:1", in_a)
    await b.subscribe("room:1", in_b)

    await a.publish("room:1", b'{"type":"member.joined"}', "s1")
    for inbox in (in_a, in_b):
        assert await inbox.next() == (b'{"type":"member.joined"}', "s1")
    await b.publish("room:1", b"\x00\xff\xff binary", None)
    for inbox in (in_a, in_b):
        assert await inbox.next() == (b"\x00\xff\xff binary", None)
    await b.publish("room:1", b"", "séssion-ü")
    for inbox in (in_a, in_b):
        assert await inbox.next() == (b"", "séssion-ü")
    # (publish hands the message to the connection: two nodes' messages are in the order
    # the server gets them, which is why each is awaited before the other node publishes.)
    await a.publish("room:1", b"default origin")
    for inbox in (in_a, in_b):
        assert await inbox.next() == (b"default origin", None)

    # In order from one publisher, all of them, on both nodes.
    for i in range(50):
        await a.publish("room:1", str(i).encode(), f"s{i}")
    for inbox in (in_a, in_b):
        for i in range(50):
            assert await inbox.next() == (str(i).encode(), f"s{i}")
    assert len(in_a.got) == len(in_b.got) == 54
    assert a.channels == b.channels == ["room:1"]
    assert a.connected and b.connected


async def test_unsubscribe_stops_delivery(nodes: Nodes, nats_server: NatsProcess) -> None:
    a, b = nodes.a, nodes.b
    in_a, old_b = Inbox(), Inbox()
    await a.subscribe("ch", in_a)
    await b.subscribe("ch", old_b)
    await b.subscribe("ch", old_b)  # idempotent: still one subscription
    subject = a.subject("ch")
    assert nats_server.subscriptions().count(subject) == 2  # one per node
    await a.publish("ch", b"first", "s1")
    assert await in_a.next() == (b"first", "s1")
    assert await old_b.next() == (b"first", "s1")

    await b.unsubscribe("ch")
    await b.unsubscribe("ch")  # idempotent
    await b.unsubscribe("never-subscribed")
    assert b.channels == []
    assert nats_server.subscriptions().count(subject) == 1  # the server already knows
    await a.publish("ch", b"while away", "s2")
    assert await in_a.next() == (b"while away", "s2")  # it was published: node a got it

    # Subscribing again and waiting for a marker proves "while away" never reached node b.
    new_b = Inbox()
    await b.subscribe("ch", new_b)
    await a.publish("ch", b"marker", None)
    assert await new_b.next() == (b"marker", None)
    assert await in_a.next() == (b"marker", None)
    assert old_b.got == [(b"first", "s1")]
    assert new_b.got == [(b"marker", None)]


async def test_subscribing_again_replaces_the_handler(nodes: Nodes) -> None:
    a, b = nodes.a, nodes.b
    first, second = Inbox(), Inbox()
    await b.subscribe("ch", first)
    await a.publish("ch", b"one", None)
    assert await first.next() == (b"one", None)
    await b.subscribe("ch", second)
    await a.publish("ch", b"two", "s2")
    assert await second.next() == (b"two", "s2")
    assert first.got == [(b"one", None)]
    assert b.channels == ["ch"]


async def test_a_failing_handler_is_logged_and_delivery_goes_on(
    nodes: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = nodes.a, nodes.b
    inbox = Inbox()

    def flaky(payload: bytes, origin: str | None) -> None:
        inbox(payload, origin)
        if payload == b"boom":
            raise RuntimeError("handler bug")

    await b.subscribe("ch", flaky)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        await a.publish("ch", b"boom", None)
        await a.publish("ch", b"after", "s1")
        assert await inbox.next() == (b"boom", None)
        assert await inbox.next() == (b"after", "s1")
    failures = [r.exc_info for r in caplog.records if r.name == LOGGER and r.exc_info]
    assert [str(exc_info[1]) for exc_info in failures] == ["handler bug"]
    assert b.connected


async def test_publish_to_nobody_is_dropped(nodes: Nodes) -> None:
    a, b = nodes.a, nodes.b
    await a.publish("nobody", b"lost", "s1")
    inbox = Inbox()
    await b.subscribe("nobody", inbox)
    await a.publish("nobody", b"marker", None)
    assert await inbox.next() == (b"marker", None)
    assert inbox.got == [(b"marker", None)]  # nothing kept for later subscribers


async def test_odd_ids_reach_their_own_channel_only(nodes: Nodes, nats_server: NatsProcess) -> None:
    a, b = nodes.a, nodes.b
    inboxes = {name: Inbox() for name in ODD}
    for name in ODD:
        await b.subscribe(name, inboxes[name])
    # On the server: one subscription per channel, each on prefix + exactly one token.
    mine = [s for s in nats_server.subscriptions() if s.startswith(nodes.prefix + ".")]
    assert sorted(mine) == sorted(f"{nodes.prefix}.{escape_channel(n)}" for n in ODD)
    assert all(s.count(".") == 1 for s in mine)

    for name in ODD:
        await a.publish(name, name.encode(), f"origin-{name}")
    for name in ODD:
        assert await inboxes[name].next() == (name.encode(), f"origin-{name}")
    # "room:*" and "room:>" are not wildcards: had any channel seen another's message, this
    # marker would not be next in line.
    for name in ODD:
        await a.publish(name, b"marker", None)
    for name in ODD:
        assert await inboxes[name].next() == (b"marker", None)
        assert len(inboxes[name].got) == 2, name
    assert sorted(b.channels) == sorted(ODD)


async def test_close_drains_what_was_published(nats_server: NatsProcess) -> None:
    prefix = _prefix()
    a, b = NatsBroker(nats_server.url, prefix), NatsBroker(nats_server.url, prefix)
    try:
        inbox = Inbox()
        await b.subscribe("ch", inbox)
        for i in range(200):
            await a.publish("ch", b"%d" % i, None)
        await a.close()  # right after publishing: the drain still sends all of it
        for i in range(200):
            assert await inbox.next() == (b"%d" % i, None)
        assert not a.connected
        with pytest.raises(NatsError):
            await a.publish("ch", b"after close", None)
        with pytest.raises(RuntimeError):
            await a.subscribe("ch", inbox)
    finally:
        await a.close()
        await b.close()


# --- NATS unreachable, then back ---------------------------------------------------------------


async def _probe_until_delivered(publisher: NatsBroker, channel: str, inboxes: list[Inbox]) -> None:
    """Publish probes until every inbox got one, each wait bounded, then drain up to a marker
    so the inboxes hold only what comes next."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESUME
    waiting = list(inboxes)
    probe = 0
    while waiting:
        assert loop.time() < deadline, "delivery did not resume"
        probe += 1
        with contextlib.suppress(NatsError, ConnectionError):
            await publisher.publish(channel, b"probe %d" % probe, None)
        for inbox in list(waiting):
            with contextlib.suppress(TimeoutError):
                while True:
                    payload, _ = await inbox.next(timeout=0.2)
                    if payload.startswith(b"probe"):
                        waiting.remove(inbox)
                        break
    await publisher.publish(channel, b"drained", None)
    for inbox in inboxes:
        while (payload := (await inbox.next())[0]) != b"drained":
            assert payload.startswith(b"probe")


async def test_subscribing_before_nats_is_reachable(caplog: pytest.LogCaptureFixture) -> None:
    server = NatsProcess()  # not started yet
    prefix = _prefix()
    a = NatsBroker(server.url, prefix, connect_wait=0.5)
    b = NatsBroker(server.url, prefix, connect_wait=0.5)
    try:
        inbox = Inbox()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            await b.subscribe("room", inbox)  # gives up waiting: the wish is recorded
            assert b.channels == ["room"] and not b.connected
            with pytest.raises(ConnectionError):
                await a.publish("room", b"nobody there", None)
        assert any("cannot reach" in r.getMessage() for r in caplog.records)

        await asyncio.to_thread(server.start)
        await _probe_until_delivered(a, "room", [inbox])
        await a.publish("room", b"up", "s1")
        assert await inbox.next() == (b"up", "s1")
        assert server.subscriptions().count(b.subject("room")) == 1
    finally:
        await a.close()
        await b.close()
        await asyncio.to_thread(server.cleanup)


async def test_close_while_nats_is_unreachable() -> None:
    server = NatsProcess()  # never started: the broker keeps trying until it is closed
    broker = NatsBroker(server.url, _prefix(), connect_wait=0.2)
    try:
        await broker.subscribe("room", Inbox())
        assert not broker.connected
    finally:
        await broker.close()
        await asyncio.to_thread(server.cleanup)
    with pytest.raises(RuntimeError):
        await broker.subscribe("other", Inbox())
    assert broker.channels == ["room"] and not broker.connected


async def test_delivery_resumes_after_the_server_restarts(
    nats_server: NatsProcess, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = _prefix()
    a, b = NatsBroker(nats_server.url, prefix), NatsBroker(nats_server.url, prefix)
    try:
        in_a, in_b, other_b = Inbox(), Inbox(), Inbox()
        await a.subscribe("room", in_a)
        await b.subscribe("room", in_b)
        await b.subscribe("other", other_b)
        await a.publish("room", b"before", "s1")
        assert await in_a.next() == (b"before", "s1")
        assert await in_b.next() == (b"before", "s1")

        with caplog.at_level(logging.INFO, logger=LOGGER):
            # In a thread: the event loop (and the brokers' readers) keeps going.
            await asyncio.to_thread(nats_server.restart)
            await _probe_until_delivered(a, "room", [in_a, in_b])
            await _probe_until_delivered(b, "other", [other_b])

            # Both nodes get what comes next, exactly, from either publisher.
            await b.publish("room", b"after", "s2")
            await a.publish("other", b"other after", "s3")
            for inbox in (in_a, in_b):
                assert await inbox.next() == (b"after", "s2")
            assert await other_b.next() == (b"other after", "s3")

            def logged(text: str) -> list[str]:
                return [r.getMessage() for r in caplog.records if text in r.getMessage()]

            await _until(lambda: len(logged("reconnected")) == 2, "both brokers log a reconnect")
        assert len(logged("disconnected")) == 2
        assert sorted(m.rsplit(", ", 1)[1] for m in logged("reconnected")) == [
            "re-subscribed 1 channel(s)",
            "re-subscribed 2 channel(s)",
        ]
        assert a.connected and b.connected
    finally:
        await a.close()
        await b.close()
