/**
 * The port through which the aggregators of a group share ownership state: a key-value store
 * with revisions, compare-and-set and a watch (JetStream KV implements it:
 * `createKvGroupStore` in src/transport/nats/kv-group-store.ts; an in-process twin for tests is
 * `createMemoryGroupStore` in src/transport/memory-group-store.ts).
 *
 * Every write returns the entry's new revision. Revisions grow with every write to the store,
 * whatever the key, and never repeat: an owner epoch taken from the revision of a claim is
 * above every earlier claim's.
 */
export { CasConflictError } from "../errors.js";

/** One key's latest value as the store holds it. */
export interface GroupEntry {
  readonly key: string;
  readonly value: Uint8Array;
  readonly revision: number;
  /** The key was deleted (its value is empty then). */
  readonly deleted: boolean;
}

export interface GroupWatch {
  stop(): void;
}

export interface GroupStore {
  /** Writes `key` only if it has no value (never written, or deleted); `CasConflictError` if not. */
  create(key: string, value: Uint8Array): Promise<number>;
  /** Writes `key` only if its latest revision is `revision`; `CasConflictError` if not. */
  update(key: string, value: Uint8Array, revision: number): Promise<number>;
  /** Writes `key` whatever it holds. */
  put(key: string, value: Uint8Array): Promise<number>;
  /** The latest entry of `key` (deleted ones included), or undefined if never written. */
  get(key: string): Promise<GroupEntry | undefined>;
  /** Deletes `key` (a later `create` may write it again). */
  delete(key: string): Promise<void>;
  /**
   * Calls `onEntry` with the latest entry of every key under `prefix` (a key prefix ending in
   * `.`), then with every later write under it, in revision order per key. Resolves once the
   * latest entries have been delivered. Entries may repeat; a receiver keeps the highest
   * revision per key.
   */
  watch(prefix: string, onEntry: (entry: GroupEntry) => void): Promise<GroupWatch>;
}
