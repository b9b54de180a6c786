/**
 * The aggregator group's store on a JetStream KV bucket (the port is GroupStore in
 * src/aggregator/group-store.ts), and checkpoints of partitions in the same bucket.
 *
 * A KV revision is the sequence number of the bucket's stream, so it grows with every write of
 * any key and never repeats, which the group's owner epochs rely on. `create` and `update` are
 * the server's compare-and-set (expected last sequence per subject); a refused one becomes
 * CasConflictError, and every other failure (no JetStream, a timeout, a lost connection)
 * StoreUnavailableError with the client's error as `cause`.
 *
 * The bucket keeps one value per key (history 1) for `ttlMs` after its last write (a bucket-wide
 * age: nats-server 2.9 has no per-key expiry), so the records of a group that stopped for good
 * go away by themselves; members rewrite theirs every lease / 3 and owners keep partition records
 * by transferring or claiming them.
 */
import { JetStreamApiCodes, JetStreamApiError, jetstream } from "@nats-io/jetstream";
import { type KV, type KvEntry, Kvm, KvWatchInclude } from "@nats-io/kv";
import { CasConflictError, InvalidArgumentError } from "../../errors.js";
import { StoreUnavailableError } from "../../limiter/strict-store.js";
import type { Transport } from "../transport.js";
import { natsConnectionOf } from "./nats-transport.js";

export interface KvGroupStoreOptions {
  /** Bucket name, `[A-Za-z0-9_-]+`; created when missing. @default "sluice_group" */
  readonly bucket?: string;
  /** Copies of the bucket on a cluster (1..5); only applies when the bucket is created. @default 1 */
  readonly replicas?: number;
  /** How long a key outlives its last write, ms (>= 60,000). @default 86,400,000 (a day) */
  readonly ttlMs?: number;
  /** Most ms a call waits for the server. @default 2000 */
  readonly timeoutMs?: number;
}

export interface KvGroupEntry {
  readonly key: string;
  readonly value: Uint8Array;
  readonly revision: number;
  readonly deleted: boolean;
}

/** The group store, plus `close()` (stops its watches; the transport stays open). */
export interface KvGroupStore {
  readonly bucket: string;
  create(key: string, value: Uint8Array): Promise<number>;
  update(key: string, value: Uint8Array, revision: number): Promise<number>;
  put(key: string, value: Uint8Array): Promise<number>;
  get(key: string): Promise<KvGroupEntry | undefined>;
  delete(key: string): Promise<void>;
  watch(prefix: string, onEntry: (entry: KvGroupEntry) => void): Promise<{ stop(): void }>;
  close(): Promise<void>;
}

const BUCKET_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Opens (creating if need be) the KV bucket on the connection of `transport` (made by
 * `connectNats`). Rejects with StoreUnavailableError when JetStream does not answer, and
 * InvalidArgumentError for a bad option.
 */
export async function openKvGroupStore(
  transport: Transport,
  options: KvGroupStoreOptions = {},
): Promise<KvGroupStore> {
  const nc = natsConnectionOf(transport);
  if (nc === undefined) {
    throw new InvalidArgumentError("transport", "a transport made by connectNats()", transport);
  }
  const bucket = options.bucket ?? "sluice_group";
  if (!BUCKET_PATTERN.test(bucket)) {
    throw new InvalidArgumentError("bucket", "1-64 characters of [A-Za-z0-9_-]", bucket);
  }
  const replicas = options.replicas ?? 1;
  if (!(Number.isInteger(replicas) && replicas >= 1 && replicas <= 5)) {
    throw new InvalidArgumentError("replicas", "an integer from 1 to 5", replicas);
  }
  const ttlMs = options.ttlMs ?? 86_400_000;
  if (!(Number.isFinite(ttlMs) && ttlMs >= 60_000)) {
    throw new InvalidArgumentError("ttlMs", "a number of ms >= 60000", ttlMs);
  }
  const timeoutMs = options.timeoutMs ?? 2000;
  let kv: KV;
  // The bucket's own timeout option is not applied to its calls: the client's is.
  const kvm = new Kvm(jetstream(nc, { timeout: timeoutMs }));
  try {
    kv = await kvm.create(bucket, { history: 1, replicas, ttl: ttlMs, timeout: timeoutMs });
  } catch (err) {
    // A bucket made with other settings (an earlier TTL or replica count) is used as it is.
    kv = await kvm.open(bucket, { timeout: timeoutMs }).catch(() => {
      throw new StoreUnavailableError(`Could not open the JetStream KV bucket "${bucket}"`, {
        cause: err,
      });
    });
  }
  return new KvStore(kv, bucket);
}

function isCasRefusal(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

function entryOf(e: KvEntry): KvGroupEntry {
  const deleted = e.operation !== "PUT";
  return {
    key: e.key,
    value: deleted ? new Uint8Array(0) : e.value,
    revision: e.revision,
    deleted,
  };
}

class KvStore implements KvGroupStore {
  readonly bucket: string;
  readonly #kv: KV;
  readonly #watches = new Set<{ stop(): void }>();

  constructor(kv: KV, bucket: string) {
    this.#kv = kv;
    this.bucket = bucket;
  }

  async #call<T>(key: string, what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (isCasRefusal(err)) throw new CasConflictError(key, { cause: err });
      throw new StoreUnavailableError(`KV ${what} of "${key}" in "${this.bucket}" failed`, {
        cause: err,
      });
    }
  }

  create(key: string, value: Uint8Array): Promise<number> {
    return this.#call(key, "create", () => this.#kv.create(key, value));
  }

  update(key: string, value: Uint8Array, revision: number): Promise<number> {
    return this.#call(key, "update", () => this.#kv.update(key, value, revision));
  }

  put(key: string, value: Uint8Array): Promise<number> {
    return this.#call(key, "put", () => this.#kv.put(key, value));
  }

  async get(key: string): Promise<KvGroupEntry | undefined> {
    const e = await this.#call(key, "get", () => this.#kv.get(key));
    return e === null ? undefined : entryOf(e);
  }

  delete(key: string): Promise<void> {
    return this.#call(key, "delete", () => this.#kv.delete(key));
  }

  /**
   * The watch starts first (updates only), then the latest value of every key is read: a write
   * made between the two is delivered by both, and the receiver keeps the higher revision.
   */
  async watch(prefix: string, onEntry: (entry: KvGroupEntry) => void): Promise<{ stop(): void }> {
    const filter = `${prefix}>`;
    const iter = await this.#call(filter, "watch", () =>
      this.#kv.watch({ key: filter, include: KvWatchInclude.UpdatesOnly }),
    );
    const handle = { stop: () => iter.stop() };
    this.#watches.add(handle);
    void (async () => {
      for await (const e of iter) onEntry(entryOf(e));
    })().finally(() => this.#watches.delete(handle));
    const keys = await this.#call(filter, "keys", () => this.#kv.keys(filter));
    const names: string[] = [];
    for await (const k of keys) names.push(k);
    for (const k of names) {
      const e = await this.get(k);
      if (e !== undefined) onEntry(e);
    }
    return handle;
  }

  async close(): Promise<void> {
    for (const w of this.#watches) w.stop();
    this.#watches.clear();
  }
}
