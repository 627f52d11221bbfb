/** A small typed event emitter: `on(name, listener)` returns the function that removes it. */

export type Listener<T> = (event: T) => void;

export class Emitter<Events extends object> {
  private readonly listeners = new Map<keyof Events | "*", Set<Listener<never>>>();
  /** Called when a listener throws; the other listeners still run. */
  onListenerError: (error: unknown, name: PropertyKey) => void = (error) => {
    setTimeout(() => {
      throw error;
    });
  };

  /** Call `listener` for every event `name`; returns a function that removes it. */
  on<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(name);
    if (!set) {
      set = new Set();
      this.listeners.set(name, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(name, listener);
  }

  /** Call `listener` for every event, with its name: `(name, event) => ...`. */
  onAny(listener: <K extends keyof Events>(name: K, event: Events[K]) => void): () => void {
    const wrapped = listener as unknown as Listener<never>;
    let set = this.listeners.get("*");
    if (!set) {
      set = new Set();
      this.listeners.set("*", set);
    }
    set.add(wrapped);
    return () => set.delete(wrapped);
  }

  /** Call `listener` for the next event `name` only. */
  once<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(name, (event) => {
      off();
      listener(event);
    });
    return off;
  }

  off<K extends keyof Events>(name: K, listener: Listener<Events[K]>): void {
    this.listeners.get(name)?.delete(listener as Listener<never>);
  }

  protected emit<K extends keyof Events>(name: K, event: Events[K]): void {
    for (const listener of [...(this.listeners.get(name) ?? [])]) {
      try {
        (listener as Listener<Events[K]>)(event);
      } catch (error) {
        this.onListenerError(error, name);
      }
    }
    for (const listener of [...(this.listeners.get("*") ?? [])]) {
      try {
        (listener as unknown as (n: K, e: Events[K]) => void)(name, event);
      } catch (error) {
        this.onListenerError(error, name);
      }
    }
  }
}
