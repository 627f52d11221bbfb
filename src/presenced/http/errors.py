"""The admin API's errors: an HTTP status, a code, a message and the offending field.

Handlers raise :class:`ApiError`; the app turns it (and msgspec's validation errors, and
aiohttp's own 404/405/413) into an :class:`~presenced.api.models.ErrorReply` body, so every
4xx says what is wrong and where.
"""

from __future__ import annotations

import re

import msgspec

from presenced.errors import ProtocolError

__all__ = ["ApiError", "bad_request", "from_validation", "not_found", "refused"]

_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

# msgspec names the place as "at `$.users[3]`" (or "at `$[...]`" inside a list).
_AT = re.compile(r" - at `\$\.?([^`]*)`$")


class ApiError(Exception):
    """A request that cannot be served, as the client should be told."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = _STATUS_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL")
        self.message = message
        self.field = field


def bad_request(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, message, field)


def not_found(message: str, field: str | None = None) -> ApiError:
    return ApiError(404, message, field)


def from_validation(exc: msgspec.ValidationError | msgspec.DecodeError, where: str) -> ApiError:
    """A 400 naming the field msgspec complained about, prefixed by where it was (``body``,
    ``query`` or ``path``): ``body.users[3]``, ``query.limit``."""
    text = str(exc)
    match = _AT.search(text)
    field = where
    if match:
        inner = match.group(1)
        field = f"{where}.{inner}" if inner and not inner.startswith("[") else where + inner
        text = text[: match.start()]
    elif "Object missing required field" in text or "Object contains unknown field" in text:
        name = text.split("`")[1] if "`" in text else ""
        field = f"{where}.{name}" if name else where
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        text = f"not valid JSON: {text}"
    return ApiError(400, f"{field}: {text}", field)


# An admin action's refusal (a protocol error code) as an HTTP status.
_REFUSALS = {"TOO_MANY_SUBSCRIPTIONS": 409, "MESSAGE_TOO_LARGE": 413}
# The admin actions name their arguments; the request fields that carry them:
_FIELDS = {"body": "body.body", "message": "body.message", "users": "body.users"}


def refused(exc: ProtocolError) -> ApiError:
    """An :class:`~presenced.server.admin.AdminRefused` as the API answers it: 400 for a bad
    argument, 409 past a limit, 413 for a message over max_message_bytes."""
    status = _REFUSALS.get(exc.code.value, 400)
    field = exc.field
    if field is not None:
        head, sep, rest = field.partition("[")
        field = _FIELDS.get(head, f"body.{head}") + sep + rest
    elif status == 413:
        field = "body.body"
    return ApiError(status, f"{field}: {exc.message}" if field else exc.message, field)
