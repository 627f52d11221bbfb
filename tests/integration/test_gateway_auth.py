"""JWT authentication over real sockets: good, bad, expired tokens and room patterns."""

from __future__ import annotations

import time

import jwt
import pytest

from presenced.protocol.messages import Error, RoomJoined, Welcome
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
