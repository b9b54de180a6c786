import assert from "node:assert/strict";
import { test } from "node:test";
import { ClosedError } from "../../../src/errors.js";
import { createLimiter } from "../../../src/limiter/limiter.js";

/** Timers and other handles in this process now, by type. */
function handles(): string[] {
  return process.getActiveResourcesInfo().filter((r) => r !== "TTYWrap" && r !== "PipeWrap");
}

test("hygiene - after close() the limiter leaves no active handle (real clock)", async () => {
  const before = handles().filter((h) => h === "Timeout").length;
  const limiter = createLimiter({
    rules: [{ name: "r", limit: 1, windowMs: 60_000 }],
    sweepIntervalMs: 1000,
  });
  limiter.check("r", "k");
  const waiting = limiter.acquire("r", "k").catch((err: unknown) => err);
  await new Promise((r) => setImmediate(r));
  const during = handles().filter((h) => h === "Timeout").length;
  assert.ok(during >= before + 2, `sweep and wait timers are live (${during} vs ${before})`);
  await limiter.close();
  assert.ok((await waiting) instanceof ClosedError);
  assert.equal(
    handles().filter((h) => h === "Timeout").length,
    before,
    "every timer we started is gone",
  );
});
