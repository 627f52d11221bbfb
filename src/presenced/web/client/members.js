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
function isMemberEvent(message) {
    return message.type === "member.joined" || message.type === "member.left" || message.type === "member.updated";
}
function sameMembers(a, b) {
    if (a.size !== b.size)
        return false;
    for (const [user, member] of a) {
        const other = b.get(user);
        if (other === undefined || JSON.stringify(canonical(member)) !== JSON.stringify(canonical(other)))
            return false;
    }
    return true;
}
function canonical(member) {
    return [member.user, member.status, member.devices, member.text, sortKeys(member.meta), member.joined_at];
}
function sortKeys(value) {
    if (Array.isArray(value))
        return value.map(sortKeys);
    if (value && typeof value === "object") {
        const obj = value;
        return Object.keys(obj)
            .sort()
            .map((k) => [k, sortKeys(obj[k])]);
    }
    return value;
}
export class MemberViews {
    constructor() {
        this.views = new Map();
        this.due = new Set();
    }
    get(room) {
        const view = this.views.get(room);
        if (view === undefined || view.version === null)
            return undefined;
        return {
            room,
            version: view.version,
            members: new Map(view.members),
            count: view.count,
            synced: view.held === null,
        };
    }
    /** A snapshot of `room` is on its way (a join, a reconnect): hold its events. */
    expect(room) {
        let view = this.views.get(room);
        if (view === undefined) {
            view = { version: null, members: new Map(), count: 0, countVersion: -1, held: null };
            this.views.set(room, view);
        }
        if (view.held === null)
            view.held = [];
    }
    /** Ask for a snapshot of `room` (after a resume: member events were lost). */
    refresh(room) {
        this.expect(room);
        this.due.add(room);
    }
    takeRequests() {
        const rooms = [...this.due].sort();
        this.due.clear();
        return rooms;
    }
    /** The join or snapshot request failed: stop holding (the next event past the list's
     * version is a gap and asks again). */
    abandon(room) {
        const view = this.views.get(room);
        if (view === undefined)
            return;
        if (view.version === null)
            this.views.delete(room);
        else
            view.held = null;
        this.due.delete(room);
    }
    forget(room) {
        this.views.delete(room);
        this.due.delete(room);
    }
    clear() {
        this.views.clear();
        this.due.clear();
    }
    /** Member events are not recovered: every list waits for a snapshot. */
    connectionLost() {
        this.due.clear();
        for (const view of this.views.values())
            view.held = [];
    }
    /** An unsolicited message: what to surface now. Member events of a tracked room go through
     * the version rule; everything else passes. */
    receive(message) {
        if (isMemberEvent(message)) {
            const out = [];
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
    reply(message, me) {
        if (message.type === "room.joined" || message.type === "room.members") {
            return this.snapshot(message.room, message.version, message.members);
        }
        if (message.type === "room.meta" && me !== undefined)
            return this.ownMeta(message, me);
        return [];
    }
    event(event, out) {
        const view = this.views.get(event.room);
        if (view === undefined) {
            out.push(event); // a room this client does not track
            return;
        }
        if (view.held !== null) {
            view.held.push(event);
            return;
        }
        const version = view.version;
        if (event.version <= version)
            return;
        if (event.version > version + 1) {
            view.held = [event];
            this.due.add(event.room);
            return;
        }
        apply(view, event);
        out.push(event, { type: "members_changed", room: event.room });
    }
    snapshot(room, version, members) {
        const view = this.views.get(room);
        if (view === undefined)
            return []; // room.members of a room this session is not in
        if (view.held === null && view.version !== null && version < view.version)
            return [];
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
        const out = [];
        if (!first && !sameMembers(before, view.members)) {
            out.push({ type: "members_resynced", room, version, members });
        }
        out.push({ type: "members_changed", room });
        for (const event of held)
            this.event(event, out);
        return out;
    }
    ownMeta(reply, me) {
        const view = this.views.get(reply.room);
        if (view === undefined || view.held !== null || view.version === null)
            return [];
        if (reply.version <= view.version)
            return [];
        if (reply.version > view.version + 1) {
            view.held = [];
            this.due.add(reply.room);
            return [];
        }
        view.version = reply.version;
        const own = view.members.get(me);
        if (own !== undefined)
            view.members.set(me, { ...own, meta: reply.meta });
        view.count = view.members.size;
        view.countVersion = view.version;
        return [{ type: "members_changed", room: reply.room }];
    }
}
function apply(view, event) {
    if (event.type === "member.left") {
        view.members.delete(event.user);
    }
    else {
        // member.updated carries no join time: the member keeps its own
        const joinedAt = event.type === "member.joined" ? event.joined_at : view.members.get(event.user)?.joined_at;
        const member = { user: event.user, status: event.status, devices: event.devices };
        if (event.text !== undefined)
            member.text = event.text;
        if (event.meta !== undefined)
            member.meta = event.meta;
        if (joinedAt !== undefined)
            member.joined_at = joinedAt;
        view.members.set(event.user, member);
    }
    view.version = event.version;
    view.count = view.members.size;
    view.countVersion = event.version;
}
