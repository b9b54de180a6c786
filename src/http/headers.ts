/**
 * Response header fields for each format, as `[name, value]` pairs in order; a name may repeat
 * only where its field is a list. In: the rules' states, the partition key (or undefined), the
 * wall time in ms (legacy's reset is a Unix time). Out: the pairs; nothing is set here.
 */
import { type Item, serializeList } from "structured-headers";
import type { HeaderFormat } from "./options.js";
import { type RuleState, tightest } from "./rule-state.js";

export type HeaderPairs = [name: string, value: string][];

export function formatHeaders(
  format: HeaderFormat,
  states: readonly RuleState[],
  pk: Uint8Array | undefined,
  wallMs: number,
): HeaderPairs {
  switch (format) {
    case "draft-11":
      return fieldLists(states, pk, false);
    case "draft-8":
      return fieldLists(states, pk, true);
    case "draft-7":
      return draft7(states);
    case "draft-6":
      return draft6(states);
    case "legacy":
      return legacy(states, wallMs);
  }
}

/**
 * `RateLimit-Policy: "burst";q=10;w=1, ...` and `RateLimit: "burst";r=9;t=1, ...`, one item per
 * rule; `pk` on both (draft 11) or, with `pkOnPolicyOnly`, on the policy alone (draft 8, as
 * express-rate-limit sends it).
 */
function fieldLists(
  states: readonly RuleState[],
  pk: Uint8Array | undefined,
  pkOnPolicyOnly: boolean,
): HeaderPairs {
  const policy: Item[] = [];
  const limit: Item[] = [];
  for (const s of states) {
    const p = new Map<string, number | Uint8Array>([
      ["q", s.quota],
      ["w", s.windowS],
    ]);
    const l = new Map<string, number | Uint8Array>([
      ["r", s.remaining],
      ["t", s.resetS],
    ]);
    if (pk !== undefined) {
      p.set("pk", pk);
      if (!pkOnPolicyOnly) l.set("pk", pk);
    }
    policy.push([s.name, p]);
    limit.push([s.name, l]);
  }
  return [
    ["RateLimit-Policy", serializeList(policy)],
    ["RateLimit", serializeList(limit)],
  ];
}

function draft7(states: readonly RuleState[]): HeaderPairs {
  const t = tightest(states);
  return [
    ["RateLimit-Policy", policyList(states)],
    ["RateLimit", `limit=${t.quota}, remaining=${t.remaining}, reset=${t.resetS}`],
  ];
}

/** Draft 6: three fields for the tightest rule, and every rule in `RateLimit-Policy`. */
function draft6(states: readonly RuleState[]): HeaderPairs {
  const t = tightest(states);
  return [
    ["RateLimit-Policy", policyList(states)],
    ["RateLimit-Limit", String(t.quota)],
    ["RateLimit-Remaining", String(t.remaining)],
    ["RateLimit-Reset", String(t.resetS)],
  ];
}

/** `X-RateLimit-*` for the tightest rule; the reset is a Unix time in seconds. */
function legacy(states: readonly RuleState[], wallMs: number): HeaderPairs {
  const t = tightest(states);
  return [
    ["X-RateLimit-Limit", String(t.quota)],
    ["X-RateLimit-Remaining", String(t.remaining)],
    ["X-RateLimit-Reset", String(Math.ceil(wallMs / 1000) + t.resetS)],
  ];
}

/** Drafts 6 and 7: `10;w=1, 1000;w=86400`. */
function policyList(states: readonly RuleState[]): string {
  return serializeList(states.map((s) => [s.quota, new Map([["w", s.windowS]])] as Item));
}
