"""/metrics on the admin port as real clients connect, talk and leave; the session and auth
log lines (and that no token or secret ever reaches the log); a server stops even when its
pub/sub lag ping is stuck and swallows its cancellation."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from dataclasses import replace

import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from presenced.config import Settings
from presenced.logs import JsonFormatter, TextFormatter
from presenced.protocol.messages import Error
from presenced.server.serve import RunningServer, start_server
from presenced.store.base import Broker, MessageHandler
from presenced.store.memory import memory_backplane
from presenced.testing import ProtocolClient
from tests.conftest import FAST, Connect, ServerFactory
from tests.support.waiting import eventually

SECRET = "metrics-test-secret-that-is-long-enough-for-hs256"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


async def scrape(server: RunningServer) -> dict[str, float]:
    """Every sample as ``name{label=value,...}`` (the node label left out) -> value."""
    text = await asyncio.to_thread(_get, server.admin_url + "/metrics")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "node")
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


async def until_metric(server: RunningServer, name: str, want: float) -> dict[str, float]:
    got: dict[str, float] = {}

    async def check() -> bool:
        nonlocal got
        got = await scrape(server)
        return got.get(name) == want

    await eventually(check, f"{name} == {want} (last {got.get(name)})")
    return got


async def test_counts_follow_real_clients(
    server: RunningServer, connect: Connect, gateway_backend: str
) -> None:
    before = await scrape(server)
    assert before["presenced_connections_opened_total{}"] == 0
    alice = await connect("alice", "phone")
    bob = await connect("bob", "laptop")
    for client in (alice, bob):
        await client.request({"type": "room.join", "room": "r"})
    await alice.request({"type": "presence.subscribe", "users": ["bob"]})
    await alice.request({"type": "heartbeat"})
    await alice.request({"type": "message.send", "room": "r", "body": "hi", "temp_id": "t1"})
    await bob.wait_for("message")
    now = await scrape(server)
    assert now["presenced_connections_opened_total{}"] == 2
    assert now["presenced_connections{}"] == 2
    assert now["presenced_sessions_by_state{state=active}"] == 2
    assert now["presenced_sessions_by_state{state=grace}"] == 0
    assert now["presenced_rooms_local{}"] == 1
    assert now["presenced_users_local{}"] == 2
    assert now["presenced_presence_subscriptions{}"] == 1
    assert now["presenced_heartbeats_total{}"] == 1
    assert now["presenced_messages_received_total{}"] == 1
    assert now["presenced_events_published_total{type=member.joined}"] == 2
    assert now["presenced_events_published_total{type=message}"] == 1
    assert now["presenced_worker_processes{}"] == 1
    assert now["presenced_frames_unsent_total{}"] == 0

    async def every_frame_counted() -> bool:  # replies one by one, broadcasts once each
        samples = await scrape(server)
        return samples["presenced_deliveries_total{}"] == alice.frames + bob.frames

    await eventually(every_frame_counted, "deliveries == the frames the clients read")
    store_calls = [k for k in now if k.startswith("presenced_store_call_seconds_count")]
    if gateway_backend == "valkey":
        assert now["presenced_store_call_seconds_count{operation=sessions.put}"] >= 2
        assert now["presenced_export_unwritten{}"] >= 0  # the store's outbox: the node's part
        assert now["presenced_export_write_failures_total{}"] == 0

        async def pinged() -> bool:  # the node pings its own channel after each lease tick
            return (await scrape(server)).get("presenced_pubsub_lag_seconds_count{}", 0) >= 1

        await eventually(pinged, "a pub/sub round trip measured")
    else:
        assert store_calls == []  # the memory store answers inline: nothing to time
        assert "presenced_export_unwritten{}" not in now  # no store outbox
    await bob.close()  # a normal close (1000); the session waits in grace
    after = await until_metric(server, "presenced_connections_closed_total{code=1000}", 1)
    assert after["presenced_connections{}"] == 1
    alice.abort()  # no close frame: 1006, and the session waits in grace
    after = await until_metric(server, "presenced_connections_closed_total{code=1006}", 1)
    await until_metric(server, "presenced_sessions_by_state{state=grace}", 2)


async def test_rate_limited_requests_are_counted(make_server: ServerFactory) -> None:
    server = await make_server(rate_limit=0.5, rate_burst=2)
    client = await ProtocolClient.connect(f"{server.url}?user=u&device=d")
    await client.wait_for("welcome")
    replies = [await client.request({"type": "heartbeat"}) for _ in range(4)]
    refused = sum(isinstance(r, Error) and r.code == "RATE_LIMITED" for r in replies)
    assert refused >= 2
    samples = await scrape(server)
    assert samples["presenced_rate_limited_total{limit=request}"] == refused
    await client.close()


async def test_auth_failures_by_reason_and_logs_without_secrets(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="presenced")
    server = await make_server(auth_mode="jwt", jwt_secret=SECRET, trusted_proxies="127.0.0.1")
    expired = jwt.encode({"sub": "x", "exp": time.time() - 60}, SECRET, algorithm="HS256")
    forged = jwt.encode({"sub": "x"}, "another-secret-of-enough-length-xxxxxx", algorithm="HS256")
    good = jwt.encode({"sub": "alice", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    for bad in (expired, forged, expired):
        client = await ProtocolClient.connect(server.url)
        reply = await client.request({"type": "auth", "token": bad, "device": "p"})
        assert isinstance(reply, Error) and reply.code == "AUTH_FAILED"
        assert await client.wait_closed() == 4001
    # a good token through a trusted proxy: the log shows the forwarded address
    client = await ProtocolClient.connect(
        f"{server.url}?token={good}&device=p",
        additional_headers={"X-Forwarded-For": "203.0.113.7"},
    )
    await client.wait_for("welcome")
    # a refresh with a forged token is refused (the session runs on) and counted
    reply = await client.request({"type": "refresh", "token": forged})
    assert isinstance(reply, Error) and reply.code == "AUTH_FAILED"
    await client.close()
    samples = await until_metric(server, "presenced_connections_closed_total{code=1000}", 1)
    assert samples["presenced_auth_failures_total{reason=expired}"] == 2
    assert samples["presenced_auth_failures_total{reason=signature}"] == 2
    assert samples["presenced_connections_closed_total{code=4001}"] == 3

    def lines(message: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage() == message]

    await eventually(lambda: _true(bool(lines("session closed"))), "the session closed line")
    failed = lines("auth failed")
    assert sorted(r.presenced_fields["reason"] for r in failed) == [  # type: ignore[attr-defined]
        "expired",
        "expired",
        "signature",
        "signature",
    ]
    ips = [r.presenced_fields["ip"] for r in failed]  # type: ignore[attr-defined]
    assert ips.count("127.0.0.1") == 3  # the refused connects: the peer's address
    assert ips.count("203.0.113.7") == 1  # the refresh, on the proxied connection
    (opened,) = lines("session opened")
    assert opened.presenced_fields["ip"] == "203.0.113.7"  # type: ignore[attr-defined]
    assert opened.presenced_fields["user"] == "alice"  # type: ignore[attr-defined]
    (closed,) = lines("session closed")
    assert closed.presenced_fields["close_code"] == 1000  # type: ignore[attr-defined]
    assert closed.presenced_fields["duration"] >= 0  # type: ignore[attr-defined]
    # Nothing secret in any line, whichever the format.
    for formatter in (TextFormatter(), JsonFormatter()):
        text = "\n".join(formatter.format(r) for r in caplog.records)
        for secret in (SECRET, expired, forged, good, good.split(".")[2]):
            assert secret not in text


async def _true(value: bool) -> bool:
    return value


class PingSwallowsCancel:
    """A broker whose lag pings hang until cancelled and then return as if sent: what
    redis-py can do with a cancellation that lands in a command. Everything else is the
    real (memory) broker's."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.inline = inner.inline
        self.on_resubscribed = inner.on_resubscribed
        self.stuck = asyncio.Event()
        self.swallowed = 0

    @property
    def connected(self) -> bool:
        return True

    async def publish(self, channel: str, payload: bytes, origin: str | None = None) -> None:
        if payload.startswith(b"ping "):
            self.stuck.set()
            try:
                await asyncio.get_running_loop().create_future()  # never answered
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed += 1
                return  # the first cancellation is swallowed
        await self.inner.publish(channel, payload, origin)

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        await self.inner.subscribe(channel, handler)

    async def unsubscribe(self, channel: str) -> None:
        await self.inner.unsubscribe(channel)


async def test_stop_is_bounded_when_the_lag_ping_swallows_its_cancellation() -> None:
    # How the full suite hung: the ping's loop stopped on its cancellation only, and the
    # server's stop waited for that loop without a bound.
    base = memory_backplane()
    broker = PingSwallowsCancel(base.broker)
    backplane = replace(base, broker=broker)
    server = await start_server(Settings().replace(**FAST), backplane=backplane)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(broker.stuck.wait(), 5)  # the first lease tick pings
        client = await ProtocolClient.connect(f"{server.url}?user=u&device=d")
        await client.wait_for("welcome")
    finally:
        started = loop.time()
        await asyncio.wait_for(server.stop(), 10)  # cancelled at 10 s, it would finish then
    assert loop.time() - started < 3, "stop waited for the stuck ping"
    assert broker.swallowed == 1
    assert await client.wait_closed() == 1012
