/**
 * One WebSocket connection, as the client sees it: frames in, one close out, exactly once.
 *
 * A link ends once (`finish`): on the socket's close event, or at once when the client gives
 * up on it (`abort`: a heartbeat went unanswered, the device went offline). After that its
 * socket's late events are ignored, so a close that a browser reports seconds later (or never,
 * on a dead network) cannot disturb the connection that replaced it. Frames that arrive before
 * the client took the link over are buffered, so nothing sent right after `welcome` (a
 * `room.recovered`) is lost between the handshake and the hand-over.
 */
export class Link {
    constructor(WebSocketImpl, url, now, onOpen) {
        this.now = now;
        this.dead = false;
        /** When the last frame arrived (ms, the client's clock). */
        this.lastFrameAt = 0;
        this.timers = new Set();
        this.frameHandler = null;
        this.buffer = [];
        this.closeHandler = null;
        this.ended = null;
        this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
        this.ws = new WebSocketImpl(url);
        this.ws.onopen = () => {
            if (!this.dead)
                onOpen();
        };
        this.ws.onmessage = (event) => {
            if (this.dead || typeof event.data !== "string")
                return; // the protocol is text frames
            this.lastFrameAt = this.now();
            if (this.frameHandler && this.buffer.length === 0)
                this.frameHandler(event.data);
            else
                this.buffer.push(event.data);
        };
        this.ws.onclose = (event) => this.finish(event.code || 1006, event.reason || "");
        // An error fails the connection and a close event should follow, but not every
        // implementation sends it (Node 20's undici, for a handshake cut short): end here.
        this.ws.onerror = () => this.finish(1006, "connection error");
    }
    /** Route frames to `handler`, starting with those buffered so far. */
    onFrame(handler) {
        this.frameHandler = handler;
        while (this.buffer.length > 0 && !this.dead && this.frameHandler === handler) {
            handler(this.buffer.shift());
        }
    }
    /** Buffer frames again until the next `onFrame`. */
    pause() {
        this.frameHandler = null;
    }
    /** Call `handler` when the link ends (at once if it has ended already). */
    onClose(handler) {
        this.closeHandler = handler;
        if (this.ended)
            handler(...this.ended);
    }
    /** Send a frame; false when the link is gone (the frame is not sent). */
    send(text) {
        if (this.dead || this.ws.readyState !== 1)
            return false;
        try {
            this.ws.send(text);
            return true;
        }
        catch {
            return false;
        }
    }
    /** A timer that dies with the link. */
    setTimer(ms, callback) {
        const timer = setTimeout(() => {
            this.timers.delete(timer);
            if (!this.dead)
                callback();
        }, ms);
        this.timers.add(timer);
    }
    /** Close politely (1000); the link ends when the server answers, or after `timeout`. */
    async close(timeout) {
        if (this.dead)
            return;
        try {
            this.ws.close(1000, "closed by client");
        }
        catch {
            // already closing
        }
        let timer;
        const late = new Promise((resolve) => (timer = setTimeout(resolve, timeout)));
        await Promise.race([this.closed, late]);
        clearTimeout(timer);
        this.abort("closed by client", 1000);
    }
    /** Give up on the link now: it ends at once with `code` (1006: as if the network dropped). */
    abort(reason, code = 1006) {
        if (this.dead)
            return;
        try {
            this.ws.close(1000, reason.slice(0, 120));
        }
        catch {
            // never opened, or already closing
        }
        this.finish(code, reason);
    }
    finish(code, reason) {
        if (this.dead)
            return;
        this.dead = true;
        this.ended = [code, reason];
        for (const timer of this.timers)
            clearTimeout(timer);
        this.timers.clear();
        this.ws.onopen = null;
        this.ws.onmessage = null;
        this.ws.onclose = null;
        this.buffer = [];
        this.resolveClosed();
        this.closeHandler?.(code, reason);
    }
}
