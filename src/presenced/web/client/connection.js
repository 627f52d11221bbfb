/**
 * The connection half of the client: one connection at a time (the Python SDK's
 * `presenced.client.connection`). It holds the client's state and the work done on the
 * current link: the `auth` handshake (resuming when it holds a resume token, with the rooms'
 * stream positions), request/reply matching by `ref`, the application heartbeats, and the
 * dispatch of what arrives through the offset and version rules. What happens between
 * connections is supervisor.ts; the messaging requests and the outbox are messaging.ts; the
 * public surface is client.ts. The classes stack in one line: `Connection`, `Messaging`,
 * `Supervised`, `PresencedClient`.
 */
import { Emitter } from "./emitter.js";
import { ClientError, ConnectionClosed, ForceLeaveError, RequestTimeout } from "./errors.js";
import { Link } from "./link.js";
import { Backoff, reconnectDecision, refreshDelay, TypingThrottle } from "./policy.js";
import { PROTOCOL_VERSION, REPLY_TYPE, } from "./protocol.js";
import { ResumeState } from "./state.js";
export const now = () => (typeof performance !== "undefined" ? performance.now() : Date.now());
export class Connection extends Emitter {
    constructor(options) {
        super();
        this.resume = new ResumeState();
        this.link = null;
        this.ready = false;
        this.current = "idle";
        this.refs = 0;
        this.pending = new Map();
        this.waiters = [];
        this.started = false;
        this.closing = false;
        this.held = null;
        this.typingSets = new Map();
        this.presences = new Map();
        if ((options.token === undefined) === (options.user === undefined)) {
            throw new TypeError("give exactly one of `token` and `user` (insecure development mode)");
        }
        this.options = options;
        this.url = options.url;
        this.device = options.device;
        this.backoff = options.backoff instanceof Backoff ? options.backoff : new Backoff(options.backoff);
        this.requestTimeout = options.requestTimeout ?? 10000;
        this.log = options.logger ?? {};
        this.random = options.random ?? Math.random;
        this.throttle = new TypingThrottle(options.typingThrottle ?? 2000, options.serverTypingThrottle ?? 1000);
    }
    /** True while a session is established and restored. */
    get connected() {
        return this.ready && this.stopped === undefined;
    }
    /** The authenticated user id. */
    get user() {
        return this.welcomeMessage?.user;
    }
    /** Refresh the token on `link` before `expiresAt` when the token comes from a function. */
    scheduleRefresh(link, expiresAt) {
        if (expiresAt === undefined || typeof this.options.token !== "function" || this.options.autoRefresh === false)
            return;
        link.setTimer(refreshDelay(expiresAt, Date.now()), () => {
            void this.refreshOn(link).catch((error) => {
                // the server closes with 4011 at expiry and the reconnect brings a fresh token
                this.log.warn?.(`token refresh failed: ${String(error)}`);
            });
        });
    }
    /** Send `refresh` with `token` (default: the token function's next) on `link`. */
    async refreshOn(link, token) {
        const fresh = token ?? (await this.tokenValue());
        if (fresh === undefined)
            throw new TypeError("refresh needs a token: the client was made with `user`");
        const reply = await this.requestOn(link, "refresh", { type: "refresh", token: fresh });
        this.emitEvent("token_refreshed", { type: "token_refreshed", expiresAt: reply.expires_at });
        if (link === this.link)
            this.scheduleRefresh(link, reply.expires_at);
        return reply;
    }
    async request(kind, message) {
        const link = await this.waitReady();
        return this.requestOn(link, kind, message);
    }
    requestOn(link, kind, message) {
        const ref = ++this.refs;
        return new Promise((resolve, reject) => {
            const pending = {
                expect: REPLY_TYPE[kind],
                resolve: resolve,
                reject,
                timer: setTimeout(() => {
                    this.pending.delete(ref);
                    reject(new RequestTimeout(`no reply to ${message.type} (ref ${ref}) within ${this.requestTimeout} ms`));
                }, this.requestTimeout),
            };
            this.pending.set(ref, pending);
            if (!link.send(JSON.stringify({ ...message, ref }))) {
                this.pending.delete(ref);
                clearTimeout(pending.timer);
                reject(this.closedError(null, "the connection is gone"));
            }
        });
    }
    /** A request without a reply; an error answering it is a `request_error` event. */
    async post(message) {
        const link = await this.waitReady();
        if (!link.send(JSON.stringify({ ...message, ref: ++this.refs }))) {
            throw this.closedError(null, "the connection is gone");
        }
    }
    /** The live connection, waiting through a reconnect (up to `requestTimeout`). */
    waitReady() {
        if (!this.started)
            return Promise.reject(new ConnectionClosed(null, "not connected: call connect() first"));
        return new Promise((resolve, reject) => {
            let timer;
            const check = () => {
                if (this.stopped) {
                    reject(this.stopped);
                }
                else if (this.ready && this.link) {
                    resolve(this.link);
                }
                else {
                    return false;
                }
                clearTimeout(timer);
                return true;
            };
            if (check())
                return;
            const waiter = () => {
                if (!check())
                    this.waiters.push(waiter);
            };
            this.waiters.push(waiter);
            timer = setTimeout(() => {
                this.waiters = this.waiters.filter((w) => w !== waiter);
                reject(new RequestTimeout(`not connected within ${this.requestTimeout} ms`));
            }, this.requestTimeout);
        });
    }
    notify() {
        const waiters = this.waiters;
        this.waiters = [];
        for (const waiter of waiters)
            waiter();
    }
    closedError(code, reason) {
        if (this.forced)
            return new ForceLeaveError(this.forced.reason, this.forced.message);
        if (this.stopped)
            return this.stopped;
        const will = !this.closing && reconnectDecision(code) !== "stop";
        return new ConnectionClosed(code, reason, will);
    }
    // --- connection ------------------------------------------------------------------------
    async tokenValue() {
        const token = this.options.token;
        return typeof token === "function" ? await token() : token;
    }
    /** Connect, authenticate (resuming when we hold a token) and return the welcome. */
    async open() {
        const WebSocketImpl = this.options.WebSocket ?? globalThis.WebSocket;
        if (!WebSocketImpl) {
            throw new TypeError("no global WebSocket: pass the `WebSocket` option (Node 20: run with --experimental-websocket, or use the `ws` package)");
        }
        const auth = { type: "auth", device: this.device, protocol: PROTOCOL_VERSION };
        const token = await this.tokenValue();
        if (token !== undefined)
            auth.token = token;
        if (this.options.user !== undefined)
            auth.user = this.options.user;
        if (this.options.deviceInfo !== undefined)
            auth.device_info = this.options.deviceInfo;
        if (this.resume.resumeToken !== undefined)
            auth.resume = this.resume.resumeToken;
        const positions = this.resume.authPositions();
        if (positions !== undefined)
            auth.positions = positions;
        const ref = ++this.refs;
        return new Promise((resolve, reject) => {
            const link = new Link(WebSocketImpl, this.url, now, () => {
                link.send(JSON.stringify({ ...auth, ref }));
            });
            link.setTimer(this.requestTimeout, () => {
                reject(new RequestTimeout(`no welcome within ${this.requestTimeout} ms`));
                link.abort("no welcome in time");
            });
            link.onClose((code, reason) => reject(new ConnectionClosed(code, reason || "connection closed")));
            link.onFrame((data) => {
                const message = parse(data);
                if (message?.type === "welcome") {
                    for (const timer of link.timers)
                        clearTimeout(timer);
                    link.timers.clear();
                    link.onClose(() => { });
                    link.pause(); // what follows the welcome is buffered until attach()
                    resolve({ link, welcome: message });
                }
                else if (message?.type === "error") {
                    reject(new ClientError(message.code, message.message, message.field, message.ref));
                    link.abort(`auth refused: ${message.code}`);
                }
            });
        });
    }
    attach(link, welcome) {
        this.link = link;
        this.welcomeMessage = welcome;
        this.throttle.connectionLost(); // the server has no typing indicator of ours any more
        this.typingSets.clear();
        link.onClose((code, reason) => this.linkClosed(link, code, reason));
        this.startHeartbeats(link, welcome);
        this.scheduleRefresh(link, welcome.expires_at);
        link.onFrame((data) => this.frame(link, data));
        this.syncRooms(link);
    }
    startHeartbeats(link, welcome) {
        const interval = this.options.heartbeatInterval ?? welcome.heartbeat_interval * 1000;
        const timeout = this.options.heartbeatTimeout ?? welcome.heartbeat_timeout * 1000;
        if (!(interval > 0))
            return;
        const beat = () => {
            const sentAt = now();
            this.requestOn(link, "heartbeat", { type: "heartbeat" }).then((ack) => this.emitEvent("latency", { type: "latency", rtt: now() - sentAt, serverTime: ack.time }), () => { });
            link.setTimer(timeout, () => {
                if (link.lastFrameAt < sentAt) {
                    this.log.warn?.(`no frame within ${timeout} ms of a heartbeat: dropping the connection`);
                    link.abort("heartbeat timeout");
                }
            });
            link.setTimer(interval, beat);
        };
        link.setTimer(interval, beat);
    }
    setState(state) {
        const previous = this.current;
        if (previous === state || previous === "closed")
            return;
        this.current = state;
        this.emitEvent("state", { type: "state", state, previous });
    }
    // --- what arrives ----------------------------------------------------------------------
    frame(link, data) {
        const message = parse(data);
        if (message === undefined) {
            this.log.debug?.("ignoring an undecodable frame");
            return;
        }
        this.dispatch(message);
        if (link === this.link)
            this.syncRooms(link);
    }
    dispatch(message) {
        if (message.type === "room.batch") {
            for (const event of message.events ?? [])
                this.dispatch(event);
            return;
        }
        const ref = message.ref;
        if (typeof ref === "number") {
            this.reply(ref, message);
            return;
        }
        switch (message.type) {
            case "force_leave":
                this.forced = { type: "forced_leave", reason: message.reason, message: message.message };
                this.resume.clear();
                this.emitEvent("forced_leave", this.forced);
                return;
            case "room.deleted":
            case "room.removed":
                // every member left at once, or the backend took us out: never re-joined by itself
                this.resume.left(message.room);
                this.typingSets.delete(message.room);
                this.emitEvent(message.type, message);
                return;
            case "presence.subscribed": // the backend watched users for this session
                this.resume.subscribed(message.users.map((p) => p.user));
                this.notePresences(message.users);
                this.emitEvent(message.type, message);
                return;
            case "presence.unsubscribed":
                this.resume.unsubscribed(message.users);
                for (const user of message.users)
                    this.presences.delete(user);
                this.emitEvent(message.type, message);
                return;
            case "presence":
                if (this.notePresence(message))
                    this.emitEvent("presence", message);
                return;
            case "typing": {
                const last = this.typingSets.get(message.room);
                if (last !== undefined && message.seq < last.seq)
                    return; // an older set
                this.typingSets.set(message.room, message);
                this.emitEvent("typing", message);
                return;
            }
            case "member.joined":
            case "member.left":
            case "member.updated":
            case "room.summary":
                for (const surfaced of this.resume.members.receive(message))
                    this.surface(surfaced);
                return;
            case "heartbeat.ack":
            case "welcome":
            case "error":
                if (message.type === "error") {
                    this.emitEvent("request_error", new ClientError(message.code, message.message, message.field));
                }
                return;
            default:
                // the offset rule: duplicates dropped, held while a room.recovered is due
                for (const event of this.resume.streams.receive(message))
                    this.received(event);
        }
    }
    reply(ref, message) {
        this.resume.streams.reply(message); // an ack or edit/delete reply moves the position
        for (const surfaced of this.resume.members.reply(message, this.user))
            this.surface(surfaced);
        if (message.type === "presence.subscribed")
            this.notePresences(message.users);
        const pending = this.pending.get(ref);
        if (pending === undefined) {
            if (message.type === "error") {
                this.emitEvent("request_error", new ClientError(message.code, message.message, message.field, ref));
            }
            else {
                this.log.debug?.(`dropping a late reply: ${message.type} (ref ${ref})`);
            }
            return;
        }
        this.pending.delete(ref);
        clearTimeout(pending.timer);
        if (message.type === "error") {
            pending.reject(new ClientError(message.code, message.message, message.field, ref));
        }
        else if (message.type !== pending.expect) {
            pending.reject(new ClientError("UNEXPECTED_REPLY", `expected ${pending.expect}, got ${message.type}`, undefined, ref));
        }
        else {
            pending.resolve(message);
        }
    }
    notePresences(users) {
        for (const presence of users)
            this.presences.set(presence.user, presence);
    }
    /** Keep the newest presence of a user (by `seq`); false for an older one. */
    notePresence(presence) {
        const last = this.presences.get(presence.user);
        if (last?.seq !== undefined && presence.seq !== undefined && presence.seq < last.seq)
            return false;
        this.presences.set(presence.user, presence);
        return true;
    }
    /** Send the recoveries (offset gaps) and snapshots (version gaps, resumes) now due. */
    syncRooms(link) {
        for (const [room, since] of this.resume.streams.takeRecoveries())
            void this.recover(link, room, since);
        for (const room of this.resume.members.takeRequests())
            void this.resnapshot(link, room);
    }
    /** `room.join` with `since`: the `room.recovered` that follows fills the gap. */
    async recover(link, room, since) {
        const joined = this.resume.rooms.get(room);
        if (joined === undefined) {
            this.resume.streams.forget(room);
            return;
        }
        const join = { type: "room.join", room, since };
        if (joined.deviceEvents)
            join.device_events = true;
        try {
            await this.requestOn(link, "room.join", join);
        }
        catch (error) {
            if (error instanceof ConnectionClosed)
                return; // the next welcome recovers from there
            this.log.warn?.(`could not recover room ${room}: ${String(error)}`);
            if (link === this.link)
                for (const event of this.resume.streams.abandon(room))
                    this.received(event);
        }
    }
    async resnapshot(link, room) {
        try {
            await this.requestOn(link, "room.members", { type: "room.members", room });
        }
        catch (error) {
            if (error instanceof ConnectionClosed)
                return;
            if (link === this.link)
                this.resume.members.abandon(room);
        }
    }
    surface(event) {
        this.emitEvent(event.type, event);
    }
    emitEvent(name, event) {
        if (this.held !== null && name !== "state") {
            this.held.push([name, event]);
            return;
        }
        this.emit(name, event);
    }
    /** Deliver `first`, then what was held, and stop holding. */
    release(first) {
        const held = this.held ?? [];
        this.held = null;
        if (first)
            this.emit("connected", first);
        for (const [name, event] of held)
            this.emit(name, event);
    }
}
function parse(data) {
    try {
        const message = JSON.parse(data);
        if (message && typeof message === "object" && typeof message.type === "string") {
            return message;
        }
    }
    catch {
        // not JSON: ignored (the server sends only JSON objects)
    }
    return undefined;
}
