// How many clients of the JS client (clients/js/dist) one Node process holds (issue 13).
//
//   node bench/js_client_capacity.mjs OUT.json [K ...]      (default K: 1000 5000 10000 15000)
//
// Per level K, on fresh processes:
// - presenced servers (insecure auth, memory store, --heartbeat-interval 25, timeout 10,
//   inactivity off), all pinned to core 0. `--workers N > 1` needs Redis, which this machine
//   lacks, so "N workers" are N independent single-process servers on their own ports, each
//   holding at most SERVER_MAX clients (a process may hold 20,000 open files); a room's 100
//   members all go to the same server.
// - ONE Node process (this script with --child), pinned to core 1 under taskset, opens K
//   PresencedClients (64 connects in flight), each joining one room of 100, and reports:
//   connect+join time; RSS and JS heap used (process.memoryUsage) at a baseline (after the
//   import, before any client) and after the idle window; CPU (process.cpuUsage, all threads)
//   over IDLE_S s idle, heartbeats running; connected/disconnected events per client.
// Loopback only, bounded waits; the script ends only the processes it started, by pid.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { writeFileSync, openSync, closeSync, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..");
const PYTHON = path.join(REPO, ".venv", "bin", "python");
const ROOM = 100;
const SERVER_MAX = 8000;
const IN_FLIGHT = 64;
const SETTLE_S = 3;
const IDLE_S = Number(process.env.IDLE_S ?? 20);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------- child
async function child(k, urls) {
  const { PresencedClient } = await import(path.join(REPO, "clients/js/dist/index.js"));
  const quiet = { debug() {}, warn() {} };
  const gc = globalThis.gc ?? (() => {});
  gc();
  await sleep(200);
  gc();
  const base = process.memoryUsage();
  const clients = new Array(k);
  const connects = new Uint16Array(k);
  const drops = new Uint16Array(k);
  let latencies = 0;
  let failures = 0;
  let firstError = null;
  const t0 = performance.now();
  let next = 0;
  async function worker() {
    while (next < k) {
      const i = next++;
      const room = Math.floor(i / ROOM);
      const c = new PresencedClient({
        url: urls[room % urls.length],
        user: `u${i}`,
        device: `d${i}`,
        browser: false,
        logger: quiet,
        requestTimeout: 30000,
      });
      c.on("connected", () => connects[i]++);
      c.on("disconnected", () => drops[i]++);
      c.on("latency", () => latencies++);
      clients[i] = c;
      try {
        await c.connect();
        await c.join(`room${room}`);
      } catch (error) {
        failures++;
        firstError ??= String(error);
      }
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const connectS = (performance.now() - t0) / 1000;
  await sleep(SETTLE_S * 1000);
  const c0 = process.cpuUsage();
  const w0 = performance.now();
  const lat0 = latencies;
  const drops0 = drops.reduce((a, b) => a + b, 0);
  await sleep(IDLE_S * 1000);
  const cpu = process.cpuUsage(c0);
  const windowS = (performance.now() - w0) / 1000;
  const mem = process.memoryUsage();
  gc();
  const heapAfterGc = process.memoryUsage().heapUsed;
  const states = {};
  for (const c of clients) states[c?.state ?? "none"] = (states[c?.state ?? "none"] ?? 0) + 1;
  const reconnects = connects.reduce((a, b) => a + Math.max(0, b - 1), 0);
  const disconnects = drops.reduce((a, b) => a + b, 0);
  const out = {
    k,
    servers: urls.length,
    failures,
    first_error: firstError,
    connect_join_s: connectS,
    window_s: windowS,
    rss_base_mib: base.rss / 2 ** 20,
    rss_mib: mem.rss / 2 ** 20,
    kib_per_client: (mem.rss - base.rss) / 1024 / k,
    heap_base_mib: base.heapUsed / 2 ** 20,
    heap_used_mib: mem.heapUsed / 2 ** 20,
    heap_kib_per_client: (mem.heapUsed - base.heapUsed) / 1024 / k,
    heap_after_gc_kib_per_client: (heapAfterGc - base.heapUsed) / 1024 / k,
    external_mib: mem.external / 2 ** 20,
    array_buffers_mib: mem.arrayBuffers / 2 ** 20,
    idle_cpu_pct: ((cpu.user + cpu.system) / 1e6 / windowS) * 100,
    idle_cpu_user_pct: (cpu.user / 1e6 / windowS) * 100,
    heartbeats_s: (latencies - lat0) / windowS,
    disconnects_in_window: disconnects - drops0,
    disconnects,
    reconnects,
    states,
    all_stayed_connected: failures === 0 && disconnects === 0 && reconnects === 0 && states.connected === k,
  };
  process.stdout.write(JSON.stringify(out) + "\n");
  const c1 = performance.now();
  await Promise.race([Promise.allSettled(clients.map((c) => c?.close())), sleep(30000)]);
  process.stderr.write(`closed ${k} clients in ${((performance.now() - c1) / 1000).toFixed(1)} s\n`);
  process.exit(0);
}

// ------------------------------------------------------------------------------ parent
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitListening(port, proc, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}`);
    const ok = await new Promise((resolve) => {
      const sock = net.connect(port, "127.0.0.1");
      sock.once("connect", () => (sock.destroy(), resolve(true)));
      sock.once("error", () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`port ${port} not listening after ${timeoutMs} ms`);
}

async function endProcess(proc, timeoutMs = 10000) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM"); // by this ChildProcess's own pid
  const t = setTimeout(() => proc.exitCode === null && proc.kill("SIGKILL"), timeoutMs);
  await once(proc, "exit");
  clearTimeout(t);
}

function rssKib(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : null;
}

async function level(k, logPath) {
  const nServers = Math.ceil(k / SERVER_MAX);
  const servers = [];
  const log = openSync(logPath, "a");
  try {
    for (let s = 0; s < nServers; s++) {
      const port = await freePort();
      const argv = [
        "-c", "0", PYTHON, "-m", "presenced", "serve",
        "--host", "127.0.0.1", "--port", String(port), "--admin-port", "off",
        "--auth-mode", "insecure", "--heartbeat-interval", "25", "--heartbeat-timeout", "10",
        "--inactivity-timeout", "off", "--log-level", "warning",
      ];
      const proc = spawn("taskset", argv, { cwd: REPO, stdio: ["ignore", log, log] });
      servers.push({ proc, port });
      await waitListening(port, proc);
    }
    const urls = servers.map((s) => `ws://127.0.0.1:${s.port}/ws`);
    const node = spawn(
      "taskset",
      ["-c", "1", process.execPath, "--experimental-websocket", "--expose-gc", "--no-warnings",
        fileURLToPath(import.meta.url), "--child", String(k), urls.join(",")],
      { cwd: REPO, stdio: ["ignore", "pipe", log] },
    );
    let stdout = "";
    node.stdout.on("data", (d) => (stdout += d));
    const limit = setTimeout(() => node.kill("SIGKILL"), (600 + IDLE_S) * 1000);
    let result = null;
    // read the servers' RSS while the clients are still open (the child prints, then closes)
    while (node.exitCode === null && node.signalCode === null && !stdout.includes("\n")) await sleep(100);
    if (stdout.includes("\n")) {
      result = JSON.parse(stdout.split("\n")[0]);
      result.server_rss_mib = servers.map((s) => rssKib(s.proc.pid) / 1024);
      result.servers_alive = servers.every((s) => s.proc.exitCode === null);
    }
    if (node.exitCode === null && node.signalCode === null) await once(node, "exit");
    clearTimeout(limit);
    if (!result) throw new Error(`child for K=${k} printed nothing (exit ${node.exitCode})`);
    return result;
  } finally {
    for (const s of servers) await endProcess(s.proc);
    closeSync(log);
  }
}

async function main() {
  const [out, ...levels] = process.argv.slice(2);
  if (!out) throw new Error("usage: node bench/js_client_capacity.mjs OUT.json [K ...]");
  const ks = (levels.length ? levels : ["1000", "5000", "10000", "15000"]).map(Number);
  for (const k of ks) if (!(k > 0 && k < 19000)) throw new Error(`K=${k}: stay below 19,000 (20,000 fds)`);
  const logPath = out.replace(/\.json$/, "") + ".log";
  writeFileSync(logPath, "");
  const run = {
    date: new Date().toISOString(),
    node: process.version,
    room: ROOM,
    idle_s: IDLE_S,
    server_max: SERVER_MAX,
    levels: [],
  };
  for (const k of ks) {
    const r = await level(k, logPath);
    run.levels.push(r);
    writeFileSync(out, JSON.stringify(run, null, 2) + "\n");
    console.log(
      `K=${k}: ${r.connect_join_s.toFixed(1)} s connect+join, RSS ${r.rss_mib.toFixed(0)} MiB ` +
        `(${r.kib_per_client.toFixed(1)} KiB/client, heap ${r.heap_kib_per_client.toFixed(1)} KiB/client), ` +
        `idle CPU ${r.idle_cpu_pct.toFixed(2)} %, ${r.heartbeats_s.toFixed(0)} hb/s, ` +
        `stayed connected: ${r.all_stayed_connected}, failures ${r.failures}`,
    );
  }
}

if (process.argv[2] === "--child") {
  await child(Number(process.argv[3]), process.argv[4].split(","));
} else {
  await main();
}
