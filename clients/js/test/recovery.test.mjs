// Drops, stalls and restarts against a real presenced: the client resumes within grace with
// nothing missed and nothing seen by others, sends every message exactly once, notices a
// half-open connection by its heartbeats, and after a restart beyond grace opens a new session
// and tells the app to reload what it cannot recover.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { isMessage, jwt, makeClient, Presenced, Proxy, quiet, Recorder } from "./support.mjs";
import { PresencedClient } from "../dist/index.js";

const stream = (events) =>
  events.flatMap((e) => {
    if (e.name === "room.recovered") return (e.events ?? []).map((x) => [x.type, x.offset, x.body ?? x.id]);
    if (["message", "message.edited", "message.deleted"].includes(e.name)) return [[e.name, e.offset, e.body ?? e.id]];
    return [];
  });

let server; // grace 10 s, behind `proxy`; also what replaces `first` in the restart test
let proxy;
let first; // the restart test's server, stopped there
let restartProxy;
let jwtServer; // JWT mode, for token expiry and refresh
const SECRET = "clients-js-test-secret-0123456789";

before(async () => {
  // Started at once: each takes a couple of seconds to start.
  [server, first, jwtServer] = await Promise.all([
    new Presenced({ args: ["--grace", "10"] }).start(),
    new Presenced({ args: ["--grace", "10"] }).start(),
    new Presenced({ admin: true, args: ["--auth-mode", "jwt", "--jwt-secret", SECRET, "--grace", "10"] }).start(),
  ]);
  proxy = await new Proxy(server.port).start();
  restartProxy = await new Proxy(first.port).start();
});

after(async () => {
  await Promise.all([proxy.stop(), restartProxy.stop()]);
  await Promise.all([server.stop(), first.stop(), jwtServer.stop()]);
});

describe("within grace", () => {
  const open = [];
  const client = async (user, viaProxy, options = {}) => {
    const made = makeClient(viaProxy ? proxy.url : server.url, user, options);
    open.push(made.client);
    await made.client.connect();
    return made;
  };

  after(() => Promise.all(open.map((c) => c.close())));

  test("a dropped connection resumes: every missed event once, in order; others see no leave", async () => {
    const alice = await client("alice", true);
    const bob = await client("bob", false);
    await alice.client.join("r1");
    await bob.client.join("r1", { deviceEvents: true });
    await bob.client.send("r1", "m1");
    await alice.events.next(isMessage("m1"));

    // The network goes silent: what bob does now reaches alice's socket and dies there.
    proxy.stall();
    const acks = [];
    for (const n of [2, 3, 4]) acks.push(await bob.client.send("r1", `m${n}`));
    await bob.client.edit("r1", acks[0].id, "m2 edited"); // offset 5
    await bob.client.delete("r1", acks[1].id); // offset 6
    proxy.drop();

    const after = await alice.events.until((e) => e.name === "room.recovered");
    const names = after.map((e) => e.name).filter((n) => !["state", "members_changed", "members_resynced"].includes(n));
    assert.deepEqual(names, ["disconnected", "connected", "room.recovered"]);
    const [dropped, back, recovery] = after.filter((e) => names.includes(e.name) && e.name !== "state").map((e) => e.event);
    assert.equal(dropped.code, 1006);
    assert.equal(dropped.willReconnect, true);
    assert.equal(back.welcome.resumed, true);
    assert.equal(back.welcome.session, alice.client.session);
    assert.deepEqual(back.welcome.rooms, ["r1"]);
    assert.deepEqual([recovery.recovered, recovery.offset], [true, 6]);

    await bob.client.send("r1", "m7");
    const tail = await alice.events.until(isMessage("m7"));
    assert.deepEqual(stream([...after, ...tail]), [
      ["message", 2, "m2"],
      ["message", 3, "m3"],
      ["message", 4, "m4"],
      ["message.edited", 5, "m2 edited"],
      ["message.deleted", 6, acks[1].id],
      ["message", 7, "m7"],
    ]);
    assert.deepEqual(alice.client.position("r1"), { epoch: acks[0].epoch, offset: 7 });

    // bob saw the device drop and come back, and never alice leave or join again
    await bob.events.when(() => bob.events.all("device.back").length === 1);
    assert.equal(bob.events.all("device.dropped").length, 1);
    assert.deepEqual(
      bob.events.events.filter((e) => (e.name === "member.left" || e.name === "member.joined") && e.user === "alice"),
      [],
    );
    // alice's member list was re-snapshotted after the resume and still holds both
    await alice.events.when(() => alice.client.memberList("r1")?.synced === true);
    assert.deepEqual([...alice.client.memberList("r1").members.keys()].sort(), ["alice", "bob"]);
  });

  test("a message whose ack was lost is stored once and acknowledged once", async () => {
    const amy = await client("amy", true);
    const ben = await client("ben", false);
    await amy.client.join("r2");
    await ben.client.join("r2");

    proxy.stall(); // the ack will die in the stalled connection
    const sending = amy.client.send("r2", "exactly once", { tempId: "t-1" });
    const stored = await ben.events.next(isMessage("exactly once"));
    assert.deepEqual(amy.client.unconfirmed, ["t-1"]);
    proxy.drop();

    const ack = await sending;
    assert.deepEqual([ack.temp_id, ack.id, ack.offset, ack.duplicate], ["t-1", stored.id, stored.offset, true]);
    assert.deepEqual(amy.client.unconfirmed, []);
    await amy.client.send("r2", "marker");
    const seen = await ben.events.until(isMessage("marker"));
    assert.deepEqual(stream(seen), [["message", 2, "marker"]]); // no second "exactly once"
    const history = await ben.client.history("r2");
    assert.deepEqual(
      history.messages.map((m) => m.body),
      ["exactly once", "marker"],
    );
  });

  test("a send while disconnected waits in the outbox and goes out once on the resumed session", async () => {
    const cat = await client("cat", true);
    const dan = await client("dan", false);
    await cat.client.join("r3");
    await dan.client.join("r3");
    proxy.drop();
    await cat.events.next((e) => e.name === "disconnected");
    const ack = await cat.client.send("r3", "while away");
    assert.equal(ack.duplicate, false);
    assert.equal(cat.client.welcome.resumed, true);
    await cat.client.send("r3", "marker");
    const seen = await dan.events.until(isMessage("marker"));
    assert.deepEqual(stream(seen), [
      ["message", 1, "while away"],
      ["message", 2, "marker"],
    ]);
  });

  test("a half-open connection is noticed by the heartbeats and the session resumed", async () => {
    const eve = await client("eve", true, { heartbeatInterval: 150, heartbeatTimeout: 300 });
    const fay = await client("fay", false);
    await eve.client.join("r4");
    await fay.client.join("r4");
    const session = eve.client.session;
    proxy.stall(); // no close, no error: only the missing heartbeat acks tell
    await fay.client.send("r4", "unseen");
    const dropped = await eve.events.next((e) => e.name === "disconnected");
    assert.equal(dropped.willReconnect, true);
    const back = await eve.events.next((e) => e.name === "connected");
    assert.equal(back.welcome.resumed, true);
    assert.equal(eve.client.session, session);
    const recovery = await eve.events.next((e) => e.name === "room.recovered");
    assert.deepEqual(stream([{ name: "room.recovered", ...recovery }]), [["message", 1, "unseen"]]);
    assert.deepEqual(
      fay.events.events.filter((e) => e.name === "member.left"),
      [],
    );
  });
});

describe("beyond grace", () => {
  test("a server restart: a new session, rooms re-joined, recovered false and a reload asked for", async () => {
    // One address (the proxy); behind it the server stops and another, without their state,
    // takes over.
    const alice = makeClient(restartProxy.url, "ada");
    const bob = makeClient(restartProxy.url, "bo");
    try {
      await alice.client.connect();
      await bob.client.connect();
      await alice.client.join("room", { meta: { seat: 3 } });
      await bob.client.join("room");
      await alice.client.subscribe(["bo"]);
      await alice.client.setStatus("busy", "restarting");
      const old = await bob.client.send("room", "before the restart");
      await alice.events.next(isMessage("before the restart"));
      const oldSession = alice.client.session;

      restartProxy.retarget(0); // nothing listens there: reconnects fail until the new server is in
      await first.stop(); // SIGTERM: clients get 1012 and come back at once
      const dropped = await alice.events.next((e) => e.name === "disconnected");
      assert.deepEqual([dropped.code, dropped.willReconnect], [1012, true]);
      await alice.events.next((e) => e.name === "state" && e.state === "reconnecting");
      restartProxy.retarget(server.port); // a server that never saw ada, bo or their room

      const seen = await alice.events.until((e) => e.name === "recovery_failed");
      const names = seen.map((e) => e.name).filter((n) => ["connected", "room.recovered", "recovery_failed"].includes(n));
      assert.deepEqual(names.slice(-3), ["connected", "room.recovered", "recovery_failed"]);
      const back = seen.find((e) => e.name === "connected").event;
      assert.equal(back.welcome.resumed, false);
      assert.ok(back.welcome.resume_error);
      assert.notEqual(alice.client.session, oldSession);
      const recovery = seen.find((e) => e.name === "room.recovered").event;
      assert.equal(recovery.recovered, false);
      assert.notEqual(recovery.epoch, old.epoch);
      const reload = seen.find((e) => e.name === "recovery_failed").event;
      assert.deepEqual(reload, { type: "recovery_failed", room: "room", epoch: recovery.epoch, offset: 0 });

      // The fresh session has what the old one had: the room (with its meta), the watch, the status.
      assert.deepEqual(alice.client.rooms, ["room"]);
      const members = await bob.client.members("room");
      const ada = members.members.find((m) => m.user === "ada");
      assert.deepEqual([ada.meta.seat, ada.status, ada.text], [3, "busy", "restarting"]);
      assert.deepEqual(alice.client.subscriptions, ["bo"]);

      // The app reloads the room: the new stream, in the new epoch.
      const history = await alice.client.history("room");
      assert.deepEqual([history.epoch, history.messages], [recovery.epoch, []]);
      const ack = await bob.client.send("room", "after the restart");
      assert.deepEqual([ack.epoch, ack.offset], [recovery.epoch, 1]);
      const got = await alice.events.next(isMessage("after the restart"));
      assert.equal(got.epoch, recovery.epoch);
      assert.deepEqual(alice.client.position("room"), { epoch: recovery.epoch, offset: 1 });
    } finally {
      await alice.client.close();
      await bob.client.close();
    }
  });
});

describe("token lifetime", () => {
  /** A client whose token function gives tokens of `lifetimes[n]` seconds, then of an hour. */
  function tokenClient(user, lifetimes, options = {}, claims = () => ({})) {
    let calls = 0;
    const client = new PresencedClient({
      url: jwtServer.url,
      device: `${user}-d`,
      token: () => jwt(SECRET, user, lifetimes[calls] ?? 3600, claims(calls++)),
      backoff: { initial: 50, maximum: 400 },
      logger: quiet,
      ...options,
    });
    return { client, events: new Recorder(client), calls: () => calls };
  }

  test("refresh() moves the session onto a fresh token", async () => {
    const { client, events } = tokenClient("rita", [60], { autoRefresh: false });
    try {
      const welcome = await client.connect();
      const refreshed = await client.refresh();
      assert.ok(refreshed.expires_at > welcome.expires_at + 1000);
      const event = await events.next((e) => e.name === "token_refreshed");
      assert.equal(event.expiresAt, refreshed.expires_at);
      await assert.rejects(client.refresh("not-a-jwt"), (e) => e.code === "AUTH_FAILED" && e.field === "token");
      assert.equal(client.state, "connected"); // a refused refresh is not fatal
    } finally {
      await client.close();
    }
  });

  test("a token that runs out: close 4011, back at once with a fresh token, resumed unseen", async () => {
    const watcher = tokenClient("walt", []);
    const { client, events } = tokenClient("tina", [2], { autoRefresh: false });
    try {
      await watcher.client.connect();
      await watcher.client.join("t");
      const welcome = await client.connect();
      assert.ok(welcome.expires_at > 0);
      await client.join("t");
      const dropped = await events.next((e) => e.name === "disconnected", 5000);
      assert.deepEqual([dropped.code, dropped.willReconnect], [4011, true]);
      const back = await events.next((e) => e.name === "connected");
      assert.equal(back.welcome.resumed, true);
      assert.ok(back.welcome.expires_at > welcome.expires_at + 1000);
      assert.deepEqual(watcher.events.all("member.left"), []);
    } finally {
      await Promise.all([client.close(), watcher.client.close()]);
    }
  });

  test("with a token function the client refreshes by itself before the expiry", async () => {
    const { client, events } = tokenClient("rhea", [2]);
    try {
      const welcome = await client.connect();
      const refreshed = await events.next((e) => e.name === "token_refreshed", 5000);
      assert.ok(Date.now() / 1000 < welcome.expires_at, "refreshed before the first token ran out");
      assert.ok(refreshed.expiresAt > welcome.expires_at + 1000);
      assert.deepEqual(events.all("disconnected"), []);
    } finally {
      await client.close();
    }
  });

  test("a new session whose token may not watch someone re-subscribes the others", async () => {
    // the first token watches anyone; the next ones only ok-*
    const { client, events } = tokenClient("vic", [], {}, (n) => (n === 0 ? {} : { watch: ["ok-*"] }));
    try {
      await client.connect();
      await client.subscribe(["ok-1", "no-1", "ok-2"]);
      await jwtServer.api("POST", "/v1/users/vic/disconnect", {}); // 4010: a new session
      await events.next((e) => e.name === "disconnected" && e.code === 4010);
      const back = await events.next((e) => e.name === "connected");
      assert.equal(back.welcome.resumed, false);
      assert.deepEqual(client.subscriptions.sort(), ["ok-1", "ok-2"]);
      await assert.rejects(client.subscribe(["no-2"]), (e) => e.code === "WATCH_FORBIDDEN" && e.field === "users[0]");
    } finally {
      await client.close();
    }
  });
});
