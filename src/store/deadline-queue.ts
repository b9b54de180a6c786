/**
 * Deadlines of store calls in flight, served by one timer.
 *
 * A call that must be answered within `timeoutMs` is added as a {@link Deadline}. When its reply
 * comes first, the owner calls `settle()`, which unlinks it at once; when the deadline passes
 * first, the queue unlinks it and calls `expire()`, once. Calls with the same timeout arrive in
 * deadline order, so each distinct timeout keeps an intrusive doubly linked list (O(1) to add and
 * to remove from anywhere), and one timer is armed at the earliest deadline. So a call costs no
 * timer of its own (a `setTimeout` per call costs about as much as the rest of a pipelined Redis
 * call on the client), and a settled call is not kept alive until its deadline (which, at tens of
 * thousands of calls per second, would push every call into the old generation of the heap).
 * `close()` cancels the timer; no handle is left behind.
 */
import type { Clock, TimerHandle } from "../clock/clock.js";

/** A call with a deadline. Subclass it; the link fields belong to the queue. */
export abstract class Deadline {
  /** True once settled by its owner or expired by the queue. */
  settled = false;
  /** @internal */ prev: Deadline | undefined = undefined;
  /** @internal */ next: Deadline | undefined = undefined;
  /** @internal */ list: DeadlineList | undefined = undefined;

  /** `deadlineMs`: when the call gives up, on the queue's clock. */
  constructor(readonly deadlineMs: number) {}

  /** Called once when the deadline passes unsettled (after `settled` is set). */
  abstract expire(): void;

  /** Marks the call finished and drops it from its queue. Returns false if it already was. */
  settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.list?.remove(this);
    return true;
  }
}

/** Calls with one timeout value, in deadline order. */
class DeadlineList {
  head: Deadline | undefined = undefined;
  tail: Deadline | undefined = undefined;

  append(entry: Deadline): void {
    entry.list = this;
    entry.prev = this.tail;
    entry.next = undefined;
    if (this.tail === undefined) this.head = entry;
    else this.tail.next = entry;
    this.tail = entry;
  }

  remove(entry: Deadline): void {
    if (entry.prev === undefined) this.head = entry.next;
    else entry.prev.next = entry.next;
    if (entry.next === undefined) this.tail = entry.prev;
    else entry.next.prev = entry.prev;
    entry.prev = entry.next = undefined;
    entry.list = undefined;
  }
}

export class DeadlineQueue {
  readonly #clock: Clock;
  readonly #lists = new Map<number, DeadlineList>();
  #timer: TimerHandle | undefined;
  #timerAtMs = Infinity;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Watches `entry`, whose deadline is `timeoutMs` after now. */
  add(entry: Deadline, timeoutMs: number): void {
    let list = this.#lists.get(timeoutMs);
    if (list === undefined) {
      list = new DeadlineList();
      this.#lists.set(timeoutMs, list);
    }
    list.append(entry);
    if (entry.deadlineMs < this.#timerAtMs) this.#arm(entry.deadlineMs);
  }

  /** Cancels the timer and expires every unsettled entry now. */
  close(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#timerAtMs = Infinity;
    const lists = [...this.#lists.values()];
    this.#lists.clear();
    for (const list of lists) {
      while (list.head !== undefined) this.#expire(list, list.head);
    }
  }

  #expire(list: DeadlineList, entry: Deadline): void {
    list.remove(entry);
    entry.settled = true;
    entry.expire();
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
    for (const [timeoutMs, list] of this.#lists) {
      while (list.head !== undefined && list.head.deadlineMs <= nowMs) {
        this.#expire(list, list.head);
      }
      if (list.head === undefined) this.#lists.delete(timeoutMs);
      else if (list.head.deadlineMs < nextMs) nextMs = list.head.deadlineMs;
    }
    if (nextMs < this.#timerAtMs) this.#arm(nextMs);
  }
}
