"""Connection limits over real sockets: ``max_connections_per_user`` (sessions of a user, in
the store, so across nodes) and ``max_connections_per_ip`` (a node's open sockets per client
address, ``X-Forwarded-For`` believed only from ``trusted_proxies``). The connection over a
limit gets ``TOO_MANY_CONNECTIONS`` and close 4012; everyone else is served on."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from presenced.config import Settings
from presenced.errors import ConfigError
from presenced.protocol.codes import CloseCode, ErrorCode
from presenced.protocol.messages import Error, Welcome
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory
from tests.support.waiting import until

LIMIT = CloseCode.TOO_MANY_CONNECTIONS


async def welcomed(url: str, **kwargs: object) -> tuple[ProtocolClient, Welcome]:
    client = await ProtocolClient.connect(url, **kwargs)
    welcome = await client.wait_for("welcome")
    assert isinstance(welcome, Welcome)
    return client, welcome


async def refused(url: str, **kwargs: object) -> Error:
    """Connect and expect the limit's refusal: the error, then close 4012."""
    client = await ProtocolClient.connect(url, **kwargs)
    assert await client.wait_closed() == LIMIT
    errors = client.of_type("error")
    assert not client.of_type("welcome")
    assert len(errors) == 1 and isinstance(errors[0], Error)
    assert errors[0].code == ErrorCode.TOO_MANY_CONNECTIONS
    return errors[0]


async def served(client: ProtocolClient) -> None:
    """The client is still connected and answered."""
    reply = await client.request({"type": "heartbeat"})
    assert type(reply).__name__ == "HeartbeatAck"


def user_url(server: RunningServer, user: str, device: str, **extra: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"user": user, "device": device, **extra}.items())
    return f"{server.url}?{query}"


# --- per user ---------------------------------------------------------------------------------


async def test_the_users_next_session_is_refused_and_a_logout_frees_a_slot(
    make_server: ServerFactory,
) -> None:
    server = await make_server(max_connections_per_user=2)
    bob, _ = await welcomed(user_url(server, "bob", "b1"))
    first, _ = await welcomed(user_url(server, "alice", "d1"))
    second, _ = await welcomed(user_url(server, "alice", "d2"))
    error = await refused(user_url(server, "alice", "d3"))
    assert "max_connections_per_user = 2" in error.message
    await served(bob)  # a bystander: connected and answered
    await served(first)
    assert server.node.stats.connections_refused == {"user": 1}
    assert server.node.session_count == 3  # the refused one left nothing behind

    await first.send({"type": "logout"})  # ends the session now: its slot is free
    assert await first.wait_closed() == CloseCode.NORMAL
    third, _ = await welcomed(user_url(server, "alice", "d3"))
    await refused(user_url(server, "alice", "d4"))
    assert server.node.stats.connections_refused == {"user": 2}
    for client in (bob, second, third):
        await served(client)
        await client.close()


async def test_a_resume_within_grace_is_not_a_new_connection(make_server: ServerFactory) -> None:
    server = await make_server(max_connections_per_user=1, grace=5.0)
    client, welcome = await welcomed(user_url(server, "alice", "d1"))
    client.abort()  # dropped: the session is in grace, still one of the user's
    await client.wait_closed()
    await refused(user_url(server, "alice", "d2"))  # a new session while it is in grace
    back, again = await welcomed(user_url(server, "alice", "d1", resume=welcome.resume_token))
    assert again.resumed and again.session == welcome.session
    # Resumed while the old socket still looks open (half-open): replaced, not refused.
    other, replaced = await welcomed(user_url(server, "alice", "d1", resume=again.resume_token))
    assert replaced.resumed and replaced.session == welcome.session
    assert await back.wait_closed() == CloseCode.SESSION_REPLACED
    await served(other)
    assert server.node.stats.connections_refused == {"user": 1}
    await other.close()


async def test_a_session_whose_grace_ran_out_frees_its_slot(make_server: ServerFactory) -> None:
    server = await make_server(max_connections_per_user=1)  # grace 0.4 s (FAST)
    client, _ = await welcomed(user_url(server, "alice", "d1"))
    await client.close()
    await until(lambda: server.node.session_count == 0, "the session's grace ran out")
    newer, _ = await welcomed(user_url(server, "alice", "d2"))
    await newer.close()


async def test_an_auth_message_over_the_limit_is_refused_too(make_server: ServerFactory) -> None:
    server = await make_server(max_connections_per_user=1)
    held, _ = await welcomed(user_url(server, "alice", "d1"))
    client = await ProtocolClient.connect(server.url)
    reply = await client.request({"type": "auth", "user": "alice", "device": "d2"})
    assert isinstance(reply, Error) and reply.code == ErrorCode.TOO_MANY_CONNECTIONS
    assert await client.wait_closed() == LIMIT
    await served(held)
    await held.close()


@pytest.mark.gateway_backends("valkey")
async def test_the_user_limit_holds_across_nodes(make_server: ServerFactory) -> None:
    """Two nodes on one store: the sessions of a user on either count, and two nodes racing
    for the last slot cannot both have it (the check is in the store's atomic step)."""
    prefix = f"lim-{uuid.uuid4().hex[:10]}"
    one = await make_server(max_connections_per_user=2, redis_prefix=prefix)
    two = await make_server(max_connections_per_user=2, redis_prefix=prefix)
    held, _ = await welcomed(user_url(one, "alice", "d1"))
    also, _ = await welcomed(user_url(two, "alice", "d2"))
    await refused(user_url(one, "alice", "d3"))
    await refused(user_url(two, "alice", "d3"))
    assert one.node.stats.connections_refused == two.node.stats.connections_refused == {"user": 1}
    await served(held)
    await served(also)

    # One slot left for carol; four connects race for it on both nodes: exactly one wins.
    carol, _ = await welcomed(user_url(two, "carol", "c0"))
    racers = [
        await ProtocolClient.connect(user_url(node, "carol", f"c{i}"))
        for i, node in enumerate([one, two, one, two], start=1)
    ]

    async def outcome(client: ProtocolClient) -> str:
        first = await client.wait_for(lambda m: isinstance(m, Welcome | Error))
        return "welcome" if isinstance(first, Welcome) else str(getattr(first, "code", ""))

    outcomes = await asyncio.gather(*(outcome(c) for c in racers))
    assert sorted(outcomes) == ["TOO_MANY_CONNECTIONS"] * 3 + ["welcome"]
    for client, got in zip(racers, outcomes, strict=True):
        if got != "welcome":
            assert await client.wait_closed() == LIMIT
    # A slot freed on one node is free on the other.
    await also.send({"type": "logout"})
    await also.wait_closed()
    again, _ = await welcomed(user_url(one, "alice", "d4"))
    for client in (held, again, carol, *racers):
        if not client.closed.is_set():
            await client.close()


# --- per client address -----------------------------------------------------------------------


async def test_the_addresss_next_socket_is_refused_before_auth(make_server: ServerFactory) -> None:
    server = await make_server(max_connections_per_ip=2)
    # Two sockets that have not authenticated yet hold both slots of 127.0.0.1.
    quiet = [await ProtocolClient.connect(server.url) for _ in range(2)]
    error = await refused(user_url(server, "alice", "d1"))
    assert "max_connections_per_ip = 2" in error.message
    # Another address (the loopback block is all ours) is a bystander with slots of its own.
    bystander, _ = await welcomed(user_url(server, "bob", "b1"), local_addr=("127.0.0.2", 0))
    await served(bystander)
    assert server.node.stats.connections_refused == {"ip": 1}
    assert server.node.address_slots.open_from("127.0.0.1") == 2

    await quiet[0].close()  # a slot of 127.0.0.1 frees once the server saw the socket go
    await until(lambda: server.node.address_slots.open_from("127.0.0.1") == 1, "slot freed")
    client, _ = await welcomed(user_url(server, "alice", "d1"))
    await served(client)
    await served(bystander)
    for c in (client, bystander, quiet[1]):
        await c.close()
    await until(lambda: len(server.node.address_slots) == 0, "every slot given back")


async def test_an_address_connecting_too_often_is_refused_and_others_are_not(
    make_server: ServerFactory,
) -> None:
    """``max_connect_rate_per_ip`` 0.3/s: bursts of 3 (ten seconds' worth). The fourth
    socket in a row from 127.0.0.1 is refused before auth with 4012, closed or not the
    earlier ones were; another address has a bucket of its own."""
    server = await make_server(max_connect_rate_per_ip=0.3)
    first, _ = await welcomed(user_url(server, "alice", "d1"))
    await first.close()  # a socket that went still counted as a connect
    kept = [(await welcomed(user_url(server, "alice", f"d{i}")))[0] for i in (2, 3)]
    error = await refused(user_url(server, "alice", "d4"))
    assert "max_connect_rate_per_ip = 0.3/s" in error.message
    bystander, _ = await welcomed(user_url(server, "bob", "b1"), local_addr=("127.0.0.2", 0))
    for client in (*kept, bystander):
        await served(client)  # the sockets already open are served on
    assert server.node.stats.connections_refused == {"ip_rate": 1}
    assert server.node.connect_rate is not None and len(server.node.connect_rate) == 2
    for client in (*kept, bystander):
        await client.close()


def test_a_full_connect_bucket_is_forgotten() -> None:
    """The map of addresses is pruned of those whose bucket refilled: it does not grow with
    every address ever seen."""
    from presenced.server.limits import ConnectRate

    rate = ConnectRate(1.0)
    for i in range(1024):
        assert rate.allow(f"10.0.{i // 256}.{i % 256}", now=0.0)
    assert len(rate) == 1024
    assert rate.allow("192.0.2.1", now=100.0)  # the others refilled long ago: pruned
    assert len(rate) == 1
    assert [rate.allow("192.0.2.1", now=100.0) for _ in range(10)] == [True] * 9 + [False]


async def test_forwarded_for_counts_only_from_a_trusted_proxy(make_server: ServerFactory) -> None:
    """Behind a trusted proxy each forwarded client has its own slots; from anyone else the
    header is ignored and cannot be used to dodge the limit."""
    proxied = await make_server(max_connections_per_ip=1, trusted_proxies="127.0.0.1")
    ann = {"X-Forwarded-For": "203.0.113.7"}
    ben = {"X-Forwarded-For": "198.51.100.1, 203.0.113.8"}  # the rightmost hop is the client
    a, _ = await welcomed(user_url(proxied, "ann", "a1"), additional_headers=ann)
    b, _ = await welcomed(user_url(proxied, "ben", "b1"), additional_headers=ben)
    await refused(user_url(proxied, "ann", "a2"), additional_headers=ann)
    await refused(
        user_url(proxied, "eve", "e1"), additional_headers={"X-Forwarded-For": "203.0.113.8"}
    )
    assert proxied.node.address_slots.open_from("203.0.113.7") == 1
    assert proxied.node.address_slots.open_from("127.0.0.1") == 0  # the proxy is no client
    await served(a)
    await served(b)

    untrusted = await make_server(max_connections_per_ip=1, trusted_proxies="10.0.0.0/8")
    c, _ = await welcomed(user_url(untrusted, "ann", "a1"), additional_headers=ann)
    spoofed = {"X-Forwarded-For": "192.0.2.99"}
    await refused(user_url(untrusted, "mal", "m1"), additional_headers=spoofed)
    assert untrusted.node.address_slots.open_from("127.0.0.1") == 1
    await served(c)
    for client in (a, b, c):
        await client.close()


@pytest.mark.parametrize("key", ["max_connections_per_user", "max_connections_per_ip"])
@pytest.mark.parametrize(("value", "words"), [(-1, "out of range"), ("many", "not an integer")])
def test_bad_limits_name_the_setting_and_the_allowed_values(
    key: str, value: object, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        Settings().replace(**{key: value})
    assert err.value.key == key and words in err.value.message
    assert ">= 0 (0 = unlimited)" in err.value.message
    assert getattr(Settings(), key) == 0  # off by default
