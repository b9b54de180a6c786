/**
 * Deadlines that carry over from service to service.
 *
 * In: a request's `Sluice-Deadline-Ms` header, a duration. Out: a local absolute deadline on
 * the limiter's monotonic clock, and for the requests the handler makes in turn, the remaining
 * duration less a reserve. Invariant: a forwarded budget is never more than what is left of the
 * received one, so a chain never resets a deadline and never waits past its caller's.
 */
import { DeadlineExceededError } from "../errors.js";
import { DEADLINE_HEADER } from "./headers.js";

/** Largest budget a header may carry, ms (24 h); a larger value is clamped to it. */
export const MAX_DEADLINE_MS = 86_400_000;

/** What a deadline header said. */
export type ParsedDeadline =
  /** No header: the request has no deadline. */
  | { readonly kind: "none" }
  /** A budget of `budgetMs` (0 means it already ran out). */
  | { readonly kind: "budget"; readonly budgetMs: number }
  /** Not a decimal number >= 0; `reason` says what came. */
  | { readonly kind: "invalid"; readonly reason: string };

const DECIMAL = /^\s*\d+(\.\d+)?\s*$/;

/**
 * Reads a `Sluice-Deadline-Ms` value. Accepts decimal ms >= 0 (fractions allowed); rejects
 * negative, non-numeric and empty values; clamps values above {@link MAX_DEADLINE_MS}.
 */
export function parseDeadlineHeader(value: string | undefined): ParsedDeadline {
  if (value === undefined) return { kind: "none" };
  if (!DECIMAL.test(value)) {
    return {
      kind: "invalid",
      reason: `Expected \`${DEADLINE_HEADER}\` to be a duration in ms >= 0, got ${JSON.stringify(value.slice(0, 40))}`,
    };
  }
  return { kind: "budget", budgetMs: Math.min(Number(value), MAX_DEADLINE_MS) };
}

/** A deadline as a point on a monotonic clock. */
export interface LocalDeadline {
  /** Absolute deadline on `clock`'s scale, ms. */
  readonly deadlineMs: number;
  /** The clock `deadlineMs` is on (the limiter: `{ nowMs: () => limiter.nowMs() }`). */
  readonly clock: { nowMs(): number };
}

/** Converts a received budget to an absolute deadline on the receiver's clock. */
export function localDeadline(budgetMs: number, clock: { nowMs(): number }): LocalDeadline {
  return { deadlineMs: clock.nowMs() + budgetMs, clock };
}

/** Milliseconds left before `deadline` (negative once it passed). */
export function remainingMs(deadline: LocalDeadline): number {
  return deadline.deadlineMs - deadline.clock.nowMs();
}

/**
 * The budget to forward: what is left less `reserveMs` (time kept for the handler's own work
 * and the way back). Throws `DeadlineExceededError` when nothing would be left to forward.
 */
export function forwardBudgetMs(deadline: LocalDeadline, reserveMs: number): number {
  if (!(reserveMs >= 0) || !Number.isFinite(reserveMs)) {
    throw new RangeError(`Expected \`reserveMs\` to be a finite number >= 0, got \`${reserveMs}\``);
  }
  const leftMs = remainingMs(deadline);
  const budgetMs = leftMs - reserveMs;
  if (!(budgetMs >= 1)) {
    throw new DeadlineExceededError(
      0,
      Math.max(0, leftMs),
      `The deadline leaves ${Math.max(0, Math.round(leftMs))} ms, less than the ${reserveMs} ms reserve plus 1 ms to forward: not sent`,
    );
  }
  return Math.floor(budgetMs);
}

const deadlines = new WeakMap<object, LocalDeadline>();

/** Remembers the deadline of a message the guard admitted (keyed by the message object). */
export function rememberDeadline(msg: object, deadline: LocalDeadline): void {
  deadlines.set(msg, deadline);
}

/**
 * The local deadline of a request the guard admitted, or `undefined` when it carried none (or
 * the guard never saw it).
 */
export function deadlineOf(msg: object): LocalDeadline | undefined {
  return deadlines.get(msg);
}
