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
/** Install the hooks on `client`; returns the function that removes them. */
export function attachBrowserHooks(client, options = {}) {
    const target = options.target ?? (typeof window !== "undefined" ? window : undefined);
    const doc = options.document ?? (typeof document !== "undefined" ? document : undefined);
    if (!target)
        return () => { };
    const awayAfter = options.awayAfterHidden ?? 60000;
    const removers = [];
    const listen = (on, name, handler) => {
        on.addEventListener(name, handler);
        removers.push(() => on.removeEventListener(name, handler));
    };
    let awayTimer;
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
            }
            else {
                clearTimeout(awayTimer);
                if (autoAway && client.status === "away")
                    client.setStatus("online").catch(() => { });
                autoAway = false;
                client.reconnectNow();
            }
        });
    }
    listen(target, "pagehide", (event) => {
        if (event.persisted)
            client.suspend();
        else if (options.leaveOnPageHide ?? true)
            void client.logout().catch(() => { });
    });
    listen(target, "pageshow", (event) => {
        if (event.persisted)
            client.unsuspend();
    });
    if (options.network ?? true) {
        listen(target, "offline", () => client.drop("the device went offline"));
        listen(target, "online", () => client.reconnectNow());
    }
    return () => {
        clearTimeout(awayTimer);
        for (const remove of removers)
            remove();
    };
}
