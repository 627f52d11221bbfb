/**
 * `PresencedClient`: one presenced session kept alive across connection losses.
 *
 * It authenticates with an `auth` message (the token stays out of URLs), matches every request
 * to its reply by `ref`, sends application heartbeats (the only way a browser sees a half-open
 * connection: pings are invisible to JavaScript; the WebSocket layer answers them), and when
 * the connection is lost it reconnects as the close code says (policy.ts) (exponential backoff,
 * full jitter), resuming the session with its resume token and the rooms' stream positions so
 * the `room.recovered` that follows is exact. When the server cannot resume (grace over, a
 * restart) it re-joins the rooms with `since`, re-subscribes and re-sets the status; a room
 * whose missed messages cannot be told gets a `recovery_failed` event: reload it.
 *
 * Messages are sent exactly once: each has a `temp_id` and stays in the outbox until its ack;
 * a connection lost first re-sends it with the same `temp_id` on the next session (the server
 * answers a duplicate with the first ack), or confirms it from the recovery. Member lists
 * follow the version rule (`memberList(room)`); typing, receipts and presence are kept too.
 *
 * The same behaviour as the Python SDK (`presenced.client`); the pure rules live in
 * policy.ts, streams.ts, members.ts and state.ts.
 */
import { attachBrowserHooks } from "./browser.js";
import { ClientError, ConnectionClosed } from "./errors.js";
import { ErrorCode, } from "./protocol.js";
import { Supervised } from "./supervisor.js";
export class PresencedClient extends Supervised {
    // --- properties ------------------------------------------------------------------------
    /** idle, connecting, connected, reconnecting, suspended (page in the back/forward cache)
     * or closed. */
    get state() {
        return this.current;
    }
    /** The last welcome received. */
    get welcome() {
        return this.welcomeMessage;
    }
    /** The session id (it changes when a resume failed). */
    get session() {
        return this.welcomeMessage?.session;
    }
    /** The rooms this session is in, as the server confirmed them. */
    get rooms() {
        return [...this.resume.rooms.keys()];
    }
    /** The users this session watches. */
    get subscriptions() {
        return [...this.resume.subscriptions];
    }
    /** The room's stream position: every event up to it was surfaced. */
    position(room) {
        const p = this.resume.streams.position(room);
        return p && { ...p };
    }
    /** The members of `room` as this client knows them now (kept by the version rule), or
     * undefined for a room it is not in; `synced` is false while a snapshot is due. */
    memberList(room) {
        return this.resume.members.get(room);
    }
    /** Who is typing in `room` now, this user left out. */
    typingUsers(room) {
        return (this.typingSets.get(room)?.users ?? []).filter((u) => u !== this.user);
    }
    /** The latest presence of a watched user. */
    presenceOf(user) {
        return this.presences.get(user);
    }
    // --- lifecycle -------------------------------------------------------------------------
    /** Open the connection and wait for the welcome; rejects if that fails (ClientError for a
     * refused auth, ConnectionClosed when the server closes or cannot be reached). Later losses
     * are handled by reconnecting. */
    async connect() {
        if (this.started)
            throw new Error("connect() may be called once per client");
        this.started = true;
        this.setState("connecting");
        const saved = this.options.session;
        if (saved !== undefined) {
            if (saved.device !== this.device || saved.user !== this.options.user) {
                throw new TypeError("the saved session is another device's or user's");
            }
            this.resume.load(saved);
        }
        let opened;
        try {
            opened = await this.open();
        }
        catch (error) {
            this.stop(error instanceof ConnectionClosed ? error.code : null, `connect failed: ${String(error)}`);
            throw error;
        }
        const { link, welcome } = opened;
        const plan = this.resume.onWelcome(welcome); // a first session: nothing to restore
        if (saved !== undefined)
            this.held = []; // what the restore brings comes after `connected`
        this.attach(link, welcome);
        this.installBrowserHooks();
        if (saved !== undefined) {
            try {
                await this.restore(link, plan);
                await this.settle(link);
            }
            catch (error) {
                this.stop(error instanceof ConnectionClosed ? error.code : null, `restore failed: ${String(error)}`);
                throw error;
            }
            this.setReady();
            this.release({ type: "connected", welcome });
            return welcome;
        }
        this.setReady();
        this.emitEvent("connected", { type: "connected", welcome });
        return welcome;
    }
    /** This session as a page can keep it across a reload (JSON-safe; put it in
     * `sessionStorage` on `pagehide`, and give it to the next page's client as `session`).
     * Undefined before the first welcome and after a logout or force leave. */
    saveSession() {
        return this.resume.save(this.device, this.options.user);
    }
    /** Close the connection (1000) and stop. The server keeps the session in grace. */
    async close() {
        this.closing = true;
        this.wakeUp();
        const link = this.link;
        if (link)
            await link.close(this.requestTimeout);
        this.stop(1000, "closed by client");
    }
    /** End the session now: rooms see `member.left` at once; the client stops. The frame goes
     * out synchronously, so a `pagehide` handler may call it without awaiting. */
    async logout() {
        this.closing = true;
        this.resume.clear();
        const link = this.link;
        if (link && this.ready && link.send(JSON.stringify({ type: "logout" }))) {
            // the server closes with 1000 once the session is gone
            let timer;
            await Promise.race([link.closed, new Promise((r) => (timer = setTimeout(r, this.requestTimeout)))]);
            clearTimeout(timer);
        }
        await this.close();
    }
    // --- presence requests -----------------------------------------------------------------
    /** Join `room` (again: replaces meta, if given); `memberList(room)` then follows it. */
    async join(room, options = {}) {
        const deviceEvents = options.deviceEvents ?? false;
        const message = { type: "room.join", room };
        if (options.meta !== undefined)
            message.meta = options.meta;
        if (deviceEvents)
            message.device_events = true;
        const link = await this.waitReady();
        const streams = this.resume.streams;
        const first = !this.resume.rooms.has(room) && streams.position(room) === undefined && !streams.awaiting.has(room);
        if (first)
            message.since = this.resume.streams.expectBaseline(room); // see expectBaseline
        this.resume.members.expect(room); // member events before the reply wait for it
        try {
            const reply = await this.requestOn(link, "room.join", message);
            this.resume.joined(room, options.meta, deviceEvents);
            return reply;
        }
        catch (error) {
            if (first)
                this.resume.streams.forget(room);
            this.resume.joinFailed(room);
            throw error;
        }
    }
    /** Leave `room`. */
    async leave(room) {
        try {
            const reply = await this.request("room.leave", { type: "room.leave", room });
            this.resume.left(room);
            return reply;
        }
        catch (error) {
            if (error instanceof ClientError && error.code === ErrorCode.NOT_IN_ROOM)
                this.resume.left(room);
            throw error;
        }
    }
    /** A snapshot of `room`'s visible members (membership not needed); it also refreshes
     * `memberList(room)` for a room this client is in. */
    members(room) {
        return this.request("room.members", { type: "room.members", room });
    }
    async count(room) {
        const reply = await this.request("room.count", { type: "room.count", room });
        return reply.count;
    }
    /** Replace this user's member metadata in `room`. */
    async setMeta(room, meta) {
        const reply = await this.request("room.meta", { type: "room.meta", room, meta });
        this.resume.metaSet(room, meta);
        return reply;
    }
    /** Set this device's status and status text (no text clears it). */
    async setStatus(status, text) {
        const message = { type: "status.set", status };
        if (text !== undefined)
            message.text = text;
        const reply = await this.request("status.set", message);
        this.resume.statusSet(status, text);
        this.emitEvent("status_changed", { type: "status_changed", status, text, aggregate: reply.aggregate });
        return reply;
    }
    /** The status this device set last (undefined: never set, `online`). */
    get status() {
        return this.resume.status;
    }
    /** Watch `users`: their presence now; `presence` events follow. */
    async subscribe(users) {
        const reply = await this.request("presence.subscribe", { type: "presence.subscribe", users: [...users] });
        this.resume.subscribed(users);
        return reply;
    }
    async unsubscribe(users) {
        const reply = await this.request("presence.unsubscribe", { type: "presence.unsubscribe", users: [...users] });
        this.resume.unsubscribed(users);
        for (const user of users)
            this.presences.delete(user);
        return reply;
    }
    /** The user did something (resets the idle clock); no reply. */
    activity() {
        return this.post({ type: "activity" });
    }
    /** Move the session onto a fresh token (default: the token function's next) before the
     * current one expires (`welcome.expires_at`). With a token function the client does this
     * by itself (`autoRefresh`). A refused token rejects (AUTH_FAILED) and the session runs on
     * until the old token's expiry. */
    async refresh(token) {
        return this.refreshOn(await this.waitReady(), token);
    }
    heartbeat() {
        return this.request("heartbeat", { type: "heartbeat" });
    }
    installBrowserHooks() {
        const option = this.options.browser;
        const hasWindow = typeof window !== "undefined" && typeof document !== "undefined";
        if (option === false || (option === undefined && !hasWindow))
            return;
        if (!hasWindow && (typeof option !== "object" || !option.target))
            return;
        this.detachBrowser = attachBrowserHooks(this, typeof option === "object" ? option : {});
    }
}
