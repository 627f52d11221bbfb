/**
 * Room member lists and the version rule, pure (docs/protocol.md, "Rooms and room versions");
 * the Python SDK's `presenced.client.members`. Per room the client keeps the last version and,
 * for each `member.joined` / `member.left` / `member.updated` (alone or in a `room.batch`):
 *
 * - `version == last + 1`: apply it;
 * - `version <= last`: already in the list (e.g. in the snapshot just received): skip it;
 * - `version > last + 1`: a gap: ask `room.members` and replace the list with the reply.
 *
 * While a snapshot is due (a gap, a join on its way, a reconnect) the room's member events are
 * held, then applied by the rule once it is in. `room.summary` sets the count only.
 */

import type { Member, MemberEvent, RoomMeta, ServerMessage } from "./protocol.js";

/** A room's visible members as this client knows them, at `version`. */
export interface MemberList {
  room: string;
  version: number;
  /** By user id. A copy: ask again for the latest. */
  members: Map<string, Member>;
  /** `members.size`, or the newer count of a `room.summary`. */
  count: number;
  /** False while a snapshot is due: the list may be behind until it arrives. */
  synced: boolean;
}

/** A snapshot replaced a room's list and it differs from what the events built. */
export interface MembersResynced {
  type: "members_resynced";
  room: string;
  version: number;
  members: Member[];
}

/** The list of a room changed (an event applied, or a snapshot taken). */
export interface MembersChanged {
  type: "members_changed";
  room: string;
}

export type MemberSurfaced = ServerMessage | MembersResynced | MembersChanged;

interface View {
  version: number | null; // null: no snapshot yet
  members: Map<string, Member>;
  count: number;
  countVersion: number;
  held: MemberEvent[] | null; // not null while a snapshot is due
}

function isMemberEvent(message: ServerMessage): message is MemberEvent {
  return message.type === "member.joined" || message.type === "member.left" || message.type === "member.updated";
}

function sameMembers(a: Map<string, Member>, b: Map<string, Member>): boolean {
  if (a.size !== b.size) return false;
  for (const [user, member] of a) {
    const other = b.get(user);
    if (other === undefined || JSON.stringify(canonical(member)) !== JSON.stringify(canonical(other))) return false;
  }
  return true;
}

function canonical(member: Member): unknown[] {
  return [member.user, member.status, member.devices, member.text, sortKeys(member.meta), member.joined_at];
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    const obj = value as { [k: string]: unknown };
    return Object.keys(obj)
      .sort()
      .map((k) => [k, sortKeys(obj[k])]);
  }
  return value;
}

export class MemberViews {
  private readonly views = new Map<string, View>();
  readonly due = new Set<string>();

  get(room: string): MemberList | undefined {
    const view = this.views.get(room);
    if (view === undefined || view.version === null) return undefined;
    return {
      room,
      version: view.version,
      members: new Map(view.members),
      count: view.count,
      synced: view.held === null,
    };
  }

  /** A snapshot of `room` is on its way (a join, a reconnect): hold its events. */
  expect(room: string): void {
    let view = this.views.get(room);
    if (view === undefined) {
      view = { version: null, members: new Map(), count: 0, countVersion: -1, held: null };
      this.views.set(room, view);
    }
    if (view.held === null) view.held = [];
  }

  /** Ask for a snapshot of `room` (after a resume: member events were lost). */
  refresh(room: string): void {
    this.expect(room);
    this.due.add(room);
  }

  takeRequests(): string[] {
    const rooms = [...this.due].sort();
    this.due.clear();
    return rooms;
  }

  /** The join or snapshot request failed: stop holding (the next event past the list's
   * version is a gap and asks again). */
  abandon(room: string): void {
    const view = this.views.get(room);
    if (view === undefined) return;
    if (view.version === null) this.views.delete(room);
    else view.held = null;
    this.due.delete(room);
  }

  forget(room: string): void {
    this.views.delete(room);
    this.due.delete(room);
  }

  clear(): void {
    this.views.clear();
    this.due.clear();
  }

  /** Member events are not recovered: every list waits for a snapshot. */
  connectionLost(): void {
    this.due.clear();
    for (const view of this.views.values()) view.held = [];
  }

  /** An unsolicited message: what to surface now. Member events of a tracked room go through
   * the version rule; everything else passes. */
  receive(message: ServerMessage): MemberSurfaced[] {
    if (isMemberEvent(message)) {
      const out: MemberSurfaced[] = [];
      this.event(message, out);
      return out;
    }
    if (message.type === "room.summary") {
      const view = this.views.get(message.room);
      if (view !== undefined && message.version >= view.countVersion) {
        view.count = message.count;
        view.countVersion = message.version;
      }
    }
    return [message];
  }

  /** A reply: `room.joined` and `room.members` are snapshots; `room.meta` moves this user's
   * meta and the version (the requester gets no `member.updated` for it). */
  reply(message: ServerMessage, me: string | undefined): MemberSurfaced[] {
    if (message.type === "room.joined" || message.type === "room.members") {
      return this.snapshot(message.room, message.version, message.members);
    }
    if (message.type === "room.meta" && me !== undefined) return this.ownMeta(message, me);
    return [];
  }

  private event(event: MemberEvent, out: MemberSurfaced[]): void {
    const view = this.views.get(event.room);
    if (view === undefined) {
      out.push(event); // a room this client does not track
      return;
    }
    if (view.held !== null) {
      view.held.push(event);
      return;
    }
    const version = view.version as number;
    if (event.version <= version) return;
    if (event.version > version + 1) {
      view.held = [event];
      this.due.add(event.room);
      return;
    }
    apply(view, event);
    out.push(event, { type: "members_changed", room: event.room });
  }

  private snapshot(room: string, version: number, members: Member[]): MemberSurfaced[] {
    const view = this.views.get(room);
    if (view === undefined) return []; // room.members of a room this session is not in
    if (view.held === null && view.version !== null && version < view.version) return [];
    // (While a snapshot is due any one is taken: a restarted memory server counts from 0.)
    const first = view.version === null;
    const before = view.members;
    view.members = new Map(members.map((m) => [m.user, m]));
    view.version = version;
    view.count = view.members.size;
    view.countVersion = version;
    const held = view.held ?? [];
    view.held = null;
    this.due.delete(room);
    const out: MemberSurfaced[] = [];
    if (!first && !sameMembers(before, view.members)) {
      out.push({ type: "members_resynced", room, version, members });
    }
    out.push({ type: "members_changed", room });
    for (const event of held) this.event(event, out);
    return out;
  }

  private ownMeta(reply: RoomMeta, me: string): MemberSurfaced[] {
    const view = this.views.get(reply.room);
    if (view === undefined || view.held !== null || view.version === null) return [];
    if (reply.version <= view.version) return [];
    if (reply.version > view.version + 1) {
      view.held = [];
      this.due.add(reply.room);
      return [];
    }
    view.version = reply.version;
    const own = view.members.get(me);
    if (own !== undefined) view.members.set(me, { ...own, meta: reply.meta });
    view.count = view.members.size;
    view.countVersion = view.version;
    return [{ type: "members_changed", room: reply.room }];
  }
}

function apply(view: View, event: MemberEvent): void {
  if (event.type === "member.left") {
    view.members.delete(event.user);
  } else {
    // member.updated carries no join time: the member keeps its own
    const joinedAt = event.type === "member.joined" ? event.joined_at : view.members.get(event.user)?.joined_at;
    const member: Member = { user: event.user, status: event.status, devices: event.devices };
    if (event.text !== undefined) member.text = event.text;
    if (event.meta !== undefined) member.meta = event.meta;
    if (joinedAt !== undefined) member.joined_at = joinedAt;
    view.members.set(event.user, member);
  }
  view.version = event.version;
  view.count = view.members.size;
  view.countVersion = event.version;
}
