"""Tokens checked against an identity provider's JWKS (``jwt_jwks_url``): a real HTTP server
serves the key set, a real presenced fetches it; keys rotate in (picked up at once for an
unknown ``kid``) and out (refused after the next fetch)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from presenced.protocol.messages import Error, Welcome
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory

pytestmark = pytest.mark.own_backend  # the key source is the subject, not the store


class Provider:
    """An identity provider: private keys by kid, and which of them its JWKS publishes."""

    def __init__(self) -> None:
        self.private: dict[str, Any] = {}
        self.published: list[str] = []
        self.hits = 0

    def add(self, kid: str, kind: str = "RSA") -> None:
        self.private[kid] = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if kind == "RSA"
            else ec.generate_private_key(ec.SECP256R1())
        )
        self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            key = self.private[kid]
            algo = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
            entry = json.loads(algo.to_jwk(key.public_key()))
            keys.append({**entry, "kid": kid, "use": "sig"})
        return {"keys": keys}

    def token(self, kid: str, sub: str = "alice", key_of: str | None = None) -> str:
        key = self.private[key_of or kid]
        alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        claims = {"sub": sub, "exp": time.time() + 60}
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
async def provider() -> AsyncIterator[tuple[Provider, str]]:
    idp = Provider()

    async def serve(request: web.Request) -> web.Response:
        idp.hits += 1
        return web.json_response(idp.jwks())

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield idp, f"http://127.0.0.1:{port}/.well-known/jwks.json"
    await runner.cleanup()


async def connect(url: str, token: str) -> Any:
    client = await ProtocolClient.connect(f"{url}?device=d&token={token}")
    first = await client.wait_for(lambda m: isinstance(m, Welcome | Error))
    await client.close()
    return first


async def test_tokens_verify_against_the_jwks_and_keys_rotate(
    provider: tuple[Provider, str], make_server: ServerFactory
) -> None:
    idp, url = provider
    idp.add("k1")
    idp.add("e1", "EC")
    server = await make_server(auth_mode="jwt", jwt_jwks_url=url, jwt_jwks_refresh=3600)
    assert idp.hits == 1  # fetched at start
    for kid in ("k1", "e1"):
        welcome = await connect(server.url, idp.token(kid))
        assert isinstance(welcome, Welcome) and welcome.user == "alice"
    # A key rotated in: the first token naming it makes the node fetch the set again.
    idp.add("k2")
    assert isinstance(await connect(server.url, idp.token("k2", sub="bob")), Welcome)
    assert idp.hits == 2
    # A forged kid, or a known kid over another key's signature: refused.
    idp.private["evil"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unknown = await connect(server.url, idp.token("evil"))
    assert isinstance(unknown, Error) and unknown.code == "AUTH_FAILED"
    assert "unknown signing key `evil`" in unknown.message
    forged = await connect(server.url, idp.token("k1", key_of="evil"))
    assert isinstance(forged, Error) and "bad signature" in forged.message
    # Unknown kids fetch at most once per MIN_REFETCH: a flood of them is one fetch.
    hits = idp.hits
    for _ in range(5):
        await connect(server.url, idp.token("evil"))
    assert idp.hits == hits
    # A key rotated out is refused once the set was fetched again.
    idp.published.remove("k1")
    verifier = server.node.lifecycle.verifier
    assert verifier is not None and verifier.jwks is not None
    await verifier.jwks.fetch()
    gone = await connect(server.url, idp.token("k1"))
    assert isinstance(gone, Error) and "unknown signing key `k1`" in gone.message


async def test_a_failed_fetch_keeps_the_keys_it_had(
    provider: tuple[Provider, str], make_server: ServerFactory
) -> None:
    idp, url = provider
    idp.add("k1")
    server = await make_server(auth_mode="jwt", jwt_jwks_url=url, jwt_jwks_refresh=3600)
    verifier = server.node.lifecycle.verifier
    assert verifier is not None and verifier.jwks is not None
    verifier.jwks.url = url.replace("jwks.json", "missing.json")  # the provider answers 404
    await verifier.jwks.fetch()
    assert verifier.jwks.kids == ["k1"]
    assert isinstance(await connect(server.url, idp.token("k1")), Welcome)
