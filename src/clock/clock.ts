/**
 * The clock module: the only place in Sluice that reads time.
 *
 * Rate math runs on a monotonic clock (`performance.now()`), never on wall time, so NTP slews,
 * leap smears and manual clock changes on a host cannot refill a bucket early or empty a window
 * late. Everything else in Sluice takes the time as an argument (`nowMs`) or asks a {@link Clock}.
 */

/** A pending timer; `cancel()` is idempotent. */
export interface TimerHandle {
  cancel(): void;
}

/**
 * A source of monotonic milliseconds, and the timers that run on the same time scale (so a
 * manual clock in tests drives both the rate math and the waits).
 */
export interface Clock {
  /** Milliseconds on a monotonic scale; never decreases for the process clock. */
  nowMs(): number;
  /** Runs `fn` once after `delayMs`. */
  setTimer(fn: () => void, delayMs: number): TimerHandle;
  /** Runs `fn` every `periodMs` until cancelled. */
  setRepeating(fn: () => void, periodMs: number): TimerHandle;
}

/** The process's monotonic clock. Sub-millisecond resolution; unaffected by wall-clock changes. */
export const monotonicClock: Clock = {
  nowMs: () => performance.now(),
  setTimer(fn, delayMs) {
    const t = setTimeout(fn, Math.max(0, Math.ceil(delayMs)));
    return { cancel: () => clearTimeout(t) };
  },
  setRepeating(fn, periodMs) {
    const t = setInterval(fn, Math.max(1, Math.ceil(periodMs)));
    return { cancel: () => clearInterval(t) };
  },
};

/**
 * Wall-clock milliseconds since the Unix epoch. For labelling and for clock-offset estimates
 * between hosts only: it can jump, so it never enters rate math.
 */
export function wallClockMs(): number {
  return Date.now();
}

/**
 * A clock that moves only when told to, for tests and simulations.
 *
 * @example
 * const clock = new ManualClock(0);
 * clock.advance(250); // clock.nowMs() === 250
 */
export class ManualClock implements Clock {
  #nowMs: number;
  #timers = new Set<ManualTimer>();

  constructor(startMs = 0) {
    this.#nowMs = startMs;
  }

  nowMs(): number {
    return this.#nowMs;
  }

  /** Move the clock forward by `ms` (>= 0), running every timer that falls due, in time order. */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`Expected \`ms\` to be a number >= 0, got \`${ms}\``);
    const target = this.#nowMs + ms;
    for (;;) {
      let next: ManualTimer | undefined;
      for (const t of this.#timers)
        if (t.dueMs <= target && (!next || t.dueMs < next.dueMs)) next = t;
      if (!next) break;
      if (next.dueMs > this.#nowMs) this.#nowMs = next.dueMs;
      if (next.periodMs > 0) next.dueMs += next.periodMs;
      else this.#timers.delete(next);
      next.fn();
    }
    this.#nowMs = target;
  }

  /** Timers not yet run or cancelled. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  setTimer(fn: () => void, delayMs: number): TimerHandle {
    return this.#add(fn, Math.max(0, delayMs), 0);
  }

  setRepeating(fn: () => void, periodMs: number): TimerHandle {
    return this.#add(fn, Math.max(1, periodMs), Math.max(1, periodMs));
  }

  #add(fn: () => void, delayMs: number, periodMs: number): TimerHandle {
    const timer: ManualTimer = { fn, dueMs: this.#nowMs + delayMs, periodMs };
    this.#timers.add(timer);
    return { cancel: () => this.#timers.delete(timer) };
  }

  /**
   * Set the clock to `ms`. Setting it backwards is allowed on purpose: tests use it to show that
   * the algorithms never refill or grant capacity when time goes backwards.
   */
  set(ms: number): void {
    this.#nowMs = ms;
  }
}

interface ManualTimer {
  readonly fn: () => void;
  dueMs: number;
  readonly periodMs: number;
}
