/**
 * The in-process twin of a JetStream KV bucket, for the aggregator group's tests and the
 * in-memory demo: revisions shared by every key and never repeated, create/update as
 * compare-and-set, and watches that deliver later (from a `setImmediate`, never inside a write),
 * in write order. `setAvailable(false)` plays a store that cannot be reached: every call then
 * rejects with StoreUnavailableError and watches receive nothing until it is back (and then get
 * the latest entries again, as a watch does after a reconnect).
 */
import { CasConflictError } from "../errors.js";
import { StoreUnavailableError } from "../limiter/strict-store.js";

export interface MemoryGroupEntry {
  readonly key: string;
  readonly value: Uint8Array;
  readonly revision: number;
  readonly deleted: boolean;
}

export interface MemoryGroupStore {
  create(key: string, value: Uint8Array): Promise<number>;
  update(key: string, value: Uint8Array, revision: number): Promise<number>;
  put(key: string, value: Uint8Array): Promise<number>;
  get(key: string): Promise<MemoryGroupEntry | undefined>;
  delete(key: string): Promise<void>;
  watch(prefix: string, onEntry: (entry: MemoryGroupEntry) => void): Promise<{ stop(): void }>;
  /** Makes every call fail (false) or work again (true). */
  setAvailable(available: boolean): void;
  /** Resolves once every watch delivery queued so far has been made. */
  settle(): Promise<void>;
  /** The latest entry of every key (for tests to read the state directly). */
  snapshot(): Map<string, MemoryGroupEntry>;
}

interface Watcher {
  readonly prefix: string;
  readonly onEntry: (entry: MemoryGroupEntry) => void;
  active: boolean;
}

export function createMemoryGroupStore(): MemoryGroupStore {
  const entries = new Map<string, MemoryGroupEntry>();
  const watchers = new Set<Watcher>();
  let revision = 0;
  let available = true;
  let queue: [Watcher, MemoryGroupEntry][] = [];
  let scheduled = false;
  let waiters: (() => void)[] = [];

  const drain = () => {
    scheduled = false;
    const batch = queue;
    queue = [];
    for (const [w, e] of batch) if (w.active && available) w.onEntry(e);
    if (queue.length > 0) schedule();
    else {
      const done = waiters;
      waiters = [];
      for (const d of done) d();
    }
  };
  const schedule = () => {
    if (!scheduled) {
      scheduled = true;
      setImmediate(drain);
    }
  };
  const deliver = (w: Watcher, e: MemoryGroupEntry) => {
    queue.push([w, e]);
    schedule();
  };
  const check = (key: string) => {
    if (!available) {
      return Promise.reject(new StoreUnavailableError("the group store is unavailable"));
    }
    if (!/^[A-Za-z0-9_=.-]+$/.test(key) || key.startsWith(".") || key.endsWith(".")) {
      return Promise.reject(new Error(`invalid key "${key}"`));
    }
    return undefined;
  };
  const write = (key: string, value: Uint8Array, deleted: boolean): number => {
    revision++;
    const e: MemoryGroupEntry = { key, value: value.slice(), revision, deleted };
    entries.set(key, e);
    for (const w of watchers) if (w.active && key.startsWith(w.prefix)) deliver(w, e);
    return revision;
  };

  return {
    create(key, value) {
      const bad = check(key);
      if (bad) return bad;
      const held = entries.get(key);
      if (held !== undefined && !held.deleted) return Promise.reject(new CasConflictError(key));
      return Promise.resolve(write(key, value, false));
    },
    update(key, value, expected) {
      const bad = check(key);
      if (bad) return bad;
      if ((entries.get(key)?.revision ?? 0) !== expected) {
        return Promise.reject(new CasConflictError(key));
      }
      return Promise.resolve(write(key, value, false));
    },
    put(key, value) {
      return check(key) ?? Promise.resolve(write(key, value, false));
    },
    get(key) {
      return check(key) ?? Promise.resolve(entries.get(key));
    },
    delete(key) {
      const bad = check(key);
      if (bad) return bad;
      write(key, new Uint8Array(0), true);
      return Promise.resolve();
    },
    watch(prefix, onEntry) {
      if (!available) {
        return Promise.reject(new StoreUnavailableError("the group store is unavailable"));
      }
      const w: Watcher = { prefix, onEntry, active: true };
      watchers.add(w);
      for (const e of entries.values()) if (e.key.startsWith(prefix)) deliver(w, e);
      return new Promise((resolve) => {
        waiters.push(() =>
          resolve({
            stop() {
              w.active = false;
              watchers.delete(w);
            },
          }),
        );
        schedule();
      });
    },
    setAvailable(on) {
      const back = on && !available;
      available = on;
      if (back) {
        for (const w of watchers) {
          for (const e of entries.values()) if (e.key.startsWith(w.prefix)) deliver(w, e);
        }
      }
    },
    settle() {
      if (!scheduled && queue.length === 0) return Promise.resolve();
      return new Promise((resolve) => waiters.push(resolve));
    },
    snapshot() {
      return new Map(entries);
    },
  };
}
