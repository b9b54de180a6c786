/**
 * Header formatting for every format, checked by parsing the fields with structured-headers
 * (the draft formats) or as plain integers (legacy, draft-6).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { type Item, parseList } from "structured-headers";
import { formatHeaders } from "../../../src/http/headers.js";
import { partitionKeyOf } from "../../../src/http/partition-key.js";
import { type RuleState, retryAfterS, ruleState, tightest } from "../../../src/http/rule-state.js";

const burst: RuleState = {
  name: "burst",
  quota: 10,
  windowS: 1,
  remaining: 7,
  resetS: 1,
  refused: false,
};
const daily: RuleState = {
  name: "daily",
  quota: 1000,
  windowS: 86400,
  remaining: 3,
  resetS: 86400,
  refused: false,
};

function field(pairs: [string, string][], name: string): string {
  const values = pairs.filter(([n]) => n === name).map(([, v]) => v);
  assert.equal(values.length, 1, `one ${name} field`);
  return values[0]!;
}

function params(item: Item): Record<string, unknown> {
  return Object.fromEntries(item[1]);
}

test("headers draft-11 - one String item per rule with q, w and r, t, pk the key's hash", () => {
  const pk = partitionKeyOf("10.0.0.1");
  const pairs = formatHeaders("draft-11", [burst, daily], pk, 0);
  const policy = parseList(field(pairs, "RateLimit-Policy")) as Item[];
  const limit = parseList(field(pairs, "RateLimit")) as Item[];
  assert.deepEqual(
    policy.map((i) => i[0]),
    ["burst", "daily"],
  );
  assert.equal(typeof policy[0]![0], "string", "policy names are sf-strings");
  assert.deepEqual({ ...params(policy[1]!), pk: undefined }, { q: 1000, w: 86400, pk: undefined });
  assert.deepEqual({ ...params(limit[0]!), pk: undefined }, { r: 7, t: 1, pk: undefined });
  for (const item of [...policy, ...limit]) {
    const bytes = new Uint8Array(item[1].get("pk") as ArrayBuffer);
    assert.deepEqual(bytes, new Uint8Array(pk));
    assert.equal(bytes.length, 12);
  }
});

test("headers draft-11 - without a partition key no pk parameter is sent", () => {
  const pairs = formatHeaders("draft-11", [burst], undefined, 0);
  for (const name of ["RateLimit-Policy", "RateLimit"]) {
    const [item] = parseList(field(pairs, name)) as Item[];
    assert.equal(item![1].has("pk"), false);
  }
});

test("headers draft-8 - pk on the policy only, r and t in RateLimit", () => {
  const pairs = formatHeaders("draft-8", [burst], partitionKeyOf("k"), 0);
  const [policy] = parseList(field(pairs, "RateLimit-Policy")) as Item[];
  const [limit] = parseList(field(pairs, "RateLimit")) as Item[];
  assert.equal(policy![1].has("pk"), true);
  assert.deepEqual(params(limit!), { r: 7, t: 1 });
});

test("headers draft-7 - RateLimit names the tightest rule, the policy lists every rule", () => {
  const pairs = formatHeaders("draft-7", [burst, daily], undefined, 0);
  assert.equal(field(pairs, "RateLimit"), "limit=1000, remaining=3, reset=86400");
  const policy = parseList(field(pairs, "RateLimit-Policy")) as Item[];
  assert.deepEqual(
    policy.map((i) => [i[0], params(i)]),
    [
      [10, { w: 1 }],
      [1000, { w: 86400 }],
    ],
  );
});

test("headers draft-6 - three integer fields for the refusing rule before any other", () => {
  const refused = { ...burst, remaining: 0, resetS: 2, refused: true };
  const pairs = formatHeaders("draft-6", [refused, daily], undefined, 0);
  assert.equal(field(pairs, "RateLimit-Limit"), "10");
  assert.equal(field(pairs, "RateLimit-Remaining"), "0");
  assert.equal(field(pairs, "RateLimit-Reset"), "2");
});

test("headers legacy - X-RateLimit-Reset is the Unix time in seconds of the reset", () => {
  const pairs = formatHeaders("legacy", [burst], undefined, 1_700_000_000_500);
  assert.equal(field(pairs, "X-RateLimit-Limit"), "10");
  assert.equal(field(pairs, "X-RateLimit-Remaining"), "7");
  assert.equal(field(pairs, "X-RateLimit-Reset"), String(1_700_000_001 + 1));
});

test("rule state - seconds round up; a refusal reports its retry wait, Infinity the window", () => {
  const rule = { name: "r", limit: 5.5, windowMs: 1500 };
  const ok = { allowed: true, remaining: 2, limit: 5, resetAfterMs: 1001, retryAfterMs: 0 };
  assert.deepEqual(ruleState(rule, ok, false), {
    name: "r",
    quota: 5,
    windowS: 2,
    remaining: 2,
    resetS: 2,
    refused: false,
  });
  const no = { allowed: false, remaining: 0, limit: 5, resetAfterMs: 1500, retryAfterMs: 1 };
  assert.equal(ruleState(rule, no, true).resetS, 1);
  const never = { ...no, retryAfterMs: Number.POSITIVE_INFINITY };
  assert.equal(ruleState(rule, never, true).resetS, 2);
});

test("rule state - Retry-After is the longest wait among refusing rules; tightest prefers refusal", () => {
  const a = { ...burst, refused: true, remaining: 0, resetS: 1 };
  const b = { ...daily, refused: true, remaining: 0, resetS: 40 };
  assert.equal(retryAfterS([a, b, burst]), 40);
  assert.equal(retryAfterS([burst, daily]), 0);
  assert.equal(tightest([daily, a]).name, "burst");
  assert.equal(tightest([burst, daily]).name, "daily");
});
