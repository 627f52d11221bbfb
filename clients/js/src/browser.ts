/**
 * Optional browser hooks, installed by the client where `window` exists (or given a target):
 *
 * - `visibilitychange`: hidden for `awayAfterHidden` ms sets the status `away` (only when the
 *   device's status is `online`); visible again restores it, and reconnects at once if the
 *   client is waiting out a backoff.
 * - `pagehide`: a page going into the back/forward cache (`event.persisted`) suspends the
 *   client (the socket is closed, the session waits in grace) and `pageshow` brings it back;
 *   a page being unloaded for good logs out, so its rooms see it leave at once, unless
 *   `leaveOnPageHide` is false. (A reload also unloads the page: `persisted` is false then
 *   too. Apps that want a reload to look like nothing happened set `leaveOnPageHide: false`
 *   and let the grace period end the old session.)
 * - `offline` drops the connection at once (it is dead anyway, and a browser may take minutes
 *   to notice); `online` reconnects at once instead of waiting out the backoff.
 */

import type { ClientStatus } from "./protocol.js";

export interface BrowserHookOptions {
  /** Ms hidden before the status becomes `away` (default 60000; 0: never). */
  awayAfterHidden?: number;
  /** Log out when the page is unloaded (not kept in the back/forward cache; default true). */
  leaveOnPageHide?: boolean;
  /** Follow `online` / `offline` (default true). */
  network?: boolean;
  /** Where the events come from (default `window`), and the document (default `document`). */
  target?: EventTarget;
  document?: EventTarget & { visibilityState?: string };
}

/** What the hooks need of the client. */
export interface HookedClient {
  readonly connected: boolean;
  readonly status: ClientStatus | undefined;
  setStatus(status: ClientStatus, text?: string): Promise<unknown>;
  drop(reason?: string): void;
  reconnectNow(): void;
  suspend(): void;
  unsuspend(): void;
  logout(): Promise<void>;
}

/** Install the hooks on `client`; returns the function that removes them. */
export function attachBrowserHooks(client: HookedClient, options: BrowserHookOptions = {}): () => void {
  const target = options.target ?? (typeof window !== "undefined" ? window : undefined);
  const doc = options.document ?? (typeof document !== "undefined" ? document : undefined);
  if (!target) return () => {};
  const awayAfter = options.awayAfterHidden ?? 60_000;
  const removers: (() => void)[] = [];
  const listen = (on: EventTarget, name: string, handler: (event: Event) => void): void => {
    on.addEventListener(name, handler);
    removers.push(() => on.removeEventListener(name, handler));
  };

  let awayTimer: ReturnType<typeof setTimeout> | undefined;
  let autoAway = false;
  if (doc && awayAfter > 0) {
    listen(doc, "visibilitychange", () => {
      if (doc.visibilityState === "hidden") {
        clearTimeout(awayTimer);
        awayTimer = setTimeout(() => {
          if (client.connected && (client.status ?? "online") === "online") {
            autoAway = true;
            client.setStatus("away").catch(() => (autoAway = false));
          }
        }, awayAfter);
      } else {
        clearTimeout(awayTimer);
        if (autoAway && client.status === "away") client.setStatus("online").catch(() => {});
        autoAway = false;
        client.reconnectNow();
      }
    });
  }

  listen(target, "pagehide", (event) => {
    if ((event as PageTransitionEvent).persisted) client.suspend();
    else if (options.leaveOnPageHide ?? true) void client.logout().catch(() => {});
  });
  listen(target, "pageshow", (event) => {
    if ((event as PageTransitionEvent).persisted) client.unsuspend();
  });

  if (options.network ?? true) {
    listen(target, "offline", () => client.drop("the device went offline"));
    listen(target, "online", () => client.reconnectNow());
  }

  return () => {
    clearTimeout(awayTimer);
    for (const remove of removers) remove();
  };
}
