/**
 * Deadlines of store calls in flight, served by one timer.
 *
 * A call that must be answered within `timeoutMs` registers a {@link Deadline}. When the reply
 * comes first, its owner sets `settled` and the queue skips it later; when the deadline passes
 * first, the queue sets `settled` and calls `expire()`, once. Calls with the same timeout arrive
 * in deadline order, so each distinct timeout keeps a FIFO and one timer is armed at the earliest
 * pending deadline: O(1) per call and a single timer handle however many calls are in flight,
 * where a `setTimeout` per call would cost about as much as the rest of a pipelined Redis call on
 * the client. `close()` cancels the timer; no handle is left behind.
 */
import type { Clock, TimerHandle } from "../clock/clock.js";

export interface Deadline {
  /** Set by the owner once the call has finished; the queue then skips it. */
  settled: boolean;
  /** When the call gives up, on the queue's clock, in ms. */
  readonly deadlineMs: number;
  /** Called once when the deadline passes unsettled (after the queue has set `settled`). */
  expire(): void;
}

/** A FIFO over an array with a moving head, compacted now and then. */
class Fifo {
  items: Deadline[] = [];
  head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  first(): Deadline {
    return this.items[this.head]!;
  }

  shift(): void {
    this.items[this.head++] = undefined as unknown as Deadline;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

export class DeadlineQueue {
  readonly #clock: Clock;
  /** One FIFO per distinct timeout, in which deadlines are non-decreasing. */
  readonly #fifos = new Map<number, Fifo>();
  #timer: TimerHandle | undefined;
  #timerAtMs = Infinity;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Watches `entry`, whose deadline is `timeoutMs` after now. */
  add(entry: Deadline, timeoutMs: number): void {
    let fifo = this.#fifos.get(timeoutMs);
    if (fifo === undefined) {
      fifo = new Fifo();
      this.#fifos.set(timeoutMs, fifo);
    }
    fifo.items.push(entry);
    if (entry.deadlineMs < this.#timerAtMs) this.#arm(entry.deadlineMs);
  }

  /** Entries not yet dropped (settled ones linger until they reach the head). */
  get size(): number {
    let n = 0;
    for (const fifo of this.#fifos.values()) n += fifo.size;
    return n;
  }

  /** Cancels the timer and expires every unsettled entry now. */
  close(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#timerAtMs = Infinity;
    const fifos = [...this.#fifos.values()];
    this.#fifos.clear();
    for (const fifo of fifos) {
      for (let i = fifo.head; i < fifo.items.length; i++) {
        const entry = fifo.items[i]!;
        if (!entry.settled) {
          entry.settled = true;
          entry.expire();
        }
      }
    }
  }

  #arm(atMs: number): void {
    this.#timer?.cancel();
    this.#timerAtMs = atMs;
    this.#timer = this.#clock.setTimer(() => this.#fire(), atMs - this.#clock.nowMs());
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAtMs = Infinity;
    const nowMs = this.#clock.nowMs();
    let nextMs = Infinity;
    for (const [timeoutMs, fifo] of this.#fifos) {
      while (fifo.size > 0) {
        const entry = fifo.first();
        if (entry.settled) {
          fifo.shift();
        } else if (entry.deadlineMs <= nowMs) {
          fifo.shift();
          entry.settled = true;
          entry.expire();
        } else {
          break;
        }
      }
      if (fifo.size === 0) this.#fifos.delete(timeoutMs);
      else if (fifo.first().deadlineMs < nextMs) nextMs = fifo.first().deadlineMs;
    }
    if (nextMs < Infinity && nextMs < this.#timerAtMs) this.#arm(nextMs);
  }
}
