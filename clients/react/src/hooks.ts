/**
 * The provider and the hooks. Every subscription goes through `useSyncExternalStore`, on the
 * stable snapshots of rooms.ts; every join, leave, watch and close is an effect whose
 * cleanup is deferred one macrotask (rooms.ts: `later`), so StrictMode's double mount in
 * development neither joins twice nor leaves and re-joins.
 */

import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactElement,
  type ReactNode,
} from "react";
import {
  PresencedClient,
  type ClientOptions,
  type ClientState,
  type ClientStatus,
  type JoinOptions,
  type Member,
  type Presence,
  type StatusUpdated,
} from "@presenced/client";

import { later, roomsOf, type ForceLeave, type RoomSnapshot } from "./rooms.js";

const ClientContext = createContext<PresencedClient | null>(null);

export interface PresencedProviderProps {
  /** A client made by the app (not connected yet, or connected: then it is not connected
   * again). The provider closes it when it unmounts, so give a fresh client to a provider that
   * mounts again. */
  client?: PresencedClient;
  /** Or the options of a client the provider makes (once) and owns. */
  options?: ClientOptions;
  /** End the session (`logout()`: everyone sees the user leave at once) instead of
   * `close()` (the session waits out the grace period) when the provider unmounts. */
  logoutOnUnmount?: boolean;
  children?: ReactNode;
}

// Pending closes by client: a re-mount (StrictMode, a moved provider) within the same task
// cancels it.
const closing = new WeakMap<PresencedClient, () => void>();

/** Gives its children a client: connects it when mounted, closes it when unmounted. */
export function PresencedProvider(props: PresencedProviderProps): ReactElement {
  const { client: given, options, logoutOnUnmount = false, children } = props;
  if ((given === undefined) === (options === undefined)) {
    throw new TypeError("PresencedProvider: give exactly one of `client` and `options`");
  }
  // Made once per provider (the options of later renders are not read): constructing a
  // client has no side effect, so StrictMode's second call of the initializer is harmless.
  const [own] = useState(() => (given === undefined ? new PresencedClient(options as ClientOptions) : undefined));
  const client = given ?? (own as PresencedClient);
  const logout = useRef(logoutOnUnmount);
  logout.current = logoutOnUnmount;

  useEffect(() => {
    const cancel = closing.get(client);
    if (cancel !== undefined) {
      cancel(); // re-mounted before the close ran: keep the connection
      closing.delete(client);
    } else if (client.state === "idle") {
      client.connect().catch((error: unknown) => roomsOf(client).connectFailed(error));
    }
    return () => {
      closing.set(
        client,
        later(() => {
          closing.delete(client);
          const done = logout.current ? client.logout() : client.close();
          done.catch(() => {});
        }),
      );
    };
  }, [client]);

  return createElement(ClientContext.Provider, { value: client }, children);
}

/** The provider's client (throws outside a `PresencedProvider`). */
export function useClient(): PresencedClient {
  const client = useContext(ClientContext);
  if (client === null) throw new Error("useClient: no PresencedProvider above this component");
  return client;
}

/** The connection's state (idle, connecting, connected, reconnecting, suspended, closed),
 * live, and why `connect()` failed if it did. */
export function useConnectionState(): { state: ClientState; error: unknown } {
  const client = useClient();
  const subscribe = useCallback((notify: () => void) => client.on("state", notify), [client]);
  const state = useSyncExternalStore(subscribe, () => client.state, () => client.state);
  const rooms = roomsOf(client);
  const subscribeError = useCallback((notify: () => void) => rooms.onConnectError(notify), [rooms]);
  const error = useSyncExternalStore(subscribeError, () => rooms.connectError, () => rooms.connectError);
  return { state, error };
}

export interface UsePresenceOptions {
  /** Called when the server takes the user out of the room: the session was kicked or
   * force-left for inactivity (`scope: "session"`: the client stopped), the user was kicked
   * from this room only (`"room"`), or the room was deleted (`"deleted"`). The hooks do not
   * join the room again by themselves; a component that mounts after it does. */
  onForceLeave?: (reason: string, leave: ForceLeave) => void;
  /** How the room is joined (`meta`, `deviceEvents`), read by the first holder's join. */
  join?: JoinOptions;
}

export interface PresenceResult {
  /** The visible members by the client's version rule, in the client's order. */
  members: Member[];
  count: number;
  /** False while a snapshot is due (after a gap, a reconnect). */
  synced: boolean;
  /** The server confirmed the join (and has not taken the user out since). */
  joined: boolean;
  /** The connection's state. */
  state: ClientState;
  /** Why the join failed (ClientError, ...) or the connect did; undefined when all is well. */
  error: unknown;
  /** Set once the server took the user out of the room. */
  forced: ForceLeave | undefined;
  /** The whole snapshot (the same object until something changes). */
  room: RoomSnapshot;
}

function useRoom(room: string): RoomSnapshot {
  const client = useClient();
  const rooms = roomsOf(client);
  const subscribe = useCallback((notify: () => void) => rooms.subscribe(room, notify), [rooms, room]);
  const get = () => rooms.snapshot(room);
  return useSyncExternalStore(subscribe, get, get);
}

/** Hold `room` while mounted (joined once for all the components that hold it, left when
 * the last one unmounts) and follow its members. */
function useHold(room: string, join: JoinOptions | undefined): void {
  const client = useClient();
  const options = useRef(join);
  options.current = join;
  useEffect(() => roomsOf(client).acquire(room, options.current), [client, room]);
}

/** Be in `room` while mounted: its live member list, the connection state, the errors, and
 * `onForceLeave` when the server takes the user out. */
export function usePresence(room: string, options: UsePresenceOptions = {}): PresenceResult {
  const client = useClient();
  useHold(room, options.join);
  const snapshot = useRoom(room);
  const { state } = useConnectionState();

  const onForceLeave = useRef(options.onForceLeave);
  onForceLeave.current = options.onForceLeave;
  useEffect(
    () => roomsOf(client).onForceLeave(room, (leave) => onForceLeave.current?.(leave.reason, leave)),
    [client, room],
  );

  return {
    members: snapshot.members,
    count: snapshot.count,
    synced: snapshot.synced,
    joined: snapshot.joined,
    state,
    error: snapshot.error,
    forced: snapshot.forced,
    room: snapshot,
  };
}

export interface TypingResult {
  /** Who is typing in the room now, this user left out (the same array until it changes). */
  users: string[];
  /** The user typed: call it on every keystroke (the client throttles and stops by itself
   * 3 s after the last call). */
  start: () => void;
  /** The user stopped typing (sent the message, cleared the input). */
  stop: () => void;
}

/** The users typing in `room`, live, and this user's indicator. It holds the room like
 * `usePresence` (typing needs membership; a component using both joins once); unmounting
 * stops the indicator if it was on. */
export function useTyping(room: string): TypingResult {
  const client = useClient();
  useHold(room, undefined);
  const snapshot = useRoom(room);
  const on = useRef(false);
  const start = useCallback(() => {
    on.current = true;
    client.typing(room);
  }, [client, room]);
  const stop = useCallback(() => {
    on.current = false;
    client.stopTyping(room).catch(() => {});
  }, [client, room]);
  useEffect(
    () => () => {
      if (on.current) stop();
    },
    [stop],
  );
  return { users: snapshot.typing, start, stop };
}

export interface StatusResult {
  /** This device's status as set last (`online` until one is set). */
  status: ClientStatus;
  text: string | undefined;
  /** The user's status over all its devices, as the last `setStatus` reply said. */
  aggregate: string | undefined;
  setStatus: (status: ClientStatus, text?: string) => Promise<StatusUpdated>;
}

/** This device's status, live (a `setStatus` here or elsewhere, the browser hooks' away). */
export function useStatus(): StatusResult {
  const client = useClient();
  const rooms = roomsOf(client);
  const subscribe = useCallback((notify: () => void) => rooms.onStatus(notify), [rooms]);
  const get = () => rooms.status;
  const { status, text, aggregate } = useSyncExternalStore(subscribe, get, get);
  const setStatus = useCallback((s: ClientStatus, t?: string) => client.setStatus(s, t), [client]);
  return { status, text, aggregate, setStatus };
}

/** Watch `users` while mounted (subscribed once for all the components that watch one) and
 * follow their presence: user -> the latest `presence` (absent until the server told it). */
export function useWatch(users: readonly string[]): ReadonlyMap<string, Presence> {
  const client = useClient();
  const rooms = roomsOf(client);
  const key = [...new Set(users)].sort().join("\u0000");
  useEffect(() => rooms.watch(key === "" ? [] : key.split("\u0000")), [rooms, key]);
  const subscribe = useCallback((notify: () => void) => rooms.onWatch(notify), [rooms]);
  const cache = useRef<{ key: string; presences: (Presence | undefined)[]; map: ReadonlyMap<string, Presence> } | undefined>(undefined);
  const get = (): ReadonlyMap<string, Presence> => {
    const list = key === "" ? [] : key.split("\u0000");
    const presences = list.map((u) => client.presenceOf(u));
    const old = cache.current;
    if (old && old.key === key && old.presences.every((p, i) => p === presences[i])) return old.map;
    const map = new Map<string, Presence>();
    list.forEach((u, i) => {
      const p = presences[i];
      if (p !== undefined) map.set(u, p);
    });
    cache.current = { key, presences, map };
    return map;
  };
  return useSyncExternalStore(subscribe, get, get);
}
