/**
 * The guard of NATS request handlers.
 *
 * In: a request (a core `Msg`, or an `@nats-io/services` `ServiceMsg`, told apart by its
 * `respondError`). Out: either the handler runs (the request fit every rule), or a service
 * error reply is sent and the handler never runs. Order: no reply subject → dropped; a bad
 * deadline header → 400; a deadline already passed → 504; then the limiter decides. A single
 * rule with a deadline (or `maxWaitMs`) waits with `acquire()`, never past the deadline; when
 * the wait would end past it the reply is 504 at once. Otherwise `decideAll()` decides without
 * waiting; a refusal is 429. Every refusal carries `Retry-After` (s) and `Sluice-Retry-After-Ms`.
 */
import { headers } from "@nats-io/transport-node";
import { DeadlineExceededError } from "../errors.js";
import type { Limiter } from "../limiter/limiter.js";
import {
  type LocalDeadline,
  localDeadline,
  parseDeadlineHeader,
  rememberDeadline,
} from "./deadline.js";
import {
  type GuardOptions,
  type Refusal,
  type RequestMsg,
  type SettledGuardOptions,
  settleGuardOptions,
} from "./guard-options.js";
import {
  DEADLINE_HEADER,
  RETRY_AFTER_HEADER,
  RETRY_AFTER_MS_HEADER,
  SERVICE_ERROR_CODE_HEADER,
  SERVICE_ERROR_HEADER,
  ServiceErrorCode,
} from "./headers.js";

/** Counters of one guard, since it was made. */
export interface GuardStats {
  readonly admitted: number;
  /** Refused by a rule (429). */
  readonly limited: number;
  /** Refused for the deadline, on receipt or because the wait would pass it (504). */
  readonly deadlineExceeded: number;
  /** Refused for a malformed deadline header (400). */
  readonly badDeadline: number;
  /** Let through by shadow mode although a rule refused. */
  readonly shadowed: number;
  /** Requests without a reply subject, dropped unanswered. */
  readonly dropped: number;
  /** Errors from the limiter, the key or cost function (the request is dropped). */
  readonly failed: number;
}

/** A structural `ServiceMsg`: a `Msg` that can reply with a service error. */
export interface ServiceErrorResponder {
  respondError(
    code: number,
    description: string,
    data?: Uint8Array,
    opts?: { headers?: ReturnType<typeof headers> },
  ): boolean;
}

/** A guarded handler, with its counters. */
export type GuardedHandler<M extends RequestMsg> = ((err: Error | null, msg: M) => void) & {
  stats(): GuardStats;
};

/**
 * Guards a request handler for `nc.subscribe(subject, { callback })` and for `@nats-io/services`
 * endpoints alike (`guardHandler` and `guardEndpoint` are this function). An error passed in by
 * the client goes straight to the handler. The handler's returned promise is not awaited.
 */
export function guard<M extends RequestMsg>(
  limiter: Limiter,
  options: GuardOptions<M>,
  handler: (err: Error | null, msg: M) => unknown,
): GuardedHandler<M> {
  const settled = settleGuardOptions(options);
  const stats = {
    admitted: 0,
    limited: 0,
    deadlineExceeded: 0,
    badDeadline: 0,
    shadowed: 0,
    dropped: 0,
    failed: 0,
  };
  const clock = { nowMs: () => limiter.nowMs() };
  const guarded = (err: Error | null, msg: M): void => {
    if (err) {
      handler(err, msg);
      return;
    }
    if (!msg.reply) {
      stats.dropped++;
      return;
    }
    const parsed = parseDeadlineHeader(msg.headers?.get(DEADLINE_HEADER) || undefined);
    if (parsed.kind === "invalid") {
      stats.badDeadline++;
      refuse(
        settled,
        msg,
        {
          reason: "bad-deadline",
          code: ServiceErrorCode.badDeadline,
          key: "",
          retryAfterMs: 0,
          decision: undefined,
        },
        parsed.reason,
      );
      return;
    }
    const deadline = parsed.kind === "budget" ? localDeadline(parsed.budgetMs, clock) : undefined;
    if (deadline && parsed.kind === "budget" && parsed.budgetMs <= 0) {
      stats.deadlineExceeded++;
      refuse(
        settled,
        msg,
        {
          reason: "deadline-exceeded",
          code: ServiceErrorCode.deadlineExceeded,
          key: "",
          retryAfterMs: 0,
          decision: undefined,
        },
        "Deadline exceeded on receipt",
      );
      return;
    }
    decide(limiter, settled, msg, deadline).then(
      (outcome) => {
        if (outcome.refusal) {
          if (outcome.refusal.code === ServiceErrorCode.limited) stats.limited++;
          else stats.deadlineExceeded++;
          refuse(settled, msg, outcome.refusal, outcome.description);
          return;
        }
        if (outcome.shadowed) stats.shadowed++;
        stats.admitted++;
        if (deadline) rememberDeadline(msg, deadline);
        handler(null, msg);
      },
      () => {
        stats.failed++;
      },
    );
  };
  return Object.assign(guarded, { stats: (): GuardStats => ({ ...stats }) });
}

/** `guard` for `nc.subscribe(subject, { callback })` handlers. */
export const guardHandler = guard;
/** `guard` for `@nats-io/services` endpoint handlers (replies through `respondError`). */
export const guardEndpoint = guard;

interface Outcome {
  readonly refusal: Refusal | undefined;
  readonly description: string;
  readonly shadowed: boolean;
}

async function decide<M extends RequestMsg>(
  limiter: Limiter,
  o: SettledGuardOptions<M>,
  msg: M,
  deadline: LocalDeadline | undefined,
): Promise<Outcome> {
  const key = o.key(msg);
  const cost = o.cost?.(msg);
  const costOption = cost === undefined ? {} : { cost };
  const rule = o.rules[0]!;
  if (o.rules.length === 1 && !o.shadow && (deadline || o.maxWaitMs > 0)) {
    const waitEnd = limiter.nowMs() + o.maxWaitMs;
    const byDeadline =
      deadline !== undefined && (o.maxWaitMs === 0 || deadline.deadlineMs <= waitEnd);
    const deadlineMs = byDeadline ? deadline.deadlineMs : waitEnd;
    try {
      await limiter.acquire(rule, key, { ...costOption, deadlineMs });
      return { refusal: undefined, description: "", shadowed: false };
    } catch (e) {
      if (!(e instanceof DeadlineExceededError)) throw e;
      const code = byDeadline ? ServiceErrorCode.deadlineExceeded : ServiceErrorCode.limited;
      const refusal: Refusal = {
        reason: byDeadline ? "deadline-exceeded" : "limited",
        code,
        key,
        retryAfterMs: e.retryAfterMs,
        decision: undefined,
      };
      const description = byDeadline
        ? `Deadline exceeded: ${e.message}`
        : `Rate limited by ${rule}`;
      return { refusal, description, shadowed: false };
    }
  }
  const multi = await limiter.decideAll(o.rules, key, { ...costOption, shadow: o.shadow });
  if (multi.allowed) return { refusal: undefined, description: "", shadowed: multi.shadowed };
  const decision = multi.decisions[multi.refusedBy];
  const refusal: Refusal = {
    reason: "limited",
    code: ServiceErrorCode.limited,
    key,
    retryAfterMs: decision?.retryAfterMs ?? 0,
    decision,
  };
  return { refusal, description: `Rate limited by ${o.rules[multi.refusedBy]}`, shadowed: false };
}

/** Sends the service error reply of a refusal, then tells `onLimited`. */
function refuse<M extends RequestMsg>(
  o: SettledGuardOptions<M>,
  msg: M,
  refusal: Refusal,
  description: string,
): void {
  const h = headers();
  if (refusal.retryAfterMs > 0 && Number.isFinite(refusal.retryAfterMs)) {
    h.set(RETRY_AFTER_HEADER, String(Math.ceil(refusal.retryAfterMs / 1000)));
    h.set(RETRY_AFTER_MS_HEADER, String(Math.ceil(refusal.retryAfterMs)));
  }
  const responder = msg as Partial<ServiceErrorResponder>;
  if (typeof responder.respondError === "function") {
    responder.respondError(refusal.code, description, undefined, { headers: h });
  } else {
    h.set(SERVICE_ERROR_CODE_HEADER, String(refusal.code));
    h.set(SERVICE_ERROR_HEADER, description);
    msg.respond(undefined, { headers: h });
  }
  o.onLimited?.(msg, refusal);
}
