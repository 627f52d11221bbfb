"""Bytes <-> messages, with every malformed input turned into a precise ProtocolError.

Decoding is one msgspec call on the happy path. On failure the error is classified (not JSON,
unknown type, bad field) and the offending field named from msgspec's error path; the request's
``ref`` is recovered by a second, lenient parse so even a rejected request can be matched.
Encoding is one call too; a broadcast is encoded once and the bytes written to every socket.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from presenced.errors import ProtocolError
from presenced.protocol.codes import ErrorCode
from presenced.protocol.messages import Auth, ClientMessage, ServerMessage

__all__ = ["convert_auth", "decode_client", "decode_server", "encode"]

_client_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_server_decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
_encoder = msgspec.json.Encoder()
_any_decoder = msgspec.json.Decoder()

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
        return _client_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _classify_validation(str(exc), _recover_ref(data)) from None
    except (msgspec.DecodeError, UnicodeError) as exc:
        # Invalid UTF-8 inside a string surfaces as UnicodeDecodeError, not DecodeError.
        raise ProtocolError(ErrorCode.BAD_JSON, f"frame is not valid JSON: {exc}") from None


def convert_auth(fields: dict[str, Any]) -> Auth:
    """Build an ``auth`` request from connect-URL parameters, validated like a frame.

    Values arrive as strings, so numbers are converted (``protocol=1``) where the field wants
    them; errors name the field exactly as :func:`decode_client` does.
    """
    try:
        return msgspec.convert(fields, Auth, strict=False)
    except msgspec.ValidationError as exc:
        raise _classify_validation(str(exc), None) from None


def decode_server(data: bytes | str) -> ServerMessage:
    """Parse a server frame (used by the client SDK and tests)."""
    return _server_decoder.decode(data)


def _recover_ref(data: bytes | str) -> str | int | None:
    try:
        obj: Any = _any_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeError):
        return None
    if isinstance(obj, dict):
        ref = obj.get("ref")
        if isinstance(ref, str | int) and not isinstance(ref, bool):
            return ref
    return None


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
