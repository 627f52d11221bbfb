// The example chat page: join one room, see who is here, chat. Plain JavaScript on the
// presenced JS client (its browser build, served next to this page as ./client/), no build.
//
// Which presenced: ?presenced=ws://host:port/ws, else port 7400 of this page's host. The
// server runs in insecure development mode here (you pick your name); with JWTs, give the
// client `token: () => fetch("/your-token-endpoint").then((r) => r.text())` instead of `user`.
// What others wrote is shown through textContent only, never as HTML.

import { PresencedClient } from "./client/index.js";

const url = new URLSearchParams(location.search).get("presenced") ?? `ws://${location.hostname}:7400/ws`;
const $ = (id) => document.getElementById(id);
const messages = new Map(); // id -> <li>, in offset order on the page

let client = null;
let room = null;

const text = (body) => (typeof body === "string" ? body : (body?.text ?? JSON.stringify(body)));

function showError(error) {
  $("error").textContent = error ? String(error.message ?? error) : "";
}

/** Add a message (from the live stream, the history, a recovery or our own ack) once. */
function addMessage(m) {
  if (messages.has(m.id)) return;
  const li = document.createElement("li");
  li.dataset.id = m.id;
  li.dataset.offset = String(m.offset);
  li.dataset.user = m.user;
  li.className = m.user === "system" ? "system" : "message";
  li.append(`${m.user}: `, text(m.body));
  const later = [...$("messages").children].find((other) => Number(other.dataset.offset) > m.offset);
  $("messages").insertBefore(li, later ?? null);
  messages.set(m.id, li);
}

function apply(event) {
  if (event.room !== room) return;
  if (event.type === "message") addMessage(event);
  else if (event.type === "message.edited") {
    const li = messages.get(event.id);
    if (li) li.replaceChildren(`${li.dataset.user}: `, text(event.body), " (edited)");
  } else if (event.type === "message.deleted") {
    messages.get(event.id)?.remove();
    messages.delete(event.id);
  }
}

function renderMembers() {
  const list = client.memberList(room);
  if (!list) return;
  $("members").replaceChildren(
    ...[...list.members.values()].map((m) => {
      const li = document.createElement("li");
      li.dataset.user = m.user;
      li.dataset.status = m.status;
      li.textContent = `${m.user} (${m.status})`;
      return li;
    }),
  );
}

async function loadHistory() {
  const history = await client.history(room, { limit: 50 });
  history.messages.forEach(addMessage);
}

async function start(user, chosenRoom) {
  room = chosenRoom;
  const device = `web-${Math.random().toString(36).slice(2, 10)}`;
  client = new PresencedClient({ url, user, device });
  client.on("state", ({ state }) => {
    $("state").dataset.state = state;
    $("state").textContent = state;
  });
  client.on("members_changed", (e) => e.room === room && renderMembers());
  for (const type of ["message", "message.edited", "message.deleted"]) client.on(type, apply);
  client.on("room.recovered", (r) => r.room === room && r.events?.forEach(apply)); // missed while away
  client.on("recovery_failed", (e) => e.room === room && loadHistory().catch(showError));
  client.on("forced_leave", (e) => showError(`removed by the server: ${e.message}`));
  client.on("room.removed", (e) => e.room === room && showError("removed from the room"));

  await client.connect();
  await client.join(room);
  $("login").hidden = true;
  $("chat").hidden = false;
  $("room").textContent = room;
  renderMembers();
  await loadHistory();
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  showError(null);
  start(String(form.get("user")).trim(), String(form.get("room")).trim()).catch((error) => {
    showError(error);
    client?.close();
  });
});

$("compose").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = e.target.elements.body;
  const body = input.value;
  input.value = "";
  try {
    const ack = await client.send(room, body); // the sender gets its ack, not the message
    addMessage({ id: ack.id, offset: ack.offset, user: client.user ?? "me", body });
  } catch (error) {
    showError(error);
  }
});
