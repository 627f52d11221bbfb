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
export { newTempId } from "./messaging.js";
export { attachBrowserHooks } from "./browser.js";
export { Emitter } from "./emitter.js";
export { ClientError, ConnectionClosed, ForceLeaveError, PresencedError, RequestTimeout } from "./errors.js";
export { MemberViews } from "./members.js";
export { authFailureDecision, Backoff, mayResume, reconnectDecision, refreshDelay, retryDelay, TypingThrottle, } from "./policy.js";
export * from "./protocol.js";
export { ResumeState } from "./state.js";
export { classify, StreamPositions, UNKNOWN_EPOCH } from "./streams.js";
