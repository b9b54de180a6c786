/**
 * The Redis connection a store talks through, and the one path every call takes.
 *
 * In: connection options (a URL, ioredis options, or a client the caller owns). Out: `run()`,
 * which sends a command only while the connection is usable and settles every call by its
 * deadline, with the command's reply or a {@link StoreUnavailableError} carrying the `cause`.
 *
 * Why calls never queue while Redis is away: a strict decision that timed out has already been
 * settled by the rule's failure policy, so sending it later would consume capacity for a hit that
 * was decided without it. Clients opened here therefore have ioredis' offline queue and the resend
 * of unanswered commands turned off, and `run()` fails at once while a lost connection is being
 * re-established. Only before the first connection is up does a call wait (up to its deadline),
 * so a store used right after it was created works.
 */
import { Cluster, Redis, type RedisOptions } from "ioredis";
import { type Clock, monotonicClock } from "../../clock/clock.js";
import { ClosedError, InvalidArgumentError, SluiceError } from "../../errors.js";
import { StoreUnavailableError } from "../../limiter/strict-store.js";
import { expectObject } from "../../validate.js";
import { Deadline, DeadlineQueue } from "../deadline-queue.js";

/** How to reach Redis: give `url` and/or `redis`, or `client`. */
export interface RedisConnectionOptions {
  /**
   * Redis URL: `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS.
   * @default "redis://127.0.0.1:6379" (ioredis' default), unless `redis` names a host
   * @example "redis://cache.internal:6379/2"
   */
  readonly url?: string;
  /**
   * ioredis options, passed through (host, port, password, tls, sentinels, `enableAutoPipelining`
   * ...; they win over `url`). Sluice changes two defaults: `protocol: 2` and a `retryStrategy`
   * that reconnects after 100 ms, 200 ms, ... at most 1 s apart. `enableAutoPipelining` stays off
   * by default because the strict store already sends the hits of one tick as one script call per
   * rule (see decide-batcher.ts); turning it on also merges the calls of different rules into one
   * write, at more client CPU per hit (docs/strict-mode.md). Three options are fixed, whatever is
   * given here, so that a call decided by the failure policy is never sent later:
   * `enableOfflineQueue: false`, `autoResendUnfulfilledCommands: false`,
   * `maxRetriesPerRequest: 0`.
   * @default {}
   */
  readonly redis?: RedisOptions;
  /**
   * A client to use instead of opening one: an ioredis `Redis`, or a `Cluster` (keys carry hash
   * tags, so every script touches one slot). The caller owns it: `close()` leaves it open. Give it
   * `enableOfflineQueue: false` and `autoResendUnfulfilledCommands: false` for the guarantee above.
   */
  readonly client?: Redis | Cluster;
}

export type RedisClient = Redis | Cluster;

export const CONNECTION_OPTION_KEYS = ["url", "redis", "client"] as const;

const SLUICE_DEFAULTS: RedisOptions = {
  protocol: 2,
  retryStrategy: (attempt: number) => Math.min(attempt * 100, 1000),
};
const SLUICE_FIXED: RedisOptions = {
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  maxRetriesPerRequest: 0,
};

/** A call that got no reply in time; the `cause` of the StoreUnavailableError it turns into. */
export class StoreTimeoutError extends SluiceError {
  override name = "StoreTimeoutError";
  readonly timeoutMs: number;

  constructor(timeoutMs: number, status: string) {
    super(`No reply within ${timeoutMs} ms (connection ${status})`);
    this.timeoutMs = timeoutMs;
  }
}

/**
 * Where a sender hands the outcome of a call it took charge of (see `run()`): `deliver` with the
 * reply, or `fail` with the error. Either may come after the call has already timed out; it is
 * then ignored.
 */
export interface CallSink {
  deliver(reply: unknown): void;
  fail(err: unknown): void;
}

/**
 * Sends a call's command. Either returns the command's promise, or returns nothing and later
 * calls `sink.deliver` / `sink.fail` itself (the batcher does, to skip a promise per hit).
 */
export type Sender = (sink: CallSink) => Promise<unknown> | undefined;

class PendingCall extends Deadline implements CallSink {
  constructor(
    deadlineMs: number,
    readonly timeoutMs: number,
    readonly label: string,
    readonly send: Sender,
    readonly transform: ((reply: unknown) => unknown) | undefined,
    readonly resolve: (value: unknown) => void,
    readonly reject: (err: Error) => void,
    readonly hooks: LinkHooks,
    /**
     * A wait for the connection itself (`whenReady`): keeps waiting through failed attempts
     * (other calls fail on the first) and sends nothing, so it is not counted as a call.
     */
    readonly isConnectionWait: boolean,
  ) {
    super(deadlineMs);
  }

  expire(): void {
    this.hooks.expire(this);
  }

  deliver(reply: unknown): void {
    if (this.settled) return;
    let value: unknown;
    try {
      value = this.transform === undefined ? reply : this.transform(reply);
    } catch (err) {
      this.fail(err);
      return;
    }
    this.settle();
    this.resolve(value);
  }

  fail(err: unknown): void {
    if (this.settle()) this.hooks.fail(this, err);
  }
}

/** What a call reports back to its link; one object per link, shared by its calls. */
interface LinkHooks {
  expire(call: PendingCall): void;
  /** The call is already settled; reject it and count the failure. */
  fail(call: PendingCall, err: unknown): void;
}

export class RedisLink {
  readonly client: RedisClient;
  /** Commands sent. */
  calls = 0;
  /** Calls settled by their deadline. */
  timeouts = 0;
  /** Calls that failed otherwise: not connected, connection lost, command or script error. */
  failures = 0;
  readonly #clock: Clock;
  readonly #owned: boolean;
  readonly #deadlines: DeadlineQueue;
  #waiting: PendingCall[] = [];
  #hasBeenReady: boolean;
  #lastError: Error | undefined;
  #closed = false;
  readonly #hooks: LinkHooks = {
    expire: (call) => this.#onExpire(call),
    fail: (call, err) => {
      this.failures++;
      const cause = err instanceof Error ? err : new Error(String(err));
      call.reject(
        new StoreUnavailableError(`Redis failed ${call.label}: ${cause.message}`, { cause }),
      );
    },
  };
  readonly #onReady = () => this.#flushWaiting();
  readonly #onError = (err: Error) => {
    this.#lastError = err;
    this.#failWaiting(err);
  };

  /** `field` names the options object in error messages, e.g. `options`. */
  constructor(options: RedisConnectionOptions, field: string, clock: Clock = monotonicClock) {
    this.#clock = clock;
    if (options.client !== undefined) {
      if (options.url !== undefined || options.redis !== undefined) {
        throw new InvalidArgumentError(
          `${field}.client`,
          "absent when `url` or `redis` is given (they configure a client Sluice opens)",
          "a client",
        );
      }
      if (!(options.client instanceof Redis || options.client instanceof Cluster)) {
        throw new InvalidArgumentError(
          `${field}.client`,
          "an ioredis Redis or Cluster",
          options.client,
        );
      }
      this.client = options.client;
      this.#owned = false;
    } else {
      if (options.url !== undefined && typeof options.url !== "string") {
        throw new InvalidArgumentError(`${field}.url`, "a redis:// or rediss:// URL", options.url);
      }
      const redis =
        options.redis === undefined ? {} : expectObject(`${field}.redis`, options.redis);
      // The constructor's type ties `replyMapping` to a type parameter; scripts reply with arrays
      // of strings and integers, which no mapping changes.
      const merged = { ...SLUICE_DEFAULTS, ...redis, ...SLUICE_FIXED } as Omit<
        RedisOptions,
        "replyMapping"
      >;
      this.client = options.url === undefined ? new Redis(merged) : new Redis(options.url, merged);
      this.#owned = true;
    }
    this.#hasBeenReady = this.client.status === "ready";
    this.#deadlines = new DeadlineQueue(clock);
    this.client.on("ready", this.#onReady);
    this.client.on("error", this.#onError);
  }

  /**
   * Sends `send` now if the connection is up, and settles with its reply passed through
   * `transform`, or with a StoreUnavailableError when the connection is down, the command fails,
   * `transform` throws, or no reply comes within `timeoutMs`. `label` says what the call was, for
   * messages. `mayWait` lets the call wait for a lost connection to come back (until its
   * deadline) instead of failing at once.
   */
  run<T>(
    timeoutMs: number,
    label: string,
    send: Sender,
    transform?: (reply: unknown) => T,
    mayWait = false,
  ): Promise<T> {
    if (this.#closed) {
      return Promise.reject(
        new StoreUnavailableError(`The Redis store is closed (${label})`, {
          cause: new ClosedError("close() was called"),
        }),
      );
    }
    const status = this.client.status;
    const ready = status === "ready";
    if (!ready && !(this.#mayWait(status) || mayWait)) {
      this.failures++;
      return Promise.reject(
        new StoreUnavailableError(`Redis is not connected (${status}) for ${label}`, {
          cause: this.#lastError ?? new Error(`The Redis connection is ${status}`),
        }),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const call = new PendingCall(
        this.#clock.nowMs() + timeoutMs,
        timeoutMs,
        label,
        send,
        transform,
        resolve as (value: unknown) => void,
        reject,
        this.#hooks,
        mayWait,
      );
      this.#deadlines.add(call, timeoutMs);
      if (ready) this.#dispatch(call);
      else this.#waiting.push(call);
    });
  }

  /**
   * Resolves once the connection is up (at once if it is), or rejects with StoreUnavailableError
   * after `timeoutMs`, however many connection attempts fail meanwhile. For start-up ordering and
   * readiness probes; calls never need it.
   */
  whenReady(timeoutMs: number): Promise<void> {
    if (this.client.status === "ready") return Promise.resolve();
    return this.run<void>(
      timeoutMs,
      "wait for the connection",
      () => Promise.resolve(),
      undefined,
      true,
    );
  }

  /** Settles calls in flight as failed, stops the timer and closes the client if it is ours. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#deadlines.close();
    this.#waiting = [];
    this.client.off("ready", this.#onReady);
    if (!this.#owned) {
      this.client.off("error", this.#onError);
      return;
    }
    const client = this.client;
    if (client.status === "end") return;
    const ended = new Promise<void>((resolve) => client.once("end", resolve));
    if (client.status === "ready") await client.quit().catch(() => undefined);
    client.disconnect();
    if ((client.status as string) !== "end") await ended;
    client.off("error", this.#onError);
  }

  /** Before the first connection is up a call waits for it; after a loss it fails at once. */
  #mayWait(status: string): boolean {
    if (this.#hasBeenReady || this.#lastError !== undefined) return false;
    if (status === "wait") {
      (this.client as Redis).connect().catch(() => undefined);
      return true;
    }
    return status === "connecting" || status === "connect";
  }

  #dispatch(call: PendingCall): void {
    if (!call.isConnectionWait) this.calls++;
    let sent: Promise<unknown> | undefined;
    try {
      sent = call.send(call);
    } catch (err) {
      call.fail(err);
      return;
    }
    sent?.then(
      (reply) => call.deliver(reply),
      (err: unknown) => call.fail(err),
    );
  }

  #flushWaiting(): void {
    this.#hasBeenReady = true;
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const call of waiting) if (!call.settled) this.#dispatch(call);
  }

  /** A connection attempt failed: calls waiting for the first connection fail now, not later. */
  #failWaiting(cause: Error): void {
    if (this.#waiting.length === 0) return;
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const call of waiting) {
      if (call.settled) continue;
      if (call.isConnectionWait) {
        this.#waiting.push(call);
        continue;
      }
      call.fail(cause);
    }
  }

  #onExpire(call: PendingCall): void {
    if (this.#closed) {
      call.reject(
        new StoreUnavailableError(`The Redis store was closed during ${call.label}`, {
          cause: new ClosedError("close() was called"),
        }),
      );
      return;
    }
    if (!call.isConnectionWait) this.timeouts++;
    call.reject(
      new StoreUnavailableError(`Redis did not answer ${call.label} within ${call.timeoutMs} ms`, {
        cause: new StoreTimeoutError(call.timeoutMs, this.client.status),
      }),
    );
  }
}
