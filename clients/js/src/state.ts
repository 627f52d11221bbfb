/**
 * What the server confirmed for this session, kept so it can be restored; pure. The Python
 * SDK's `ResumeState`: a change is recorded only once the server answered it (room.joined,
 * presence.subscribed...), so this is the server's view, not the app's wishes.
 * `onWelcome` takes the new resume token and says what to send again.
 */

import { MemberViews } from "./members.js";
import {
  MAX_USERS_PER_SUBSCRIBE,
  type ClientStatus,
  type JsonObject,
  type Position,
  type PresenceSubscribe,
  type RoomJoin,
  type StatusSet,
  type Welcome,
} from "./protocol.js";
import { StreamPositions } from "./streams.js";

/** How this session joined a room: what a re-join sends again. */
export interface RoomState {
  meta: JsonObject | undefined;
  deviceEvents: boolean;
}

/**
 * A session as a page can keep it across a reload (JSON, for `sessionStorage`):
 * `client.saveSession()` gives it, the next page's client resumes it (`session` option).
 * It holds the resume token: keep it where only this tab reads it.
 */
export interface SavedSession {
  user?: string;
  device: string;
  resumeToken: string;
  rooms: { room: string; meta?: JsonObject; deviceEvents?: boolean; position?: Position }[];
  subscriptions: string[];
  status?: ClientStatus;
  text?: string;
}

/** Requests to send after a `welcome` so a new session matches the old one. */
export interface Restore {
  joins: RoomJoin[];
  subscribes: PresenceSubscribe[];
  status: StatusSet | undefined;
}

export class ResumeState {
  resumeToken: string | undefined;
  readonly rooms = new Map<string, RoomState>();
  subscriptions = new Set<string>();
  status: ClientStatus | undefined; // undefined: never set, the server default stands
  text: string | undefined;
  streams = new StreamPositions();
  members = new MemberViews();

  joined(room: string, meta: JsonObject | undefined, deviceEvents: boolean): void {
    const old = this.rooms.get(room);
    if (meta === undefined && old !== undefined) meta = old.meta; // re-join without meta keeps it
    this.rooms.set(room, { meta, deviceEvents });
  }

  left(room: string): void {
    this.rooms.delete(room);
    this.streams.forget(room);
    this.members.forget(room);
  }

  joinFailed(room: string): void {
    if (this.rooms.has(room)) this.members.abandon(room);
    else this.members.forget(room);
  }

  metaSet(room: string, meta: JsonObject): void {
    const old = this.rooms.get(room);
    if (old !== undefined) this.rooms.set(room, { meta, deviceEvents: old.deviceEvents });
  }

  subscribed(users: Iterable<string>): void {
    for (const user of users) this.subscriptions.add(user);
  }

  unsubscribed(users: Iterable<string>): void {
    for (const user of users) this.subscriptions.delete(user);
  }

  statusSet(status: ClientStatus, text: string | undefined): void {
    this.status = status;
    this.text = text;
  }

  /** The server ended the session (4010): the next connect opens a new one and restores. */
  sessionEnded(): void {
    this.resumeToken = undefined;
  }

  /** The session ended for good (logout, force leave): nothing is left to restore. */
  clear(): void {
    this.resumeToken = undefined;
    this.rooms.clear();
    this.subscriptions.clear();
    this.status = undefined;
    this.text = undefined;
    this.streams = new StreamPositions();
    this.members = new MemberViews();
  }

  /** This session as a page keeps it across a reload; undefined when it has none. */
  save(device: string, user: string | undefined): SavedSession | undefined {
    if (this.resumeToken === undefined) return undefined;
    const saved: SavedSession = { device, resumeToken: this.resumeToken, rooms: [], subscriptions: [...this.subscriptions] };
    if (user !== undefined) saved.user = user;
    for (const [room, state] of this.rooms) {
      const entry: SavedSession["rooms"][number] = { room };
      if (state.meta !== undefined) entry.meta = state.meta;
      if (state.deviceEvents) entry.deviceEvents = true;
      const position = this.streams.position(room);
      if (position !== undefined) entry.position = { ...position };
      saved.rooms.push(entry);
    }
    if (this.status !== undefined) saved.status = this.status;
    if (this.text !== undefined) saved.text = this.text;
    return saved;
  }

  /** Take a saved session's place: the next connect asks to resume it, with its positions
   * (and, should the server not resume it, re-joins its rooms and restores the rest). */
  load(saved: SavedSession): void {
    this.clear();
    this.resumeToken = saved.resumeToken;
    for (const entry of saved.rooms) {
      this.rooms.set(entry.room, { meta: entry.meta, deviceEvents: entry.deviceEvents ?? false });
      if (entry.position !== undefined) this.streams.known.set(entry.room, { ...entry.position });
    }
    this.subscriptions = new Set(saved.subscriptions);
    this.status = saved.status;
    this.text = saved.text;
  }

  /** `auth.positions` for the next connect: only when it will ask to resume. */
  authPositions(): { [room: string]: Position } | undefined {
    if (this.resumeToken === undefined) return undefined;
    return this.streams.forAuth(this.rooms.keys());
  }

  /**
   * Take the new resume token and return what must be sent again. A resumed session kept
   * everything; the welcome's rooms and subscriptions are the server's and stand (a room it
   * does not list is forgotten, never re-joined). A fresh session gets every room re-joined
   * with `since`, every watched user re-subscribed and the status re-set. Every room then
   * awaits its `room.recovered`, and every member list a snapshot.
   */
  onWelcome(welcome: Welcome): Restore {
    this.resumeToken = welcome.resume_token;
    this.streams.connectionLost();
    this.members.connectionLost();
    let rooms: string[] = [];
    let users: string[] = [];
    let status: StatusSet | undefined;
    if (welcome.resumed) {
      const listed = new Set(welcome.rooms ?? []);
      for (const room of [...this.rooms.keys()]) if (!listed.has(room)) this.left(room);
      for (const room of listed) {
        if (!this.rooms.has(room)) this.rooms.set(room, { meta: undefined, deviceEvents: false });
        this.streams.expect(room);
        this.members.refresh(room);
      }
      this.subscriptions = new Set(welcome.subscriptions ?? []);
    } else {
      rooms = [...this.rooms.keys()];
      users = [...this.subscriptions].sort();
      if (this.status !== undefined) {
        status = { type: "status.set", status: this.status };
        if (this.text !== undefined) status.text = this.text;
      }
    }
    const joins: RoomJoin[] = rooms.map((room) => {
      const state = this.rooms.get(room)!;
      const join: RoomJoin = { type: "room.join", room, since: this.streams.since(room) };
      if (state.meta !== undefined) join.meta = state.meta;
      if (state.deviceEvents) join.device_events = true;
      return join;
    });
    for (const room of rooms) {
      this.streams.expect(room);
      this.members.expect(room);
    }
    const subscribes: PresenceSubscribe[] = [];
    for (let i = 0; i < users.length; i += MAX_USERS_PER_SUBSCRIBE) {
      subscribes.push({ type: "presence.subscribe", users: users.slice(i, i + MAX_USERS_PER_SUBSCRIBE) });
    }
    return { joins, subscribes, status };
  }
}
