// The hooks against one real presenced (insecure auth, admin API on): two providers with a
// client each, rendered without a DOM by react-test-renderer.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createElement, Fragment } from "react";

import { useClient, useConnectionState, usePresence, useStatus, useTyping, useWatch } from "../dist/index.js";
import {
  countCalls,
  countListeners,
  eventually,
  makeClient,
  Presenced,
  Probe,
  provide,
  reactErrors,
  render,
  settle,
  use,
} from "./support.mjs";

const users = (result) => result.members.map((m) => m.user).sort().join(",");

describe("@presenced/react", () => {
  let server;
  const mounted = [];
  const mount = (element) => {
    const renderer = render(element);
    mounted.push(renderer);
    return renderer;
  };

  before(async () => {
    server = await new Presenced({ admin: true }).start();
  });

  after(async () => {
    for (const renderer of mounted) {
      try {
        renderer.unmount();
      } catch {
        // already unmounted
      }
    }
    await settle();
    await server?.stop();
    assert.deepEqual(reactErrors, [], "React reported no error or warning");
  });

  test("two components see each other join and leave", async () => {
    const a = makeClient(server.url, "alice");
    const b = makeClient(server.url, "bob");
    const pa = new Probe("alice");
    const pb = new Probe("bob");
    const ra = mount(provide(a.client, use(() => usePresence("lobby"), pa)));
    await pa.when((r) => r.joined && users(r) === "alice", "alice alone in the lobby");
    assert.equal(pa.value.state, "connected");

    const rb = mount(provide(b.client, use(() => usePresence("lobby"), pb)));
    await pb.when((r) => users(r) === "alice,bob", "bob sees both");
    await pa.when((r) => users(r) === "alice,bob", "alice sees bob join");
    assert.equal(pa.value.count, 2);
    assert.ok(pa.value.synced);

    // bob's room component goes, his provider stays: he leaves the room, still connected
    rb.update(provide(b.client, null));
    await pa.when((r) => users(r) === "alice", "alice sees bob leave");
    await eventually(() => b.client.rooms.length === 0, "bob's client out of the room");
    assert.equal(b.client.state, "connected");

    rb.unmount();
    ra.unmount();
    await settle();
    assert.equal(a.client.state, "closed");
    assert.equal(b.client.state, "closed");
  });

  test("typing shows up and clears", async () => {
    const a = makeClient(server.url, "tina");
    const b = makeClient(server.url, "tom");
    const pa = new Probe("tina");
    const pb = new Probe("tom");
    const typing = () => ({ presence: usePresence("desk"), typing: useTyping("desk") });
    mount(provide(a.client, use(typing, pa)));
    mount(provide(b.client, use(typing, pb)));
    await pa.when((r) => users(r.presence) === "tina,tom", "both in the room");
    await pb.when((r) => users(r.presence) === "tina,tom", "both in the room");

    const before = pa.value.typing.users;
    pb.value.typing.start();
    await pa.when((r) => r.typing.users.join() === "tom", "tina sees tom typing");
    assert.deepEqual(pb.value.typing.users, [], "tom does not see himself typing");
    assert.notEqual(pa.value.typing.users, before);

    pb.value.typing.stop();
    await pa.when((r) => r.typing.users.length === 0, "tom stopped typing");
  });

  test("a kick from one room calls onForceLeave, and the room is not joined again", async () => {
    const a = makeClient(server.url, "ann");
    const b = makeClient(server.url, "mallory");
    const pa = new Probe("ann");
    const pb = new Probe("mallory");
    const leaves = [];
    const onForceLeave = (reason, leave) => leaves.push({ reason, leave });
    mount(provide(a.client, use(() => usePresence("civil"), pa)));
    mount(provide(b.client, use(() => usePresence("civil", { onForceLeave }), pb)));
    await pa.when((r) => users(r) === "ann,mallory", "both in the room");
    await pb.when((r) => r.joined);

    await server.api("POST", "/v1/rooms/civil/kick", { user: "mallory", message: "please keep it civil" });
    await pb.when((r) => r.forced !== undefined, "mallory told she was kicked");
    assert.deepEqual(leaves.map((l) => l.reason), ["kicked"]);
    assert.equal(leaves[0].leave.scope, "room");
    assert.equal(leaves[0].leave.message, "please keep it civil");
    assert.equal(pb.value.joined, false);
    assert.equal(pb.value.state, "connected", "a room kick leaves the connection up");
    await pa.when((r) => users(r) === "ann", "ann sees mallory go");
    await settle(200);
    assert.deepEqual(b.client.rooms, [], "not joined again by itself");
    assert.equal(leaves.length, 1);
  });

  test("a kick of the session calls onForceLeave in every room the user holds", async () => {
    const b = makeClient(server.url, "eve");
    const p1 = new Probe("eve 1");
    const p2 = new Probe("eve 2");
    const leaves = [];
    mount(
      provide(
        b.client,
        createElement(
          Fragment,
          null,
          use(() => usePresence("r1", { onForceLeave: (reason, l) => leaves.push([l.room, reason, l.scope]) }), p1),
          use(() => usePresence("r2", { onForceLeave: (reason, l) => leaves.push([l.room, reason, l.scope]) }), p2),
        ),
      ),
    );
    await p1.when((r) => r.joined);
    await p2.when((r) => r.joined);

    await server.api("POST", "/v1/users/eve/kick", { message: "bye" });
    await p1.when((r) => r.forced !== undefined && r.state === "closed", "eve kicked, the client stopped");
    await p2.when((r) => r.forced !== undefined);
    assert.deepEqual(leaves.sort(), [
      ["r1", "kicked", "session"],
      ["r2", "kicked", "session"],
    ]);
    assert.equal(p1.value.forced.message, "bye");
  });

  test("StrictMode neither joins twice nor leaks a subscription", async () => {
    const a = makeClient(server.url, "sam");
    const o = makeClient(server.url, "olga");
    const calls = countCalls(a.client, ["connect", "join", "leave", "close", "subscribe", "unsubscribe"]);
    const listeners = countListeners(a.client);
    const po = new Probe("olga");
    mount(provide(o.client, use(() => usePresence("strict"), po)));
    await po.when((r) => users(r) === "olga");

    const p1 = new Probe("sam 1");
    const p2 = new Probe("sam 2");
    const pw = new Probe("sam watch");
    const room = () =>
      createElement(
        Fragment,
        null,
        use(() => ({ presence: usePresence("strict", { onForceLeave() {} }), typing: useTyping("strict") }), p1),
        use(() => usePresence("strict"), p2), // a second holder of the same room
        use(() => ({ watch: useWatch(["olga"]), status: useStatus(), conn: useConnectionState() }), pw),
      );
    const r = mount(provide(a.client, room(), { strict: true }));
    await p1.when((v) => users(v.presence) === "olga,sam", "sam in the room");
    await p2.when((v) => users(v) === "olga,sam");
    await pw.when((v) => v.watch.get("olga")?.online === true, "olga watched");
    await po.when((v) => users(v) === "olga,sam");
    await settle(100);
    assert.deepEqual(
      { connect: calls.connect, join: calls.join, leave: calls.leave, close: calls.close, subscribe: calls.subscribe },
      { connect: 1, join: 1, leave: 0, close: 0, subscribe: 1 },
    );
    assert.equal(o.events.all("member.joined").filter((e) => e.user === "sam").length, 1);
    assert.equal(o.events.all("member.left").length, 0, "olga never saw sam leave");
    const sessions = await server.api("GET", "/v1/users/sam/sessions");
    assert.equal((sessions.sessions ?? sessions).length, 1, "one session");

    // the status and the watch are live too
    await pw.value.status.setStatus("dnd", "deep work");
    await pw.when((v) => v.status.status === "dnd" && v.status.text === "deep work");
    await o.client.setStatus("away");
    await pw.when((v) => v.watch.get("olga")?.status === "away", "olga's away seen");

    // the room goes (the provider stays): one leave, every hook's listener removed
    r.update(provide(a.client, null, { strict: true }));
    await po.when((v) => users(v) === "olga", "olga sees sam leave");
    await settle(100);
    assert.equal(calls.leave, 1);
    assert.equal(calls.unsubscribe, 1);
    assert.equal(o.events.all("member.left").length, 1);
    assert.equal(listeners.count, 0, "no listener left on the client");
    const { roomsOf } = await import("../dist/index.js");
    assert.deepEqual(roomsOf(a.client).held, { rooms: [], users: [], listening: false });

    r.unmount();
    await settle();
    assert.equal(calls.close, 1);
    assert.equal(a.client.state, "closed");
  });

  test("a provider with options owns one client, connected once, under StrictMode", async () => {
    const probe = new Probe("own");
    const Inner = () => ({ client: useClient(), presence: usePresence("own") });
    const tree = provide(undefined, use(Inner, probe), {
      strict: true,
      options: { url: server.url, user: "otto", device: "otto-1", logger: { debug() {}, warn() {} } },
      logoutOnUnmount: true,
    });
    const r = mount(tree);
    await probe.when((v) => v.presence.joined, "otto joined");
    const clients = new Set(probe.renders.map((v) => v.client));
    assert.equal(clients.size, 1, "one client over every render");
    const sessions = await server.api("GET", "/v1/users/otto/sessions");
    assert.equal((sessions.sessions ?? sessions).length, 1, "one session");

    r.unmount();
    await settle(300);
    const client = probe.value.client;
    assert.equal(client.state, "closed");
    const left = await server.api("GET", "/v1/users/otto/sessions");
    assert.equal((left.sessions ?? left).length, 0, "logged out on unmount: no session in grace");
  });

  test("a join the server refuses is an error, not retried", async () => {
    const a = makeClient(server.url, "rita");
    const probe = new Probe("rita");
    const calls = countCalls(a.client, ["join"]);
    mount(provide(a.client, use(() => usePresence(""), probe))); // an invalid room id
    await probe.when((v) => v.error !== undefined, "the join refused");
    assert.equal(probe.value.joined, false);
    assert.ok(probe.value.error.code, `a ClientError: ${probe.value.error}`);
    await settle(100);
    assert.equal(calls.join, 1);
  });
});
