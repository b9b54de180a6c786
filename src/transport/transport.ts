/**
 * The transport port: how the limiter and the aggregator move bytes, without knowing NATS.
 *
 * Adapters: `createMemoryBus()` (in-process twin with NATS subject semantics) and
 * `connectNats()` (the real thing). Both deliver asynchronously, never inside `publish()`.
 */
import { SluiceError } from "../errors.js";

/** Receives one message. Must not throw; an adapter reports a throw as an `error` status event. */
export type MessageHandler = (bytes: Uint8Array, subject: string) => void;

/** Stops a subscription or a listener. Idempotent. */
export interface Subscription {
  unsubscribe(): void;
}

/**
 * Connection events:
 * - `disconnected`: the link dropped; publishes are buffered by the adapter and subscriptions
 *   are restored on reconnect, but messages sent meanwhile by others are lost to us.
 * - `reconnected`: the link is back (subscriptions restored).
 * - `error`: something failed without closing the transport, e.g. a handler threw or the server
 *   refused a publish for lack of permission.
 */
export type TransportStatus =
  | { readonly type: "disconnected" }
  | { readonly type: "reconnected" }
  | { readonly type: "error"; readonly error: Error };

export interface Transport {
  /**
   * Sends `bytes` to every subscription matching `subject` (no wildcards). Returns at once.
   * The adapter may hold on to `bytes` until they are written out: do not modify them
   * afterwards (encoders return fresh arrays). While disconnected, publishes are buffered.
   * Throws `ClosedError` after `close()` and `InvalidArgumentError` for an invalid subject.
   */
  publish(subject: string, bytes: Uint8Array): void;
  /**
   * Calls `handler` for each message on `subject`, which may use NATS wildcards: `*` matches
   * one token, `>` (last token only) one or more.
   */
  subscribe(subject: string, handler: MessageHandler): Subscription;
  /** Resolves once everything published before the call has reached the server (or the bus). */
  flush(): Promise<void>;
  /**
   * Calls `listener` on every status event. With no listener registered, an `error` event is
   * rethrown asynchronously (as an unhandled `error` event of an EventEmitter is), so bugs in
   * handlers are not silently lost.
   */
  onStatus(listener: (status: TransportStatus) => void): Subscription;
  /** Flushes, ends every subscription and releases every handle. Idempotent. */
  close(): Promise<void>;
}

/**
 * The first connection failed: no server answered in time, or one answered and refused us
 * (authentication, TLS). Names the URL(s) tried; the underlying error is the `cause`.
 */
export class TransportUnavailableError extends SluiceError {
  override name = "TransportUnavailableError";
  /** The server URL(s) that were tried. */
  readonly servers: readonly string[];
  /** The connect timeout that applied, in ms. */
  readonly timeoutMs: number;

  constructor(servers: readonly string[], timeoutMs: number, options?: ErrorOptions) {
    const cause = options?.cause;
    const detail = cause instanceof Error ? cause.message || cause.name : String(cause);
    super(
      `Could not connect to NATS at ${servers.join(", ")}: ${detail} (connect timeout ${timeoutMs} ms)`,
      options,
    );
    this.servers = servers;
    this.timeoutMs = timeoutMs;
  }
}
