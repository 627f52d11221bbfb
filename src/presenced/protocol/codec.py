"""Bytes <-> messages, with every malformed input turned into a precise ProtocolError.

Decoding is one msgspec call on the happy path. On failure the error is classified (not JSON,
unknown type, bad field) and the offending field named from msgspec's error path; the request's
``ref`` is recovered by a second parse that builds nothing but the ``ref`` (:func:`ref_of`), so
even a rejected request can be matched, at the cost of a scan.
Free-form values (``device_info``, ``meta``, an object ``body``) are then checked by
:func:`check_free_form`: nested at most :data:`MAX_NESTING` levels, every string encodable as
UTF-8, so that whatever a handler stores or forwards later can be copied and encoded.
Encoding is one call too; a broadcast is encoded once and the bytes written to every socket.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from presenced.errors import ProtocolError
from presenced.protocol.chat import MessageEdit, MessageSend
from presenced.protocol.codes import ErrorCode
from presenced.protocol.messages import Auth, ClientMessage, RoomJoin, RoomMeta, ServerMessage

__all__ = [
    "MAX_NESTING",
    "check_free_form",
    "convert_auth",
    "decode_client",
    "decode_server",
    "encode",
    "ref_of",
]

MAX_NESTING = 32
"""How deep a free-form value may nest: objects and arrays, the outer object counting as one."""

# The free-form fields of each client message, checked after decoding.
_FREE_FORM: dict[type[Any], tuple[str, ...]] = {
    Auth: ("device_info",),
    RoomJoin: ("meta",),
    RoomMeta: ("meta",),
    MessageSend: ("body",),
    MessageEdit: ("body",),
}

_client_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_server_decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
_encoder = msgspec.json.Encoder()


class _RefOnly(msgspec.Struct):
    """The one field of a request read back when the request itself was refused."""

    ref: str | int | None = None


# Skips every other field without building it: a few microseconds even for a frame nested a
# thousand levels deep, where building it (as a generic decode does) takes a hundred.
_ref_decoder = msgspec.json.Decoder(_RefOnly)

# msgspec ends validation messages with " - at `$.field[0].sub`".
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def encode(message: ServerMessage | ClientMessage) -> bytes:
    """Serialize one message to a JSON text frame payload (UTF-8 bytes)."""
    return _encoder.encode(message)


def decode_client(data: bytes | str, *, max_bytes: int | None = None) -> ClientMessage:
    """Parse a client frame, or raise :class:`ProtocolError` saying exactly what is wrong."""
    if max_bytes is not None and len(data) > max_bytes:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE,
            f"frame of {len(data)} bytes is over the limit of {max_bytes}",
        )
    try:
        message = _client_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _classify_validation(str(exc), ref_of(data)) from None
    except (msgspec.DecodeError, UnicodeError) as exc:
        # Invalid UTF-8 inside a string surfaces as UnicodeDecodeError, not DecodeError.
        raise ProtocolError(ErrorCode.BAD_JSON, f"frame is not valid JSON: {exc}") from None
    except RecursionError:
        # msgspec gives up near 1,000 levels; far past what any field may hold.
        raise ProtocolError(
            ErrorCode.BAD_JSON,
            f"frame nests too deeply: free-form values may nest at most {MAX_NESTING} levels",
        ) from None
    _check_free_form_fields(message)
    return message


def convert_auth(fields: dict[str, Any]) -> Auth:
    """Build an ``auth`` request from connect-URL parameters, validated like a frame.

    Values arrive as strings, so numbers are converted (``protocol=1``) where the field wants
    them; errors name the field exactly as :func:`decode_client` does.
    """
    try:
        message = msgspec.convert(fields, Auth, strict=False)
    except msgspec.ValidationError as exc:
        raise _classify_validation(str(exc), None) from None
    _check_free_form_fields(message)
    return message


def check_free_form(value: object, field: str, ref: str | int | None = None) -> None:
    """Refuse a free-form JSON value that could not be stored or sent on as it is.

    Raises a ``BAD_REQUEST`` :class:`ProtocolError` naming ``field`` (and where inside it)
    when ``value`` nests deeper than :data:`MAX_NESTING` levels of objects and arrays, or
    holds a string (key or value) that is not encodable as UTF-8, such as a lone UTF-16
    surrogate (``json.loads`` accepts ``"\\ud800"``; no encoder will write it back).
    """
    stack: list[tuple[object, int, str]] = [(value, 1, field)]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            _check_text(item, path, field, ref)
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_NESTING:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"field `{field}` nests deeper than {MAX_NESTING} levels (at `{path}`)",
                field=field,
                ref=ref,
            )
        if isinstance(item, dict):
            for key, sub in item.items():
                inner = f"{path}.{key}" if isinstance(key, str) and key.isascii() else path
                if isinstance(key, str):
                    _check_text(key, inner, field, ref)
                stack.append((sub, depth + 1, inner))
        else:
            stack.extend((sub, depth + 1, f"{path}[{i}]") for i, sub in enumerate(item))


def _check_text(text: str, path: str, field: str, ref: str | int | None) -> None:
    if text.isascii():
        return
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"field `{field}` holds a string that is not valid UTF-8 "
            f"(a lone surrogate?) at `{path}`",
            field=field,
            ref=ref,
        ) from None


def _check_free_form_fields(message: ClientMessage) -> None:
    names = _FREE_FORM.get(type(message))
    if names is None:
        return
    for name in names:
        value = getattr(message, name)
        if value is not None and not isinstance(value, str):
            check_free_form(value, name, message.ref)


def decode_server(data: bytes | str) -> ServerMessage:
    """Parse a server frame (used by the client SDK and tests)."""
    return _server_decoder.decode(data)


def ref_of(data: bytes | str) -> str | int | None:
    """The ``ref`` of a frame that was refused (over the rate, malformed), or None when it
    has none or is not a JSON object: the frame's other fields are skipped, not built."""
    try:
        ref = _ref_decoder.decode(data).ref
    except (msgspec.MsgspecError, UnicodeError, RecursionError):
        return None
    return None if isinstance(ref, bool) else ref


def _classify_validation(text: str, ref: str | int | None) -> ProtocolError:
    match = _PATH.search(text)
    path = match.group("path").lstrip(".") if match else ""
    reason = text[: match.start()] if match else text
    if path == "type":
        return ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown message type: {reason}", field="type", ref=ref
        )
    missing = re.match(r"Object missing required field `(?P<name>[^`]+)`", reason)
    if missing:
        field = f"{path}.{missing['name']}" if path else missing["name"]
        return ProtocolError(
            ErrorCode.BAD_REQUEST, f"missing required field `{field}`", field=field, ref=ref
        )
    if not path:
        # The frame is JSON but not an object (a list, a number...).
        return ProtocolError(ErrorCode.BAD_JSON, f"frame must be a JSON object: {reason}", ref=ref)
    return ProtocolError(ErrorCode.BAD_REQUEST, f"field `{path}`: {reason}", field=path, ref=ref)
