"""What authentication needs besides the session it opens: the protocol check, who the
client is (a verified token, or the named user in insecure development mode), and the
``welcome`` that answers it. The session itself is opened or resumed by
:class:`~presenced.server.lifecycle.Lifecycle`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from presenced.auth import Identity, TokenVerifier, insecure_identity
from presenced.config import Settings
from presenced.errors import AuthError, ProtocolError, SessionLimitReached
from presenced.presence.session import Session
from presenced.protocol.chat import SYSTEM_USER
from presenced.protocol.codec import convert_auth
from presenced.protocol.codes import SUPPORTED_PROTOCOLS, ErrorCode
from presenced.protocol.messages import Auth, Welcome
from presenced.typing import NodeId

__all__ = [
    "check_protocol",
    "connect_auth",
    "identify",
    "too_many_from_address",
    "too_many_sessions",
    "welcome",
]


def connect_auth(query: Mapping[str, str], headers: Mapping[str, str]) -> Auth | None:
    """The ``auth`` request the connect URL carries (docs/protocol.md, "Connect and
    authenticate"), or None when it carries no credentials (no ``token``, ``user`` or
    ``resume``, no bearer ``Authorization`` header): the client sends an ``auth`` message.
    Bad parameters raise the :class:`ProtocolError` that names the field; nothing else is
    raised, whatever the client sent. ``headers`` have lower-cased names."""
    header = headers.get("authorization", "")
    bearer = header[7:].strip() if header[:7].lower() == "bearer " else ""
    token = query.get("token") or bearer
    if not (token or "user" in query or "resume" in query):
        return None
    # The URL always means auth: a `type` parameter is ignored like any unknown one (it used
    # to override the tag, and `?type=logout` got an UNKNOWN_TYPE for a message never sent).
    given: dict[str, Any] = {**query, "type": "auth"}
    if token:
        given["token"] = token
    if "device_info" in query:
        given["device_info"] = _json_object(query["device_info"], "device_info")
    return convert_auth(given)


def _json_object(text: str, field: str) -> dict[str, Any]:
    """A JSON object given as text in the connect URL (checked further by ``convert_auth``)."""

    def no_constant(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(text, parse_constant=no_constant)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"`{field}` must be a JSON object", field=field)
    return value


def check_protocol(msg: Auth) -> None:
    if msg.protocol not in SUPPORTED_PROTOCOLS:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_PROTOCOL,
            f"protocol {msg.protocol} is not supported; this server speaks "
            f"{sorted(SUPPORTED_PROTOCOLS)}",
            field="protocol",
            fatal=True,
        )


def too_many_sessions(exc: SessionLimitReached) -> ProtocolError:
    """The refusal of a new session over ``max_connections_per_user`` (fatal: close 4012)."""
    return ProtocolError(
        ErrorCode.TOO_MANY_CONNECTIONS,
        f"this user already has {exc.count} sessions, the most allowed "
        f"(max_connections_per_user = {exc.limit}): close one, or resume a session in grace, "
        "then retry with backoff",
        fatal=True,
    )


def too_many_from_address(limit: int) -> ProtocolError:
    """The refusal of a socket over ``max_connections_per_ip`` (fatal: close 4012)."""
    return ProtocolError(
        ErrorCode.TOO_MANY_CONNECTIONS,
        f"too many connections from this address (max_connections_per_ip = {limit}): "
        "close one, then retry with backoff",
        fatal=True,
    )


def too_often_from_address(rate: float) -> ProtocolError:
    """The refusal of a socket over ``max_connect_rate_per_ip`` (fatal: close 4012)."""
    return ProtocolError(
        ErrorCode.TOO_MANY_CONNECTIONS,
        f"too many new connections from this address (max_connect_rate_per_ip = {rate:g}/s): "
        "retry with backoff",
        fatal=True,
    )


def identify(msg: Auth, verifier: TokenVerifier | None, insecure: bool, wall: float) -> Identity:
    """Who the client is, or the error that says why it cannot be told. The user id
    :data:`SYSTEM_USER` is the backend's own (its system messages): no client may be it."""
    identity = _identify(msg, verifier, insecure, wall)
    if identity.user == SYSTEM_USER:
        raise AuthError(
            ErrorCode.AUTH_FAILED,
            f"the user id {SYSTEM_USER!r} is reserved for the app's backend",
            field="token" if msg.token is not None else "user",
            fatal=True,
            reason="reserved_user",
        )
    return identity


def _identify(msg: Auth, verifier: TokenVerifier | None, insecure: bool, wall: float) -> Identity:
    if insecure:
        if msg.user is None:
            if msg.token is not None:
                raise AuthError(
                    ErrorCode.AUTH_FAILED,
                    "this server runs in insecure development mode: send `user`, not a token",
                    field="user",
                    fatal=True,
                    reason="insecure_mode",
                )
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, "missing required field `user`", field="user"
            )
        return insecure_identity(msg.user)
    if msg.token is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "missing required field `token`", field="token")
    assert verifier is not None
    return verifier.verify(msg.token, wall)


def welcome(
    settings: Settings,
    node_id: NodeId,
    session: Session,
    msg: Auth,
    resumed: bool,
    resume_error: str | None = None,
    expires_at: float | None = None,
) -> Welcome:
    return Welcome(
        session=session.id,
        resume_token=session.resume_token,
        user=session.user,
        device=session.device,
        protocol=msg.protocol,
        heartbeat_interval=settings.heartbeat_interval,
        heartbeat_timeout=settings.heartbeat_timeout,
        grace=settings.grace,
        inactivity_timeout=settings.inactivity_timeout,
        resumed=resumed,
        rooms=list(session.rooms),
        subscriptions=sorted(session.subscriptions),
        status=session.status,
        text=session.text,
        resume_error=resume_error,
        node=node_id,
        expires_at=expires_at,
        ref=msg.ref,
    )
