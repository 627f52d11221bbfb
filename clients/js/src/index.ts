/**
 * @presenced/client: the browser and Node client of presenced.
 *
 * ```ts
 * import { PresencedClient } from "@presenced/client";
 * const client = new PresencedClient({ url: "wss://presence.example.com/ws", device: "laptop", token });
 * client.on("message", (m) => show(m));
 * await client.connect();
 * await client.join("doc:42");
 * await client.send("doc:42", "hello");
 * ```
 */

export { PresencedClient } from "./client.js";
export type {
  ClientEvent,
  ClientEvents,
  ClientState,
  Connected,
  Disconnected,
  ForcedLeave,
  Latency,
  StateChange,
  StatusChanged,
  TokenRefreshed,
} from "./events.js";
export { newTempId } from "./messaging.js";
export type { ClientOptions, HistoryOptions, JoinOptions, Logger, SendOptions, TokenSource } from "./options.js";
export { attachBrowserHooks, type BrowserHookOptions, type HookedClient } from "./browser.js";
export { Emitter, type Listener } from "./emitter.js";
export { ClientError, ConnectionClosed, ForceLeaveError, PresencedError, RequestTimeout } from "./errors.js";
export type { WebSocketConstructor, WebSocketLike } from "./link.js";
export { MemberViews, type MemberList, type MembersChanged, type MembersResynced } from "./members.js";
export {
  authFailureDecision,
  Backoff,
  mayResume,
  reconnectDecision,
  refreshDelay,
  retryDelay,
  TypingThrottle,
  type BackoffOptions,
  type Decision,
} from "./policy.js";
export * from "./protocol.js";
export { ResumeState, type Restore, type RoomState, type SavedSession } from "./state.js";
export { classify, StreamPositions, UNKNOWN_EPOCH, type RecoveryFailed, type Step, type Surfaced } from "./streams.js";
