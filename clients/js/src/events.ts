/** What the client emits: its own events about the connection and the session, and the
 * server's events by their wire type. */

import type { ClientError } from "./errors.js";
import type { MembersChanged, MembersResynced } from "./members.js";
import type {
  ClientStatus,
  DeviceBack,
  DeviceDropped,
  DeviceGone,
  MemberJoined,
  MemberLeft,
  MemberUpdated,
  Message,
  MessageDeleted,
  MessageEdited,
  Presence,
  PresenceSubscribed,
  PresenceUnsubscribed,
  Receipt,
  RoomDeleted,
  RoomRecovered,
  RoomRemoved,
  RoomSummary,
  Typing,
  Welcome,
} from "./protocol.js";
import type { RecoveryFailed } from "./streams.js";

/** A session is established: the first connect or a reconnect (see `welcome.resumed`). After
 * a reconnect that could not resume, rooms are re-joined and users re-subscribed by then. */
export interface Connected {
  type: "connected";
  welcome: Welcome;
}

/** The connection ended; `willReconnect` says whether the client is trying again. `code` is
 * the close code (1006: dropped without one; null: there never was a connection). */
export interface Disconnected {
  type: "disconnected";
  code: number | null;
  reason: string;
  willReconnect: boolean;
}

/** The server ended the session (`inactivity_timeout`, `kicked`); no reconnect follows. */
export interface ForcedLeave {
  type: "forced_leave";
  reason: string;
  message: string;
}

/** An automatic heartbeat was answered: the round trip, and the server's clock. */
export interface Latency {
  type: "latency";
  /** Round trip, ms. */
  rtt: number;
  /** The server's wall-clock time, Unix seconds. */
  serverTime: number;
}

/** This device's own status changed (a `setStatus`, or the browser hooks' away). */
export interface StatusChanged {
  type: "status_changed";
  status: ClientStatus;
  text: string | undefined;
  /** The user's status over all its devices. */
  aggregate: string;
}

/** The session runs on a fresh token (a `refresh`, automatic or not) until `expiresAt`. */
export interface TokenRefreshed {
  type: "token_refreshed";
  /** Unix seconds; undefined when the token has no `exp`. */
  expiresAt: number | undefined;
}

export type ClientState = "idle" | "connecting" | "connected" | "reconnecting" | "suspended" | "closed";

export interface StateChange {
  type: "state";
  state: ClientState;
  previous: ClientState;
}

/** Every event the client emits, by name: `client.on("message", (m) => ...)`. */
export interface ClientEvents {
  connected: Connected;
  disconnected: Disconnected;
  forced_leave: ForcedLeave;
  state: StateChange;
  latency: Latency;
  status_changed: StatusChanged;
  token_refreshed: TokenRefreshed;
  recovery_failed: RecoveryFailed;
  members_resynced: MembersResynced;
  members_changed: MembersChanged;
  /** A request with no reply (a receipt, typing) was refused, or a reply came too late. */
  request_error: ClientError;
  "member.joined": MemberJoined;
  "member.left": MemberLeft;
  "member.updated": MemberUpdated;
  "room.summary": RoomSummary;
  "room.deleted": RoomDeleted;
  "room.removed": RoomRemoved;
  "room.recovered": RoomRecovered;
  presence: Presence;
  "presence.subscribed": PresenceSubscribed;
  "presence.unsubscribed": PresenceUnsubscribed;
  "device.dropped": DeviceDropped;
  "device.back": DeviceBack;
  "device.gone": DeviceGone;
  message: Message;
  "message.edited": MessageEdited;
  "message.deleted": MessageDeleted;
  receipt: Receipt;
  typing: Typing;
}

export type ClientEvent = ClientEvents[keyof ClientEvents];
