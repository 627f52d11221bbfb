/**
 * The errors the client raises (rejects with)::
 *
 *     PresencedError
 *     +-- ClientError        the server answered a request with `error` (code, field, ref)
 *     +-- RequestTimeout     no reply within `requestTimeout`
 *     +-- ConnectionClosed   no connection to send on, or it closed while waiting
 *         +-- ForceLeaveError  the server ended the session (force_leave): it is over
 */
export class PresencedError extends Error {
    constructor(message) {
        super(message);
        this.name = new.target.name;
    }
}
/** The server refused a request. `code` is one of {@link ErrorCode} (or a newer one). */
export class ClientError extends PresencedError {
    constructor(code, detail, field, ref) {
        super(`${code}: ${detail}${field ? ` (field ${field})` : ""}`);
        this.code = code;
        this.detail = detail;
        this.field = field;
        this.ref = ref;
    }
}
/** No reply came within the client's `requestTimeout`. */
export class RequestTimeout extends PresencedError {
}
/**
 * There is no open connection, or it closed while a request waited for its reply.
 * `willReconnect` is true while the client is reconnecting: the request may be retried.
 */
export class ConnectionClosed extends PresencedError {
    constructor(code, reason, willReconnect = false) {
        super(`connection closed (code ${code})${reason ? `: ${reason}` : ""}`);
        this.code = code;
        this.reason = reason;
        this.willReconnect = willReconnect;
    }
}
/** The server ended the session with `force_leave` (inactivity, kick): it will not reconnect. */
export class ForceLeaveError extends ConnectionClosed {
    constructor(reason, message) {
        super(4003, reason);
        this.message = `session ended by the server (${reason}): ${message}`;
        this.leaveReason = reason;
        this.leaveMessage = message;
    }
}
