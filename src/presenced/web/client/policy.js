/**
 * The client's decisions, pure: how long to wait, whether to reconnect, when typing goes out.
 * Nothing here touches a socket or a clock; randomness and time are passed in, so the rules
 * of docs/protocol.md ("Close codes", "Typing indicators") can be tested on their own. The
 * same rules as the Python SDK's `presenced.client.policy`. Times are in milliseconds.
 */
import { CloseCode, ErrorCode } from "./protocol.js";
/**
 * Exponential backoff with full jitter: attempt `n` (0-based) waits a uniformly random time
 * in `[0, min(maximum, initial * multiplier ** n))`, so a crowd of clients that lost the same
 * server spreads out instead of coming back in one instant.
 */
export class Backoff {
    constructor(options = {}) {
        this.initial = options.initial ?? 500;
        this.maximum = options.maximum ?? 30000;
        this.multiplier = options.multiplier ?? 2;
        if (!(this.initial > 0))
            throw new RangeError(`backoff.initial must be > 0 ms, got ${this.initial}`);
        if (!(this.maximum >= this.initial)) {
            throw new RangeError(`backoff.maximum must be >= initial (${this.initial}), got ${this.maximum}`);
        }
        if (!(this.multiplier >= 1))
            throw new RangeError(`backoff.multiplier must be >= 1, got ${this.multiplier}`);
    }
    /** The upper bound of the wait before attempt `attempt`. */
    cap(attempt) {
        return Math.min(this.maximum, this.initial * this.multiplier ** Math.min(attempt, 64));
    }
    /** The wait before attempt `attempt`; `rand` is uniform in [0, 1). */
    delay(attempt, rand) {
        return rand * this.cap(attempt);
    }
}
const CLOSE_DECISIONS = {
    [CloseCode.NORMAL]: "stop",
    [CloseCode.SERVICE_RESTART]: "reconnect_now",
    [CloseCode.AUTH_FAILED]: "stop",
    [CloseCode.AUTH_TIMEOUT]: "reconnect_backoff",
    [CloseCode.FORCE_LEAVE]: "stop",
    [CloseCode.UNSUPPORTED_PROTOCOL]: "stop",
    [CloseCode.SESSION_REPLACED]: "stop",
    [CloseCode.DISCONNECTED]: "reconnect_now", // afresh: see mayResume
    [CloseCode.TOKEN_EXPIRED]: "reconnect_now", // with a fresh token, and resume
};
/**
 * Whether to reconnect after a close with `code` (`null`: no close code, the connection could
 * not be opened or dropped without a close frame). Anything not listed backs off and retries.
 * `tokenRefreshable`: the client can fetch a new token first, so an auth failure (4001) is
 * worth one more try.
 */
export function reconnectDecision(code, tokenRefreshable = false) {
    if (code === CloseCode.AUTH_FAILED && tokenRefreshable)
        return "reconnect_backoff";
    if (code === null)
        return "reconnect_backoff";
    return CLOSE_DECISIONS[code] ?? "reconnect_backoff";
}
/**
 * Ms from now at which to refresh a token that expires at `expiresAt` (Unix seconds), `now`
 * being the wall clock in ms: at `fraction` (0.8) of the time left, so a slow token source
 * still has a fifth of it; at once when it is (nearly) over.
 */
export function refreshDelay(expiresAt, now, fraction = 0.8) {
    return Math.max(0, (expiresAt * 1000 - now) * fraction);
}
/** Whether the next connect may resume: not after 4010 (the backend ended the session). */
export function mayResume(code) {
    return code !== CloseCode.DISCONNECTED;
}
const AUTH_ERROR_CLOSES = {
    [ErrorCode.AUTH_FAILED]: CloseCode.AUTH_FAILED,
    [ErrorCode.AUTH_TIMEOUT]: CloseCode.AUTH_TIMEOUT,
    [ErrorCode.UNSUPPORTED_PROTOCOL]: CloseCode.UNSUPPORTED_PROTOCOL,
};
/**
 * What to do when a reconnect's `auth` was answered with an `error`. A malformed request
 * (BAD_REQUEST: the device id, say) will not fix itself: stop. Transient refusals
 * (RATE_LIMITED, SHUTTING_DOWN, INTERNAL...) back off and retry.
 */
export function authFailureDecision(code, tokenRefreshable = false) {
    if (code === ErrorCode.BAD_REQUEST)
        return "stop";
    const close = AUTH_ERROR_CLOSES[code];
    if (close === undefined)
        return "reconnect_backoff";
    return reconnectDecision(close, tokenRefreshable);
}
/**
 * Ms to wait before reconnect attempt `attempt` of an outage; `null` to stop.
 * `reconnect_now` stays within the first, smallest jitter window.
 */
export function retryDelay(decision, attempt, rand, backoff) {
    if (decision === "stop")
        return null;
    return backoff.delay(decision === "reconnect_now" ? 0 : attempt, rand);
}
/**
 * When `typing()` really sends `typing.start` (docs/protocol.md, "Typing indicators"). The
 * server keeps an indicator `typing_timeout` (5 s) after an accepted start and ignores a start
 * within `typing_throttle` (1 s) of the session's last accepted one, even after a stop or a
 * sent message ended the indicator. So while the indicator is on, a renewal goes out once per
 * `interval` (2 s); when it is off, a start goes out at once unless the last start was less
 * than `serverThrottle` ago, and then it is deferred to the moment the server takes it.
 */
export class TypingThrottle {
    constructor(interval = 2000, serverThrottle = 1000) {
        this.interval = interval;
        this.serverThrottle = serverThrottle;
        this.lastStart = new Map();
        this.on = new Set();
        if (!(interval >= 0))
            throw new RangeError(`typing throttle must be >= 0 ms, got ${interval}`);
        if (!(serverThrottle >= 0))
            throw new RangeError(`server typing throttle must be >= 0 ms, got ${serverThrottle}`);
    }
    /** The user typed in `room` at `now` (ms). A `send` is taken as sent at `now`. */
    start(room, now) {
        const last = this.lastStart.get(room);
        if (this.on.has(room)) {
            if (last !== undefined && now - last < Math.max(this.interval, this.serverThrottle))
                return { send: false };
        }
        else if (last !== undefined && now - last < this.serverThrottle) {
            return { send: false, deferMs: last + this.serverThrottle - now };
        }
        this.lastStart.set(room, now);
        this.on.add(room);
        return { send: true };
    }
    /** The indicator is off in `room` (a stop, a sent message); the server's cooldown stays. */
    stopped(room) {
        this.on.delete(room);
    }
    /** A start that was taken as sent did not go out: forget it. */
    unsent(room) {
        this.on.delete(room);
        this.lastStart.delete(room);
    }
    /** The indicator is off everywhere (the transport was lost). */
    connectionLost() {
        this.on.clear();
    }
}
