// The demo chat page of presenced (`presenced serve --demo`): plain JavaScript on the
// TypeScript client (clients/js, served as /client/index.js), no framework, no build step.
//
// What it shows: rooms with unread counts, each room's member list (status, devices, a
// device that dropped and is in grace), typing indicators, messages with edit, delete and
// delivered/seen receipts. A reload resumes the same session (the client's saveSession(),
// kept in sessionStorage), so the others see nothing; closing the tab leaves it to the
// server's grace period; "Leave" logs out at once.
//
// Everything the page shows of other users goes through textContent (h() below), never HTML.

import { ClientError, PresencedClient, newTempId } from "/client/index.js";

const STORE = "presenced-demo"; // sessionStorage: {user, device, rooms, active, session}
const $ = (id) => document.getElementById(id);

/** document.createElement with attributes, listeners (onclick...) and text or node children. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const text = (body) => (typeof body === "string" ? body : JSON.stringify(body));
const clock = (time) => new Date(time * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

let client = null;
let me = null;
let active = null; // the room on screen
const rooms = new Map(); // room -> RoomView

/** What the page knows of one room. */
function roomView(room) {
  let view = rooms.get(room);
  if (!view) {
    view = {
      items: [], // {kind: "message", id, tempId, offset, user, body, time, edited, pending} | {kind: "system", text}
      byId: new Map(),
      unread: 0,
      seenSent: 0, // the highest offset this user marked seen here
      delivered: new Map(), // reader -> offset
      seen: new Map(), // reader -> offset
      dropped: new Map(), // user -> Set of devices in grace
    };
    rooms.set(room, view);
  }
  return view;
}

function saveState(extra = {}) {
  const saved = JSON.parse(sessionStorage.getItem(STORE) || "null");
  if (!saved) return;
  sessionStorage.setItem(STORE, JSON.stringify({ ...saved, rooms: [...rooms.keys()], active, ...extra }));
}

// --- messages -------------------------------------------------------------------------------

function addMessage(room, m, { live = false } = {}) {
  const view = roomView(room);
  const known = view.byId.get(m.id) ?? (m.temp_id ? view.byId.get(m.temp_id) : undefined);
  if (known) {
    // our own message coming back in a recovery or a history, or a duplicate
    Object.assign(known, { id: m.id, offset: m.offset, body: m.body, pending: false });
    view.byId.set(m.id, known);
    return;
  }
  const item = { kind: "message", id: m.id, tempId: m.temp_id, offset: m.offset, user: m.user, body: m.body, time: m.time, edited: false };
  view.items.push(item);
  view.byId.set(m.id, item);
  if (live && m.user !== me && (room !== active || document.visibilityState !== "visible")) view.unread += 1;
}

function applyStreamEvent(room, event, options) {
  const view = roomView(room);
  if (event.type === "message") addMessage(room, event, options);
  else if (event.type === "message.edited") {
    const item = view.byId.get(event.id);
    if (item) Object.assign(item, { body: event.body, edited: true });
  } else if (event.type === "message.deleted") {
    const item = view.byId.get(event.id);
    if (item) view.items.splice(view.items.indexOf(item), 1);
    view.byId.delete(event.id);
  }
}

function system(room, line) {
  roomView(room).items.push({ kind: "system", text: line, time: Date.now() / 1000 });
  if (room === active) renderMessages();
}

async function loadRoom(room) {
  const [history, read] = await Promise.all([client.history(room, { limit: 100 }), client.readState(room)]);
  const view = roomView(room);
  for (const m of history.messages) addMessage(room, m);
  view.items.sort((a, b) => (a.offset ?? Infinity) - (b.offset ?? Infinity)); // system lines last
  view.unread = room === active ? 0 : read.unread;
  view.seenSent = Math.max(view.seenSent, read.last_read);
  render();
}

/** The user looks at the room: mark what is shown as seen. */
function markSeen() {
  if (!active || document.visibilityState !== "visible" || !client?.connected) return;
  const view = roomView(active);
  view.unread = 0;
  const last = Math.max(0, ...view.items.filter((i) => i.kind === "message" && i.offset).map((i) => i.offset));
  if (last > view.seenSent) {
    view.seenSent = last;
    client.seen(active, last).catch(() => {});
  }
  renderRooms();
}

// --- rendering ------------------------------------------------------------------------------

function render() {
  renderRooms();
  renderMessages();
  renderMembers();
  renderTyping();
}

function renderRooms() {
  $("rooms").replaceChildren(
    ...[...rooms.keys()].sort().map((room) => {
      const view = roomView(room);
      return h(
        "li",
        { class: room === active ? "active" : "", dataset: { room } },
        h("button", { type: "button", onclick: () => show(room) }, `# ${room}`),
        view.unread > 0 ? h("span", { class: "unread", "data-testid": "unread", title: "unread messages" }, view.unread > 99 ? "99+" : view.unread) : null,
        h("button", { type: "button", class: "quiet", title: `leave ${room}`, onclick: () => leaveRoom(room) }, "×"),
      );
    }),
  );
}

function receiptLine(view, item) {
  if (item.pending) return "sending…";
  const seenBy = [...view.seen].filter(([u, o]) => u !== me && o >= item.offset).map(([u]) => u);
  if (seenBy.length) return `seen by ${seenBy.sort().join(", ")}`;
  const got = [...view.delivered].some(([u, o]) => u !== me && o >= item.offset);
  return got ? "delivered" : "sent";
}

function renderMessages() {
  $("room-title").textContent = active ? `# ${active}` : "";
  if (!active) return $("messages").replaceChildren();
  const view = roomView(active);
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(
    ...view.items.map((item) => {
      if (item.kind === "system") return h("li", { class: "system" }, item.text);
      const mine = item.user === me;
      const body = h("span", { class: "body" }, text(item.body));
      const actions = mine && !item.pending
        ? h(
            "span",
            { class: "actions" },
            h("button", { type: "button", class: "quiet", onclick: () => startEdit(item, body) }, "edit"),
            h("button", { type: "button", class: "quiet", onclick: () => client.delete(active, item.id).then((d) => { applyStreamEvent(active, d); renderMessages(); }) }, "delete"),
          )
        : null;
      return h(
        "li",
        { class: mine ? "message mine" : "message", dataset: { id: item.id, user: item.user } },
        h("span", { class: "meta" }, h("b", {}, item.user), " ", h("time", {}, clock(item.time))),
        body,
        item.edited ? h("span", { class: "edited" }, " (edited)") : null,
        actions,
        mine ? h("span", { class: "receipt", "data-testid": "receipt" }, receiptLine(view, item)) : null,
      );
    }),
  );
  if (atBottom) list.scrollTop = list.scrollHeight;
  markSeen();
}

function startEdit(item, body) {
  const room = active;
  const input = h("input", { value: text(item.body), class: "edit", "data-testid": "edit" });
  input.addEventListener("keydown", async (event) => {
    if (event.key === "Escape") renderMessages();
    if (event.key !== "Enter" || !input.value.trim()) return;
    const edited = await client.edit(room, item.id, input.value.trim());
    applyStreamEvent(room, edited);
    renderMessages();
  });
  body.replaceWith(input);
  input.focus();
}

function renderMembers() {
  const list = active && client ? client.memberList(active) : undefined;
  const members = list ? [...list.members.values()].sort((a, b) => a.user.localeCompare(b.user)) : [];
  $("count").textContent = list ? `(${list.count})` : "";
  const view = active ? roomView(active) : null;
  $("members").replaceChildren(
    ...members.map((m) => {
      const dropped = view?.dropped.get(m.user)?.size ?? 0;
      const devices = `${m.devices} device${m.devices === 1 ? "" : "s"}`;
      return h(
        "li",
        { dataset: { user: m.user, status: m.status, dropped: dropped > 0 ? "yes" : "no" } },
        h("span", { class: `dot ${m.status}`, title: m.status }),
        h("b", {}, m.user, m.user === me ? " (you)" : ""),
        h("span", { class: "status" }, m.status, m.text ? `: ${m.text}` : ""),
        h("span", { class: "devices" }, devices),
        dropped > 0 ? h("span", { class: "dropped", "data-testid": "dropped" }, "connection lost, waiting…") : null,
      );
    }),
  );
}

function renderTyping() {
  const users = active && client ? client.typingUsers(active) : [];
  $("typing").textContent = users.length === 0 ? "" : `${users.join(", ")} ${users.length === 1 ? "is" : "are"} typing…`;
}

function show(room) {
  active = room;
  saveState();
  render();
}

// --- the session ----------------------------------------------------------------------------

function listen(c) {
  c.on("state", ({ state }) => {
    const label = { connected: "connected", connecting: "connecting…", reconnecting: "reconnecting…", suspended: "paused", closed: "disconnected", idle: "not connected" }[state];
    Object.assign($("connection"), { textContent: label });
    $("connection").dataset.state = state;
  });
  c.on("message", (m) => {
    applyStreamEvent(m.room, m, { live: true });
    if (m.room === active) renderMessages();
    else renderRooms();
  });
  for (const type of ["message.edited", "message.deleted"]) {
    c.on(type, (e) => {
      applyStreamEvent(e.room, e);
      if (e.room === active) renderMessages();
    });
  }
  c.on("room.recovered", (r) => {
    for (const event of r.events ?? []) applyStreamEvent(r.room, event, { live: true });
    if (r.room === active) renderMessages();
    else renderRooms();
  });
  c.on("recovery_failed", ({ room }) => loadRoom(room).catch(() => {}));
  c.on("receipt", (r) => {
    const positions = roomView(r.room)[r.kind === "seen" ? "seen" : "delivered"];
    positions.set(r.user, Math.max(positions.get(r.user) ?? 0, r.offset));
    if (r.kind === "seen") roomView(r.room).delivered.set(r.user, Math.max(roomView(r.room).delivered.get(r.user) ?? 0, r.offset));
    if (r.room === active) renderMessages();
  });
  c.on("typing", ({ room }) => room === active && renderTyping());
  c.on("members_changed", ({ room }) => room === active && renderMembers());
  c.on("member.joined", (e) => system(e.room, `${e.user} joined`));
  c.on("member.left", (e) => {
    roomView(e.room).dropped.delete(e.user);
    system(e.room, `${e.user} left (${e.reason})`);
  });
  c.on("device.dropped", (e) => {
    const view = roomView(e.room);
    if (!view.dropped.has(e.user)) view.dropped.set(e.user, new Set());
    view.dropped.get(e.user).add(e.device);
    system(e.room, `${e.user}'s connection dropped (${e.device}); waiting up to ${e.grace}s`);
    if (e.room === active) renderMembers();
  });
  const deviceDone = (what) => (e) => {
    roomView(e.room).dropped.get(e.user)?.delete(e.device);
    system(e.room, `${e.user} ${what} (${e.device})`);
    if (e.room === active) renderMembers();
  };
  c.on("device.back", deviceDone("is back"));
  c.on("device.gone", deviceDone("lost a device"));
  for (const type of ["room.removed", "room.deleted"]) {
    c.on(type, (e) => {
      rooms.delete(e.room);
      if (active === e.room) active = [...rooms.keys()][0] ?? null;
      notice(type === "room.deleted" ? `Room ${e.room} was deleted.` : `You were removed from ${e.room}.`);
      saveState();
      render();
    });
  }
  c.on("forced_leave", (e) => {
    notice(`You were signed out: ${e.reason}${e.message ? ` (${e.message})` : ""}.`);
    end();
  });
}

function notice(line) {
  Object.assign($("notice"), { textContent: line, hidden: false });
}

async function start(user, wanted, saved) {
  me = user;
  const device = saved?.device ?? `tab-${Math.random().toString(36).slice(2, 10)}`;
  sessionStorage.setItem(STORE, JSON.stringify({ user, device, rooms: wanted, active: saved?.active ?? wanted[0] }));
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const session = saved?.session?.device === device && saved.session.user === user ? saved.session : undefined;
  client = new PresencedClient({
    url,
    user,
    device,
    deviceInfo: { app: "presenced demo", agent: navigator.userAgent.slice(0, 200) },
    session,
    // a reload must not look like a leave: the next page resumes the saved session
    browser: { leaveOnPageHide: false, awayAfterHidden: 60_000 },
  });
  listen(client);
  $("me").textContent = user;
  $("login").hidden = true;
  $("chat").hidden = false;
  $("leave").hidden = false;
  await client.connect();
  $("me").dataset.session = client.session;
  client.on("connected", () => ($("me").dataset.session = client.session));
  for (const room of client.rooms) roomView(room);
  for (const room of wanted) {
    if (!client.rooms.includes(room)) await client.join(room, { deviceEvents: true });
    roomView(room);
  }
  active = saved?.active && rooms.has(saved.active) ? saved.active : wanted[0] ?? [...rooms.keys()][0] ?? null;
  $("status").value = client.status ?? "online";
  saveState();
  render();
  await Promise.all([...rooms.keys()].map((room) => loadRoom(room)));
}

function end() {
  sessionStorage.removeItem(STORE);
  client = null;
  rooms.clear();
  active = null;
  $("chat").hidden = true;
  $("leave").hidden = true;
  $("login").hidden = false;
  $("me").textContent = "";
}

async function leaveRoom(room) {
  await client.leave(room);
  rooms.delete(room);
  if (active === room) active = [...rooms.keys()][0] ?? null;
  saveState();
  render();
}

// --- the page's controls --------------------------------------------------------------------

const roomList = (value) => [...new Set(value.split(/[\s,]+/).filter(Boolean))];

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const wanted = roomList(String(form.get("rooms") || "lobby"));
  $("notice").hidden = true;
  start(String(form.get("user")).trim(), wanted.length ? wanted : ["lobby"]).catch((error) => {
    $("login-error").textContent = error instanceof ClientError ? `${error.code}: ${error.message}` : String(error);
    end();
  });
});

$("join-room").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = event.target.elements.room;
  const room = input.value.trim();
  if (!room) return;
  try {
    await client.join(room, { deviceEvents: true });
    input.value = "";
    roomView(room);
    show(room);
    await loadRoom(room);
  } catch (error) {
    notice(String(error.message ?? error));
  }
});

$("compose").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = event.target.elements.body;
  const body = input.value.trim();
  if (!body || !active) return;
  input.value = "";
  const room = active;
  const tempId = newTempId();
  const item = { kind: "message", id: tempId, tempId, offset: undefined, user: me, body, time: Date.now() / 1000, edited: false, pending: true };
  const view = roomView(room);
  view.items.push(item);
  view.byId.set(tempId, item);
  renderMessages();
  try {
    const ack = await client.send(room, body, { tempId });
    Object.assign(item, { id: ack.id, offset: ack.offset, pending: false });
    view.byId.set(ack.id, item);
    view.seenSent = Math.max(view.seenSent, ack.offset); // sending marks it seen
  } catch (error) {
    item.pending = false;
    item.body = `${body} (not sent: ${error.message ?? error})`;
  }
  if (room === active) renderMessages();
});

$("compose").elements.body.addEventListener("input", () => active && client?.typing(active));

$("status").addEventListener("change", (event) => client?.setStatus(event.target.value).catch((e) => notice(e.message)));

$("leave").addEventListener("click", async () => {
  const c = client;
  end();
  await c?.logout();
});

document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && markSeen());

// A reload (or the tab being closed): keep the session where the next page of this tab finds it.
window.addEventListener("pagehide", () => {
  const session = client?.saveSession();
  if (session) saveState({ session });
});

const saved = JSON.parse(sessionStorage.getItem(STORE) || "null");
if (saved?.user) {
  start(saved.user, saved.rooms?.length ? saved.rooms : ["lobby"], saved).catch((error) => {
    notice(String(error.message ?? error));
    end();
  });
}
