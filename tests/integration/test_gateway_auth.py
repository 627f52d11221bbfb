"""JWT authentication over real sockets: good, bad, expired tokens and room patterns."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from presenced.protocol.messages import (
    Error,
    HeartbeatAck,
    PresenceSubscribed,
    Refreshed,
    RoomJoined,
    Welcome,
)
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def token(sub: str, **claims: object) -> str:
    return jwt.encode({"sub": sub, "exp": time.time() + 60, **claims}, SECRET, algorithm="HS256")


@pytest.fixture
async def jwt_server(make_server: ServerFactory) -> RunningServer:
    return await make_server(auth_mode="jwt", jwt_secret=SECRET)


async def test_token_in_url_authenticates(jwt_server: RunningServer) -> None:
    client = await ProtocolClient.connect(f"{jwt_server.url}?token={token('alice')}&device=p")
    welcome = await client.wait_for("welcome")
    assert isinstance(welcome, Welcome) and welcome.user == "alice"
    await client.close()


async def test_bearer_header_authenticates(jwt_server: RunningServer) -> None:
    client = await ProtocolClient.connect(
        f"{jwt_server.url}?device=p",
        additional_headers={"Authorization": f"Bearer {token('bob')}"},
    )
    welcome = await client.wait_for("welcome")
    assert isinstance(welcome, Welcome) and welcome.user == "bob"
    await client.close()


@pytest.mark.parametrize(
    "bad",
    [
        jwt.encode({"sub": "x", "exp": time.time() + 60}, "another-secret-of-enough-length-xx"),
        jwt.encode({"sub": "x", "exp": time.time() - 60}, SECRET),
        "not.a.token",
    ],
    ids=["bad-signature", "expired", "malformed"],
)
async def test_bad_token_is_auth_failed_and_closes(jwt_server: RunningServer, bad: str) -> None:
    client = await ProtocolClient.connect(jwt_server.url)
    reply = await client.request({"type": "auth", "token": bad, "device": "p"})
    assert isinstance(reply, Error) and reply.code == "AUTH_FAILED" and reply.message
    assert await client.wait_closed() == 4001


async def test_user_field_is_refused_when_tokens_are_required(jwt_server: RunningServer) -> None:
    client = await ProtocolClient.connect(jwt_server.url)
    reply = await client.request({"type": "auth", "user": "eve", "device": "p"})
    assert isinstance(reply, Error) and (reply.code, reply.field) == ("BAD_REQUEST", "token")


async def test_forbidden_room_changes_nothing(jwt_server: RunningServer) -> None:
    watcher = await ProtocolClient.connect(f"{jwt_server.url}?token={token('carol')}&device=w")
    await watcher.wait_for("welcome")
    await watcher.request({"type": "room.join", "room": "team:secret"})
    limited = await ProtocolClient.connect(
        f"{jwt_server.url}?token={token('alice', rooms=['chat:*'])}&device=p"
    )
    await limited.wait_for("welcome")
    refused = await limited.request({"type": "room.join", "room": "team:secret"})
    assert isinstance(refused, Error)
    assert (refused.code, refused.field) == ("ROOM_FORBIDDEN", "room")
    allowed = await limited.request({"type": "room.join", "room": "chat:general"})
    assert isinstance(allowed, RoomJoined)
    members = await watcher.request({"type": "room.members", "room": "team:secret"})
    assert [m.user for m in members.members] == ["carol"]  # type: ignore[union-attr]
    assert not watcher.of_type("member.joined")
    await watcher.close()
    await limited.close()


# --- token lifetime and refresh ------------------------------------------------------------


async def test_an_expired_token_closes_the_connection_and_a_fresh_one_resumes(
    make_server: ServerFactory,
) -> None:
    server = await make_server(auth_mode="jwt", jwt_secret=SECRET, grace=30)
    bob = await ProtocolClient.connect(f"{server.url}?token={token('bob')}&device=d")
    await bob.wait_for("welcome")
    await bob.request({"type": "room.join", "room": "r"})
    exp = time.time() + 1.0
    alice = await ProtocolClient.connect(f"{server.url}?token={token('alice', exp=exp)}&device=d")
    welcome = await alice.wait_for("welcome")
    assert isinstance(welcome, Welcome) and welcome.expires_at == pytest.approx(exp)
    await alice.request({"type": "room.join", "room": "r"})
    expired = await alice.wait_for("error", timeout=5)
    assert isinstance(expired, Error) and expired.code == "TOKEN_EXPIRED"
    await alice.wait_closed(timeout=5)
    assert alice.close_code == 4011
    assert time.time() >= exp - 0.05  # not before its exp
    # The session is in grace: a fresh token resumes it, and bob never saw alice leave.
    fresh = token("alice")
    back = await ProtocolClient.connect(
        f"{server.url}?token={fresh}&device=d&resume={welcome.resume_token}"
    )
    again = await back.wait_for("welcome")
    assert isinstance(again, Welcome) and again.resumed and again.rooms == ["r"]
    assert not bob.of_type("member.left")
    await back.close()
    await bob.close()


async def test_a_refresh_before_exp_keeps_the_session_served(make_server: ServerFactory) -> None:
    server = await make_server(auth_mode="jwt", jwt_secret=SECRET)
    alice = await ProtocolClient.connect(
        f"{server.url}?token={token('alice', exp=time.time() + 1.0)}&device=d"
    )
    await alice.wait_for("welcome")
    # Refused refreshes say why and leave the connection open: another user's token, a
    # broken one, an expired one.
    for bad, words in (
        (token("mallory"), "not this session's"),
        ("not-a-jwt", "malformed"),
        (token("alice", exp=time.time() - 60), "expired"),
    ):
        reply = await alice.request({"type": "refresh", "token": bad})
        assert isinstance(reply, Error) and reply.code == "AUTH_FAILED" and reply.field == "token"
        assert words in reply.message
    later = time.time() + 60
    refreshed = await alice.request({"type": "refresh", "token": token("alice", exp=later)})
    assert isinstance(refreshed, Refreshed) and refreshed.expires_at == pytest.approx(later)
    deadline = time.time() + 1.5  # past the first token's exp
    while time.time() < deadline:
        ack = await alice.request({"type": "heartbeat"})
        assert isinstance(ack, HeartbeatAck)
        await asyncio.sleep(0.1)  # a client's heartbeat pace; the check is the reply
    assert not alice.closed.is_set()
    await alice.close()


async def test_refresh_in_insecure_mode_is_a_bad_request(make_server: ServerFactory) -> None:
    server = await make_server()
    alice = await ProtocolClient.connect(f"{server.url}?user=alice&device=d")
    await alice.wait_for("welcome")
    reply = await alice.request({"type": "refresh", "token": token("alice")})
    assert isinstance(reply, Error) and reply.code == "BAD_REQUEST" and reply.field == "token"
    await alice.close()


# --- whose presence a session may watch ----------------------------------------------------


async def test_the_watch_claim_says_whose_presence_a_session_may_watch(
    make_server: ServerFactory,
) -> None:
    server = await make_server(auth_mode="jwt", jwt_secret=SECRET, watch_without_claim="none")
    url = f"{server.url}?device=d&token="
    alice = await ProtocolClient.connect(url + token("alice", watch=["team:*", "bob"]))
    await alice.wait_for("welcome")
    ok = await alice.request({"type": "presence.subscribe", "users": ["bob", "team:carol"]})
    assert isinstance(ok, PresenceSubscribed) and [p.user for p in ok.users] == [
        "bob", "team:carol",
    ]  # fmt: skip
    refused = await alice.request({"type": "presence.subscribe", "users": ["team:dan", "eve"]})
    assert isinstance(refused, Error) and refused.code == "WATCH_FORBIDDEN"
    assert refused.field == "users[1]"
    mine = await alice.request({"type": "presence.subscribe", "users": ["alice"]})
    assert isinstance(mine, PresenceSubscribed)  # one's own devices: always
    # No claim: watch_without_claim = none watches no one else.
    zed = await ProtocolClient.connect(url + token("zed"))
    await zed.wait_for("welcome")
    none = await zed.request({"type": "presence.subscribe", "users": ["bob"]})
    assert isinstance(none, Error) and none.code == "WATCH_FORBIDDEN"
    # A refresh whose claim no longer allows bob: later subscriptions follow the new claim.
    await alice.request({"type": "refresh", "token": token("alice", watch=["team:*"])})
    again = await alice.request({"type": "presence.subscribe", "users": ["bob"]})
    assert isinstance(again, Error) and again.code == "WATCH_FORBIDDEN"
    await alice.close()
    await zed.close()


async def test_a_resume_drops_the_watches_the_new_token_does_not_allow(
    make_server: ServerFactory,
) -> None:
    server = await make_server(auth_mode="jwt", jwt_secret=SECRET, grace=30)
    first = await ProtocolClient.connect(f"{server.url}?device=d&token={token('alice')}")
    welcome = await first.wait_for("welcome")
    assert isinstance(welcome, Welcome)
    await first.request({"type": "presence.subscribe", "users": ["bob", "carol"]})
    first.abort()
    narrower = token("alice", watch=["carol"])
    back = await ProtocolClient.connect(
        f"{server.url}?device=d&token={narrower}&resume={welcome.resume_token}"
    )
    again = await back.wait_for("welcome")
    assert isinstance(again, Welcome) and again.resumed and again.subscriptions == ["carol"]
    await back.close()
