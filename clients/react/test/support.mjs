// What the hook tests share: clients/js's test support (real presenced processes, bounded
// waits) and a DOM-less React renderer (react-test-renderer, concurrent root) with a probe
// that records what a hook returned at each render.

import { createElement, StrictMode } from "react";
import TestRenderer from "react-test-renderer";

import { PresencedProvider } from "../dist/index.js";

export { Presenced, makeClient, TIMEOUT, within } from "../../js/test/support.mjs";

// Renders run on React's scheduler, not inside act(): the updates come from real sockets, and
// every wait below is on what the components rendered.
globalThis.IS_REACT_ACT_ENVIRONMENT = false;

// react-test-renderer is deprecated in React 19 and says so once per process; it still is
// the one renderer that runs effects without a DOM (jsdom 31 wants Node 22+).
// Anything else React reports (an uncached getSnapshot, a key warning, an error in a
// component) is kept in `reactErrors`, which the tests assert stays empty.
export const reactErrors = [];
const consoleError = console.error;
console.error = (...args) => {
  if (typeof args[0] === "string" && args[0].includes("react-test-renderer is deprecated")) return;
  reactErrors.push(args.map(String).join(" "));
  consoleError(...args);
};

/** What a hook returned, render after render; `when(pred)` waits (bounded) for a render. */
export class Probe {
  constructor(name = "probe") {
    this.name = name;
    this.renders = [];
    this.wakers = new Set();
  }

  get value() {
    return this.renders.at(-1);
  }

  record(value) {
    this.renders.push(value);
    for (const wake of [...this.wakers]) wake();
  }

  /** Resolve with the latest value once `pred(value)` holds (now or at a later render). */
  when(pred, what = pred.toString(), timeout = 10_000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.renders.length > 0 && pred(this.value)) {
          finish();
          resolve(this.value);
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${this.name}: ${what} did not come true within ${timeout} ms; last: ${show(this.value)}`));
      }, timeout);
      const finish = () => {
        clearTimeout(timer);
        this.wakers.delete(check);
      };
      this.wakers.add(check);
      check();
    });
  }
}

function show(value) {
  try {
    return JSON.stringify(value, (k, v) => (v instanceof Map ? [...v.keys()] : k === "room" && typeof v === "object" ? undefined : v));
  } catch {
    return String(value);
  }
}

/** A component that calls `hook()` and gives each result to `probe`. */
export function Use({ hook, probe }) {
  probe.record(hook());
  return null;
}

export const use = (hook, probe) => createElement(Use, { hook, probe });

/** `<PresencedProvider client={client}>{children}</PresencedProvider>`, in StrictMode if asked. */
export function provide(client, children, { strict = false, ...props } = {}) {
  const tree = createElement(PresencedProvider, { client, ...props }, ...[children].flat());
  return strict ? createElement(StrictMode, null, tree) : tree;
}

/** Mount `element`; `update(element)` and `unmount()` change it. */
export function render(element) {
  return TestRenderer.create(element, { unstable_isConcurrent: true }); // React 18: not the legacy root
}

/** Resolve after React's scheduler and the deferred releases ran (a few macrotasks). */
export const settle = (ms = 30) => new Promise((r) => setTimeout(r, ms));

/** Count calls of `client[name]` (it still runs). */
export function countCalls(client, names) {
  const counts = Object.fromEntries(names.map((n) => [n, 0]));
  for (const name of names) {
    const original = client[name].bind(client);
    client[name] = (...args) => {
      counts[name] += 1;
      return original(...args);
    };
  }
  return counts;
}

/** The number of listeners added with `client.on` and not removed yet. */
export function countListeners(client) {
  const live = { count: 0 };
  const on = client.on.bind(client);
  client.on = (name, listener) => {
    const off = on(name, listener);
    live.count += 1;
    let removed = false;
    return () => {
      if (!removed) {
        removed = true;
        live.count -= 1;
      }
      off();
    };
  };
  return live;
}

/** Resolve once `condition()` holds, checked every 10 ms (for state no event announces). */
export async function eventually(condition, what = condition.toString(), timeout = 10_000) {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what} did not come true within ${timeout} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
