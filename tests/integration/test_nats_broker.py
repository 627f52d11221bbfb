"""NatsBroker beyond the broker contract (test_broker_contract.py runs that on Valkey, a
Valkey Cluster and NATS): two brokers (as two gateway processes would have) on one real
nats-server.

- Channel names become one NATS subject token each: reversibly, without collisions, whatever
  the room or user id holds (dots, stars, ``>``, spaces, ``%``, non-ASCII, nothing at all).
- Channels with odd ids reach their own handler only, each on the one subject checked on the
  server (its monitoring endpoint).
- close() drains what was published.
- NATS unreachable at first: subscribing records the wish, publishing fails; once the server
  is up the subscription is made.

The server is session-scoped (tests/integration/conftest.py); each test takes a fresh subject
prefix, so channels never meet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.errors import Error as NatsError

from presenced.store.nats import NatsBroker, escape_channel, unescape_channel
from tests.support.brokers import Inbox, probe_until_delivered
from tests.support.nats import NatsProcess

__all__: list[str] = []

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
        await probe_until_delivered(a, "room", [inbox], (NatsError, ConnectionError))
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
