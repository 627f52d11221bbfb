// The presence app on Socket.IO 4 (Node): a peer measured against presenced by bench/.
//
// The same app as ../socketio_py.py, event for event (the generator speaks one Socket.IO
// dialect to both):
//   connect with ?user=U&device=D in the URL (Engine.IO 4 over a WebSocket only);
//   "join" {room}     -> ack {room, members: [user...]}; others get "member.joined" {room, user}
//   "leave" {room}    -> ack {room}; others get "member.left" {room, user, reason: "left"}
//   "message" {room, body} -> ack {id}; other members get "message" {room, id, user, body, time}
//   "heartbeat"       -> ack {time}
//   disconnect        -> "member.left" {room, user, reason: "closed"} in each of its rooms.
// Broadcasts go through socket.to(room).emit(), which encodes once per broadcast.
// Liveness is Engine.IO's: ping every HEARTBEAT_INTERVAL s, disconnect when no pong comes
// within HEARTBEAT_TIMEOUT s. Compression off (the default), as on every server in the suite.
//
// Usage: node server.js PORT HEARTBEAT_INTERVAL HEARTBEAT_TIMEOUT   (seconds)
"use strict";

const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2]);
const interval = Number(process.argv[3]) * 1000;
const timeout = Number(process.argv[4]) * 1000;

const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  pingInterval: interval,
  pingTimeout: timeout,
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
});

const users = new Map(); // socket id -> user
let seq = 0;

io.on("connection", (socket) => {
  const user = String(socket.handshake.query.user || "anonymous");
  users.set(socket.id, user);

  socket.on("join", (data, ack) => {
    const room = data.room;
    if (!socket.rooms.has(room)) {
      socket.to(room).emit("member.joined", { room, user });
      socket.join(room);
    }
    const ids = io.sockets.adapter.rooms.get(room) || new Set();
    const members = [];
    for (const id of ids) members.push(users.get(id));
    if (typeof ack === "function") ack({ room, members });
  });

  socket.on("leave", (data, ack) => {
    const room = data.room;
    if (socket.rooms.has(room)) {
      socket.leave(room);
      socket.to(room).emit("member.left", { room, user, reason: "left" });
    }
    if (typeof ack === "function") ack({ room });
  });

  socket.on("message", (data, ack) => {
    const room = data.room;
    if (!socket.rooms.has(room)) {
      if (typeof ack === "function") ack({ error: "NOT_IN_ROOM" });
      return;
    }
    seq += 1;
    const id = String(seq);
    socket.to(room).emit("message", { room, id, user, body: data.body, time: Date.now() / 1000 });
    if (typeof ack === "function") ack({ id });
  });

  socket.on("heartbeat", (ack) => {
    if (typeof ack === "function") ack({ time: Date.now() / 1000 });
  });

  socket.on("disconnecting", () => {
    for (const room of socket.rooms) {
      if (room !== socket.id) socket.to(room).emit("member.left", { room, user, reason: "closed" });
    }
  });

  socket.on("disconnect", () => {
    users.delete(socket.id);
  });
});

httpServer.listen(port, "127.0.0.1", 1024, () => {
  console.log(`READY ${httpServer.address().port}`);
});

process.on("SIGTERM", () => process.exit(0));
