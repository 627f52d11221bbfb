"""What authentication needs besides the session it opens: the protocol check, who the
client is (a verified token, or the named user in insecure development mode), and the
``welcome`` that answers it. The session itself is opened or resumed by
:class:`~presenced.server.lifecycle.Lifecycle`.
"""

from __future__ import annotations

from presenced.auth import Identity, TokenVerifier, insecure_identity
from presenced.config import Settings
from presenced.errors import AuthError, ProtocolError
from presenced.presence.session import Session
from presenced.protocol.chat import SYSTEM_USER
from presenced.protocol.codes import SUPPORTED_PROTOCOLS, ErrorCode
from presenced.protocol.messages import Auth, Welcome
from presenced.typing import NodeId

__all__ = ["check_protocol", "identify", "welcome"]


def check_protocol(msg: Auth) -> None:
    if msg.protocol not in SUPPORTED_PROTOCOLS:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_PROTOCOL,
            f"protocol {msg.protocol} is not supported; this server speaks "
            f"{sorted(SUPPORTED_PROTOCOLS)}",
            field="protocol",
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
