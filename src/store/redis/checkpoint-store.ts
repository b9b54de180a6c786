/**
 * Checkpoints on Redis: named byte blobs with a time to live, for the aggregator to save its
 * windows and reload them after a restart.
 *
 * `save` is one `SET key bytes PX ttlMs`: the value and its expiry change together, and a reader
 * sees the previous checkpoint or the new one, never a mix or a checkpoint without expiry.
 * `load` is one `GET`. Both go through the same connection path as the strict store: they fail
 * with StoreUnavailableError (with `cause`) when Redis is away or slower than `timeoutMs`.
 */
import { type Clock, monotonicClock } from "../../clock/clock.js";
import { InvalidArgumentError } from "../../errors.js";
import { expectKnownKeys, expectNumber, expectObject, optionalNumber } from "../../validate.js";
import { CONNECTION_OPTION_KEYS, type RedisConnectionOptions, RedisLink } from "./connection.js";
import { checkpointKey, expectKeyPrefix } from "./keys.js";

export interface RedisCheckpointStoreOptions extends RedisConnectionOptions {
  /**
   * Prefix of every key; checkpoints live at `<prefix>checkpoint:{<name>}`. At most 128
   * characters, without `{` or `}`.
   * @default "sluice:"
   */
  readonly keyPrefix?: string;
  /** Most ms to wait for Redis per call, > 0 and <= 60,000. @default 1000 */
  readonly timeoutMs?: number;
  /** Clock for the deadlines. @default monotonicClock */
  readonly clock?: Clock;
}

export interface RedisCheckpointStore {
  /**
   * Replaces checkpoint `name` with `bytes`, to expire `ttlMs` from now (an integer 1..10^12).
   * `name`: 1-128 characters of `A-Z a-z 0-9 _ . : -`.
   */
  save(name: string, bytes: Uint8Array, ttlMs: number): Promise<void>;
  /** The bytes of checkpoint `name` (a copy), or `undefined` if there is none or it expired. */
  load(name: string): Promise<Uint8Array | undefined>;
  /** Closes the connection if the store opened it, and its timer. Idempotent. */
  close(): Promise<void>;
}

const NAME_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
const OPTION_KEYS = [...CONNECTION_OPTION_KEYS, "keyPrefix", "timeoutMs", "clock"];

/**
 * Creates a checkpoint store on Redis. Throws InvalidArgumentError naming the first bad option.
 *
 * @example
 * const checkpoints = createRedisCheckpointStore({ url: "redis://127.0.0.1:6379" });
 * await checkpoints.save("aggregator-1", bytes, 60_000);
 * const restored = await checkpoints.load("aggregator-1");
 */
export function createRedisCheckpointStore(
  options: RedisCheckpointStoreOptions = {},
): RedisCheckpointStore {
  const raw = expectObject("options", options);
  expectKnownKeys("options", raw, OPTION_KEYS);
  const prefix = expectKeyPrefix("options.keyPrefix", options.keyPrefix);
  const timeoutMs = optionalNumber("options.timeoutMs", options.timeoutMs, 1000, {
    above: 0,
    max: 60_000,
  });
  const link = new RedisLink(options, "options", options.clock ?? monotonicClock);
  const client = link.client;

  return {
    async save(name, bytes, ttlMs) {
      const key = checkpointKey(prefix, expectName(name));
      if (!(bytes instanceof Uint8Array)) {
        throw new InvalidArgumentError("bytes", "a Uint8Array", bytes);
      }
      const ttl = expectNumber("ttlMs", ttlMs, { integer: true, min: 1, max: 1e12 });
      const value = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      await link.run(timeoutMs, `save of checkpoint "${name}"`, () =>
        client.set(key, value, "PX", ttl),
      );
    },
    async load(name) {
      const key = checkpointKey(prefix, expectName(name));
      return link.run(
        timeoutMs,
        `load of checkpoint "${name}"`,
        () => client.getBuffer(key),
        (value) => (value === null ? undefined : new Uint8Array(value as Buffer)), // a copy
      );
    },
    close: () => link.close(),
  };
}

function expectName(name: unknown): string {
  if (typeof name !== "string" || !NAME_PATTERN.test(name)) {
    throw new InvalidArgumentError(
      "name",
      "a string of 1-128 characters from A-Z a-z 0-9 _ . : -",
      name,
    );
  }
  return name;
}
