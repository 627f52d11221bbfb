/**
 * The messaging half of the client: send, edit, delete, receipts, typing, history and read
 * state (the Python SDK's `presenced.client.messaging`).
 *
 * Exactly-once sending: every message gets a `temp_id` and stays in the outbox until its ack.
 * If the connection drops first, the same `temp_id` is sent again on the next session; the
 * server recognises it and answers with the first ack (`duplicate` true) instead of storing
 * it twice. A recovery that brings back this user's own message confirms it too. A rate-limit
 * refusal is retried after a backoff, still with the same `temp_id`.
 */
import { Connection, now } from "./connection.js";
import { ClientError, ConnectionClosed, RequestTimeout } from "./errors.js";
import { ErrorCode, } from "./protocol.js";
/** A fresh temporary message id: random, so re-sends after a reload cannot collide. */
export function newTempId() {
    const c = globalThis.crypto;
    if (c?.randomUUID)
        return c.randomUUID().replace(/-/g, "");
    const bytes = new Uint8Array(16);
    if (c?.getRandomValues)
        c.getRandomValues(bytes);
    else
        for (let i = 0; i < 16; i++)
            bytes[i] = Math.floor(Math.random() * 256);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
const RETRY_LATER = new Set([ErrorCode.RATE_LIMITED, ErrorCode.MESSAGE_RATE_LIMITED, ErrorCode.INTERNAL]);
export class Messaging extends Connection {
    constructor() {
        super(...arguments);
        this.outboxes = new Map();
        this.sendTimeout = this.options.sendTimeout ?? 30000;
        this.delivered = new Map();
        this.deliveredScheduled = false;
        this.typingStops = new Map();
        this.typingLater = new Map();
    }
    /** The temp ids of messages sent and not yet acknowledged, oldest first. */
    get unconfirmed() {
        return [...this.outboxes.keys()];
    }
    /**
     * Send `body` to `room`; resolves with the server's ack. The message stays in the outbox
     * until then: a connection lost first re-sends it with the same temp id once the session
     * is back (stored once; `duplicate` true when the first attempt had arrived), a rate limit
     * retries it later. Rejects with ClientError for a refusal that a retry cannot fix
     * (NOT_IN_ROOM, MESSAGE_TOO_LARGE...), RequestTimeout after `sendTimeout`.
     */
    send(room, body, options = {}) {
        const tempId = options.tempId ?? newTempId();
        if (this.stopped)
            return Promise.reject(this.stopped);
        if (!this.started)
            return Promise.reject(new ConnectionClosed(null, "not connected: call connect() first"));
        if (this.outboxes.has(tempId))
            return Promise.reject(new Error(`temp id ${tempId} is already being sent`));
        return new Promise((resolve, reject) => {
            const entry = {
                room,
                body,
                tempId,
                resolve,
                reject,
                ref: undefined,
                retries: 0,
                retry: undefined,
                timer: setTimeout(() => {
                    this.dropOutbox(entry);
                    reject(new RequestTimeout(`no ack for message ${tempId} within ${this.sendTimeout} ms`));
                }, this.sendTimeout),
            };
            this.outboxes.set(tempId, entry);
            this.sendOutbox(entry);
        });
    }
    /** Replace the body of message `id` (the author's, or as a moderator). */
    edit(room, id, body) {
        return this.request("message.edit", { type: "message.edit", room, id, body });
    }
    /** Delete message `id` (the author's, or as a moderator). */
    delete(room, id) {
        return this.request("message.delete", { type: "message.delete", room, id });
    }
    /** The user has read `room` up to `offset`: authors get a `seen` receipt. */
    seen(room, offset) {
        return this.post({ type: "receipt.seen", room, offset });
    }
    /** Messages of `room` up to `offset` reached this device (automatic unless
     * `autoDelivered` is false). */
    markDelivered(room, offset) {
        return this.post({ type: "receipt.delivered", room, offset });
    }
    /** The user is typing in `room`: call it on every keystroke. `typing.start` goes out at most
     * once per `typingThrottle`; `typing.stop` follows `typingAutoStop` ms after the last call. */
    typing(room) {
        if (!this.connected)
            return; // an indicator is of the moment: none is queued for later
        const autoStop = this.options.typingAutoStop ?? 3000;
        if (autoStop > 0) {
            clearTimeout(this.typingStops.get(room));
            this.typingStops.set(room, setTimeout(() => void this.stopTyping(room).catch(() => { }), autoStop));
        }
        const step = this.throttle.start(room, now());
        if (step.send) {
            this.post({ type: "typing.start", room }).catch(() => this.throttle.unsent(room));
        }
        else if ("deferMs" in step && !this.typingLater.has(room)) {
            // the server would ignore it now: send it when it takes it, if the user still types
            this.typingLater.set(room, setTimeout(() => {
                this.typingLater.delete(room);
                if (this.typingStops.has(room) || autoStop <= 0)
                    this.typing(room);
            }, step.deferMs));
        }
    }
    /** The user stopped typing in `room` (a sent message stops it too). */
    stopTyping(room) {
        this.typingOff(room);
        // Not connected: the server cleared the indicator when the transport was lost.
        if (!this.connected)
            return Promise.resolve();
        return this.post({ type: "typing.stop", room });
    }
    /** The indicator is off in `room`: no stop or deferred start is due any more. */
    typingOff(room) {
        clearTimeout(this.typingStops.get(room));
        this.typingStops.delete(room);
        clearTimeout(this.typingLater.get(room));
        this.typingLater.delete(room);
        this.throttle.stopped(room);
    }
    /** The latest kept messages of `room`, as they are now, oldest first. */
    history(room, options = {}) {
        const message = { type: "room.history", room };
        if (options.limit !== undefined)
            message.limit = options.limit;
        if (options.before !== undefined)
            message.before = options.before;
        return this.request("room.history", message);
    }
    /** The user's read position in `room` and its unread count. */
    readState(room) {
        return this.request("room.read", { type: "room.read", room });
    }
    // --- the outbox ------------------------------------------------------------------------
    sendOutbox(entry) {
        const link = this.link;
        if (!this.ready || !link || entry.ref !== undefined)
            return; // sent when the session is back
        if (this.outboxes.get(entry.tempId) !== entry)
            return; // settled meanwhile
        const ref = ++this.refs;
        entry.ref = ref;
        this.pending.set(ref, {
            expect: "message.ack",
            outbox: true,
            timer: undefined,
            resolve: (reply) => this.acked(entry, reply),
            reject: (error) => {
                entry.ref = undefined;
                if (error instanceof ClientError && RETRY_LATER.has(error.code)) {
                    entry.retries += 1;
                    const wait = this.backoff.delay(Math.min(entry.retries, 4), 0.5 + this.random() / 2) + 200;
                    entry.retry = setTimeout(() => this.sendOutbox(entry), wait);
                }
                else {
                    this.dropOutbox(entry);
                    entry.reject(error);
                }
            },
        });
        const message = { type: "message.send", room: entry.room, body: entry.body, temp_id: entry.tempId, ref };
        if (!link.send(JSON.stringify(message))) {
            this.pending.delete(ref);
            entry.ref = undefined; // the next session sends it
        }
    }
    acked(entry, ack) {
        this.dropOutbox(entry);
        this.typingOff(entry.room); // sending cleared the indicator on the server
        entry.resolve(ack);
    }
    dropOutbox(entry) {
        clearTimeout(entry.timer);
        clearTimeout(entry.retry);
        if (this.outboxes.get(entry.tempId) === entry)
            this.outboxes.delete(entry.tempId);
        if (entry.ref !== undefined)
            this.pending.delete(entry.ref);
    }
    /** A recovery brought back messages of this user: those in the outbox are confirmed. */
    confirmFromRecovery(recovered) {
        for (const event of recovered.events ?? []) {
            if (event.type !== "message" || event.user !== this.user || !event.temp_id)
                continue;
            const entry = this.outboxes.get(event.temp_id);
            if (entry === undefined || entry.room !== event.room)
                continue;
            const ack = {
                type: "message.ack",
                room: event.room,
                epoch: event.epoch,
                offset: event.offset,
                id: event.id,
                duplicate: true,
                temp_id: event.temp_id,
            };
            this.acked(entry, ack);
        }
    }
    // --- delivered receipts ----------------------------------------------------------------
    /** A stream event (or a recovery) reaches the app; note its delivered receipt. */
    received(event) {
        if (event.type === "room.recovered")
            this.confirmFromRecovery(event);
        if (this.options.autoDelivered ?? true) {
            const me = this.user;
            let offset;
            let room = "";
            if (event.type === "message" && event.user !== me)
                [room, offset] = [event.room, event.offset];
            if (event.type === "room.recovered") {
                room = event.room;
                for (const e of event.events ?? [])
                    if (e.type === "message" && e.user !== me)
                        offset = e.offset;
            }
            if (offset !== undefined) {
                this.delivered.set(room, Math.max(offset, this.delivered.get(room) ?? 0));
                this.scheduleDelivered();
            }
        }
        this.surface(event);
    }
    scheduleDelivered() {
        if (this.delivered.size === 0 || this.deliveredScheduled)
            return;
        this.deliveredScheduled = true;
        setTimeout(() => {
            this.deliveredScheduled = false;
            const link = this.link;
            if (!this.ready || !link)
                return; // kept for the next session
            for (const [room, offset] of this.delivered) {
                if (!link.send(JSON.stringify({ type: "receipt.delivered", room, offset, ref: ++this.refs })))
                    return;
                this.delivered.delete(room);
            }
        }, 0);
    }
}
