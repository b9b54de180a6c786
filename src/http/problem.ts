/**
 * The default refusal body: an RFC 9457 problem of the draft's `quota-exceeded` type, with the
 * draft's `violated-policies` extension (the names of the rules that refused) and the wait.
 */
import type { RuleState } from "./rule-state.js";

export const PROBLEM_CONTENT_TYPE = "application/problem+json";
export const QUOTA_EXCEEDED_TYPE = "https://iana.org/assignments/http-problem-types#quota-exceeded";

export interface QuotaExceededProblem {
  readonly type: typeof QUOTA_EXCEEDED_TYPE;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly "violated-policies": readonly string[];
  /** Seconds until the request would be admitted, as in `Retry-After`. */
  readonly "retry-after": number;
}

export function quotaExceeded(
  states: readonly RuleState[],
  status: number,
  retryAfterS: number,
): QuotaExceededProblem {
  const violated = states.filter((s) => s.refused).map((s) => s.name);
  return {
    type: QUOTA_EXCEEDED_TYPE,
    title: "Request cannot be satisfied as assigned quota has been exceeded",
    status,
    detail: `Quota exceeded for ${violated.map((v) => `"${v}"`).join(", ")}; retry in ${retryAfterS} s`,
    "violated-policies": violated,
    "retry-after": retryAfterS,
  };
}
