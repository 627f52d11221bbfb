// The client against a real presenced (memory store): connect, rooms and member lists,
// messaging, typing, statuses and watches, heartbeats, errors; and the browser hooks, driven by
// stand-in window and document event targets (offline/online, visibility, pagehide).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ClientError, ConnectionClosed, ErrorCode, ForceLeaveError, PresencedClient } from "../dist/index.js";
import { isMessage, makeClient, Presenced, within } from "./support.mjs";

let server;
const open = [];

before(async () => {
  // Short server pings: a client that did not answer them would be closed (4006) in 1 s.
  server = await new Presenced({ admin: true, args: ["--heartbeat-interval", "0.5", "--heartbeat-timeout", "0.5"] }).start();
});

after(async () => {
  await Promise.all(open.map((c) => c.close()));
  await server.stop();
});

async function connected(user, options = {}) {
  const made = makeClient(server.url, user, options);
  open.push(made.client);
  await made.client.connect();
  return made;
}

const notDisconnected = (recorder) => assert.deepEqual(recorder.all("disconnected"), []);

describe("connect", () => {
  test("authenticates with an auth message and gets a welcome", async () => {
    const { client, events } = await connected("ann");
    const welcome = client.welcome;
    assert.equal(welcome.user, "ann");
    assert.equal(welcome.device, "ann-device");
    assert.equal(welcome.resumed, false);
    assert.equal(welcome.protocol, 1);
    assert.ok(welcome.resume_token && welcome.session);
    assert.equal(client.state, "connected");
    assert.equal(client.connected, true);
    const first = await events.next((e) => e.name === "connected");
    assert.equal(first.welcome.session, client.session);
  });

  test("answers server pings and sends heartbeats of its own", async () => {
    const { client, events } = await connected("hank", { heartbeatInterval: 150 });
    // Four acknowledged heartbeats take over a second: two server ping periods or more.
    for (let i = 0; i < 4; i++) {
      const latency = await events.next((e) => e.name === "latency");
      assert.ok(latency.rtt >= 0 && latency.serverTime > 1e9);
    }
    const ack = await client.heartbeat();
    assert.equal(ack.type, "heartbeat.ack");
    notDisconnected(events);
    assert.equal(client.state, "connected");
  });

  test("a refused first connect rejects with the error code", async () => {
    const { client } = makeClient(server.url, "has space");
    await assert.rejects(client.connect(), (e) => e instanceof ClientError && e.code === ErrorCode.BAD_REQUEST);
    assert.equal(client.state, "closed");
  });

  test("a handshake cut short rejects at once, not after the request timeout", async () => {
    const net = await import("node:net");
    const cutter = net.createServer((socket) => socket.destroy());
    await new Promise((r) => cutter.listen(0, "127.0.0.1", r));
    try {
      const { client } = makeClient(`ws://127.0.0.1:${cutter.address().port}/ws`, "cut", { requestTimeout: 30_000 });
      await within(assert.rejects(client.connect(), (e) => e instanceof ConnectionClosed && e.code === 1006), 5000, "connect()");
    } finally {
      cutter.close();
    }
  });

  test("exactly one of token and user", async () => {
    const { PresencedClient } = await import("../dist/index.js");
    assert.throws(() => new PresencedClient({ url: server.url, device: "d" }), TypeError);
    assert.throws(() => new PresencedClient({ url: server.url, device: "d", user: "u", token: "t" }), TypeError);
  });
});

describe("rooms", () => {
  test("two clients see each other join, update and leave; member lists follow", async () => {
    const alice = await connected("alice");
    const bob = await connected("bob");
    const joined = await alice.client.join("lobby", { meta: { seat: 1 } });
    assert.deepEqual(
      joined.members.map((m) => m.user),
      ["alice"],
    );
    await bob.client.join("lobby");
    const seen = await alice.events.next((e) => e.name === "member.joined" && e.user === "bob");
    assert.equal(seen.room, "lobby");
    assert.deepEqual([...alice.client.memberList("lobby").members.keys()].sort(), ["alice", "bob"]);
    assert.deepEqual([...bob.client.memberList("lobby").members.keys()].sort(), ["alice", "bob"]);
    assert.equal(bob.client.memberList("lobby").members.get("alice").meta.seat, 1);

    const meta = await alice.client.setMeta("lobby", { seat: 2 });
    assert.equal(meta.meta.seat, 2);
    await bob.events.next((e) => e.name === "member.updated" && e.user === "alice");
    assert.equal(bob.client.memberList("lobby").members.get("alice").meta.seat, 2);
    assert.equal(alice.client.memberList("lobby").members.get("alice").meta.seat, 2);
    assert.equal(alice.client.memberList("lobby").version, bob.client.memberList("lobby").version);

    assert.equal(await alice.client.count("lobby"), 2);
    const snapshot = await alice.client.members("lobby");
    assert.equal(snapshot.version, alice.client.memberList("lobby").version);

    await bob.client.leave("lobby");
    const left = await alice.events.next((e) => e.name === "member.left" && e.user === "bob");
    assert.equal(left.reason, "left");
    assert.deepEqual([...alice.client.memberList("lobby").members.keys()], ["alice"]);
    assert.equal(bob.client.memberList("lobby"), undefined);
    assert.deepEqual(bob.client.rooms, []);
    assert.deepEqual(alice.client.rooms, ["lobby"]);
    assert.ok(alice.events.all("members_changed").length >= 3);
  });

  test("concurrent joins and leaves (room.batch or single frames): the member list ends as the server's", async () => {
    const watcher = await connected("wanda");
    await watcher.client.join("busy");
    const crowd = await Promise.all(Array.from({ length: 8 }, (_, i) => connected(`c${i}`)));
    await Promise.all(crowd.map((c) => c.client.join("busy")));
    await Promise.all(crowd.slice(0, 3).map((c) => c.client.leave("busy")));
    const snapshot = await crowd[7].client.members("busy");
    // the watcher's list, moved by events alone (batched or not), reaches the same version
    await watcher.events.when(() => watcher.client.memberList("busy").version >= snapshot.version);
    const list = watcher.client.memberList("busy");
    assert.equal(list.version, snapshot.version);
    assert.deepEqual([...list.members.keys()].sort(), snapshot.members.map((m) => m.user).sort());
    assert.equal(list.synced, true);
  });

  test("refusals are typed errors and the connection carries on", async () => {
    const { client, events } = await connected("erin");
    await assert.rejects(client.join("has space"), (e) => e instanceof ClientError && e.code === "BAD_REQUEST" && e.field === "room");
    await assert.rejects(client.leave("nowhere"), (e) => e.code === ErrorCode.NOT_IN_ROOM);
    await assert.rejects(client.send("nowhere", "x"), (e) => e.code === ErrorCode.NOT_IN_ROOM);
    assert.deepEqual(client.unconfirmed, []);
    await client.join("errors");
    await assert.rejects(client.edit("errors", "m_nope", "x"), (e) => e.code === ErrorCode.MESSAGE_NOT_FOUND);
    notDisconnected(events);
    assert.equal((await client.members("errors")).members.length, 1);
  });
});

describe("messaging", () => {
  test("send with ack, edit, delete, receipts, history and read state", async () => {
    const alice = await connected("amy");
    const bob = await connected("ben");
    await alice.client.join("chat");
    await bob.client.join("chat");

    const ack = await alice.client.send("chat", "hello", { tempId: "t-1" });
    assert.equal(ack.temp_id, "t-1");
    assert.equal(ack.duplicate, false);
    assert.equal(ack.offset, 1);
    const got = await bob.events.next(isMessage("hello"));
    assert.equal(got.id, ack.id);
    assert.equal(got.user, "amy");
    assert.equal(got.temp_id, "t-1");
    assert.deepEqual(alice.client.unconfirmed, []);

    // ben's client sends receipt.delivered by itself; seen is the app's to say
    const delivered = await alice.events.next((e) => e.name === "receipt");
    assert.deepEqual([delivered.kind, delivered.user, delivered.offset], ["delivered", "ben", 1]);
    await bob.client.seen("chat", 1);
    const seen = await alice.events.next((e) => e.name === "receipt");
    assert.deepEqual([seen.kind, seen.user, seen.offset], ["seen", "ben", 1]);

    const edited = await alice.client.edit("chat", ack.id, { text: "hello!" });
    assert.equal(edited.offset, 2);
    const theirEdit = await bob.events.next((e) => e.name === "message.edited");
    assert.deepEqual([theirEdit.id, theirEdit.body.text], [ack.id, "hello!"]);
    await assert.rejects(bob.client.delete("chat", ack.id), (e) => e.code === ErrorCode.NOT_AUTHOR);

    const second = await alice.client.send("chat", "second");
    await alice.client.delete("chat", ack.id);
    await bob.events.next((e) => e.name === "message.deleted" && e.id === ack.id);
    assert.deepEqual(alice.client.position("chat"), { epoch: ack.epoch, offset: 4 });
    assert.deepEqual(bob.client.position("chat"), { epoch: ack.epoch, offset: 4 });

    const history = await bob.client.history("chat");
    assert.deepEqual(
      history.messages.map((m) => [m.id, m.body]),
      [[second.id, "second"]],
    );
    assert.equal(history.offset, 4);
    const read = await bob.client.readState("chat");
    assert.deepEqual([read.last_read, read.unread], [1, 1]);
  });

  test("typing: throttled starts, stop, a deferred restart, a send clears it, auto-stop", async () => {
    const alice = await connected("tia", { typingThrottle: 60_000, typingAutoStop: 0 });
    const bob = await connected("tom");
    await alice.client.join("typing");
    await bob.client.join("typing");
    const typing = (users) => (e) => e.name === "typing" && JSON.stringify(e.users) === JSON.stringify(users);

    alice.client.typing("typing");
    await bob.events.next(typing(["tia"]));
    assert.deepEqual(bob.client.typingUsers("typing"), ["tia"]);
    alice.client.typing("typing"); // within the throttle: not sent
    await alice.client.stopTyping("typing");
    await bob.events.next(typing([]));
    // Within the server's throttle of the last start even a start after a stop is ignored, so
    // the client holds it back and sends it when the server takes it.
    alice.client.typing("typing");
    await bob.events.next(typing(["tia"]));
    await alice.client.send("typing", "done"); // sending clears the indicator
    await bob.events.next(typing([]));
    assert.deepEqual(bob.client.typingUsers("typing"), []);

    const auto = await connected("tess", { typingAutoStop: 200 });
    await auto.client.join("typing");
    auto.client.typing("typing");
    await bob.events.next(typing(["tess"]));
    await bob.events.next(typing([]), 2000); // the client's own stop, long before the server's 5 s
  });
});

describe("presence", () => {
  test("status and watches: subscribe, presence events, status text, offline", async () => {
    const carol = await connected("carol");
    const subscribed = await carol.client.subscribe(["dave"]);
    assert.deepEqual(
      subscribed.users.map((p) => [p.user, p.online, p.status]),
      [["dave", false, "offline"]],
    );
    assert.equal(carol.client.presenceOf("dave").online, false);
    assert.deepEqual(carol.client.subscriptions, ["dave"]);

    const dave = makeClient(server.url, "dave");
    await dave.client.connect();
    const online = await carol.events.next((e) => e.name === "presence" && e.online);
    assert.equal(online.status, "online");
    const updated = await dave.client.setStatus("busy", "coding");
    assert.deepEqual([updated.status, updated.aggregate, updated.text], ["busy", "busy", "coding"]);
    const busy = await carol.events.next((e) => e.name === "presence" && e.status === "busy");
    assert.equal(busy.text, "coding");
    assert.equal(carol.client.presenceOf("dave").status, "busy");

    await dave.client.logout(); // no grace: watchers see it go at once
    const gone = await carol.events.next((e) => e.name === "presence" && !e.online);
    assert.equal(gone.status, "offline");
    assert.ok(gone.last_seen > 0);
    assert.equal(dave.client.state, "closed");

    await carol.client.unsubscribe(["dave"]);
    assert.deepEqual(carol.client.subscriptions, []);
    assert.equal(carol.client.presenceOf("dave"), undefined);
  });
});

describe("the app's backend acts", () => {
  test("a kick ends the session: forced_leave, no reconnect, requests fail", async () => {
    const kim = await connected("kim");
    await kim.client.join("k");
    await server.api("POST", "/v1/users/kim/kick", { message: "bye" });
    const forced = await kim.events.next((e) => e.name === "forced_leave");
    assert.deepEqual([forced.reason, forced.message], ["kicked", "bye"]);
    const last = await kim.events.next((e) => e.name === "disconnected");
    assert.deepEqual([last.code, last.willReconnect], [4003, false]);
    assert.equal(kim.client.state, "closed");
    await assert.rejects(kim.client.join("k"), (e) => e instanceof ForceLeaveError && e.leaveReason === "kicked");
    assert.deepEqual(kim.client.rooms, []);
  });

  test("a kick from a room: room.removed, the room forgotten, the session goes on", async () => {
    const rex = await connected("rex");
    await rex.client.join("stay");
    await rex.client.join("out");
    await server.api("POST", "/v1/rooms/out/kick", { user: "rex", message: "be nice" });
    const removed = await rex.events.next((e) => e.name === "room.removed");
    assert.deepEqual([removed.room, removed.reason, removed.message], ["out", "kicked", "be nice"]);
    assert.deepEqual(rex.client.rooms, ["stay"]);
    assert.equal(rex.client.memberList("out"), undefined);
    await rex.client.send("stay", "still here");
  });

  test("a disconnect (4010): a new session at once, rooms re-joined from their positions", async () => {
    const dora = await connected("dora");
    const ed = await connected("ed");
    await dora.client.join("d", { meta: { role: "host" } });
    await ed.client.join("d");
    await ed.client.send("d", "before");
    await dora.events.next(isMessage("before"));
    const old = dora.client.session;
    await server.api("POST", "/v1/users/dora/disconnect", {});
    const dropped = await dora.events.next((e) => e.name === "disconnected");
    assert.deepEqual([dropped.code, dropped.willReconnect], [4010, true]);
    const back = await dora.events.next((e) => e.name === "connected");
    assert.equal(back.welcome.resumed, false);
    assert.notEqual(dora.client.session, old);
    const recovery = await dora.events.next((e) => e.name === "room.recovered");
    assert.equal(recovery.recovered, true); // same stream, the position was known
    assert.deepEqual(dora.client.rooms, ["d"]);
    const members = await ed.client.members("d");
    assert.equal(members.members.find((m) => m.user === "dora").meta.role, "host");
  });

  test("the backend watches users for the session: presence.subscribed without a request", async () => {
    const wes = await connected("wes");
    await server.api("POST", "/v1/users/wes/subscribe", { users: ["yan"] });
    const subscribed = await wes.events.next((e) => e.name === "presence.subscribed");
    assert.deepEqual(
      subscribed.users.map((p) => p.user),
      ["yan"],
    );
    assert.deepEqual(wes.client.subscriptions, ["yan"]);
    assert.equal(wes.client.presenceOf("yan").online, false);
  });
});

// --- browser hooks ------------------------------------------------------------------------

function browser() {
  const window = new EventTarget();
  const document = Object.assign(new EventTarget(), { visibilityState: "visible" });
  const fire = (on, name, fields = {}) => on.dispatchEvent(Object.assign(new Event(name), fields));
  return { window, document, fire };
}

async function pair(user, hooks, options = {}) {
  const page = makeClient(server.url, user, {
    browser: { target: hooks.window, document: hooks.document, awayAfterHidden: 100 },
    ...options,
  });
  const watcher = makeClient(server.url, `${user}-watcher`);
  await page.client.connect();
  await watcher.client.connect();
  await page.client.join(`room-${user}`);
  await watcher.client.join(`room-${user}`, { deviceEvents: true });
  await watcher.client.subscribe([user]);
  await page.events.next((e) => e.name === "connected"); // the cursor past the first session
  return { page, watcher, close: () => Promise.all([page.client.close(), watcher.client.close()]) };
}

test("offline drops at once; online reconnects at once, not after the backoff", async () => {
  const hooks = browser();
  // a backoff window of a minute, and the jitter at its top: only `online` can bring it back soon
  const { page, watcher, close } = await pair("olive", hooks, { backoff: { initial: 60_000, maximum: 60_000 }, random: () => 0.99 });
  try {
    hooks.fire(hooks.window, "offline");
    const dropped = await page.events.next((e) => e.name === "disconnected");
    assert.equal(dropped.willReconnect, true);
    assert.equal(page.client.state, "reconnecting");
    hooks.fire(hooks.window, "online");
    const back = await page.events.next((e) => e.name === "connected", 5000);
    assert.equal(back.welcome.resumed, true);
    assert.deepEqual(watcher.events.all("member.left"), []);
  } finally {
    await close();
  }
});

test("hidden for a while shows away; visible again shows online", async () => {
  const hooks = browser();
  const { page, watcher, close } = await pair("vera", hooks);
  try {
    hooks.document.visibilityState = "hidden";
    hooks.fire(hooks.document, "visibilitychange");
    await watcher.events.next((e) => e.name === "presence" && e.status === "away");
    await page.events.when(() => page.client.status === "away");
    hooks.document.visibilityState = "visible";
    hooks.fire(hooks.document, "visibilitychange");
    await watcher.events.next((e) => e.name === "presence" && e.status === "online");
    await page.events.when(() => page.client.status === "online");
  } finally {
    await close();
  }
});

test("pagehide into the back/forward cache suspends (grace); pageshow resumes unseen", async () => {
  const hooks = browser();
  const { page, watcher, close } = await pair("bea", hooks);
  try {
    hooks.fire(hooks.window, "pagehide", { persisted: true });
    await page.events.when(() => page.client.state === "suspended");
    await watcher.events.next((e) => e.name === "device.dropped" && e.user === "bea");
    hooks.fire(hooks.window, "pageshow", { persisted: true });
    const back = await page.events.next((e) => e.name === "connected");
    assert.equal(back.welcome.resumed, true);
    await watcher.events.next((e) => e.name === "device.back" && e.user === "bea");
    assert.deepEqual(watcher.events.all("member.left"), []);
  } finally {
    await close();
  }
});

test("pagehide for good logs out: the room sees the user leave at once", async () => {
  const hooks = browser();
  const { page, watcher, close } = await pair("liv", hooks);
  try {
    hooks.fire(hooks.window, "pagehide", { persisted: false });
    const left = await watcher.events.next((e) => e.name === "member.left" && e.user === "liv");
    assert.equal(left.reason, "left");
    await page.events.when(() => page.client.state === "closed");
  } finally {
    await close();
  }
});

test("a saved session resumes on a new client (a page reload): no leave, the missed messages come back", async () => {
  const hooks = browser();
  const { page, watcher, close } = await pair("rex", hooks, { browser: { target: hooks.window, document: hooks.document, leaveOnPageHide: false } });
  const newPage = { client: undefined };
  try {
    await page.client.send("room-rex", "before");
    await page.client.setStatus("busy");
    const saved = JSON.parse(JSON.stringify(page.client.saveSession())); // as sessionStorage keeps it
    assert.equal(saved.device, "rex-device");
    assert.deepEqual(saved.rooms.map((r) => r.room), ["room-rex"]);
    hooks.fire(hooks.window, "pagehide", { persisted: false }); // a reload: no logout
    await page.client.close(); // the old page's socket goes: the session waits in grace
    await watcher.events.next((e) => e.name === "device.dropped" && e.user === "rex");
    await watcher.client.send("room-rex", "while reloading");

    const next = makeClient(server.url, "rex", { session: saved, browser: false });
    newPage.client = next.client;
    const welcome = await next.client.connect();
    assert.equal(welcome.resumed, true);
    assert.equal(welcome.session, page.client.welcome.session);
    const recovered = await next.events.next((e) => e.name === "room.recovered" && e.room === "room-rex");
    assert.equal(recovered.recovered, true);
    assert.deepEqual(recovered.events.map((e) => e.body), ["while reloading"]);
    assert.deepEqual(next.client.rooms, ["room-rex"]);
    assert.equal(next.client.status, "busy");
    await watcher.events.next((e) => e.name === "device.back" && e.user === "rex");
    assert.deepEqual(watcher.events.all("member.left"), []);
    assert.equal(next.client.saveSession().resumeToken !== saved.resumeToken, true);
    const stranger = new PresencedClient({ url: server.url, user: "other", device: "rex-device", session: saved, browser: false });
    await assert.rejects(stranger.connect(), TypeError);
  } finally {
    await Promise.all([close(), newPage.client?.close()]);
  }
});
