// Two presenced nodes sharing one Valkey: a client on each sees the other join, its messages,
// its status, and a drop and resume on one node that the other never sees as a leave.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { isMessage, makeClient, Presenced, Proxy, Valkey } from "./support.mjs";

let valkey;
let nodes = [];
let proxy;

before(async () => {
  valkey = await new Valkey().start();
  const args = (id) => ["--redis", valkey.url, "--node-id", id, "--grace", "10", "--redis-prefix", "pdjs"];
  nodes = await Promise.all([new Presenced({ args: args("js-a") }).start(), new Presenced({ args: args("js-b") }).start()]);
  proxy = await new Proxy(nodes[0].port).start();
});

after(async () => {
  await proxy?.stop();
  await Promise.all(nodes.map((n) => n.stop()));
  await valkey?.stop();
});

test("a client on each node sees the other: members, messages, status, a resume without a leave", async () => {
  const alice = makeClient(proxy.url, "alice"); // node js-a, through the proxy
  const bob = makeClient(nodes[1].url, "bob"); // node js-b
  try {
    assert.equal((await alice.client.connect()).node, "js-a");
    assert.equal((await bob.client.connect()).node, "js-b");
    await alice.client.join("shared");
    await bob.client.join("shared", { deviceEvents: true });
    await alice.events.next((e) => e.name === "member.joined" && e.user === "bob");
    assert.deepEqual([...alice.client.memberList("shared").members.keys()].sort(), ["alice", "bob"]);
    assert.deepEqual([...bob.client.memberList("shared").members.keys()].sort(), ["alice", "bob"]);
    await bob.client.subscribe(["alice"]);

    const ack = await alice.client.send("shared", "from a");
    const got = await bob.events.next(isMessage("from a"));
    assert.deepEqual([got.id, got.offset], [ack.id, ack.offset]);
    await bob.client.send("shared", "from b");
    await alice.events.next(isMessage("from b"));

    await alice.client.setStatus("dnd");
    // member.updated (the room) and presence (the watch) travel apart: in either order
    await bob.events.when(
      () =>
        bob.client.memberList("shared").members.get("alice").status === "dnd" &&
        bob.client.presenceOf("alice")?.status === "dnd",
    );

    // alice's connection dies; bob writes meanwhile; alice resumes on her node, nothing lost
    proxy.stall();
    await bob.client.send("shared", "while a was away");
    proxy.drop();
    const back = await alice.events.next((e) => e.name === "connected");
    assert.equal(back.welcome.resumed, true);
    const recovery = await alice.events.next((e) => e.name === "room.recovered");
    assert.deepEqual(
      (recovery.events ?? []).map((e) => e.body),
      ["while a was away"],
    );
    await bob.events.when(() => bob.events.all("device.back").length === 1);
    assert.deepEqual(bob.events.all("member.left"), []);
    assert.equal(bob.events.all("presence").filter((p) => !p.online).length, 0);
  } finally {
    await alice.client.close();
    await bob.client.close();
  }
});
