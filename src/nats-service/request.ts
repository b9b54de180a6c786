/**
 * Requests that carry a deadline on: the header says the remaining budget less a reserve, and
 * the request's own timeout is the remaining budget, so the caller never waits past its own
 * deadline and the next service never gets more time than is left.
 */
import { headers, type Msg, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { InvalidArgumentError } from "../errors.js";
import { deadlineOf, forwardBudgetMs, type LocalDeadline, localDeadline } from "./deadline.js";
import { DEADLINE_HEADER } from "./headers.js";

export interface DeadlineRequestOptions {
  /**
   * The deadline to carry: a message the guard admitted (its received deadline), or a
   * `LocalDeadline`. A message that carried none falls back to `timeoutMs`; with both, the
   * earlier deadline wins.
   */
  readonly deadline?: object | LocalDeadline;
  /** A budget from now, ms (> 0): the first of a chain, or the fallback of a message without one. */
  readonly timeoutMs?: number;
  /**
   * Ms kept back from the forwarded budget for this service's own work and the way back. Bounds:
   * finite, >= 0.
   * @default 0
   */
  readonly reserveMs?: number;
  /** Headers to send besides the deadline. */
  readonly headers?: MsgHdrs;
}

/**
 * Headers carrying `deadline`'s remaining budget less `reserveMs`. Throws
 * `DeadlineExceededError` when less than 1 ms would be left.
 */
export function outgoingHeaders(
  deadline: object | LocalDeadline,
  options: { reserveMs?: number; headers?: MsgHdrs } = {},
): MsgHdrs {
  const local = toLocal(deadline);
  const h = options.headers ?? headers();
  h.set(DEADLINE_HEADER, String(forwardBudgetMs(local, options.reserveMs ?? 0)));
  return h;
}

/**
 * `nc.request` with the deadline carried: header `Sluice-Deadline-Ms` = remaining - reserve,
 * timeout = remaining. Rejects with `DeadlineExceededError` without sending when the budget is
 * too short; rejects as `nc.request` does otherwise (a timeout, no responders).
 */
export async function request(
  nc: NatsConnection,
  subject: string,
  data: Uint8Array | string | undefined,
  options: DeadlineRequestOptions,
): Promise<Msg> {
  const deadline = settleDeadline(options);
  const h = outgoingHeaders(deadline, {
    ...(options.reserveMs === undefined ? {} : { reserveMs: options.reserveMs }),
    ...(options.headers === undefined ? {} : { headers: options.headers }),
  });
  const timeout = Math.max(1, Math.floor(deadline.deadlineMs - deadline.clock.nowMs()));
  return nc.request(subject, data, { timeout, headers: h });
}

function settleDeadline(options: DeadlineRequestOptions): LocalDeadline {
  const given = options.deadline;
  const carried =
    given === undefined
      ? undefined
      : "deadlineMs" in given
        ? (given as LocalDeadline)
        : deadlineOf(given);
  if (carried && options.timeoutMs === undefined) return carried;
  if (given !== undefined && !carried && options.timeoutMs === undefined) {
    throw new InvalidArgumentError(
      "options.deadline",
      "a message the guard admitted with a deadline, or a LocalDeadline (or give `timeoutMs`)",
      given,
    );
  }
  const own = fromTimeout(options.timeoutMs);
  if (!carried) return own;
  return carried.deadlineMs - carried.clock.nowMs() <= own.deadlineMs - own.clock.nowMs()
    ? carried
    : own;
}

function fromTimeout(timeoutMs: number | undefined): LocalDeadline {
  if (typeof timeoutMs !== "number" || !(timeoutMs > 0 && Number.isFinite(timeoutMs))) {
    throw new InvalidArgumentError(
      "options.timeoutMs",
      "a number of ms > 0 (or `deadline`)",
      timeoutMs,
    );
  }
  return localDeadline(timeoutMs, { nowMs: () => performance.now() });
}

function toLocal(deadline: object | LocalDeadline): LocalDeadline {
  if ("deadlineMs" in deadline && "clock" in deadline) return deadline as LocalDeadline;
  const local = deadlineOf(deadline);
  if (!local)
    throw new InvalidArgumentError(
      "options.deadline",
      "a message the guard admitted with a deadline, or a LocalDeadline",
      deadline,
    );
  return local;
}
