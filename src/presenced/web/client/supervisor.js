/**
 * What the client does between connections (the Python SDK's `presenced.client.supervisor`):
 * decide by the close code, back off with full jitter, reconnect (resuming the session, or
 * restoring rooms, watches and status when the server could not), wait for the rooms'
 * recoveries to settle, and go on until a stop (close, logout, force leave, or a close code
 * that says stop). Also the app's levers on it: drop, reconnect now, suspend.
 */
import { ClientError, ConnectionClosed, ForceLeaveError } from "./errors.js";
import { Messaging } from "./messaging.js";
import { authFailureDecision, mayResume, reconnectDecision, retryDelay } from "./policy.js";
import { ErrorCode } from "./protocol.js";
export class Supervised extends Messaging {
    constructor() {
        super(...arguments);
        this.wake = null;
        this.suspended = false;
    }
    /** Drop the connection as a network failure would; the client reconnects and resumes.
     * (The browser hooks call it when the device goes offline; tests and drills too.) */
    drop(reason = "dropped by the client") {
        this.link?.abort(reason);
    }
    /** Reconnect at once if a reconnect is waiting out its backoff (the device came online). */
    reconnectNow() {
        this.wakeUp();
    }
    /** Close the connection and do not reconnect until `unsuspend()` (a page going into the
     * back/forward cache); the server keeps the session in grace meanwhile. */
    suspend() {
        if (this.stopped || !this.started)
            return;
        this.suspended = true;
        this.link?.abort("suspended", 1001);
    }
    unsuspend() {
        if (!this.suspended)
            return;
        this.suspended = false;
        this.wakeUp();
    }
    /** The link ended: fail its requests, then decide whether and how to reconnect. */
    linkClosed(link, code, reason) {
        if (link !== this.link)
            return;
        this.ready = false;
        this.link = null;
        this.resume.members.connectionLost(); // member events of the outage will be lost
        const error = this.closedError(code, reason);
        for (const pending of this.pending.values()) {
            clearTimeout(pending.timer);
            if (!pending.outbox)
                pending.reject(error); // outbox sends go again on the next session
        }
        this.pending.clear();
        for (const entry of this.outboxes.values())
            entry.ref = undefined;
        this.notify();
        if (this.closing || this.stopped)
            return; // close() finishes
        if (this.forced) {
            this.stop(code, reason);
            return;
        }
        const refreshable = typeof this.options.token === "function";
        const decision = reconnectDecision(code, refreshable);
        if (decision === "stop" && !this.suspended) {
            this.stop(code, reason);
            return;
        }
        if (!mayResume(code))
            this.resume.sessionEnded(); // 4010: a new session, rooms restored
        this.emitEvent("disconnected", { type: "disconnected", code, reason, willReconnect: true });
        void this.reconnect(decision === "stop" ? "reconnect_now" : decision, code, reason);
    }
    /** Try until a session is back, or the policy says stop. */
    async reconnect(decision, code, reason) {
        let authFailures = 0;
        const refreshable = typeof this.options.token === "function";
        for (let attempt = 0;; attempt++) {
            let now = false;
            while (this.suspended && !this.closing) {
                this.setState("suspended");
                await this.sleep(null); // until unsuspend(), then at once
                now = true;
                attempt = 0;
            }
            this.setState("reconnecting");
            const delay = retryDelay(decision, attempt, this.random(), this.backoff);
            if (delay === null) {
                this.stop(code, reason);
                return;
            }
            if (this.closing || this.stopped)
                return;
            if (!now && (await this.sleep(delay)))
                attempt = 0; // woken early (online again): afresh
            if (this.closing || this.stopped)
                return;
            if (this.suspended)
                continue;
            let opened;
            try {
                opened = await this.open();
            }
            catch (error) {
                if (error instanceof ClientError) {
                    code = null;
                    reason = error.message;
                    decision = authFailureDecision(error.code, refreshable);
                    if (error.code === ErrorCode.AUTH_FAILED && ++authFailures > 1)
                        decision = "stop";
                }
                else if (error instanceof ConnectionClosed) {
                    code = error.code;
                    reason = error.reason;
                    decision = reconnectDecision(code === 1006 ? null : code, refreshable);
                }
                else {
                    code = null;
                    reason = String(error);
                    decision = "reconnect_backoff";
                }
                this.log.debug?.(`reconnect attempt ${attempt} failed: ${reason}`);
                continue;
            }
            const { link, welcome } = opened;
            if (this.closing || this.stopped || this.suspended) {
                link.abort("closing");
                if (this.suspended)
                    continue;
                return;
            }
            const plan = this.resume.onWelcome(welcome);
            this.held = this.held ?? []; // what the new session brings comes after `connected`
            this.attach(link, welcome);
            try {
                await this.restore(link, plan);
                await this.settle(link);
            }
            catch (error) {
                this.log.warn?.(`connection lost while restoring the session: ${String(error)}`);
                link.abort("restore failed"); // a timeout means a half-dead connection: drop it
                this.release();
                return; // linkClosed goes on from there
            }
            if (link !== this.link)
                return;
            this.setReady();
            this.release({ type: "connected", welcome });
            return;
        }
    }
    /** Sleep `ms` (null: until woken); true when woken early. */
    sleep(ms) {
        return new Promise((resolve) => {
            const timer = ms === null ? undefined : setTimeout(() => done(false), ms);
            const done = (early) => {
                clearTimeout(timer);
                if (this.wake === wake)
                    this.wake = null;
                resolve(early);
            };
            const wake = () => done(true);
            this.wake = wake;
        });
    }
    wakeUp() {
        this.wake?.();
    }
    /** Send what a fresh session lacks. A request the server now refuses is dropped. */
    async restore(link, plan) {
        for (const join of plan.joins) {
            try {
                await this.requestOn(link, "room.join", { ...join });
            }
            catch (error) {
                if (!(error instanceof ClientError))
                    throw error;
                this.log.warn?.(`could not re-join room ${join.room}: ${error.message}`);
                this.resume.left(join.room);
            }
        }
        for (const subscribe of plan.subscribes) {
            let users = subscribe.users;
            while (users.length > 0) {
                try {
                    await this.requestOn(link, "presence.subscribe", { type: "presence.subscribe", users });
                    break;
                }
                catch (error) {
                    if (!(error instanceof ClientError))
                        throw error;
                    // The new credentials may not let it watch someone (WATCH_FORBIDDEN names users[i]):
                    // nothing was subscribed, so drop that one and watch the others.
                    const index = /^users\[(\d+)\]$/.exec(error.field ?? "");
                    const forbidden = error.code === ErrorCode.WATCH_FORBIDDEN && index ? [users[Number(index[1])]] : users;
                    this.log.warn?.(`could not re-subscribe ${forbidden.join(", ")}: ${error.message}`);
                    this.resume.unsubscribed(forbidden);
                    users = users.filter((u) => !forbidden.includes(u));
                }
            }
        }
        if (plan.status) {
            try {
                await this.requestOn(link, "status.set", { ...plan.status });
            }
            catch (error) {
                if (!(error instanceof ClientError))
                    throw error;
            }
        }
    }
    /**
     * Wait until every `room.recovered` due after this welcome has been read. The server answers
     * in order and sends a resume's or a join's `room.recovered` before it reads the next
     * request: once a heartbeat is acknowledged, a room still awaiting one will not get it, and
     * its held events are released as they are.
     */
    async settle(link) {
        const streams = this.resume.streams;
        if (streams.awaiting.size === 0)
            return;
        const awaited = new Map(streams.awaiting);
        try {
            await this.requestOn(link, "heartbeat", { type: "heartbeat" });
        }
        catch (error) {
            if (!(error instanceof ClientError))
                throw error;
        }
        for (const event of streams.settle(awaited))
            this.received(event);
        this.syncRooms(link);
    }
    setReady() {
        if (this.link === null || this.stopped)
            return; // it died on the way: linkClosed took over
        this.ready = true;
        this.setState("connected");
        this.notify();
        for (const entry of this.outboxes.values())
            this.sendOutbox(entry); // in the order sent
        this.scheduleDelivered(); // receipts noted while the session was not ready
    }
    /** The client is done (idempotent): a final `disconnected`, every waiter failed. */
    stop(code, reason) {
        if (this.stopped)
            return;
        this.stopped = this.forced
            ? new ForceLeaveError(this.forced.reason, this.forced.message)
            : new ConnectionClosed(code, reason);
        this.ready = false;
        this.closing = true;
        this.wakeUp();
        const link = this.link;
        this.link = null;
        link?.abort(reason, code ?? 1006);
        for (const pending of this.pending.values()) {
            clearTimeout(pending.timer);
            if (!pending.outbox)
                pending.reject(this.stopped);
        }
        this.pending.clear();
        for (const entry of [...this.outboxes.values()]) {
            this.dropOutbox(entry);
            entry.reject(this.stopped);
        }
        for (const timer of [...this.typingStops.values(), ...this.typingLater.values()])
            clearTimeout(timer);
        this.typingStops.clear();
        this.typingLater.clear();
        this.detachBrowser?.();
        this.release(); // stopped during a restore: deliver what it brought
        const wasConnected = this.welcomeMessage !== undefined;
        this.setState("closed");
        if (wasConnected)
            this.emitEvent("disconnected", { type: "disconnected", code, reason, willReconnect: false });
        this.notify();
    }
}
