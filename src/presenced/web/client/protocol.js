/**
 * The wire protocol, version 1 (docs/protocol.md): every message this client sends or reads,
 * and the fixed lists of error codes, close codes and leave reasons.
 *
 * Absent means default: the server leaves out optional fields at their default, so every
 * optional field here may be missing. Unknown fields and unknown message types are ignored.
 */
export const PROTOCOL_VERSION = 1;
/** Error codes of `error` messages (docs/protocol.md, "Error codes"). */
export const ErrorCode = {
    BAD_JSON: "BAD_JSON",
    UNKNOWN_TYPE: "UNKNOWN_TYPE",
    BAD_REQUEST: "BAD_REQUEST",
    FRAME_TOO_LARGE: "FRAME_TOO_LARGE",
    AUTH_TIMEOUT: "AUTH_TIMEOUT",
    AUTH_FAILED: "AUTH_FAILED",
    NOT_AUTHENTICATED: "NOT_AUTHENTICATED",
    ALREADY_AUTHENTICATED: "ALREADY_AUTHENTICATED",
    UNSUPPORTED_PROTOCOL: "UNSUPPORTED_PROTOCOL",
    RESUME_FAILED: "RESUME_FAILED",
    ROOM_FORBIDDEN: "ROOM_FORBIDDEN",
    NOT_IN_ROOM: "NOT_IN_ROOM",
    TOO_MANY_ROOMS: "TOO_MANY_ROOMS",
    TOO_MANY_SUBSCRIPTIONS: "TOO_MANY_SUBSCRIPTIONS",
    WATCH_FORBIDDEN: "WATCH_FORBIDDEN",
    RATE_LIMITED: "RATE_LIMITED",
    SLOW_CONSUMER: "SLOW_CONSUMER",
    NOT_AUTHOR: "NOT_AUTHOR",
    MESSAGE_NOT_FOUND: "MESSAGE_NOT_FOUND",
    MESSAGE_TOO_LARGE: "MESSAGE_TOO_LARGE",
    MESSAGE_RATE_LIMITED: "MESSAGE_RATE_LIMITED",
    SHUTTING_DOWN: "SHUTTING_DOWN",
    INTERNAL: "INTERNAL",
    TOKEN_EXPIRED: "TOKEN_EXPIRED",
    TOO_MANY_CONNECTIONS: "TOO_MANY_CONNECTIONS",
};
/** WebSocket close codes presenced sends (docs/protocol.md, "Close codes"). */
export const CloseCode = {
    NORMAL: 1000,
    ABNORMAL: 1006, // no close frame at all (set by the WebSocket layer, never sent)
    INTERNAL_ERROR: 1011,
    SERVICE_RESTART: 1012,
    BAD_REQUEST: 4000,
    AUTH_FAILED: 4001,
    AUTH_TIMEOUT: 4002,
    FORCE_LEAVE: 4003,
    UNSUPPORTED_PROTOCOL: 4004,
    SLOW_CONSUMER: 4005,
    HEARTBEAT_TIMEOUT: 4006,
    SESSION_REPLACED: 4007,
    FRAME_TOO_LARGE: 4009,
    DISCONNECTED: 4010,
    TOKEN_EXPIRED: 4011,
    TOO_MANY_CONNECTIONS: 4012, // over a connection limit: back off (not listed: the default)
};
/** The reply type each request expects. */
export const REPLY_TYPE = {
    auth: "welcome",
    heartbeat: "heartbeat.ack",
    refresh: "refreshed",
    "room.join": "room.joined",
    "room.leave": "room.left",
    "room.members": "room.members",
    "room.count": "room.count",
    "room.meta": "room.meta",
    "status.set": "status.updated",
    "presence.subscribe": "presence.subscribed",
    "presence.unsubscribe": "presence.unsubscribed",
    "message.send": "message.ack",
    "message.edit": "message.edited",
    "message.delete": "message.deleted",
    "room.read": "room.read",
    "room.history": "room.history",
};
/** Upper bound on users in one presence.subscribe; restores are chunked to it. */
export const MAX_USERS_PER_SUBSCRIBE = 1000;
