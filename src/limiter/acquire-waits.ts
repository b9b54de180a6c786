/**
 * The waits of `acquire()` between two attempts. Every wait is a timer owned here and ends in
 * one of four ways: its time passes (resolves), the caller's signal aborts (resolves: the caller
 * loops back and turns the abort into `AbortedError` with its accounting), `cancelAll()` at the
 * limiter's close (rejects with the close's error), or, for a wait on a global key, a grant
 * applied for that key (resolves: room may have come early). A wait that ended leaves no timer,
 * listener or registration behind.
 */
import type { Clock } from "../clock/clock.js";

export class AcquireWaits {
  readonly #clock: Clock;
  /** Every wait in progress, by the function that rejects it. */
  readonly #cancels = new Set<(err: Error) => void>();
  /** Waits on global keys, by `rule \0 key`: a grant applied for the key ends them. */
  readonly #grantWaits = new Map<string, Set<() => void>>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Waits `ms`, or until `signal` aborts or `cancelAll()`. */
  sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return this.#sleep(ms, signal, undefined);
  }

  /** As `sleep`, ended early too by `wakeGrantWaits(rule, key)`. */
  sleepOrGrant(
    ms: number,
    signal: AbortSignal | undefined,
    rule: string,
    key: string,
  ): Promise<void> {
    return this.#sleep(ms, signal, `${rule}\0${key}`);
  }

  /** A grant was applied for `key` of `rule`: the waits on it end now. */
  wakeGrantWaits(rule: string, key: string): void {
    if (this.#grantWaits.size === 0) return;
    const set = this.#grantWaits.get(`${rule}\0${key}`);
    if (set === undefined) return;
    for (const wake of [...set]) wake();
  }

  /** Rejects every wait in progress with `err`. */
  cancelAll(err: Error): void {
    for (const cancel of [...this.#cancels]) cancel(err);
    this.#cancels.clear();
  }

  #sleep(ms: number, signal: AbortSignal | undefined, wakeOn: string | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const finish = () => {
        this.#cancels.delete(cancel);
        signal?.removeEventListener("abort", onAbort);
        if (wakeOn !== undefined) {
          const set = this.#grantWaits.get(wakeOn);
          set?.delete(wake);
          if (set?.size === 0) this.#grantWaits.delete(wakeOn);
        }
      };
      const timer = this.#clock.setTimer(() => {
        finish();
        resolve();
      }, ms);
      const wake = () => {
        timer.cancel();
        finish();
        resolve();
      };
      if (wakeOn !== undefined) {
        let set = this.#grantWaits.get(wakeOn);
        if (set === undefined) {
          set = new Set();
          this.#grantWaits.set(wakeOn, set);
        }
        set.add(wake);
      }
      const cancel = (err: Error) => {
        timer.cancel();
        finish();
        reject(err);
      };
      // Looping back to the top of acquire() turns the abort into AbortedError with accounting.
      const onAbort = () => {
        timer.cancel();
        finish();
        resolve();
      };
      this.#cancels.add(cancel);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}
