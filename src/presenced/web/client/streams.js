/**
 * Room stream positions and the gap rule, pure (docs/protocol.md, "Keeping a position"); the
 * Python SDK's `presenced.client.streams`. Per room the client keeps `(epoch, last)`, the
 * highest offset up to which it has applied every event; for each stream event, ack or
 * edit/delete reply at `(E, N)`:
 *
 * - `N == last + 1` (same epoch): apply it, `last = N`;
 * - `N <= last`: already applied: drop it;
 * - `N > last + 1`: a gap: hold it and recover (`room.join` with `since: (epoch, last)`);
 * - another epoch: the stream restarted; the recovery answers `recovered: false` ("reload").
 *
 * A room is *awaited* while a `room.recovered` is due for it (after a resume, a re-join with
 * `since`, or a gap): its live events are held, because the recovery may hold them too; when
 * it arrives the recovery is surfaced first, then the held events it does not cover.
 */
/** The epoch a re-join sends for a room where nothing was seen: no stream has it, so the
 * server answers `recovered: false` and the app reloads (it cannot be proved quiet). */
export const UNKNOWN_EPOCH = "";
/** The protocol's position rule for an event at `(epoch, offset)`. */
export function classify(position, epoch, offset) {
    if (position === undefined)
        return "first";
    if (epoch !== position.epoch)
        return "new_epoch";
    if (offset <= position.offset)
        return "duplicate";
    if (offset === position.offset + 1)
        return "apply";
    return "gap";
}
const STREAM_TYPES = new Set(["message", "message.edited", "message.deleted"]);
export function isStreamEvent(message) {
    return STREAM_TYPES.has(message.type);
}
export class StreamPositions {
    constructor() {
        /** Per room, the position every surfaced event reaches. */
        this.known = new Map();
        /** Per room, its live events held while a `room.recovered` is due. */
        this.awaiting = new Map();
        /** Per room, a recovery to request (`room.join` with this `since`). */
        this.due = new Map();
        /** Rooms joined without a position: their first `room.recovered` only sets it. */
        this.baselines = new Set();
    }
    position(room) {
        return this.known.get(room);
    }
    forget(room) {
        this.baselines.delete(room);
        this.known.delete(room);
        this.awaiting.delete(room);
        this.due.delete(room);
    }
    /** A `room.recovered` is due for `room`: hold its live events until then. */
    expect(room) {
        this.awaiting.set(room, []);
    }
    /**
     * A first join of `room` asks `since` the unknown epoch: the `room.recovered` after its
     * `room.joined` says `recovered: false` with the stream's position, in order with the live
     * events. That position is the baseline (nothing to reload: the app has nothing yet), so a
     * later resume always gives `auth.positions` for the room and its recovery is exact, even
     * when the connection died before the first event arrived.
     */
    expectBaseline(room) {
        this.awaiting.set(room, []);
        this.baselines.add(room);
        return { epoch: UNKNOWN_EPOCH, offset: 0 };
    }
    /** What a re-join of `room` sends as `since`. */
    since(room) {
        return this.known.get(room) ?? { epoch: UNKNOWN_EPOCH, offset: 0 };
    }
    /** `auth.positions` for a resume: the rooms that have a position (others are recovered
     * from where the server noticed the drop). */
    forAuth(rooms) {
        const out = {};
        let any = false;
        for (const room of rooms) {
            const position = this.known.get(room);
            if (position) {
                out[room] = { ...position };
                any = true;
            }
        }
        return any ? out : undefined;
    }
    takeRecoveries() {
        const out = [...this.due.entries()];
        this.due.clear();
        return out;
    }
    /** An unsolicited server message: what to surface now, in order. */
    receive(message) {
        if (message.type === "room.recovered")
            return this.recovered(message);
        if (isStreamEvent(message)) {
            const out = [];
            this.live(message, out);
            return out;
        }
        return [message];
    }
    /** A reply to one of our requests: an ack or edit/delete reply counts like an event (a gap
     * before it starts a recovery); a history reply sets a missing (or other-epoch) position.
     * Not while the room is awaited: the recovery sets the position. */
    reply(message) {
        if (message.type === "message.ack" || message.type === "message.edited" || message.type === "message.deleted") {
            const room = message.room;
            if (this.awaiting.has(room) || (message.type === "message.ack" && message.duplicate))
                return;
            const step = classify(this.known.get(room), message.epoch, message.offset);
            if (step === "first" || step === "apply") {
                this.known.set(room, { epoch: message.epoch, offset: message.offset });
            }
            else if (step === "gap" || step === "new_epoch") {
                this.startRecovery(room);
            }
        }
        else if (message.type === "room.history" && !this.awaiting.has(message.room)) {
            this.history(message);
        }
    }
    /** No `room.recovered` came for `rooms` (as `awaiting` was when they were due): release
     * their held events by the rule. A room awaited anew since (a gap) is left alone. */
    settle(rooms) {
        const out = [];
        for (const [room, held] of rooms) {
            if (this.awaiting.get(room) === held) {
                this.awaiting.delete(room);
                for (const event of held)
                    this.live(event, out);
            }
        }
        return out;
    }
    /** The recovery request for `room` was refused: say so, surface what was held. */
    abandon(room) {
        const held = this.awaiting.get(room);
        if (held === undefined)
            return [];
        this.awaiting.delete(room);
        const old = this.since(room);
        const out = [{ type: "recovery_failed", room, epoch: old.epoch, offset: old.offset }];
        for (const event of held) {
            this.known.set(room, { epoch: event.epoch, offset: event.offset });
            out.push(event);
        }
        return out;
    }
    /** Held events and requests are dropped: never counted, so the next recovery brings them. */
    connectionLost() {
        this.baselines.clear();
        this.awaiting.clear();
        this.due.clear();
    }
    history(message) {
        const old = this.known.get(message.room);
        if (old === undefined || old.epoch !== message.epoch) {
            this.known.set(message.room, { epoch: message.epoch, offset: message.offset });
        }
    }
    live(event, out) {
        const room = event.room;
        const held = this.awaiting.get(room);
        if (held !== undefined) {
            held.push(event);
            return;
        }
        const step = classify(this.known.get(room), event.epoch, event.offset);
        if (step === "first" || step === "apply") {
            this.known.set(room, { epoch: event.epoch, offset: event.offset });
            out.push(event);
        }
        else if (step === "gap" || step === "new_epoch") {
            this.startRecovery(room);
            this.awaiting.get(room).push(event);
        } // duplicate: already surfaced
    }
    startRecovery(room) {
        this.due.set(room, this.since(room));
        this.awaiting.set(room, []);
    }
    recovered(message) {
        const room = message.room;
        const held = this.awaiting.get(room) ?? [];
        this.awaiting.delete(room);
        this.due.delete(room);
        const old = this.known.get(room);
        if (old !== undefined && old.epoch === message.epoch && message.events?.length) {
            const fresh = message.events.filter((e) => e.offset > old.offset);
            if (fresh.length !== message.events.length)
                message = { ...message, events: fresh };
        }
        this.known.set(room, { epoch: message.epoch, offset: message.offset });
        const baseline = this.baselines.delete(room) && !message.recovered;
        const out = baseline ? [] : [message];
        if (!message.recovered && !baseline) {
            out.push({ type: "recovery_failed", room, epoch: message.epoch, offset: message.offset });
        }
        for (const event of held) {
            if (event.epoch === message.epoch)
                this.live(event, out);
        }
        return out;
    }
}
