// The live dashboard of presenced, on the admin port (/dashboard/): plain JavaScript on the
// admin HTTP API (docs/api.md), no framework, no build step.
//
// It asks for an API key when the port needs one (kept in sessionStorage: this tab only) and
// sends it as a bearer token with every call, to this origin only. It polls (every second,
// `?poll=MS` to change): the stats, the nodes, the rooms, and the members of the listed rooms
// (at most MAX_WATCHED); the live event log is what changed between two polls (a member
// joined, left or changed status, a room appeared or emptied, a node's health changed). The
// admin actions are the API's: kick a user, take one out of a room, delete a room, publish.
//
// Everything the API returns is shown through textContent (h() below), never as HTML.

const KEY = "presenced-dashboard-key";
const POLL_MS = Math.max(200, Number(new URLSearchParams(location.search).get("poll")) || 1000);
const MAX_WATCHED = 20; // rooms whose members are polled for the event log
const $ = (id) => document.getElementById(id);

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

const ago = (time) => (time ? `${Math.max(0, Math.round(Date.now() / 1000 - time))}s ago` : "");
const clock = (time) => new Date(time * 1000).toLocaleTimeString();

class Unauthorized extends Error {}

/** One API call: JSON in and out, the key as a bearer token; errors carry the API's message. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  const data = await response.json().catch(() => null);
  if (response.status === 401) throw new Unauthorized(data?.error?.message ?? "unauthorized");
  if (!response.ok) throw new Error(data?.error?.message ?? `${method} ${path}: HTTP ${response.status}`);
  return data;
}
const enc = encodeURIComponent;

// --- state ----------------------------------------------------------------------------------

let selected = null; // the room shown
let lookedUp = null; // the user shown
let previous = null; // the last poll: {rooms: Map, members: Map room -> Map user -> member, nodes: Map}
let timer = null;
let polling = false;

function log(kind, line) {
  const list = $("log");
  list.prepend(h("li", { dataset: { kind } }, h("time", {}, new Date().toLocaleTimeString()), " ", line));
  while (list.children.length > 200) list.lastChild.remove();
}

function notice(line, isError = false) {
  Object.assign($("notice"), { textContent: line, hidden: false, className: isError ? "notice error" : "notice" });
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => ($("notice").hidden = true), 4000);
}

// --- polling --------------------------------------------------------------------------------

async function allRooms() {
  const rooms = [];
  let cursor = null;
  do {
    const page = await api("GET", `/v1/rooms?limit=1000${cursor ? `&cursor=${enc(cursor)}` : ""}`);
    rooms.push(...page.rooms);
    cursor = page.next_cursor;
  } while (cursor && rooms.length < 5000);
  return rooms;
}

async function membersOf(room) {
  try {
    return (await api("GET", `/v1/rooms/${enc(room)}/members?limit=1000`)).members;
  } catch {
    return []; // emptied between the two calls
  }
}

async function poll() {
  if (polling) return;
  polling = true;
  try {
    const [stats, nodes, rooms] = await Promise.all([api("GET", "/v1/stats"), api("GET", "/v1/nodes"), allRooms()]);
    const watched = rooms.slice(0, MAX_WATCHED).map((r) => r.room);
    if (selected && !watched.includes(selected)) watched.push(selected);
    const lists = await Promise.all(watched.map(membersOf));
    const now = {
      rooms: new Map(rooms.map((r) => [r.room, r])),
      members: new Map(watched.map((room, i) => [room, new Map(lists[i].map((m) => [m.user, m]))])),
      nodes: new Map(nodes.nodes.map((n) => [n.node, n])),
    };
    if (previous) diff(previous, now);
    previous = now;
    renderStats(stats);
    renderNodes(nodes.nodes);
    renderRooms(rooms);
    renderRoom(now);
    if (lookedUp) await renderUser(lookedUp);
    setLive(true);
  } catch (error) {
    if (error instanceof Unauthorized) return signOut(error.message);
    setLive(false, String(error.message ?? error));
  } finally {
    polling = false;
  }
}

function diff(before, after) {
  for (const [room, info] of after.rooms) {
    if (!before.rooms.has(room)) log("room", `room ${room} occupied (${info.members} members)`);
  }
  for (const room of before.rooms.keys()) {
    if (!after.rooms.has(room)) log("room", `room ${room} vacated`);
  }
  for (const [room, members] of after.members) {
    const old = before.members.get(room);
    if (!old) continue; // not watched before: nothing to compare with
    for (const [user, m] of members) {
      const was = old.get(user);
      if (!was) log("join", `${user} joined ${room}`);
      else if (was.status !== m.status) log("status", `${user} is ${m.status} in ${room} (was ${was.status})`);
      else if (was.devices !== m.devices) log("devices", `${user} has ${m.devices} device(s) in ${room} (was ${was.devices})`);
    }
    for (const user of old.keys()) if (!members.has(user)) log("leave", `${user} left ${room}`);
  }
  for (const [id, node] of after.nodes) {
    const was = before.nodes.get(id);
    if (!was) log("node", `node ${id} appeared (${node.status})`);
    else if (was.alive !== node.alive || was.status !== node.status) log("node", `node ${id}: ${node.alive ? node.status : "dead"}`);
  }
}

function setLive(ok, why = "") {
  $("live").textContent = ok ? `live, every ${POLL_MS / 1000}s` : `API unreachable: ${why}`;
  $("live").dataset.state = ok ? "live" : "down";
}

// --- rendering ------------------------------------------------------------------------------

function renderStats(stats) {
  const cards = [
    ["users online", stats.users_online],
    ["connections", stats.connections],
    ["sessions", stats.sessions],
    ["rooms", stats.rooms],
    ["nodes alive", `${stats.nodes_alive} / ${stats.nodes}`],
  ];
  $("stats").replaceChildren(...cards.map(([label, value]) => h("div", { class: "card", dataset: { stat: label } }, h("b", {}, value), h("span", {}, label))));
}

function renderNodes(nodes) {
  $("nodes").tBodies[0].replaceChildren(
    ...nodes.map((n) =>
      h(
        "tr",
        { dataset: { node: n.node } },
        h("td", {}, n.node),
        h("td", {}, h("span", { class: `health ${n.alive ? n.status : "dead"}` }, n.alive ? n.status : "dead")),
        h("td", {}, n.connections),
        h("td", {}, n.sessions),
        h("td", {}, n.rooms),
        h("td", {}, n.version ?? ""),
        h("td", {}, ago(n.reported_at)),
      ),
    ),
  );
}

function renderRooms(rooms) {
  $("rooms").tBodies[0].replaceChildren(
    ...rooms.map((r) =>
      h(
        "tr",
        { class: r.room === selected ? "selected" : "", dataset: { room: r.room }, onclick: () => select(r.room) },
        h("td", {}, h("a", { href: "#", onclick: (e) => e.preventDefault() }, r.room)),
        h("td", { "data-testid": "room-count" }, r.members),
        h("td", {}, r.version),
      ),
    ),
  );
  if (!rooms.length) $("rooms").tBodies[0].append(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "no room has members")));
}

async function renderRoom(now) {
  $("room").hidden = !selected;
  if (!selected) return;
  $("room-name").textContent = selected;
  const members = [...(now.members.get(selected)?.values() ?? [])];
  $("members").tBodies[0].replaceChildren(
    ...members.map((m) =>
      h(
        "tr",
        { dataset: { user: m.user, status: m.status } },
        h("td", {}, h("a", { href: "#", onclick: (e) => (e.preventDefault(), lookUp(m.user)) }, m.user), m.hidden ? " (invisible)" : ""),
        h("td", {}, h("span", { class: `dot ${m.status}` }), m.status, m.text ? `: ${m.text}` : ""),
        h("td", {}, m.devices),
        h("td", {}, clock(m.joined_at)),
        h(
          "td",
          { class: "actions" },
          h("button", { type: "button", "data-testid": "remove", title: "take the user out of this room (room.removed)", onclick: () => act(`removed ${m.user} from ${selected}`, "POST", `/v1/rooms/${enc(selected)}/kick`, { user: m.user }) }, "remove"),
          h("button", { type: "button", class: "danger", "data-testid": "kick", title: "end every session of the user (force_leave)", onclick: () => act(`kicked ${m.user}`, "POST", `/v1/users/${enc(m.user)}/kick`, { message: "kicked from the dashboard" }) }, "kick"),
        ),
      ),
    ),
  );
  try {
    const info = await api("GET", `/v1/rooms/${enc(selected)}`);
    $("room-info").textContent = `${info.members} members, version ${info.version}, stream ${info.epoch || "-"}:${info.offset}` + (info.typing.length ? `; typing: ${info.typing.join(", ")}` : "");
  } catch {
    $("room-info").textContent = "no members and no history";
  }
}

async function renderUser(user) {
  let presence;
  let sessions = [];
  try {
    presence = await api("GET", `/v1/presence/${enc(user)}`);
    sessions = (await api("GET", `/v1/users/${enc(user)}/sessions`)).sessions;
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    presence = null;
  }
  const box = $("user");
  if (!presence) return box.replaceChildren(h("p", { class: "muted" }, `${user}: no live session`));
  box.replaceChildren(
    h(
      "p",
      {},
      h("b", {}, user),
      ` is ${presence.online ? presence.private_status : "offline"}`,
      presence.private_status !== presence.status ? ` (others see ${presence.status})` : "",
      presence.last_seen ? `, last seen ${clock(presence.last_seen)}` : "",
      " ",
      sessions.length ? h("button", { type: "button", class: "danger", onclick: () => act(`kicked ${user}`, "POST", `/v1/users/${enc(user)}/kick`, { message: "kicked from the dashboard" }) }, "kick all") : null,
    ),
    sessions.length === 0
      ? h("p", { class: "muted", "data-testid": "sessions" }, "no live session")
      : h(
      "table",
      { "data-testid": "sessions" },
      h("thead", {}, h("tr", {}, ...["session", "device", "state", "status", "node", "rooms", "connected", ""].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        ...sessions.map((s) =>
          h(
            "tr",
            { dataset: { session: s.id, state: s.state } },
            h("td", { class: "mono" }, s.id.slice(0, 10)),
            h("td", {}, s.device),
            h("td", {}, s.state),
            h("td", {}, s.status),
            h("td", {}, s.node),
            h("td", {}, s.rooms.join(", ")),
            h("td", {}, clock(s.connected_at)),
            h(
              "td",
              { class: "actions" },
              h("button", { type: "button", title: "close it without grace (4010): the client reconnects with a new session", onclick: () => act(`disconnected ${s.device}`, "POST", `/v1/users/${enc(user)}/disconnect`, { session: s.id }) }, "disconnect"),
              h("button", { type: "button", class: "danger", onclick: () => act(`kicked ${user}'s ${s.device}`, "POST", `/v1/users/${enc(user)}/kick`, { session: s.id, message: "kicked from the dashboard" }) }, "kick"),
            ),
          ),
        ),
      ),
    ),
  );
}

// --- actions --------------------------------------------------------------------------------

async function act(done, method, path, body) {
  try {
    await api(method, path, body);
    notice(done);
    log("action", done);
  } catch (error) {
    if (error instanceof Unauthorized) return signOut(error.message);
    notice(String(error.message ?? error), true);
  }
  await poll();
}

function select(room) {
  selected = room;
  if (previous) renderRoom(previous);
  poll();
}

function lookUp(user) {
  lookedUp = user;
  $("user-form").elements.user.value = user;
  renderUser(user).catch((error) => notice(String(error.message ?? error), true));
}

$("delete-room").addEventListener("click", () => {
  if (!selected) return;
  const room = selected;
  selected = null;
  act(`deleted room ${room}`, "DELETE", `/v1/rooms/${enc(room)}`);
});

$("publish").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = event.target.elements.body;
  const body = input.value.trim();
  if (!body || !selected) return;
  input.value = "";
  act(`published to ${selected}`, "POST", `/v1/rooms/${enc(selected)}/messages`, { body });
});

$("user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const user = event.target.elements.user.value.trim();
  if (user) lookUp(user);
});

// --- signing in -----------------------------------------------------------------------------

function open() {
  $("login").hidden = true;
  $("board").hidden = false;
  $("sign-out").hidden = !sessionStorage.getItem(KEY);
  clearInterval(timer);
  timer = setInterval(poll, POLL_MS);
  return poll();
}

function signOut(why) {
  clearInterval(timer);
  timer = null;
  previous = null;
  sessionStorage.removeItem(KEY);
  $("board").hidden = true;
  $("sign-out").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = why ?? "";
  setLive(false, "signed out");
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = event.target.elements.key.value.trim();
  sessionStorage.setItem(KEY, key);
  try {
    await api("GET", "/v1/stats");
  } catch (error) {
    sessionStorage.removeItem(KEY);
    $("login-error").textContent = error instanceof Unauthorized ? "this key is not one of the server's api_keys" : String(error.message ?? error);
    return;
  }
  event.target.reset();
  $("login-error").textContent = "";
  open();
});

$("sign-out").addEventListener("click", () => signOut());

// Start: with a kept key, or without one if this port takes none (no api_keys, loopback).
api("GET", "/v1/stats").then(
  () => open(),
  (error) => (error instanceof Unauthorized ? signOut(sessionStorage.getItem(KEY) ? "the kept key was refused" : "") : setLive(false, String(error.message ?? error))),
);
