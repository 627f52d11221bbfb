"""The error hierarchy.

::

    PresencedError
    +-- ConfigError            a bad setting: names the key and the allowed values
    +-- InvalidTransition      the core was asked for a transition its table does not have
    +-- ProtocolError          a client request that cannot be served: carries a wire code
    |   +-- AuthError          AUTH_FAILED / AUTH_TIMEOUT / NOT_AUTHENTICATED
    +-- StoreError             the backplane failed (Redis down, script error)
    +-- SessionLimitReached    a store refused a user's new session: it has its limit already

Protocol errors carry the code sent on the wire (:class:`presenced.protocol.codes.ErrorCode`),
the offending field where there is one, and whether the error is fatal (closes the
connection with a 4xxx close code).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from presenced.protocol.codes import ErrorCode

__all__ = [
    "AuthError",
    "ConfigError",
    "InvalidTransition",
    "PresencedError",
    "ProtocolError",
    "SessionLimitReached",
    "StoreError",
]


class PresencedError(Exception):
    """Base of every error presenced raises on purpose."""


class ConfigError(PresencedError):
    """A setting is missing, malformed or inconsistent with another."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config {key}: {message}")
        self.key = key
        self.message = message


class InvalidTransition(PresencedError):
    """A session state machine was asked for a transition its table does not allow."""

    def __init__(self, state: object, event: object) -> None:
        super().__init__(f"no transition from {state} on {event}")
        self.state = state
        self.event = event


class ProtocolError(PresencedError):
    """A request that cannot be served; becomes an ``error`` message on the wire."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        fatal: bool = False,
        ref: str | int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.fatal = fatal
        self.ref = ref


class AuthError(ProtocolError):
    """Authentication failed, timed out or has not happened yet. ``reason`` is a short,
    fixed word for metrics and logs (``expired``, ``signature``...; None: the code says it)."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        fatal: bool = False,
        ref: str | int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(code, message, field=field, fatal=fatal, ref=ref)
        self.reason = reason


class StoreError(PresencedError):
    """The shared store could not complete an operation."""


class SessionLimitReached(PresencedError):
    """A store refused to add a new session to a user's presence: the user already has
    ``limit`` sessions (active or in grace). Nothing was written."""

    def __init__(self, user: str, limit: int, count: int) -> None:
        super().__init__(f"user {user!r} has {count} sessions, the limit is {limit}")
        self.user = user
        self.limit = limit
        self.count = count
