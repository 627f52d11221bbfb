// The presence app on bare `ws` (Node): the lightest peer measured against presenced by bench/.
//
// The same subset of presenced's JSON protocol as ../ws_bare.py, message for message (the
// generator speaks the presenced dialect to both), with nothing else: no sessions, grace,
// history, offsets, rate limits or validation beyond a membership check.
//   /ws?user=U&device=D   -> "welcome" at once
//   room.join {room}      -> room.joined {room, members: [{user}...]}; others get member.joined
//   room.leave {room}     -> room.left; others get member.left {reason: "left"}
//   message.send {room, body} -> message.ack {room, id}; other members get message {...}
//   heartbeat             -> heartbeat.ack {time}
//   a closed connection   -> member.left {reason: "closed"} in each of its rooms at once.
// Broadcasts encode once. Liveness is the classic ws pattern: a ping to every socket every
// HEARTBEAT_INTERVAL s, and a socket that has not answered the previous one is terminated
// (HEARTBEAT_TIMEOUT is not used). Compression off, as on every server in the suite.
//
// Usage: node ws_server.js PORT HEARTBEAT_INTERVAL HEARTBEAT_TIMEOUT   (seconds)
"use strict";

const http = require("http");
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2]);
const interval = Number(process.argv[3]) * 1000;
void Number(process.argv[4]); // HEARTBEAT_TIMEOUT: see above

const rooms = new Map(); // room -> Map(ws -> user)
let seq = 0;

function broadcast(members, text, except) {
  const data = Buffer.from(text); // encoded once, framed per recipient by ws
  for (const ws of members.keys()) if (ws !== except) ws.send(data, { binary: false });
}

function leave(ws, user, room, reason) {
  const members = rooms.get(room);
  if (!members || !members.has(ws)) return;
  members.delete(ws);
  if (members.size === 0) {
    rooms.delete(room);
    return;
  }
  broadcast(members, JSON.stringify({ type: "member.left", room, user, reason }));
}

const httpServer = http.createServer();
const wss = new WebSocketServer({ server: httpServer, perMessageDeflate: false });

wss.on("connection", (ws, req) => {
  const url = new URL(req.url, "http://localhost");
  const user = url.searchParams.get("user") || "anonymous";
  const joined = new Set();
  ws.isAlive = true;
  ws.on("pong", () => {
    ws.isAlive = true;
  });
  ws.send(JSON.stringify({ type: "welcome", user }));
  ws.on("message", (data) => {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      ws.send('{"type":"error","code":"BAD_JSON"}');
      return;
    }
    const room = String(msg.room ?? "");
    if (msg.type === "message.send") {
      const members = rooms.get(room);
      if (!members || !members.has(ws)) {
        ws.send('{"type":"error","code":"NOT_IN_ROOM"}');
        return;
      }
      seq += 1;
      const id = String(seq);
      const event = { type: "message", room, id, user, body: msg.body, time: Date.now() / 1000 };
      broadcast(members, JSON.stringify(event), ws);
      ws.send(JSON.stringify({ type: "message.ack", room, id }));
    } else if (msg.type === "heartbeat") {
      ws.send(JSON.stringify({ type: "heartbeat.ack", time: Date.now() / 1000 }));
    } else if (msg.type === "room.join") {
      let members = rooms.get(room);
      if (!members) rooms.set(room, (members = new Map()));
      if (!members.has(ws)) {
        broadcast(members, JSON.stringify({ type: "member.joined", room, user }));
        members.set(ws, user);
        joined.add(room);
      }
      const listing = [];
      for (const u of members.values()) listing.push({ user: u });
      ws.send(JSON.stringify({ type: "room.joined", room, members: listing }));
    } else if (msg.type === "room.leave") {
      leave(ws, user, room, "left");
      joined.delete(room);
      ws.send(JSON.stringify({ type: "room.left", room }));
    } else {
      ws.send('{"type":"error","code":"UNKNOWN_TYPE"}');
    }
  });
  ws.on("close", () => {
    for (const room of joined) leave(ws, user, room, "closed");
  });
});

// One timer for every socket, as the ws README's "detect broken connections" does: a socket
// that has not answered the previous round's ping is terminated. (A pong's deadline is thus
// the interval, not HEARTBEAT_TIMEOUT: the pattern every ws deployment copies.)
setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.isAlive) {
      ws.terminate();
      continue;
    }
    ws.isAlive = false;
    ws.ping();
  }
}, interval);

httpServer.listen(port, "127.0.0.1");
