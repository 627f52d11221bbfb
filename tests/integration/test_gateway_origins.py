"""Which web pages may open a WebSocket: the upgrade's ``Origin`` against ``allowed_origins``
(config/origins.py). A real server and real upgrades; a refused one gets HTTP 403 and the
server goes on serving everyone else."""

from __future__ import annotations

import time

import jwt
import pytest
from websockets.exceptions import InvalidStatus

from presenced.config import Settings
from presenced.errors import ConfigError
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def token(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": time.time() + 60}, SECRET, algorithm="HS256")


async def refused(url: str, origin: str) -> int:
    with pytest.raises(InvalidStatus) as err:
        await ProtocolClient.connect(url, origin=origin)
    body = err.value.response.body or b""
    assert b"allowed_origins" in body
    return err.value.response.status_code


async def welcomed(url: str, origin: str | None) -> None:
    client = await ProtocolClient.connect(url, origin=origin)
    await client.wait_for("welcome")
    await client.close()


async def test_listed_origins_connect_and_others_get_403(make_server: ServerFactory) -> None:
    origins = "https://app.example.com, https://*.staging.example.com http://localhost:*"
    server = await make_server(allowed_origins=origins)
    url = f"{server.url}?user=alice&device=d"
    for origin in (
        "https://app.example.com",
        "HTTPS://APP.EXAMPLE.COM:443",  # case and the default port do not matter
        "https://a.b.staging.example.com",
        "http://localhost:5173",
    ):
        await welcomed(url, origin)
    for origin in (
        "https://evil.example.com",
        "http://app.example.com",  # another scheme is another origin
        "https://app.example.com.evil.net",
        "https://staging.example.com",  # the wildcard needs a label
        "null",  # a sandboxed frame or a file:// page
    ):
        assert await refused(url, origin) == 403
    await welcomed(url, None)  # no Origin: not a browser, not this rule's business


async def test_by_default_jwt_mode_takes_same_origin_pages_only(make_server: ServerFactory) -> None:
    server = await make_server(jwt_secret=SECRET, auth_mode="jwt")
    url = f"{server.url}?token={token('alice')}&device=d"
    same = server.http_url  # the page the server itself would serve
    await welcomed(url, same)
    assert await refused(url, "https://elsewhere.example") == 403
    await welcomed(url, None)


async def test_by_default_the_insecure_mode_takes_every_origin(make_server: ServerFactory) -> None:
    server = await make_server()
    await welcomed(f"{server.url}?user=alice&device=d", "http://localhost:3000")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "no origin given"),
        ("app.example.com", "is not an origin"),
        ("https://app.example.com/path", "has a path"),
        (42, "is not a list of origins"),
    ],
)
def test_bad_allowed_origins_name_the_setting(value: object, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings().replace(allowed_origins=value)
    assert err.value.key == "allowed_origins" and words in err.value.message
