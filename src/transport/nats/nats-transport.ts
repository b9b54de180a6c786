/**
 * The NATS adapter of the transport port; with `nats-options.ts`, the only files that import
 * the NATS client.
 *
 * In: options (servers, name, timeouts, every auth option the client has). Out: a connected
 * {@link Transport}, or a {@link TransportUnavailableError} within `connectTimeoutMs`. Once
 * connected it reconnects forever, waiting `reconnectWaitMs` between attempts, and reports
 * `disconnected` / `reconnected`; the client buffers publishes and restores subscriptions.
 */
import {
  connect,
  type NatsConnection,
  type Subscription as NatsSub,
} from "@nats-io/transport-node";
import { ClosedError, InvalidArgumentError } from "../../errors.js";
import { StatusListeners } from "../status-listeners.js";
import { isPublishSubject, isSubscribeSubject } from "../subject-match.js";
import {
  type MessageHandler,
  type Subscription,
  type Transport,
  type TransportStatus,
  TransportUnavailableError,
} from "../transport.js";
import { type NatsTransportOptions, probeServers, resolveNatsOptions } from "./nats-options.js";

export type { NatsTlsOptions, NatsTransportOptions } from "./nats-options.js";

/** The client connection behind each transport this adapter made (for the KV adapter). */
const connections = new WeakMap<Transport, NatsConnection>();

/** The NATS connection of a transport made by {@link connectNats}; undefined for any other. */
export function natsConnectionOf(transport: Transport): NatsConnection | undefined {
  return connections.get(transport);
}

/** Bound on the flush `close()` attempts before closing, in ms. */
const CLOSE_FLUSH_MS = 2000;

/**
 * Connects to NATS. Rejects with {@link TransportUnavailableError} (naming the URLs, with the
 * client's error as `cause`) when no server accepts the connection within `connectTimeoutMs`,
 * and with `InvalidArgumentError` for a bad option.
 *
 * @example
 * const transport = await connectNats({ servers: "nats://127.0.0.1:4222", name: "api-1" });
 */
export async function connectNats(options: NatsTransportOptions = {}): Promise<Transport> {
  const resolved = await resolveNatsOptions(options);
  const { servers, connectTimeoutMs } = resolved;
  const startedMs = performance.now();
  let nc: NatsConnection;
  try {
    // The client cannot cancel a TCP dial that never completes (it leaves the socket open
    // until the OS gives up), so check reachability with a dial we can cancel first.
    await probeServers(servers, connectTimeoutMs);
    const leftMs = Math.max(1, Math.round(connectTimeoutMs - (performance.now() - startedMs)));
    nc = await connect({ ...resolved.client, timeout: leftMs });
  } catch (err) {
    throw new TransportUnavailableError(servers, connectTimeoutMs, { cause: err });
  }
  const transport = new NatsTransport(nc);
  connections.set(transport, nc);
  return transport;
}

class NatsTransport implements Transport {
  readonly #nc: NatsConnection;
  readonly #status = new StatusListeners();
  readonly #statusLoop: Promise<void>;
  #connected = true;
  #closed = false;

  constructor(nc: NatsConnection) {
    this.#nc = nc;
    this.#statusLoop = this.#watch();
  }

  async #watch(): Promise<void> {
    for await (const s of this.#nc.status()) {
      if (s.type === "disconnect" && this.#connected) {
        this.#connected = false;
        this.#status.emit({ type: "disconnected" });
      } else if (s.type === "reconnect") {
        this.#connected = true;
        this.#status.emit({ type: "reconnected" });
      } else if (s.type === "error") {
        this.#status.emit({ type: "error", error: s.error });
      }
    }
  }

  publish(subject: string, bytes: Uint8Array): void {
    if (this.#closed) throw new ClosedError("publish() after close()");
    if (!isPublishSubject(subject)) {
      throw new InvalidArgumentError("subject", "a NATS subject without wildcards", subject);
    }
    this.#nc.publish(subject, bytes);
  }

  subscribe(subject: string, handler: MessageHandler): Subscription {
    if (this.#closed) throw new ClosedError("subscribe() after close()");
    if (!isSubscribeSubject(subject)) {
      throw new InvalidArgumentError(
        "subject",
        "a NATS subject (wildcards * and > allowed)",
        subject,
      );
    }
    const sub: NatsSub = this.#nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) {
          this.#status.emit({ type: "error", error: err });
          return;
        }
        try {
          handler(msg.data, msg.subject);
        } catch (e) {
          this.#status.emit({
            type: "error",
            error: e instanceof Error ? e : new Error(String(e)),
          });
        }
      },
    });
    return {
      unsubscribe: () => {
        if (!sub.isClosed() && !this.#nc.isClosed()) sub.unsubscribe();
      },
    };
  }

  async flush(): Promise<void> {
    if (this.#closed) throw new ClosedError("flush() after close()");
    await this.#nc.flush();
  }

  onStatus(listener: (status: TransportStatus) => void): Subscription {
    return this.#status.add(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#connected && !this.#nc.isClosed()) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.#nc.flush().catch(() => {}),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, CLOSE_FLUSH_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    await this.#nc.close();
    await this.#statusLoop;
    this.#status.clear();
  }
}
