"""The bytes every broker publishes: an event's payload with the session id that caused it.

A frame is a 2-byte big-endian origin length (0xFFFF: no origin), the origin's UTF-8, then the
payload. The Redis and NATS brokers frame and unframe with these functions, so the format is
one thing; the memory broker passes ``(payload, origin)`` as they are.
"""

from __future__ import annotations

import logging
import struct

from presenced.store.base import MessageHandler

__all__ = ["decode_frame", "deliver_frame", "encode_frame"]

_HEADER = struct.Struct(">H")
_NO_ORIGIN = 0xFFFF


def encode_frame(payload: bytes, origin: str | None) -> bytes:
    """The published bytes: origin length (2 bytes, 0xFFFF: none), origin, payload."""
    if origin is None:
        return _HEADER.pack(_NO_ORIGIN) + payload
    raw = origin.encode()
    if len(raw) >= _NO_ORIGIN:
        raise ValueError(f"origin of {len(raw)} bytes is too long")
    return _HEADER.pack(len(raw)) + raw + payload


def decode_frame(frame: bytes) -> tuple[bytes, str | None]:
    """``(payload, origin)`` from published bytes; ValueError if they are not a frame."""
    if len(frame) < _HEADER.size:
        raise ValueError("frame shorter than its header")
    (size,) = _HEADER.unpack_from(frame)
    if size == _NO_ORIGIN:
        return frame[_HEADER.size :], None
    end = _HEADER.size + size
    if len(frame) < end:
        raise ValueError("frame shorter than its origin")
    return frame[end:], frame[_HEADER.size : end].decode()


def deliver_frame(
    handler: MessageHandler | None,
    channel: object,
    frame: bytes,
    logger: logging.Logger,
    via: str,
) -> None:
    """Unframe ``frame`` and hand it to the channel's ``handler`` (None: unsubscribed while
    the message was on its way). A foreign message or a failing handler is logged on the
    broker's ``logger`` (``via`` names the transport), never raised into its reader."""
    if handler is None:
        return
    try:
        payload, origin = decode_frame(frame)
    except ValueError:
        logger.warning("%s: dropped a message on %r that is not a presenced frame", via, channel)
        return
    try:
        handler(payload, origin)
    except Exception:
        logger.exception("%s: the handler of %r failed", via, channel)
