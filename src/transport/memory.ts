/**
 * The in-memory twin of NATS, for unit tests and the zero-dependency demo.
 *
 * In: `publish(subject, bytes)` on any transport of a bus. Out: each subscription whose subject
 * (with `*` / `>` wildcards) matches gets its own copy of the bytes, later, from a
 * `setImmediate` (never inside `publish`), in publish order. `simulateDisconnect()` /
 * `simulateReconnect()` play a dropped link: the transport's own publishes are held and sent
 * on reconnect, and what others publish meanwhile is lost to it, as with a real server.
 */
import { ClosedError, InvalidArgumentError } from "../errors.js";
import { StatusListeners } from "./status-listeners.js";
import { isPublishSubject, isSubscribeSubject, subjectMatches } from "./subject-match.js";
import type { MessageHandler, Subscription, Transport, TransportStatus } from "./transport.js";

/** A transport on a {@link MemoryBus}, with controls tests use to play a link failure. */
export interface MemoryTransport extends Transport {
  /** Emits `disconnected`; until reconnected, publishes are held and incoming messages lost. */
  simulateDisconnect(): void;
  /** Emits `reconnected` and sends the held publishes. */
  simulateReconnect(): void;
  readonly isConnected: boolean;
}

/** Transports that see each other's messages, as clients of one NATS server do. */
export interface MemoryBus {
  connect(): MemoryTransport;
  /** Resolves once every message published so far has been delivered (or dropped). */
  settle(): Promise<void>;
}

interface MemorySub {
  readonly pattern: readonly string[];
  readonly handler: MessageHandler;
  readonly owner: Member;
  active: boolean;
}

interface Delivery {
  readonly sub: MemorySub;
  readonly subject: string;
  readonly bytes: Uint8Array;
}

/** Creates an empty bus. */
export function createMemoryBus(): MemoryBus {
  const bus = new Bus();
  return { connect: () => new Member(bus), settle: () => bus.settle() };
}

class Bus {
  readonly subs = new Set<MemorySub>();
  #queue: Delivery[] = [];
  #scheduled = false;
  #waiters: (() => void)[] = [];

  route(subject: string, bytes: Uint8Array): void {
    const tokens = subject.split(".");
    for (const sub of this.subs) {
      if (sub.owner.isConnected && subjectMatches(sub.pattern, tokens)) {
        this.#queue.push({ sub, subject, bytes: bytes.slice() });
      }
    }
    this.#schedule();
  }

  settle(): Promise<void> {
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#drain);
  }

  #drain = (): void => {
    this.#scheduled = false;
    const batch = this.#queue;
    const waiters = this.#waiters;
    this.#queue = [];
    this.#waiters = [];
    for (const d of batch) {
      if (d.sub.active && d.sub.owner.isConnected) d.sub.owner.deliver(d.sub, d.bytes, d.subject);
    }
    for (const resolve of waiters) resolve();
    if (this.#queue.length > 0) this.#schedule();
  };
}

class Member implements MemoryTransport {
  readonly #bus: Bus;
  readonly #status = new StatusListeners();
  readonly #subs = new Set<MemorySub>();
  #held: [string, Uint8Array][] = [];
  #reconnectWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  #connected = true;
  #closed = false;

  constructor(bus: Bus) {
    this.#bus = bus;
  }

  get isConnected(): boolean {
    return this.#connected && !this.#closed;
  }

  publish(subject: string, bytes: Uint8Array): void {
    if (this.#closed) throw new ClosedError("publish() after close()");
    if (!isPublishSubject(subject)) {
      throw new InvalidArgumentError("subject", "a NATS subject without wildcards", subject);
    }
    if (this.#connected) this.#bus.route(subject, bytes);
    else this.#held.push([subject, bytes.slice()]);
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
    const sub: MemorySub = { pattern: subject.split("."), handler, owner: this, active: true };
    this.#subs.add(sub);
    this.#bus.subs.add(sub);
    return {
      unsubscribe: () => {
        sub.active = false;
        this.#subs.delete(sub);
        this.#bus.subs.delete(sub);
      },
    };
  }

  deliver(sub: MemorySub, bytes: Uint8Array, subject: string): void {
    try {
      sub.handler(bytes, subject);
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.#status.emit({ type: "error", error });
    }
  }

  async flush(): Promise<void> {
    if (this.#closed) throw new ClosedError("flush() after close()");
    if (!this.#connected) {
      await new Promise<void>((resolve, reject) =>
        this.#reconnectWaiters.push({ resolve, reject }),
      );
    }
    await this.#bus.settle();
  }

  onStatus(listener: (status: TransportStatus) => void): Subscription {
    return this.#status.add(listener);
  }

  simulateDisconnect(): void {
    if (this.#closed || !this.#connected) return;
    this.#connected = false;
    this.#status.emit({ type: "disconnected" });
  }

  simulateReconnect(): void {
    if (this.#closed || this.#connected) return;
    this.#connected = true;
    this.#status.emit({ type: "reconnected" });
    const held = this.#held;
    this.#held = [];
    for (const [subject, bytes] of held) this.#bus.route(subject, bytes);
    for (const w of this.#reconnectWaiters.splice(0)) w.resolve();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#connected) await this.#bus.settle();
    this.#closed = true;
    for (const sub of this.#subs) {
      sub.active = false;
      this.#bus.subs.delete(sub);
    }
    this.#subs.clear();
    this.#held = [];
    for (const w of this.#reconnectWaiters.splice(0))
      w.reject(new ClosedError("closed while flushing"));
    this.#status.clear();
    await this.#bus.settle();
  }
}
