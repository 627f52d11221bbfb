/**
 * The errors the client raises (rejects with)::
 *
 *     PresencedError
 *     +-- ClientError        the server answered a request with `error` (code, field, ref)
 *     +-- RequestTimeout     no reply within `requestTimeout`
 *     +-- ConnectionClosed   no connection to send on, or it closed while waiting
 *         +-- ForceLeaveError  the server ended the session (force_leave): it is over
 */

import type { ErrorCode, Ref } from "./protocol.js";

export class PresencedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The server refused a request. `code` is one of {@link ErrorCode} (or a newer one). */
export class ClientError extends PresencedError {
  readonly code: ErrorCode | (string & {});
  readonly field: string | undefined;
  readonly ref: Ref | undefined;
  /** The server's explanation, for people. */
  readonly detail: string;

  constructor(code: string, detail: string, field?: string, ref?: Ref) {
    super(`${code}: ${detail}${field ? ` (field ${field})` : ""}`);
    this.code = code;
    this.detail = detail;
    this.field = field;
    this.ref = ref;
  }
}

/** No reply came within the client's `requestTimeout`. */
export class RequestTimeout extends PresencedError {}

/**
 * There is no open connection, or it closed while a request waited for its reply.
 * `willReconnect` is true while the client is reconnecting: the request may be retried.
 */
export class ConnectionClosed extends PresencedError {
  readonly code: number | null;
  readonly reason: string;
  readonly willReconnect: boolean;

  constructor(code: number | null, reason: string, willReconnect = false) {
    super(`connection closed (code ${code})${reason ? `: ${reason}` : ""}`);
    this.code = code;
    this.reason = reason;
    this.willReconnect = willReconnect;
  }
}

/** The server ended the session with `force_leave` (inactivity, kick): it will not reconnect. */
export class ForceLeaveError extends ConnectionClosed {
  readonly leaveReason: string;
  readonly leaveMessage: string;

  constructor(reason: string, message: string) {
    super(4003, reason);
    this.message = `session ended by the server (${reason}): ${message}`;
    this.leaveReason = reason;
    this.leaveMessage = message;
  }
}
