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
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

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
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

export type LeaveReason =
  | "left"
  | "grace_expired"
  | "inactivity_timeout"
  | "kicked"
  | "disconnected"
  | "offline"
  | "node_lost";

/** A status a device may set. */
export type ClientStatus = "online" | "away" | "busy" | "dnd" | "invisible";
/** A user's aggregate status as others see it. */
export type PresenceStatus = "online" | "away" | "busy" | "dnd" | "offline";

export type Ref = string | number;
export type JsonObject = { [key: string]: unknown };
/** A message body: text, or a JSON object of the app's own shape. */
export type Body = string | JsonObject;

/** A place in a room's event stream. */
export interface Position {
  epoch: string;
  offset: number;
}

/** One user as a room sees it (`room.joined`, `room.members`). */
export interface Member {
  user: string;
  status: string;
  devices: number;
  text?: string;
  meta?: JsonObject;
  joined_at?: number;
}

// --- server messages ---------------------------------------------------------------------

export interface Welcome {
  type: "welcome";
  session: string;
  resume_token: string;
  user: string;
  device: string;
  protocol: number;
  heartbeat_interval: number;
  heartbeat_timeout: number;
  grace: number;
  resumed: boolean;
  status: string;
  inactivity_timeout?: number;
  rooms?: string[];
  subscriptions?: string[];
  text?: string;
  resume_error?: string;
  node?: string;
  /** The token's `exp` (Unix seconds): `refresh` before it, or the server closes with 4011. */
  expires_at?: number;
  ref?: Ref;
}

export interface ErrorMessage {
  type: "error";
  code: string;
  message: string;
  field?: string;
  ref?: Ref;
}

export interface HeartbeatAck {
  type: "heartbeat.ack";
  time: number;
  ref?: Ref;
}

export interface Refreshed {
  type: "refreshed";
  expires_at?: number;
  ref?: Ref;
}

export interface RoomJoined {
  type: "room.joined";
  room: string;
  version: number;
  members: Member[];
  ref?: Ref;
}

export interface RoomLeft {
  type: "room.left";
  room: string;
  ref?: Ref;
}

export interface RoomMembers {
  type: "room.members";
  room: string;
  version: number;
  members: Member[];
  ref?: Ref;
}

export interface RoomCount {
  type: "room.count";
  room: string;
  version: number;
  count: number;
  ref?: Ref;
}

export interface RoomMeta {
  type: "room.meta";
  room: string;
  version: number;
  meta: JsonObject;
  ref?: Ref;
}

export interface StatusUpdated {
  type: "status.updated";
  status: string;
  aggregate: string;
  text?: string;
  ref?: Ref;
}

export interface Presence {
  type: "presence";
  user: string;
  online: boolean;
  status: PresenceStatus;
  devices: number;
  text?: string;
  last_seen?: number;
  seq?: number;
}

export interface PresenceSubscribed {
  type: "presence.subscribed";
  users: Presence[];
  ref?: Ref;
}

export interface PresenceUnsubscribed {
  type: "presence.unsubscribed";
  users: string[];
  ref?: Ref;
}

export interface MemberJoined {
  type: "member.joined";
  room: string;
  version: number;
  user: string;
  status: string;
  devices: number;
  text?: string;
  meta?: JsonObject;
  joined_at?: number;
}

export interface MemberLeft {
  type: "member.left";
  room: string;
  version: number;
  user: string;
  reason: LeaveReason;
}

export interface MemberUpdated {
  type: "member.updated";
  room: string;
  version: number;
  user: string;
  status: string;
  devices: number;
  text?: string;
  meta?: JsonObject;
}

export type MemberEvent = MemberJoined | MemberLeft | MemberUpdated;

export interface RoomBatch {
  type: "room.batch";
  room: string;
  events: MemberEvent[];
}

export interface RoomSummary {
  type: "room.summary";
  room: string;
  count: number;
  version: number;
}

export interface RoomDeleted {
  type: "room.deleted";
  room: string;
  version: number;
  reason?: string;
}

export interface RoomRemoved {
  type: "room.removed";
  room: string;
  reason: LeaveReason;
  message?: string;
}

export interface DeviceDropped {
  type: "device.dropped";
  room: string;
  user: string;
  device: string;
  grace: number;
}

export interface DeviceBack {
  type: "device.back";
  room: string;
  user: string;
  device: string;
}

export interface DeviceGone {
  type: "device.gone";
  room: string;
  user: string;
  device: string;
  reason: LeaveReason;
}

export interface ForceLeave {
  type: "force_leave";
  reason: LeaveReason;
  message: string;
}

export interface MessageAck {
  type: "message.ack";
  room: string;
  epoch: string;
  offset: number;
  id: string;
  duplicate: boolean;
  temp_id?: string;
  ref?: Ref;
}

export interface Message {
  type: "message";
  room: string;
  epoch: string;
  offset: number;
  id: string;
  user: string;
  device: string;
  body: Body;
  time: number;
  temp_id?: string;
}

export interface MessageEdited {
  type: "message.edited";
  room: string;
  epoch: string;
  offset: number;
  id: string;
  user: string;
  body: Body;
  time: number;
  ref?: Ref;
}

export interface MessageDeleted {
  type: "message.deleted";
  room: string;
  epoch: string;
  offset: number;
  id: string;
  user: string;
  time: number;
  ref?: Ref;
}

/** The events of a room's stream: each has an offset. */
export type StreamEvent = Message | MessageEdited | MessageDeleted;

export interface Receipt {
  type: "receipt";
  room: string;
  kind: "delivered" | "seen";
  user: string;
  offset: number;
}

export interface RoomRead {
  type: "room.read";
  room: string;
  epoch: string;
  offset: number;
  last_read: number;
  unread: number;
  ref?: Ref;
}

export interface RoomHistory {
  type: "room.history";
  room: string;
  epoch: string;
  offset: number;
  messages: Message[];
  ref?: Ref;
}

export interface RoomRecovered {
  type: "room.recovered";
  room: string;
  epoch: string;
  offset: number;
  recovered: boolean;
  events?: StreamEvent[];
}

export interface Typing {
  type: "typing";
  room: string;
  users: string[];
  seq: number;
}

export type ServerMessage =
  | Welcome
  | ErrorMessage
  | HeartbeatAck
  | Refreshed
  | RoomJoined
  | RoomLeft
  | RoomMembers
  | RoomCount
  | RoomMeta
  | StatusUpdated
  | Presence
  | PresenceSubscribed
  | PresenceUnsubscribed
  | MemberJoined
  | MemberLeft
  | MemberUpdated
  | RoomBatch
  | RoomSummary
  | RoomDeleted
  | RoomRemoved
  | DeviceDropped
  | DeviceBack
  | DeviceGone
  | ForceLeave
  | MessageAck
  | Message
  | MessageEdited
  | MessageDeleted
  | Receipt
  | RoomRead
  | RoomHistory
  | RoomRecovered
  | Typing;

/** The server messages that are replies, by the request type that asks for them. */
export interface Replies {
  auth: Welcome;
  heartbeat: HeartbeatAck;
  refresh: Refreshed;
  "room.join": RoomJoined;
  "room.leave": RoomLeft;
  "room.members": RoomMembers;
  "room.count": RoomCount;
  "room.meta": RoomMeta;
  "status.set": StatusUpdated;
  "presence.subscribe": PresenceSubscribed;
  "presence.unsubscribe": PresenceUnsubscribed;
  "message.send": MessageAck;
  "message.edit": MessageEdited;
  "message.delete": MessageDeleted;
  "room.read": RoomRead;
  "room.history": RoomHistory;
}

/** The reply type each request expects. */
export const REPLY_TYPE: { [K in keyof Replies]: Replies[K]["type"] } = {
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

// --- client messages ---------------------------------------------------------------------

export interface Auth {
  type: "auth";
  device: string;
  token?: string;
  user?: string;
  device_info?: JsonObject;
  resume?: string;
  protocol?: number;
  positions?: { [room: string]: Position };
  ref?: Ref;
}

export interface RoomJoin {
  type: "room.join";
  room: string;
  meta?: JsonObject;
  device_events?: boolean;
  since?: Position;
  ref?: Ref;
}

export interface PresenceSubscribe {
  type: "presence.subscribe";
  users: string[];
  ref?: Ref;
}

export interface StatusSet {
  type: "status.set";
  status: ClientStatus;
  text?: string | null;
  ref?: Ref;
}

export interface MessageSend {
  type: "message.send";
  room: string;
  body: Body;
  temp_id?: string;
  ref?: Ref;
}

/** Any request: `type` plus its fields (docs/protocol.md, "Client messages"). */
export type ClientMessage = { type: string; ref?: Ref; [field: string]: unknown };

/** Upper bound on users in one presence.subscribe; restores are chunked to it. */
export const MAX_USERS_PER_SUBSCRIBE = 1000;
