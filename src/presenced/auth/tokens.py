"""Client tokens: verify a JWT and turn it into an :class:`~presenced.auth.identity.Identity`.

The app's backend signs a short-lived JWT for each client (HS256 with a shared secret, or
RS256/ES256 with a private key whose public half presenced holds); the client presents it on
connect. :class:`TokenVerifier` checks it with PyJWT:

- Only the configured algorithms are accepted, never ``none``; the token's ``alg`` header is
  looked up in a table built at start-up that pairs each allowed algorithm with the one key
  that may verify it: the secret for ``HS*``, the public key for ``RS*``/``ES*``. So a token
  signed with HS256 using the public key as the HMAC secret (the classic algorithm-confusion
  attack) is either refused ("algorithm HS256 not allowed") or checked against the secret.
- Time is an argument. PyJWT would check ``exp``/``nbf``/``iat`` against its own clock; those
  checks are turned off and ``exp``/``nbf`` are checked here against ``now`` (with
  ``leeway``), so tests drive time with a manual clock. ``iat`` is not checked.
- Keys are parsed and checked once, in the constructor; a bad key or an algorithm the key
  cannot serve is a :class:`~presenced.errors.ConfigError` naming the setting, raised at
  start-up rather than on the first client. Keys below the RFC 7518 / NIST minimum (an HMAC
  secret shorter than the hash, an RSA key under 2048 bits) are refused there too.

Claims read: ``sub`` (required, the user id: 1-256 characters, no white space), ``exp``
(optional; checked when present), ``nbf`` (optional; checked when present), ``rooms``
(optional list of room patterns, see :func:`presenced.auth.rooms.room_allowed`),
``moderator`` (optional boolean); ``aud``/``iss`` must match when an audience/issuer is
configured. Every failure is a fatal :class:`~presenced.errors.AuthError` with code
``AUTH_FAILED`` and a message a client developer can act on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, cast

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import HMACAlgorithm
from jwt.types import Options

from presenced.auth.identity import Identity

if TYPE_CHECKING:
    from presenced.auth.jwks import JwksKeys
from presenced.errors import AuthError, ConfigError
from presenced.protocol.codes import ErrorCode
from presenced.protocol.fields import ID_EXCLUDED
from presenced.typing import UserId

__all__ = ["SUPPORTED_ALGORITHMS", "TokenVerifier", "insecure_identity"]

# Minimum HMAC secret length per algorithm: the hash output size (RFC 7518 section 3.2).
_HMAC_MIN_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_ALGORITHMS: Final = ("RS256", "RS384", "RS512")
_RSA_MIN_BITS: Final = 2048  # NIST SP 800-131A; PyJWT warns below this on every verify
# Each ECDSA algorithm is bound to one curve (RFC 7518 section 3.4).
_EC_CURVES: Final[dict[str, type[ec.EllipticCurve]]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
SUPPORTED_ALGORITHMS: Final[tuple[str, ...]] = (*_HMAC_MIN_BYTES, *_RSA_ALGORITHMS, *_EC_CURVES)
"""Algorithms a :class:`TokenVerifier` can be configured with (``none`` never is)."""

_MAX_TOKEN_CHARS: Final = 16 * 1024

_COMPACT_JWS: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
"""A JWS in compact form: three base64url segments without padding (RFC 7515 section 7.1);
empty segments pass here, and PyJWT refuses them."""

_MAX_ROOM_PATTERNS: Final = 1000
_MAX_NAME_CHARS: Final = 256
# Same rule as protocol.fields.Name: 1-256 characters, none of them white space, a control
# or format character, or a lone UTF-16 surrogate (a JSON decoder accepts "\ud800"; no UTF-8
# encoder writes it back, so a session holding one could not be saved).
_NAME_RE: Final = re.compile(rf"[^{ID_EXCLUDED}]{{1,{_MAX_NAME_CHARS}}}")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")

_PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
_Key = bytes | _PublicKey


def _fail(message: str, reason: str = "claims") -> AuthError:
    """A refused token; ``reason`` is the metrics' and logs' word for why: ``malformed``,
    ``algorithm``, ``signature``, ``audience``, ``issuer``, ``expired``, ``not_yet_valid``,
    ``key`` or ``claims`` (a claim missing or of the wrong shape)."""
    return AuthError(ErrorCode.AUTH_FAILED, message, fatal=True, reason=reason)


def _check_user_id(value: object, what: str) -> UserId:
    if not isinstance(value, str) or _NAME_RE.fullmatch(value) is None:
        raise _fail(
            f"{what} must be a string of 1-{_MAX_NAME_CHARS} characters without white space, "
            "control or format characters"
        )
    return UserId(value)


def insecure_identity(user: str) -> Identity:
    """The identity of a client in development mode, where it simply names its user.

    The user id is checked like a token's ``sub``; the identity may join any room and is not
    a moderator. Never use this mode where clients are not trusted.
    """
    return Identity(
        user=_check_user_id(user, "`user`"),
        rooms=None,
        expires_at=None,
        moderator=False,
        claims=MappingProxyType({}),
    )


class TokenVerifier:
    """Verifies client JWTs against the configured key(s); build one at start-up.

    ``secret`` verifies ``HS*`` tokens, ``public_key`` (PEM text of an RSA or EC public key)
    verifies ``RS*`` or ``ES*`` tokens. ``algorithms`` lists the accepted algorithms; when
    ``None`` it is HS256 with a secret plus, with a public key, the algorithm that key
    serves (RS256 for RSA; ES256, ES384 or ES512 for a P-256, P-384 or P-521 key).
    ``audience``/``issuer``, when set, must equal the token's ``aud``/``iss``. ``leeway`` is
    the clock skew, in seconds, allowed on ``exp`` and ``nbf``.

    Raises :class:`~presenced.errors.ConfigError` (naming ``jwt_secret``, ``jwt_public_key``,
    ``jwt_algorithms`` or ``jwt_leeway``) when the parameters cannot work together.
    """

    __slots__ = ("_audience", "_issuer", "_leeway", "_options", "_routes", "algorithms", "jwks")

    def __init__(
        self,
        *,
        secret: str | None,
        public_key: str | None,
        algorithms: Sequence[str] | None,
        audience: str | None,
        issuer: str | None,
        leeway: float,
        jwks: JwksKeys | None = None,
    ) -> None:
        if secret is None and public_key is None and jwks is None:
            raise ConfigError(
                "jwt_secret",
                "no key: set jwt_secret (HS256), jwt_public_key (RS256/ES256) or jwt_jwks_url",
            )
        self.jwks = jwks
        """Keys by ``kid`` from a JWKS URL: RS*/ES* tokens with a ``kid`` are checked
        against them (the caller awaits ``jwks.ensure(kid)`` before :meth:`verify`)."""
        if not (math.isfinite(leeway) and leeway >= 0):
            raise ConfigError("jwt_leeway", f"{leeway!r} is not allowed; use seconds >= 0")
        secret_bytes = None if secret is None else _load_secret(secret)
        loaded_key = None if public_key is None else _load_public_key(public_key)
        if algorithms is None:
            algorithms = _default_algorithms(secret_bytes, loaded_key)
            if jwks is not None:
                algorithms += tuple(a for a in ("RS256", "ES256") if a not in algorithms)
        if isinstance(algorithms, str) or not algorithms:
            raise ConfigError(
                "jwt_algorithms",
                f"give a non-empty list of algorithms from {', '.join(SUPPORTED_ALGORITHMS)}",
            )
        keys: dict[str, _Key | None] = {}  # None: the key is the JWKS one the token names
        for alg in algorithms:
            asymmetric = alg in _RSA_ALGORITHMS or alg in _EC_CURVES
            if asymmetric and loaded_key is None and jwks is not None:
                keys[alg] = None
            else:
                keys[alg] = _key_for(alg, secret_bytes, loaded_key)
        # alg -> (key, the allowed algorithms of the same family). PyJWT is given the family,
        # fixed here, never a list derived from the token.
        self._routes: dict[str, tuple[_Key | None, list[str]]] = {
            alg: (key, [a for a in keys if a[:2] == alg[:2]]) for alg, key in keys.items()
        }
        self.algorithms: tuple[str, ...] = tuple(keys)
        """The accepted algorithms, resolved (read-only by convention)."""
        self._audience = audience
        self._issuer = issuer
        self._leeway = float(leeway)
        # PyJWT's own clock checks are off: exp and nbf are checked against `now` below.
        self._options: Options = {
            "verify_signature": True,
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_sub": False,  # sub is checked below, with a clearer message
            "verify_jti": False,  # jti is the app's business
            "verify_aud": True,
            "verify_iss": True,
            "require": ["sub"],
        }

    async def prepare(self, token: str | None) -> None:
        """Before :meth:`verify`: with a JWKS, fetch it if ``token`` names an unknown key
        (a rotation), bounded by the set's own rate limit and timeout."""
        if self.jwks is None or not token or len(token) > _MAX_TOKEN_CHARS:
            return
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return  # verify says what is wrong with it
        if isinstance(kid, str):
            await self.jwks.ensure(kid)

    def verify(self, token: str, now: float) -> Identity:
        """Check ``token`` at wall-clock time ``now`` (seconds) and return who it names.

        Raises a fatal :class:`~presenced.errors.AuthError` (``AUTH_FAILED``) saying what is
        wrong: ``token is malformed``, ``algorithm X not allowed``, ``bad signature``,
        ``token expired``, ``token not valid yet``, ``claim `sub` missing``, and so on.
        """
        if not isinstance(token, str) or not token:
            raise _fail("token is malformed", "malformed")
        if len(token) > _MAX_TOKEN_CHARS:
            raise _fail(
                f"token is malformed: longer than {_MAX_TOKEN_CHARS} characters", "malformed"
            )
        if _COMPACT_JWS.fullmatch(token) is None:  # (older PyJWTs decode stray characters)
            raise _fail("token is malformed", "malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _fail("token is malformed", "malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise _fail("token is malformed: its header has no `alg`", "malformed")
        route = self._routes.get(alg)
        if route is None:
            shown = alg if len(alg) <= 20 and alg.isprintable() else repr(alg[:20])
            allowed = ", ".join(self.algorithms)
            raise _fail(f"algorithm {shown} not allowed (allowed: {allowed})", "algorithm")
        key, family = route
        kid = header.get("kid")
        if self.jwks is not None and alg[:2] in ("RS", "ES") and (key is None or kid is not None):
            key = self._jwks_key(alg, kid)
        assert key is not None  # (a None route exists only with a JWKS)
        claims = self._decode(token, key, family)
        exp = self._check_time(claims, now)
        return Identity(
            user=self._user(claims),
            rooms=_rooms_claim(claims),
            expires_at=exp,
            moderator=_moderator_claim(claims),
            claims=MappingProxyType(claims),
            watch=_watch_claim(claims),
        )

    def _jwks_key(self, alg: str, kid: object) -> _Key:
        """The JWKS key a token's ``kid`` names, of the type its ``alg`` needs."""
        assert self.jwks is not None
        if not isinstance(kid, str):
            raise _fail(
                "token has no `kid` header: the server verifies it with its JWKS keys", "key"
            )
        key = self.jwks.get(kid)
        shown = kid if len(kid) <= 64 and kid.isprintable() else repr(kid[:64])
        if key is None:
            raise _fail(f"unknown signing key `{shown}` (not in the JWKS)", "key")
        wanted = rsa.RSAPublicKey if alg in _RSA_ALGORITHMS else ec.EllipticCurvePublicKey
        if not isinstance(key, wanted):
            raise _fail(f"key `{shown}` is not of the type {alg} needs", "key")
        return cast(_Key, key)

    def _decode(self, token: str, key: _Key, family: list[str]) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=family,
                options=self._options,
                audience=self._audience,
                issuer=self._issuer,
            )
        except jwt.InvalidSignatureError:
            raise _fail("bad signature", "signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _fail(f"claim `{exc.claim}` missing") from None
        except jwt.InvalidAudienceError:
            if self._audience is None:
                raise _fail(
                    "token has an `aud` claim but the server expects no audience "
                    "(set jwt_audience on the server, or drop `aud`)",
                    "audience",
                ) from None
            raise _fail("token audience (`aud`) does not match", "audience") from None
        except jwt.InvalidIssuerError:
            raise _fail("token issuer (`iss`) does not match", "issuer") from None
        except jwt.InvalidAlgorithmError:  # not reached: alg was checked against the table
            raise _fail("algorithm not allowed", "algorithm") from None
        except jwt.InvalidKeyError:  # not reached: keys were matched to algorithms at start
            raise _fail("token cannot be verified with the server's key", "key") from None
        except jwt.PyJWTError:  # DecodeError and anything else: bad base64, JSON, structure
            raise _fail("token is malformed", "malformed") from None

    def _check_time(self, claims: Mapping[str, Any], now: float) -> float | None:
        exp = _number_claim(claims, "exp")
        nbf = _number_claim(claims, "nbf")
        # Same boundaries as PyJWT: expired once now >= exp + leeway; early while
        # now < nbf - leeway.
        if exp is not None and exp <= now - self._leeway:
            raise _fail("token expired", "expired")
        if nbf is not None and nbf > now + self._leeway:
            raise _fail("token not valid yet (its `nbf` is in the future)", "not_yet_valid")
        return exp

    @staticmethod
    def _user(claims: Mapping[str, Any]) -> UserId:
        if claims.get("sub") is None:  # PyJWT's `require` already says so; kept for clarity
            raise _fail("claim `sub` missing")
        return _check_user_id(claims["sub"], "claim `sub`")


def _number_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # bool is an int subclass; NaN/Infinity parse from JSON and would never expire.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"claim `{name}` must be a number (seconds since the epoch)")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _fail(f"claim `{name}` must be a finite number (seconds since the epoch)")
    return number


def _rooms_claim(claims: Mapping[str, Any]) -> tuple[str, ...] | None:
    return _patterns_claim(claims, "rooms", "room", "allow any room")


def _watch_claim(claims: Mapping[str, Any]) -> tuple[str, ...] | None:
    return _patterns_claim(claims, "watch", "user", "leave it to watch_without_claim")


def _patterns_claim(
    claims: Mapping[str, Any], name: str, what: str, absent: str
) -> tuple[str, ...] | None:
    if name not in claims:
        return None
    value = claims[name]
    # null is refused rather than read as "any": a backend that meant "none" and wrote null
    # must not grant everything.
    if not isinstance(value, list) or not all(
        isinstance(p, str) and 0 < len(p) <= _MAX_NAME_CHARS and not _SURROGATE.search(p)
        for p in value
    ):
        raise _fail(
            f"claim `{name}` must be a list of {what} patterns "
            f"(strings of 1-{_MAX_NAME_CHARS} characters); omit it to {absent}"
        )
    if len(value) > _MAX_ROOM_PATTERNS:
        raise _fail(f"claim `{name}` has more than {_MAX_ROOM_PATTERNS} patterns")
    return tuple(value)


def _moderator_claim(claims: Mapping[str, Any]) -> bool:
    value = claims.get("moderator", False)
    if not isinstance(value, bool):
        raise _fail("claim `moderator` must be true or false")
    return value


# --- start-up: keys and algorithms --------------------------------------------------------


def _load_secret(secret: str) -> bytes:
    if not secret:
        raise ConfigError("jwt_secret", "is empty; use a random string of at least 32 bytes")
    try:
        # PyJWT refuses PEM and SSH keys as HMAC secrets (algorithm-confusion guard).
        return HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
    except jwt.InvalidKeyError:
        raise ConfigError(
            "jwt_secret",
            "looks like a PEM or SSH key; put public keys in jwt_public_key, and use a random "
            "string as the HS256 secret",
        ) from None


def _load_public_key(text: str) -> _PublicKey:
    if "PRIVATE KEY" in text:
        raise ConfigError(
            "jwt_public_key",
            "is a private key; give presenced only the public key (keep the private key with "
            "the backend that signs tokens)",
        )
    try:
        key = load_pem_public_key(text.encode("utf-8"))
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            "jwt_public_key",
            "is not a PEM public key ('-----BEGIN PUBLIC KEY-----' ...) of an RSA or EC key",
        ) from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _RSA_MIN_BITS:
            raise ConfigError(
                "jwt_public_key",
                f"RSA key is {key.key_size} bits; at least {_RSA_MIN_BITS} bits are required",
            )
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key
    raise ConfigError(
        "jwt_public_key", f"is a {type(key).__name__}; only RSA and EC (ECDSA) keys are supported"
    )


def _default_algorithms(secret: bytes | None, key: _PublicKey | None) -> tuple[str, ...]:
    algs: tuple[str, ...] = ()
    if secret is not None:
        algs += ("HS256",)
    if isinstance(key, rsa.RSAPublicKey):
        algs += ("RS256",)
    elif key is not None:
        for alg, curve in _EC_CURVES.items():
            if isinstance(key.curve, curve):
                algs += (alg,)
                break
        else:
            raise ConfigError(
                "jwt_public_key",
                f"EC curve {key.curve.name} is not supported; use P-256 (ES256), P-384 (ES384) "
                f"or P-521 (ES512)",
            )
    return algs


def _key_for(alg: str, secret: bytes | None, key: _PublicKey | None) -> _Key:
    if alg in _HMAC_MIN_BYTES:
        if secret is None:
            raise ConfigError(
                "jwt_algorithms",
                f"{alg!r} needs jwt_secret, which is not set (a public key is never used as an "
                "HMAC secret)",
            )
        if len(secret) < _HMAC_MIN_BYTES[alg]:
            raise ConfigError(
                "jwt_secret",
                f"is {len(secret)} bytes; {alg} needs at least {_HMAC_MIN_BYTES[alg]} "
                "(RFC 7518 section 3.2); generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`",
            )
        return secret
    if alg in _RSA_ALGORITHMS or alg in _EC_CURVES:
        if key is None:
            raise ConfigError("jwt_algorithms", f"{alg!r} needs jwt_public_key, which is not set")
        if alg in _RSA_ALGORITHMS and not isinstance(key, rsa.RSAPublicKey):
            raise ConfigError(
                "jwt_algorithms", f"{alg!r} needs an RSA public key but jwt_public_key is an EC key"
            )
        if alg in _EC_CURVES and not (
            isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _EC_CURVES[alg])
        ):
            raise ConfigError(
                "jwt_algorithms",
                f"{alg!r} needs an EC public key on curve {_EC_CURVES[alg].name}; "
                "jwt_public_key is not one",
            )
        return key
    raise ConfigError(
        "jwt_algorithms",
        f"{alg!r} is not supported; allowed: {', '.join(SUPPORTED_ALGORITHMS)}",
    )
