/**
 * What the hooks share per client, without React: which rooms the mounted components hold
 * (ref-counted, joined once, left once the last holder is gone), each room's snapshot (the
 * member list by the client's version rule, the typing users, the join error, the
 * force-leave) as stable objects for `useSyncExternalStore`, and the watched users.
 *
 * Releases are deferred by one macrotask: React's StrictMode unmounts and re-mounts every
 * effect at once in development, and a component that moves in the tree does the same; both
 * re-acquire before the release runs, so the room is neither left nor joined again.
 */

import type { ClientStatus, JoinOptions, Member, PresencedClient } from "@presenced/client";

/** How the user came to be out of a room without leaving it. */
export interface ForceLeave {
  room: string;
  /** `kicked` or `inactivity_timeout` (the session ended), `kicked` (out of this room only),
   * or the `room.deleted` reason (`deleted`, unless the backend said otherwise). */
  reason: string;
  message: string | undefined;
  /** `session`: the session was ended (`force_leave`, close 4003: the client stopped);
   * `room`: taken out of this room only (`room.removed`); `deleted`: the room was deleted. */
  scope: "session" | "room" | "deleted";
}

/** A room as the hooks see it. The same object until something in it changes. */
export interface RoomSnapshot {
  room: string;
  /** The visible members, by the client's version rule (`client.memberList(room)`). */
  members: Member[];
  /** `members.length`, or the newer count of a `room.summary`. */
  count: number;
  /** The room version the list is at (undefined before the first snapshot). */
  version: number | undefined;
  /** False while a snapshot is due (after a gap or a reconnect): the list may be behind. */
  synced: boolean;
  /** The server confirmed the join and the user has not been taken out since. */
  joined: boolean;
  /** The join failed (a ClientError: ROOM_FORBIDDEN, ...), or the client could not connect. */
  error: unknown;
  /** Set once the server force-left the user from the room; the hooks do not re-join it. */
  forced: ForceLeave | undefined;
  /** Who is typing in the room now, this user left out. */
  typing: string[];
}

type Notify = () => void;

interface RoomEntry {
  room: string;
  holders: number;
  listeners: Set<Notify>;
  forceListeners: Set<(leave: ForceLeave) => void>;
  joinOptions: JoinOptions | undefined;
  joined: boolean;
  busy: boolean;
  /** A failed join or a force-leave: not tried again until every holder is gone. */
  stuck: boolean;
  error: unknown;
  forced: ForceLeave | undefined;
  snapshot: RoomSnapshot;
}

const EMPTY: string[] = [];
const NO_MEMBERS: Member[] = [];

function emptySnapshot(room: string): RoomSnapshot {
  return {
    room,
    members: NO_MEMBERS,
    count: 0,
    version: undefined,
    synced: false,
    joined: false,
    error: undefined,
    forced: undefined,
    typing: EMPTY,
  };
}

const sameList = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** Schedule `fn` after the current task (and StrictMode's re-mount); cancellable. */
export function later(fn: () => void): () => void {
  const timer = setTimeout(fn, 0);
  return () => clearTimeout(timer);
}

export class Rooms {
  private readonly entries = new Map<string, RoomEntry>();
  private readonly empties = new Map<string, RoomSnapshot>();
  private readonly watchers = new Map<string, number>();
  private readonly watchListeners = new Set<Notify>();
  private readonly connectListeners = new Set<Notify>();
  private detach: (() => void) | undefined;
  private watchDetach: (() => void) | undefined;
  private connectFailure: unknown;

  constructor(readonly client: PresencedClient) {}

  // --- rooms ----------------------------------------------------------------------------

  /** Hold `room` (join it if nobody did); the returned function releases it, deferred. */
  acquire(room: string, options?: JoinOptions): () => void {
    const entry = this.entry(room);
    if (entry.holders === 0) {
      entry.stuck = false; // a new holder after a failure or a force-leave: try again
      entry.forced = undefined;
      entry.error = undefined;
      entry.joinOptions = options;
    }
    entry.holders += 1;
    this.refresh(entry);
    void this.reconcile(entry);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      later(() => {
        entry.holders -= 1;
        void this.reconcile(entry);
        this.sweep(entry);
      });
    };
  }

  /** Call `listener` when the room's snapshot may have changed; returns the unsubscribe. */
  subscribe(room: string, listener: Notify): () => void {
    const entry = this.entry(room);
    entry.listeners.add(listener);
    this.refresh(entry);
    return () => {
      entry.listeners.delete(listener);
      this.sweep(entry);
    };
  }

  /** Call `listener` when the server force-leaves the user from `room`. */
  onForceLeave(room: string, listener: (leave: ForceLeave) => void): () => void {
    const entry = this.entry(room);
    entry.forceListeners.add(listener);
    return () => {
      entry.forceListeners.delete(listener);
      this.sweep(entry);
    };
  }

  /** The room's snapshot; before anything holds or follows it, an empty one (the same
   * object for the same room, as `useSyncExternalStore` wants). */
  snapshot(room: string): RoomSnapshot {
    const entry = this.entries.get(room);
    if (entry !== undefined) return entry.snapshot;
    let empty = this.empties.get(room);
    if (empty === undefined) {
      empty = emptySnapshot(room);
      this.empties.set(room, empty); // taken over by the entry that follows the render
    }
    return empty;
  }

  private entry(room: string): RoomEntry {
    let entry = this.entries.get(room);
    if (entry === undefined) {
      entry = {
        room,
        holders: 0,
        listeners: new Set(),
        forceListeners: new Set(),
        joinOptions: undefined,
        joined: false,
        busy: false,
        stuck: false,
        error: undefined,
        forced: undefined,
        snapshot: this.empties.get(room) ?? emptySnapshot(room),
      };
      this.empties.delete(room);
      this.entries.set(room, entry);
      this.attach();
    }
    return entry;
  }

  /** Forget an entry nobody holds, listens to or is joining/leaving with. */
  private sweep(entry: RoomEntry): void {
    if (entry.holders > 0 || entry.listeners.size > 0 || entry.forceListeners.size > 0) return;
    if (entry.busy || entry.joined) return;
    if (this.entries.get(entry.room) === entry) this.entries.delete(entry.room);
    if (this.entries.size === 0) {
      this.detach?.();
      this.detach = undefined;
    }
  }

  /** Join or leave until the room is as its holders want it, one request at a time. */
  private async reconcile(entry: RoomEntry): Promise<void> {
    if (entry.busy) return;
    entry.busy = true;
    try {
      await this.started();
      for (;;) {
        const want = entry.holders > 0 && !entry.stuck;
        if (want === entry.joined) break;
        if (want) {
          try {
            await this.client.join(entry.room, entry.joinOptions);
            // a force-leave may have come meanwhile, or the last holder gone: the loop says
            if (!entry.stuck) entry.joined = true;
            entry.error = undefined;
          } catch (error) {
            entry.error = error;
            entry.stuck = true;
          }
        } else {
          entry.joined = false;
          if (entry.forced === undefined && this.client.state !== "closed") {
            await this.client.leave(entry.room).catch(() => {}); // NOT_IN_ROOM, a closed client
          }
        }
        this.refresh(entry);
      }
    } finally {
      entry.busy = false;
      this.refresh(entry);
      this.sweep(entry);
    }
  }

  /** Resolve once `connect()` was called (requests before it would be refused). */
  private started(): Promise<void> {
    if (this.client.state !== "idle") return Promise.resolve();
    return new Promise((resolve) => {
      const off = this.client.on("state", () => {
        off();
        resolve();
      });
    });
  }

  /** Recompute the room's snapshot from the client; notify when it changed. */
  private refresh(entry: RoomEntry): void {
    const list = this.client.memberList(entry.room);
    const old = entry.snapshot;
    const typing = this.client.typingUsers(entry.room);
    const members = list ? [...list.members.values()] : NO_MEMBERS;
    const changed =
      old.version !== list?.version ||
      old.count !== (list?.count ?? 0) ||
      old.synced !== (list?.synced ?? false) ||
      old.joined !== entry.joined ||
      old.error !== (entry.error ?? this.connectFailure) ||
      old.forced !== entry.forced ||
      !sameList(old.typing, typing) ||
      old.members.length !== members.length ||
      old.members.some((m, i) => m !== members[i]);
    if (!changed) return;
    entry.snapshot = {
      room: entry.room,
      members,
      count: list?.count ?? 0,
      version: list?.version,
      synced: list?.synced ?? false,
      joined: entry.joined,
      error: entry.error ?? this.connectFailure,
      forced: entry.forced,
      typing: sameList(old.typing, typing) ? old.typing : typing.length === 0 ? EMPTY : typing,
    };
    for (const listener of [...entry.listeners]) listener();
  }

  private forceLeave(entry: RoomEntry, leave: ForceLeave): void {
    entry.joined = false;
    entry.stuck = true;
    entry.forced = leave;
    this.refresh(entry);
    for (const listener of [...entry.forceListeners]) listener(leave);
  }

  private attach(): void {
    if (this.detach !== undefined) return;
    const client = this.client;
    const each = (fn: (entry: RoomEntry) => void) => () => {
      for (const entry of [...this.entries.values()]) fn(entry);
    };
    const one = (room: string, fn: (entry: RoomEntry) => void): void => {
      const entry = this.entries.get(room);
      if (entry !== undefined) fn(entry);
    };
    const offs = [
      client.on("members_changed", ({ room }) => one(room, (e) => this.refresh(e))),
      client.on("typing", ({ room }) => one(room, (e) => this.refresh(e))),
      // a new connection clears the typing sets; the member lists resync on their own
      client.on("connected", each((e) => this.refresh(e))),
      client.on("room.removed", (m) =>
        one(m.room, (e) => this.forceLeave(e, { room: m.room, reason: m.reason, message: m.message, scope: "room" })),
      ),
      client.on("room.deleted", (m) =>
        one(m.room, (e) =>
          this.forceLeave(e, { room: m.room, reason: m.reason ?? "deleted", message: undefined, scope: "deleted" }),
        ),
      ),
      client.on("forced_leave", (f) =>
        each((e) => this.forceLeave(e, { room: e.room, reason: f.reason, message: f.message, scope: "session" }))(),
      ),
    ];
    this.detach = () => offs.forEach((off) => off());
  }

  // --- the connection -----------------------------------------------------------------

  /** The provider's `connect()` failed: every room's `error` says so. */
  connectFailed(error: unknown): void {
    this.connectFailure = error;
    for (const entry of this.entries.values()) this.refresh(entry);
    for (const listener of [...this.connectListeners]) listener();
  }

  get connectError(): unknown {
    return this.connectFailure;
  }

  onConnectError(listener: Notify): () => void {
    this.connectListeners.add(listener);
    return () => this.connectListeners.delete(listener);
  }

  // --- this device's status ----------------------------------------------------------

  private statusNow: { status: ClientStatus; text: string | undefined; aggregate: string | undefined } | undefined;
  private statusDetach: (() => void) | undefined;
  private readonly statusListeners = new Set<Notify>();

  /** This device's status as last set (a stable object until it changes). */
  get status(): { status: ClientStatus; text: string | undefined; aggregate: string | undefined } {
    if (this.statusNow === undefined || (this.statusDetach === undefined && this.statusNow.status !== (this.client.status ?? "online"))) {
      this.statusNow = { status: this.client.status ?? "online", text: undefined, aggregate: undefined };
    }
    return this.statusNow;
  }

  onStatus(listener: Notify): () => void {
    this.statusListeners.add(listener);
    if (this.statusDetach === undefined) {
      this.statusDetach = this.client.on("status_changed", (e) => {
        this.statusNow = { status: e.status, text: e.text, aggregate: e.aggregate };
        for (const notify of [...this.statusListeners]) notify();
      });
    }
    return () => {
      this.statusListeners.delete(listener);
      if (this.statusListeners.size === 0) {
        this.statusDetach?.();
        this.statusDetach = undefined;
      }
    };
  }

  // --- watched users --------------------------------------------------------------------

  /** Watch `users` (subscribe to those nobody watches yet); the returned function releases
   * them, deferred like rooms. */
  watch(users: readonly string[]): () => void {
    const fresh: string[] = [];
    for (const user of new Set(users)) {
      const n = this.watchers.get(user) ?? 0;
      this.watchers.set(user, n + 1);
      if (n === 0) fresh.push(user);
    }
    if (fresh.length > 0) {
      void this.started()
        .then(() => this.client.subscribe(fresh))
        .then(
          () => this.notifyWatch(),
          () => {},
        );
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      later(() => {
        const gone: string[] = [];
        for (const user of new Set(users)) {
          const n = (this.watchers.get(user) ?? 1) - 1;
          if (n > 0) this.watchers.set(user, n);
          else {
            this.watchers.delete(user);
            gone.push(user);
          }
        }
        if (gone.length > 0 && this.client.state !== "closed") {
          this.client.unsubscribe(gone).then(
            () => this.notifyWatch(),
            () => {},
          );
        }
      });
    };
  }

  onWatch(listener: Notify): () => void {
    this.watchListeners.add(listener);
    if (this.watchDetach === undefined) {
      const offs = [
        this.client.on("presence", () => this.notifyWatch()),
        this.client.on("presence.subscribed", () => this.notifyWatch()),
        this.client.on("presence.unsubscribed", () => this.notifyWatch()),
      ];
      this.watchDetach = () => offs.forEach((off) => off());
    }
    return () => {
      this.watchListeners.delete(listener);
      if (this.watchListeners.size === 0) {
        this.watchDetach?.();
        this.watchDetach = undefined;
      }
    };
  }

  private notifyWatch(): void {
    for (const listener of [...this.watchListeners]) listener();
  }

  /** For tests: the rooms with an entry, and the users watched. */
  get held(): { rooms: string[]; users: string[]; listening: boolean } {
    return { rooms: [...this.entries.keys()], users: [...this.watchers.keys()], listening: this.detach !== undefined };
  }
}

const registries = new WeakMap<PresencedClient, Rooms>();

/** The one `Rooms` of `client`. */
export function roomsOf(client: PresencedClient): Rooms {
  let rooms = registries.get(client);
  if (rooms === undefined) {
    rooms = new Rooms(client);
    registries.set(client, rooms);
  }
  return rooms;
}
