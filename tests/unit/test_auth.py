"""presenced.auth: JWT verification with a driven clock, development identities, room patterns.

Keys are generated here with ``cryptography``; tokens are signed with PyJWT (or by hand, for
the attacks PyJWT refuses to produce).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from presenced.auth import (
    SUPPORTED_ALGORITHMS,
    Identity,
    TokenVerifier,
    insecure_identity,
    room_allowed,
)
from presenced.config import JWT_ALGORITHMS
from presenced.errors import AuthError, ConfigError
from presenced.protocol.codes import ErrorCode
from presenced.typing import UserId

NOW = 2_000_000_000.0  # wall time the tests run at (2033): far from the real clock on purpose
SECRET = "s3cret-" + "x" * 50  # long enough for HS256 (32 bytes) and HS384 (48 bytes)


# --- keys and helpers ---------------------------------------------------------------------


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def claims(**extra: Any) -> dict[str, Any]:
    """A valid claim set: user alice, expiring a minute after NOW; ``extra`` overrides."""
    base: dict[str, Any] = {"sub": "alice", "exp": NOW + 60}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not ...}  # `...` drops a claim


def verifier(
    *,
    secret: str | None = SECRET,
    public_key: str | None = None,
    algorithms: tuple[str, ...] | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    leeway: float = 0.0,
) -> TokenVerifier:
    return TokenVerifier(
        secret=secret,
        public_key=public_key,
        algorithms=algorithms,
        audience=audience,
        issuer=issuer,
        leeway=leeway,
    )


def hs256(payload: Mapping[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(dict(payload), secret, algorithm="HS256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: Mapping[str, Any], payload: Mapping[str, Any], key: bytes | None) -> str:
    """A compact JWS built by hand (HMAC-SHA256 with ``key``, or no signature)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if key is None:
        return signing_input + "."
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def auth_failure(v: TokenVerifier, token: str, now: float = NOW) -> str:
    """Verify ``token`` expecting failure; return the error message after checking its kind."""
    with pytest.raises(AuthError) as info:
        v.verify(token, now)
    err = info.value
    assert err.code is ErrorCode.AUTH_FAILED
    assert err.fatal is True
    return err.message


# --- good tokens --------------------------------------------------------------------------


def test_hs256_good_token() -> None:
    token = hs256(claims(plan="pro"))
    identity = verifier().verify(token, NOW)
    assert identity == Identity(
        user=UserId("alice"),
        rooms=None,
        expires_at=NOW + 60,
        moderator=False,
        claims={"sub": "alice", "exp": NOW + 60, "plan": "pro"},
    )
    assert identity.claims["plan"] == "pro"


def test_rs256_good_token(rsa_key: rsa.RSAPrivateKey) -> None:
    v = verifier(secret=None, public_key=_public_pem(rsa_key))
    assert v.algorithms == ("RS256",)
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert v.verify(token, NOW).user == "alice"


def test_es256_good_token(ec_key: ec.EllipticCurvePrivateKey) -> None:
    v = verifier(secret=None, public_key=_public_pem(ec_key))
    assert v.algorithms == ("ES256",)
    token = jwt.encode(claims(), ec_key, algorithm="ES256")
    assert v.verify(token, NOW).user == "alice"


def test_secret_and_public_key_each_verify_their_own_family(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    v = verifier(public_key=_public_pem(rsa_key))
    assert v.algorithms == ("HS256", "RS256")
    assert v.verify(hs256(claims(sub="h")), NOW).user == "h"
    assert v.verify(jwt.encode(claims(sub="r"), rsa_key, algorithm="RS256"), NOW).user == "r"


def test_token_without_exp_never_expires() -> None:
    identity = verifier().verify(hs256(claims(exp=...)), NOW)
    assert identity.expires_at is None


def test_moderator_and_rooms_claims() -> None:
    token = hs256(claims(moderator=True, rooms=["chat:*", "org:acme:**", "lobby"]))
    identity = verifier().verify(token, NOW)
    assert identity.moderator is True
    assert identity.rooms == ("chat:*", "org:acme:**", "lobby")
    assert room_allowed(identity.rooms, "chat:general")
    assert not room_allowed(identity.rooms, "chat:a:b")
    assert room_allowed(identity.rooms, "org:acme:eng:backend")
    assert not room_allowed(identity.rooms, "other")


def test_empty_rooms_claim_allows_no_room() -> None:
    identity = verifier().verify(hs256(claims(rooms=[])), NOW)
    assert identity.rooms == ()
    assert not room_allowed(identity.rooms, "lobby")


def test_identity_is_frozen_and_hashable() -> None:
    identity = verifier().verify(hs256(claims(rooms=["a"])), NOW)
    with pytest.raises(FrozenInstanceError):
        identity.moderator = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        identity.claims["sub"] = "mallory"  # type: ignore[index]
    assert hash(identity) == hash(verifier().verify(hs256(claims(rooms=["a"])), NOW))


# --- signatures and algorithms ------------------------------------------------------------


def test_wrong_secret_is_bad_signature() -> None:
    token = hs256(claims(), secret="another-secret-" + "y" * 40)
    assert auth_failure(verifier(), token) == "bad signature"


def test_wrong_rsa_key_is_bad_signature(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    v = verifier(secret=None, public_key=_public_pem(rsa_key))
    token = jwt.encode(claims(), other_rsa_key, algorithm="RS256")
    assert auth_failure(v, token) == "bad signature"


def test_wrong_ec_key_is_bad_signature(ec_key: ec.EllipticCurvePrivateKey) -> None:
    v = verifier(secret=None, public_key=_public_pem(ec_key))
    token = jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    assert auth_failure(v, token) == "bad signature"


def test_tampered_payload_is_bad_signature() -> None:
    header, _, signature = hs256(claims()).split(".")
    forged = f"{header}.{b64(json.dumps(claims(sub='mallory')).encode())}.{signature}"
    assert auth_failure(verifier(), forged) == "bad signature"


def test_alg_none_is_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    unsigned = jwt.encode(claims(), "", algorithm="none")
    for v in (verifier(), verifier(public_key=_public_pem(rsa_key))):
        assert auth_failure(v, unsigned).startswith("algorithm none not allowed")
    # Case games do not help either.
    for alg in ("None", "NONE", "nOnE"):
        assert "not allowed" in auth_failure(verifier(), handmade({"alg": alg}, claims(), None))


def test_rs256_token_to_hs256_only_verifier_is_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert auth_failure(verifier(), token) == "algorithm RS256 not allowed (allowed: HS256)"


def test_hs256_signed_with_the_public_key_is_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    """The classic confusion attack: HMAC over the token keyed with the (public) PEM."""
    pem = _public_pem(rsa_key)
    forged = handmade({"alg": "HS256", "typ": "JWT"}, claims(sub="mallory"), pem.encode())
    # Public key only: HS256 is simply not an accepted algorithm.
    public_only = verifier(secret=None, public_key=pem)
    assert auth_failure(public_only, forged).startswith("algorithm HS256 not allowed")
    # Secret and public key: HS256 is checked against the secret, never the public key.
    both = verifier(public_key=pem, algorithms=("HS256", "RS256"))
    assert auth_failure(both, forged) == "bad signature"


def test_algorithm_outside_the_configured_list_is_rejected() -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS384")
    assert auth_failure(verifier(), token).startswith("algorithm HS384 not allowed")
    assert verifier(algorithms=("HS256", "HS384")).verify(token, NOW).user == "alice"


def test_header_without_alg_is_malformed() -> None:
    token = handmade({"typ": "JWT"}, claims(), SECRET.encode())
    assert auth_failure(verifier(), token).startswith("token is malformed")


# --- time: exp, nbf, leeway ---------------------------------------------------------------


def test_expired_against_now_after_exp() -> None:
    token = hs256(claims(exp=NOW + 60))
    v = verifier()
    assert v.verify(token, NOW + 59.9).user == "alice"
    assert auth_failure(v, token, now=NOW + 60) == "token expired"
    assert auth_failure(v, token, now=NOW + 3600) == "token expired"


def test_time_is_the_argument_not_the_clock() -> None:
    # exp is in 1970 by the real clock, but in the future at the `now` passed in.
    token = hs256(claims(exp=1000))
    assert verifier().verify(token, 999.0).expires_at == 1000.0


def test_nbf_in_the_future() -> None:
    token = hs256(claims(nbf=NOW + 10))
    v = verifier()
    assert auth_failure(v, token).startswith("token not valid yet")
    assert v.verify(token, NOW + 10).user == "alice"


def test_leeway_applies_to_exp_and_nbf() -> None:
    expired_5s_ago = hs256(claims(exp=NOW - 5))
    early_by_5s = hs256(claims(nbf=NOW + 5))
    lenient = verifier(leeway=10)
    assert lenient.verify(expired_5s_ago, NOW).user == "alice"
    assert lenient.verify(early_by_5s, NOW).user == "alice"
    strict = verifier(leeway=3)
    assert auth_failure(strict, expired_5s_ago) == "token expired"
    assert auth_failure(strict, early_by_5s).startswith("token not valid yet")


@pytest.mark.parametrize("bad", ["soon", True, [1], math.nan, math.inf, 10**400])
def test_exp_must_be_a_finite_number(bad: object) -> None:
    message = auth_failure(verifier(), hs256(claims(exp=bad)))
    assert message.startswith("claim `exp` must be a")


# --- malformed tokens and claims ----------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b.c", "a.b", "....", "eyJhbGciOiJIUzI1NiJ9.%%%.abc", "x" * 20_000],
)
def test_garbage_is_malformed(token: str) -> None:
    assert auth_failure(verifier(), token).startswith("token is malformed")


def test_payload_that_is_not_an_object_is_malformed() -> None:
    header = b64(json.dumps({"alg": "HS256"}).encode())
    signing_input = f"{header}.{b64(b'[1, 2]')}"
    mac = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    assert auth_failure(verifier(), f"{signing_input}.{b64(mac)}") == "token is malformed"


def test_missing_sub() -> None:
    assert auth_failure(verifier(), hs256(claims(sub=...))) == "claim `sub` missing"


@pytest.mark.parametrize(
    "sub",
    [
        "",
        "has space",
        "tab\tbed",
        "line\n",
        "x" * 257,
        42,
        ["a"],
        "lone\ud800",
        "\udc00",
        "esc\x1b[31m",
        "bell\x07",
        "rlo\u202e",
        "zw\u200bsp",
    ],
)
def test_bad_sub(sub: object) -> None:
    message = auth_failure(verifier(), hs256(claims(sub=sub)))
    assert message.startswith("claim `sub` must be a string of 1-256 characters")


def test_longest_sub_is_accepted() -> None:
    assert verifier().verify(hs256(claims(sub="x" * 256)), NOW).user == "x" * 256


@pytest.mark.parametrize(
    "rooms", [None, "chat:*", [1], ["ok", ""], ["x" * 257], {"a": 1}, ["ok", "chat:\ud800*"]]
)
def test_bad_rooms_claim(rooms: object) -> None:
    message = auth_failure(verifier(), hs256(claims(rooms=rooms)))
    assert message.startswith("claim `rooms` must be a list of room patterns")


@pytest.mark.parametrize("watch", [None, "team:*", [1], ["ok", ""], ["x" * 257]])
def test_bad_watch_claim(watch: object) -> None:
    message = auth_failure(verifier(), hs256(claims(watch=watch)))
    assert message.startswith("claim `watch` must be a list of user patterns")


def test_watch_claim_is_read_and_absent_means_none() -> None:
    assert verifier().verify(hs256(claims(watch=["team:*"])), NOW).watch == ("team:*",)
    assert verifier().verify(hs256(claims()), NOW).watch is None


def test_bad_moderator_claim() -> None:
    message = auth_failure(verifier(), hs256(claims(moderator="yes")))
    assert message == "claim `moderator` must be true or false"


# --- audience and issuer ------------------------------------------------------------------


def test_audience() -> None:
    v = verifier(audience="presenced")
    assert v.verify(hs256(claims(aud="presenced")), NOW).user == "alice"
    assert v.verify(hs256(claims(aud=["other", "presenced"])), NOW).user == "alice"
    assert auth_failure(v, hs256(claims(aud="other"))) == "token audience (`aud`) does not match"
    assert auth_failure(v, hs256(claims())) == "claim `aud` missing"
    # A token addressed to someone when the server names no audience is refused.
    assert "set jwt_audience" in auth_failure(verifier(), hs256(claims(aud="presenced")))


def test_issuer() -> None:
    v = verifier(issuer="https://api.example.com")
    assert v.verify(hs256(claims(iss="https://api.example.com")), NOW).user == "alice"
    message = auth_failure(v, hs256(claims(iss="https://evil.example.com")))
    assert message == "token issuer (`iss`) does not match"
    assert auth_failure(v, hs256(claims())) == "claim `iss` missing"


# --- development mode ---------------------------------------------------------------------


def test_insecure_identity() -> None:
    identity = insecure_identity("bob")
    assert identity.user == "bob"
    assert identity.rooms is None
    assert identity.expires_at is None
    assert identity.moderator is False
    assert dict(identity.claims) == {}


@pytest.mark.parametrize("user", ["", "b ob", "x" * 257])
def test_insecure_identity_checks_the_user_id(user: str) -> None:
    with pytest.raises(AuthError) as info:
        insecure_identity(user)
    assert info.value.code is ErrorCode.AUTH_FAILED
    assert info.value.fatal is True
    assert info.value.message.startswith("`user` must be a string of 1-256 characters")


# --- configuration errors -----------------------------------------------------------------


def test_supported_algorithms_match_the_settings_choices() -> None:
    assert set(SUPPORTED_ALGORITHMS) == set(JWT_ALGORITHMS)


def test_config_errors(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    rsa_pem = _public_pem(rsa_key)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"secret": None}, "jwt_secret"),
        ({"secret": ""}, "jwt_secret"),
        ({"secret": "short"}, "jwt_secret"),
        ({"secret": "x" * 40, "algorithms": ("HS512",)}, "jwt_secret"),  # 40 < 64 bytes
        ({"secret": rsa_pem}, "jwt_secret"),  # a PEM as HMAC secret
        ({"algorithms": ("none",)}, "jwt_algorithms"),
        ({"algorithms": ("PS256",)}, "jwt_algorithms"),
        ({"algorithms": ()}, "jwt_algorithms"),
        ({"algorithms": ("RS256",)}, "jwt_algorithms"),  # no public key
        ({"public_key": rsa_pem, "algorithms": ("ES256",)}, "jwt_algorithms"),
        ({"public_key": _public_pem(ec_key), "algorithms": ("RS256",)}, "jwt_algorithms"),
        ({"public_key": _public_pem(ec_key), "algorithms": ("ES384",)}, "jwt_algorithms"),
        ({"public_key": "not a key"}, "jwt_public_key"),
        ({"leeway": -1.0}, "jwt_leeway"),
        ({"leeway": math.nan}, "jwt_leeway"),
    ]
    for kwargs, key in cases:
        with pytest.raises(ConfigError) as info:
            verifier(**kwargs)
        assert info.value.key == key, kwargs


def test_private_key_as_public_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    private_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(ConfigError, match="private key") as info:
        verifier(secret=None, public_key=private_pem)
    assert info.value.key == "jwt_public_key"


def test_small_rsa_key_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigError, match="1024 bits") as info:
        verifier(secret=None, public_key=_public_pem(small))
    assert info.value.key == "jwt_public_key"


def test_default_ec_algorithm_follows_the_curve() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    v = verifier(secret=None, public_key=_public_pem(p384))
    assert v.algorithms == ("ES384",)
    assert v.verify(jwt.encode(claims(), p384, algorithm="ES384"), NOW).user == "alice"


# --- room patterns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "room", "allowed"),
    [
        # exact
        (("lobby",), "lobby", True),
        (("lobby",), "lobby2", False),
        (("lobby",), "Lobby", False),
        (("a.b",), "aXb", False),  # regex characters are literal
        (("chat:(x)",), "chat:(x)", True),
        # '*' stays within a segment
        (("chat:*",), "chat:general", True),
        (("chat:*",), "chat:", True),
        (("chat:*",), "chat:a:b", False),
        (("chat:*",), "chat", False),
        (("chat:*",), "xchat:general", False),
        (("game:lobby-*",), "game:lobby-7", True),
        (("game:lobby-*",), "game:lobby-", True),
        (("game:lobby-*",), "game:arena-7", False),
        (("*:lobby",), "eu:lobby", True),
        (("*:lobby",), "eu:west:lobby", False),
        # '**' crosses segments
        (("org:acme:**",), "org:acme:general", True),
        (("org:acme:**",), "org:acme:eng:backend", True),
        (("org:acme:**",), "org:acme", False),
        (("org:acme:**",), "org:acmex:general", False),
        (("**",), "any:thing:at:all", True),
        (("a:**:z",), "a:b:c:z", True),
        (("a:***",), "a:b:c", True),  # a longer run of stars means '**'
        # several patterns: any one is enough
        (("chat:*", "lobby"), "lobby", True),
        (("chat:*", "lobby"), "chat:x", True),
        (("chat:*", "lobby"), "dm:x", False),
        # None = every room; empty = no room
        (None, "anything:at:all", True),
        ((), "lobby", False),
    ],
)
def test_room_allowed(patterns: tuple[str, ...] | None, room: str, allowed: bool) -> None:
    assert room_allowed(patterns, room) is allowed


def test_room_allowed_newline_in_room_is_matched_literally() -> None:
    assert room_allowed(("chat:*",), "chat:a\nb")
    assert not room_allowed(("chat:x",), "chat:x\n")
