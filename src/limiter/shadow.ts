/**
 * Shadow mode's decision: what a rule in shadow mode returns for a hit it would have refused.
 * The hit is let through; the fields say what enforcing would have said.
 */
import type { Decision } from "../algorithms/types.js";

export class ShadowDecision implements Decision {
  readonly allowed = true;
  readonly remaining = 0;
  readonly shadowed = true;
  constructor(
    readonly limit: number,
    readonly resetAfterMs: number,
    readonly retryAfterMs: number,
  ) {}
}

/** The shadow form of the refusal `refused`. */
export function shadowOf(refused: Decision): Decision {
  return new ShadowDecision(refused.limit, refused.resetAfterMs, refused.retryAfterMs);
}
