/** A small typed event emitter: `on(name, listener)` returns the function that removes it. */
export class Emitter {
    constructor() {
        this.listeners = new Map();
        /** Called when a listener throws; the other listeners still run. */
        this.onListenerError = (error) => {
            setTimeout(() => {
                throw error;
            });
        };
    }
    /** Call `listener` for every event `name`; returns a function that removes it. */
    on(name, listener) {
        let set = this.listeners.get(name);
        if (!set) {
            set = new Set();
            this.listeners.set(name, set);
        }
        set.add(listener);
        return () => this.off(name, listener);
    }
    /** Call `listener` for every event, with its name: `(name, event) => ...`. */
    onAny(listener) {
        const wrapped = listener;
        let set = this.listeners.get("*");
        if (!set) {
            set = new Set();
            this.listeners.set("*", set);
        }
        set.add(wrapped);
        return () => set.delete(wrapped);
    }
    /** Call `listener` for the next event `name` only. */
    once(name, listener) {
        const off = this.on(name, (event) => {
            off();
            listener(event);
        });
        return off;
    }
    off(name, listener) {
        this.listeners.get(name)?.delete(listener);
    }
    emit(name, event) {
        for (const listener of [...(this.listeners.get(name) ?? [])]) {
            try {
                listener(event);
            }
            catch (error) {
                this.onListenerError(error, name);
            }
        }
        for (const listener of [...(this.listeners.get("*") ?? [])]) {
            try {
                listener(name, event);
            }
            catch (error) {
                this.onListenerError(error, name);
            }
        }
    }
}
