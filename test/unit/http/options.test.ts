/** Option validation: each bad option fails at setup with an InvalidArgumentError naming it. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { InvalidArgumentError } from "../../../src/errors.js";
import { settleOptions } from "../../../src/http/options.js";
import { createLimiter } from "../../../src/limiter/limiter.js";

const limiter = createLimiter({
  rules: [
    { name: "burst", limit: 10, windowMs: 1000 },
    { name: "daily", limit: 1000, windowMs: 86_400_000 },
  ],
  sweepIntervalMs: 0,
});

function rejects(options: unknown, field: string) {
  assert.throws(
    () => settleOptions(limiter, options),
    (e: unknown) => e instanceof InvalidArgumentError && e.field === field,
    field,
  );
}

test("http options - defaults: draft-11 headers, partition key on, 429, no shadow", () => {
  const o = settleOptions(limiter, { rules: "burst" });
  assert.deepEqual(o.rules, ["burst"]);
  assert.equal(o.headers, "draft-11");
  assert.equal(o.partitionKey, true);
  assert.equal(o.statusCode, 429);
  assert.equal(o.shadow, false);
});

test("http options - each bad option is named", () => {
  rejects({ rules: [] }, "options.rules");
  rejects({ rules: "nope" }, "options.rules");
  rejects({ rules: ["burst", "nope"] }, "options.rules[1]");
  rejects({ rules: ["burst", "burst"] }, "options.rules[1]");
  rejects({ rules: "burst", headers: "draft-99" }, "options.headers");
  rejects({ rules: "burst", key: "ip" }, "options.key");
  rejects({ rules: "burst", cost: 2 }, "options.cost");
  rejects({ rules: "burst", skip: true }, "options.skip");
  rejects({ rules: "burst", onLimited: {} }, "options.onLimited");
  rejects({ rules: "burst", shadow: "yes" }, "options.shadow");
  rejects({ rules: "burst", partitionKey: 1 }, "options.partitionKey");
  rejects({ rules: "burst", statusCode: 200 }, "options.statusCode");
  rejects({ rules: "burst", windowMs: 1 }, "options.windowMs");
  rejects(null, "options");
});

test("http options - a limiter is required", () => {
  assert.throws(
    () => settleOptions(undefined as never, { rules: "burst" }),
    (e: unknown) => e instanceof InvalidArgumentError && e.field === "limiter",
  );
});
