/** The default refusal body: RFC 9457 with the draft's quota-exceeded type. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { QUOTA_EXCEEDED_TYPE, quotaExceeded } from "../../../src/http/problem.js";

test("problem - quota-exceeded names the refusing rules and the wait", () => {
  const states = [
    { name: "burst", quota: 1, windowS: 1, remaining: 0, resetS: 1, refused: true },
    { name: "daily", quota: 9, windowS: 86400, remaining: 8, resetS: 9, refused: false },
  ];
  const body = JSON.parse(JSON.stringify(quotaExceeded(states, 429, 1)));
  assert.equal(body.type, QUOTA_EXCEEDED_TYPE);
  assert.equal(body.type, "https://iana.org/assignments/http-problem-types#quota-exceeded");
  assert.equal(body.status, 429);
  assert.equal(typeof body.title, "string");
  assert.match(body.detail, /burst/);
  assert.deepEqual(body["violated-policies"], ["burst"]);
  assert.equal(body["retry-after"], 1);
});
