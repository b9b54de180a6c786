/**
 * The framework-free core of every adapter: one request in, one `decideAll` call, and what to
 * answer out (header pairs, and for a refusal the status, `Retry-After` and problem body).
 * Adapters only read the key from their request type and write the outcome to their reply.
 */
import type { MultiDecision } from "../limiter/multi-decision.js";
import { formatHeaders, type HeaderPairs } from "./headers.js";
import type { SettledOptions } from "./options.js";
import { partitionKeyOf } from "./partition-key.js";
import { type QuotaExceededProblem, quotaExceeded } from "./problem.js";
import { type RuleShape, type RuleState, retryAfterS, ruleState } from "./rule-state.js";

export interface LimitOutcome {
  readonly decision: MultiDecision;
  /** The rate limit fields, plus `Retry-After` when refused. */
  readonly headers: HeaderPairs;
  /** True when the request must be answered with a refusal (never in shadow mode). */
  readonly refused: boolean;
  readonly status: number;
  readonly problem: QuotaExceededProblem | undefined;
}

export interface RequestLimiter<Req, Res> {
  readonly options: SettledOptions<Req, Res>;
  /** Undefined when `skip` says so: no decision, nothing to send. */
  limit(req: Req, defaultKey: (req: Req) => string | undefined): Promise<LimitOutcome | undefined>;
}

export function createRequestLimiter<Req, Res>(
  options: SettledOptions<Req, Res>,
  wallMs: () => number = Date.now,
): RequestLimiter<Req, Res> {
  const shapes: RuleShape[] = options.rules.map(
    (name) => options.limiter.rules.find((r) => r.name === name)!,
  );
  return {
    options,
    async limit(req, defaultKey) {
      if (options.skip?.(req) === true) return undefined;
      const key = (await options.key?.(req)) ?? defaultKey(req) ?? "unknown";
      const cost = options.cost === undefined ? undefined : await options.cost(req);
      const decision = await options.limiter.decideAll(
        options.rules,
        key,
        cost === undefined ? { shadow: options.shadow } : { cost, shadow: options.shadow },
      );
      const states: RuleState[] = decision.decisions.map((d, i) =>
        ruleState(shapes[i]!, d, !d.allowed),
      );
      const headers: HeaderPairs =
        options.headers === false
          ? []
          : formatHeaders(
              options.headers,
              states,
              options.partitionKey ? partitionKeyOf(key) : undefined,
              wallMs(),
            );
      if (decision.allowed)
        return { decision, headers, refused: false, status: 200, problem: undefined };
      const wait = retryAfterS(states);
      headers.push(["Retry-After", String(wait)]);
      return {
        decision,
        headers,
        refused: true,
        status: options.statusCode,
        problem: quotaExceeded(states, options.statusCode, wait),
      };
    },
  };
}
