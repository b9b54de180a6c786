/**
 * When a node's report goes out: REPORT_PHASE of a sync interval after each tick of the followed
 * aggregator is heard (its defaults broadcast, sent every tick), so that it lands mid-way between
 * two ticks, after the node has had time to spend the grants of this one; on the node's own
 * interval while no tick is heard, and as a backstop if a broadcast went missing.
 *
 * On its own timer the phase of a node's report to the aggregator's tick was fixed by when each
 * started, and it decided what the node was given: a node reporting just after a tick, before
 * spending that tick's grant, looked as if it still held it and was skipped at the next tick.
 * Reporting at one phase, every node is read at the same point of its cycle (docs/architecture.md,
 * "Report phase").
 */
import type { Clock, TimerHandle } from "../clock/clock.js";

/**
 * Where between two of the aggregator's ticks a node's report goes out, as a fraction of the
 * sync interval after the tick's broadcast arrives: half leaves the node time to spend the
 * tick's grants and the report half an interval of slack either way.
 */
const REPORT_PHASE = 0.5;

export interface ReportPhasingOptions {
  readonly clock: Clock;
  /** The node's sync interval, ms. */
  readonly syncIntervalMs: number;
  /** Whether reports follow the aggregator's ticks at all (`alignReports`). */
  readonly align: boolean;
  /** Publishes the pending counts (the agent's flush, which calls `flushed`). */
  readonly flush: () => void;
}

export class ReportPhasing {
  readonly #clock: Clock;
  readonly #syncIntervalMs: number;
  readonly #align: boolean;
  readonly #flush: () => void;
  /** When the node last flushed, and last heard the followed aggregator's tick. */
  #lastFlushMs = Number.NEGATIVE_INFINITY;
  #tickHeardMs = Number.NEGATIVE_INFINITY;
  /** The flush set for REPORT_PHASE of an interval after the tick was heard. */
  #phasedFlush: TimerHandle | undefined;
  #closed = false;

  constructor(o: ReportPhasingOptions) {
    this.#clock = o.clock;
    this.#syncIntervalMs = o.syncIntervalMs;
    this.#align = o.align;
    this.#flush = o.flush;
  }

  /** The node flushed at `nowMs` (on any timer, or asked to). */
  flushed(nowMs: number): void {
    this.#lastFlushMs = nowMs;
  }

  /**
   * The node's own sync timer fired at `nowMs`: whether to flush now. While ticks are heard the
   * phased flush reports; the own timer reports only when none came for 1.5 intervals.
   */
  dueOnOwnTimer(nowMs: number): boolean {
    const phased = nowMs - this.#tickHeardMs <= 2 * this.#syncIntervalMs;
    return !phased || nowMs - this.#lastFlushMs >= 1.5 * this.#syncIntervalMs;
  }

  /** The followed aggregator ticked: the next report goes out REPORT_PHASE of an interval on. */
  tickHeard(): void {
    if (!this.#align) return;
    const now = this.#clock.nowMs();
    this.#tickHeardMs = now;
    if (this.#phasedFlush !== undefined || this.#closed) return;
    const delayMs = this.#syncIntervalMs * REPORT_PHASE;
    // An aggregator ticking faster than we report (nodes at 50 ms, aggregator at 25) is
    // followed at every other tick, not at each.
    if (now + delayMs - this.#lastFlushMs < this.#syncIntervalMs * 0.75) return;
    this.#phasedFlush = this.#clock.setTimer(() => {
      this.#phasedFlush = undefined;
      this.#flush();
    }, delayMs);
  }

  /** Cancels the phased flush set, if any; sets no more. */
  close(): void {
    this.#closed = true;
    this.#phasedFlush?.cancel();
    this.#phasedFlush = undefined;
  }
}
