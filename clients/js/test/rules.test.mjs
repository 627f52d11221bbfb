// The pure rules, without a server: backoff, close-code decisions, typing throttle, the
// stream offset rule, the member version rule, and what a welcome says to restore.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  authFailureDecision,
  Backoff,
  classify,
  mayResume,
  MemberViews,
  reconnectDecision,
  refreshDelay,
  ResumeState,
  retryDelay,
  StreamPositions,
  TypingThrottle,
  UNKNOWN_EPOCH,
} from "../dist/index.js";

describe("backoff and decisions", () => {
  test("full jitter within a doubling window up to the cap", () => {
    const backoff = new Backoff({ initial: 100, maximum: 1000 });
    assert.deepEqual([0, 1, 2, 3, 4, 10, 1e6].map((n) => backoff.cap(n)), [100, 200, 400, 800, 1000, 1000, 1000]);
    assert.equal(backoff.delay(3, 0), 0);
    assert.equal(backoff.delay(3, 0.5), 400);
    assert.ok(backoff.delay(3, 0.999999) < 800);
    assert.throws(() => new Backoff({ initial: 0 }), RangeError);
    assert.throws(() => new Backoff({ initial: 10, maximum: 5 }), RangeError);
  });

  test("what each close code asks for", () => {
    const cases = {
      1000: "stop", 1006: "reconnect_backoff", 1011: "reconnect_backoff", 1012: "reconnect_now",
      4000: "reconnect_backoff", 4001: "stop", 4002: "reconnect_backoff", 4003: "stop", 4004: "stop",
      4005: "reconnect_backoff", 4006: "reconnect_backoff", 4007: "stop", 4009: "reconnect_backoff",
      4010: "reconnect_now", 4011: "reconnect_now", 4999: "reconnect_backoff",
    };
    for (const [code, decision] of Object.entries(cases)) assert.equal(reconnectDecision(Number(code)), decision, code);
    assert.equal(reconnectDecision(null), "reconnect_backoff");
    assert.equal(reconnectDecision(4001, true), "reconnect_backoff"); // a fresh token may help
    assert.equal(mayResume(4010), false);
    assert.equal(mayResume(1006), true);
    assert.equal(mayResume(4011), true); // a fresh token resumes the session in grace
    assert.equal(refreshDelay(1000, 990_000), 8000); // 80 % of the 10 s left
    assert.equal(refreshDelay(1000, 1_005_000), 0);
    assert.equal(authFailureDecision("BAD_REQUEST"), "stop");
    assert.equal(authFailureDecision("AUTH_FAILED"), "stop");
    assert.equal(authFailureDecision("AUTH_FAILED", true), "reconnect_backoff");
    assert.equal(authFailureDecision("RATE_LIMITED"), "reconnect_backoff");
    const backoff = new Backoff({ initial: 100, maximum: 1000 });
    assert.equal(retryDelay("stop", 0, 0.5, backoff), null);
    assert.equal(retryDelay("reconnect_now", 9, 0.5, backoff), 50); // always the first window
    assert.equal(retryDelay("reconnect_backoff", 9, 0.5, backoff), 500);
  });

  test("typing throttle: renewals once per interval; after a stop, the server's cooldown", () => {
    const throttle = new TypingThrottle(2000, 1000);
    assert.deepEqual(throttle.start("a", 0), { send: true });
    assert.deepEqual(throttle.start("a", 1999), { send: false }); // on: renewed every 2 s
    assert.deepEqual(throttle.start("b", 1999), { send: true });
    assert.deepEqual(throttle.start("a", 2000), { send: true });
    throttle.stopped("a"); // the server would ignore a start before 3000 even so
    assert.deepEqual(throttle.start("a", 2400), { send: false, deferMs: 600 });
    assert.deepEqual(throttle.start("a", 3000), { send: true });
    throttle.stopped("a");
    assert.deepEqual(throttle.start("a", 4500), { send: true }); // cooled down: at once
    throttle.unsent("a");
    assert.deepEqual(throttle.start("a", 4501), { send: true });
    throttle.connectionLost();
    assert.deepEqual(throttle.start("b", 4502), { send: true });
  });
});

const msg = (offset, epoch = "e1", room = "r") => ({ type: "message", room, epoch, offset, id: `m${offset}`, user: "bob", device: "d", body: `b${offset}`, time: 0 });

describe("stream positions", () => {
  test("classify", () => {
    const at = { epoch: "e", offset: 5 };
    assert.equal(classify(undefined, "e", 9), "first");
    assert.equal(classify(at, "e", 6), "apply");
    assert.equal(classify(at, "e", 5), "duplicate");
    assert.equal(classify(at, "e", 7), "gap");
    assert.equal(classify(at, "x", 6), "new_epoch");
  });

  test("a gap holds what follows and asks for a recovery; the recovery fills it once", () => {
    const streams = new StreamPositions();
    assert.deepEqual(streams.receive(msg(1)).map((e) => e.offset), [1]);
    assert.deepEqual(streams.receive(msg(1)), []); // duplicate
    assert.deepEqual(streams.receive(msg(3)), []); // gap: held
    assert.deepEqual(streams.takeRecoveries(), [["r", { epoch: "e1", offset: 1 }]]);
    assert.deepEqual(streams.receive(msg(4)), []); // still held
    const out = streams.receive({ type: "room.recovered", room: "r", epoch: "e1", offset: 3, recovered: true, events: [msg(2), msg(3)] });
    assert.deepEqual(out.map((e) => e.type), ["room.recovered", "message"]);
    assert.deepEqual(out[0].events.map((e) => e.offset), [2, 3]);
    assert.equal(out[1].offset, 4); // the held event beyond the recovery
    assert.deepEqual(streams.position("r"), { epoch: "e1", offset: 4 });
  });

  test("recovered false: a reload is asked for, the position moves to the new epoch", () => {
    const streams = new StreamPositions();
    streams.receive(msg(7));
    streams.expect("r");
    const out = streams.receive({ type: "room.recovered", room: "r", epoch: "e2", offset: 0, recovered: false });
    assert.deepEqual(out.map((e) => e.type), ["room.recovered", "recovery_failed"]);
    assert.deepEqual(out[1], { type: "recovery_failed", room: "r", epoch: "e2", offset: 0 });
    assert.deepEqual(streams.position("r"), { epoch: "e2", offset: 0 });
  });

  test("a first join's baseline sets the position silently and releases held events", () => {
    const streams = new StreamPositions();
    assert.deepEqual(streams.expectBaseline("r"), { epoch: UNKNOWN_EPOCH, offset: 0 });
    assert.deepEqual(streams.receive(msg(6)), []); // held until the baseline
    const out = streams.receive({ type: "room.recovered", room: "r", epoch: "e1", offset: 5, recovered: false });
    assert.deepEqual(out.map((e) => [e.type, e.offset]), [["message", 6]]);
    assert.deepEqual(streams.forAuth(["r", "other"]), { r: { epoch: "e1", offset: 6 } });
  });

  test("own acks count; a duplicate ack does not", () => {
    const streams = new StreamPositions();
    streams.receive(msg(1));
    streams.reply({ type: "message.ack", room: "r", epoch: "e1", offset: 2, id: "m2", duplicate: false });
    streams.reply({ type: "message.ack", room: "r", epoch: "e1", offset: 9, id: "m9", duplicate: true });
    assert.deepEqual(streams.position("r"), { epoch: "e1", offset: 2 });
    assert.deepEqual(streams.takeRecoveries(), []);
  });
});

const joined = (user, version) => ({ type: "member.joined", room: "r", version, user, status: "online", devices: 1 });

describe("member lists", () => {
  test("the version rule: apply the next, skip the old, snapshot on a gap", () => {
    const views = new MemberViews();
    views.expect("r");
    assert.deepEqual(views.receive(joined("early", 2)), []); // held until the join's snapshot
    views.reply({ type: "room.joined", room: "r", version: 2, members: [{ user: "me", status: "online", devices: 1 }, { user: "early", status: "online", devices: 1 }] }, "me");
    assert.equal(views.get("r").version, 2);
    assert.deepEqual(views.receive(joined("x", 2)), []); // already reflected
    assert.deepEqual(views.receive(joined("bob", 3)).map((e) => e.type), ["member.joined", "members_changed"]);
    assert.deepEqual(views.receive(joined("carl", 5)), []); // gap: held, snapshot due
    assert.deepEqual(views.takeRequests(), ["r"]);
    assert.equal(views.get("r").synced, false);
    const out = views.reply(
      { type: "room.members", room: "r", version: 5, members: ["me", "early", "bob", "carl", "dan"].map((user) => ({ user, status: "online", devices: 1 })) },
      "me",
    );
    assert.deepEqual(out.map((e) => e.type), ["members_resynced", "members_changed"]);
    assert.deepEqual([...views.get("r").members.keys()], ["me", "early", "bob", "carl", "dan"]);
    assert.equal(views.get("r").synced, true);
    const left = views.receive({ type: "member.left", room: "r", version: 6, user: "dan", reason: "left" });
    assert.equal(left[0].type, "member.left");
    assert.equal(views.get("r").members.has("dan"), false);
  });
});

describe("restore", () => {
  const welcome = (fields) => ({ type: "welcome", session: "s", resume_token: "rt2", user: "me", device: "d", protocol: 1, heartbeat_interval: 20, heartbeat_timeout: 10, grace: 30, status: "online", ...fields });

  test("a resumed session: nothing re-sent; the server's rooms and watches stand", () => {
    const state = new ResumeState();
    state.resumeToken = "rt1";
    state.joined("kept", { seat: 1 }, false);
    state.joined("kicked", undefined, false);
    state.subscribed(["ann", "bo"]);
    const plan = state.onWelcome(welcome({ resumed: true, rooms: ["kept"], subscriptions: ["bo"] }));
    assert.deepEqual(plan, { joins: [], subscribes: [], status: undefined });
    assert.deepEqual([...state.rooms.keys()], ["kept"]);
    assert.deepEqual([...state.subscriptions], ["bo"]);
    assert.equal(state.resumeToken, "rt2");
    assert.deepEqual(state.members.takeRequests(), ["kept"]);
  });

  test("a fresh session: rooms re-joined with since, watches and status re-sent", () => {
    const state = new ResumeState();
    state.joined("r", { seat: 2 }, true);
    state.streams.receive(msg(4));
    state.subscribed(["zed", "amy"]);
    state.statusSet("dnd", "busy day");
    const plan = state.onWelcome(welcome({ resumed: false, resume_error: "unknown token" }));
    assert.deepEqual(plan.joins, [{ type: "room.join", room: "r", since: { epoch: "e1", offset: 4 }, meta: { seat: 2 }, device_events: true }]);
    assert.deepEqual(plan.subscribes, [{ type: "presence.subscribe", users: ["amy", "zed"] }]);
    assert.deepEqual(plan.status, { type: "status.set", status: "dnd", text: "busy day" });
  });
});
