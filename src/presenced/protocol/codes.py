"""Error codes and WebSocket close codes: the fixed lists docs/protocol.md documents.

Every ``error`` message carries one :class:`ErrorCode`. Fatal errors are followed by a close
frame whose code is the matching :class:`CloseCode` (4xxx, application range).
"""

from enum import IntEnum, StrEnum

__all__ = ["PROTOCOL_VERSION", "SUPPORTED_PROTOCOLS", "CloseCode", "ErrorCode", "LeaveReason"]

PROTOCOL_VERSION = 1
SUPPORTED_PROTOCOLS = frozenset({1})


class ErrorCode(StrEnum):
    """Why a request failed. The string is what goes on the wire."""

    BAD_JSON = "BAD_JSON"  # the frame is not valid UTF-8 JSON, or not a JSON object
    UNKNOWN_TYPE = "UNKNOWN_TYPE"  # "type" names no message this server knows
    BAD_REQUEST = "BAD_REQUEST"  # a field is missing, of the wrong type or out of range
    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"  # frame over the configured max_frame_bytes
    AUTH_TIMEOUT = "AUTH_TIMEOUT"  # no valid auth within auth_timeout (fatal)
    AUTH_FAILED = "AUTH_FAILED"  # bad signature, expired or malformed token (fatal)
    TOKEN_EXPIRED = "TOKEN_EXPIRED"  # the session's token expired (fatal: close 4011)
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"  # a request other than auth before auth
    ALREADY_AUTHENTICATED = "ALREADY_AUTHENTICATED"  # a second auth on one connection
    UNSUPPORTED_PROTOCOL = "UNSUPPORTED_PROTOCOL"  # protocol version not spoken (fatal)
    RESUME_FAILED = "RESUME_FAILED"  # resume token unknown or grace over: new session given
    ROOM_FORBIDDEN = "ROOM_FORBIDDEN"  # the token's room patterns do not allow this room
    WATCH_FORBIDDEN = "WATCH_FORBIDDEN"  # the credentials do not allow watching this user
    NOT_IN_ROOM = "NOT_IN_ROOM"  # the request needs membership of the room
    TOO_MANY_ROOMS = "TOO_MANY_ROOMS"  # over max_rooms_per_session
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"  # over max_subscriptions_per_session
    RATE_LIMITED = "RATE_LIMITED"  # over the per-connection message rate; request dropped
    SLOW_CONSUMER = "SLOW_CONSUMER"  # send queue stayed full (fatal)
    NOT_AUTHOR = "NOT_AUTHOR"  # edit/delete of another user's message without moderation
    MESSAGE_NOT_FOUND = "MESSAGE_NOT_FOUND"  # no such message in the room's kept history
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"  # body over max_message_bytes; not delivered
    MESSAGE_RATE_LIMITED = "MESSAGE_RATE_LIMITED"  # over message_rate; not delivered
    SHUTTING_DOWN = "SHUTTING_DOWN"  # the node is draining; reconnect elsewhere
    TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"  # per user or per address (fatal: close 4012)
    INTERNAL = "INTERNAL"  # a server fault; the request may be retried


class CloseCode(IntEnum):
    """WebSocket close codes presenced sends."""

    NORMAL = 1000  # logout, or the client closed
    SERVICE_RESTART = 1012  # the node is shutting down: reconnect (and resume) elsewhere
    INTERNAL_ERROR = 1011
    BAD_REQUEST = 4000  # a protocol violation that cannot be answered in-band
    AUTH_FAILED = 4001
    AUTH_TIMEOUT = 4002
    FORCE_LEAVE = 4003  # inactivity timeout or kick: do not reconnect automatically
    UNSUPPORTED_PROTOCOL = 4004
    SLOW_CONSUMER = 4005  # reconnect and resume
    HEARTBEAT_TIMEOUT = 4006  # no pong in time: reconnect and resume
    SESSION_REPLACED = 4007  # the session was resumed on another connection
    RATE_LIMITED = 4008  # a sustained flood of requests over the rate: slow down, resume
    FRAME_TOO_LARGE = 4009  # frame over the hard transport cap
    DISCONNECTED = 4010  # the backend ended the session: reconnect with fresh credentials
    TOKEN_EXPIRED = 4011  # the token ran out, no refresh came: reconnect with a fresh one, resume
    TOO_MANY_CONNECTIONS = 4012  # over max_connections_per_user / _per_ip: back off, retry later


class LeaveReason(StrEnum):
    """Why a member left a room or a session ended, as carried by member.left / force_leave."""

    LEFT = "left"  # room.leave or logout
    GRACE_EXPIRED = "grace_expired"  # the transport was lost and no resume came in time
    INACTIVITY_TIMEOUT = "inactivity_timeout"  # idle past inactivity_timeout
    KICKED = "kicked"  # removed by the backend
    DISCONNECTED = "disconnected"  # the backend ended the session (it may come back fresh)
    OFFLINE = "offline"  # the user went invisible: appears offline to others
    NODE_LOST = "node_lost"  # its gateway node died and no resume came in time
