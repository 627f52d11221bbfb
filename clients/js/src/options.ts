/** The client's options. Times are in milliseconds. */

import type { BrowserHookOptions } from "./browser.js";
import type { WebSocketConstructor } from "./link.js";
import type { Backoff, BackoffOptions } from "./policy.js";
import type { JsonObject } from "./protocol.js";
import type { SavedSession } from "./state.js";

export type TokenSource = string | (() => string | Promise<string>);

export interface Logger {
  debug?(...args: unknown[]): void;
  warn?(...args: unknown[]): void;
}

export interface ClientOptions {
  /** `ws(s)://host:port/ws`. */
  url: string;
  /** This device's id, stable across reconnects of the same device. */
  device: string;
  /** A JWT, or a function returning a fresh one (called before every connect). */
  token?: TokenSource;
  /** With a token function: refresh the session's token before it expires (at 80 % of the
   * time to `welcome.expires_at`; default true). Without it the server closes with 4011 at
   * expiry and the client reconnects at once with a fresh token and resumes. */
  autoRefresh?: boolean;
  /** The user id, in the server's insecure development mode only. */
  user?: string;
  deviceInfo?: JsonObject;
  /** The WebSocket class (default: the global one; Node 20: `--experimental-websocket`, or
   * the `ws` package's). */
  WebSocket?: WebSocketConstructor;
  /** Ms between application heartbeats (default: the server's `heartbeat_interval`; 0: off). */
  heartbeatInterval?: number;
  /** Ms without any frame after a heartbeat before the connection counts as dead (default:
   * the server's `heartbeat_timeout`). */
  heartbeatTimeout?: number;
  backoff?: Backoff | BackoffOptions;
  /** Ms a request waits for the session and then for its reply (default 10000). */
  requestTimeout?: number;
  /** Ms `send()` keeps a message in the outbox, across reconnects, before it gives up
   * (default 30000). */
  sendTimeout?: number;
  /** Send `receipt.delivered` for messages received (coalesced per room; default true). */
  autoDelivered?: boolean;
  /** Least ms between two `typing.start` renewals for one room (default 2000). */
  typingThrottle?: number;
  /** The server's `typing_throttle` in ms (default 1000): no start is sent sooner than this
   * after the last one, since the server would ignore it, even after a stop. */
  serverTypingThrottle?: number;
  /** Ms after the last `typing()` call at which `typing.stop` is sent (default 3000; 0: never,
   * the server stops it after its `typing_timeout`). */
  typingAutoStop?: number;
  /** A session saved by `saveSession()` (by the page before a reload): `connect()` resumes
   * it, so nobody sees the user leave and the missed room events come back
   * (`room.recovered`); when the server cannot (grace over), it opens a new session and
   * re-joins the saved rooms. Its `device` (and `user`) must be this client's. */
  session?: SavedSession;
  /** Browser hooks (visibility, pagehide, online/offline): default on where `window` exists. */
  browser?: boolean | BrowserHookOptions;
  logger?: Logger;
  /** Uniform in [0, 1): the jitter's randomness (for tests). */
  random?: () => number;
}

export interface JoinOptions {
  meta?: JsonObject;
  /** Also get `device.dropped` / `device.back` / `device.gone` in this room. */
  deviceEvents?: boolean;
}

export interface SendOptions {
  /** The message's temporary id (default: a random one); reuse it only to re-send it. */
  tempId?: string;
}

export interface HistoryOptions {
  limit?: number;
  before?: number;
}
