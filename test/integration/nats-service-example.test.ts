import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { SHARED_NATS } from "./helpers/cluster-procs.js";

/** `examples/nats-service.mjs` of this checkout (this file runs from `dist/test/integration/`). */
const EXAMPLE = fileURLToPath(new URL("../../../examples/nats-service.mjs", import.meta.url));

it("nats-service example - runs to exit 0, showing a 429 with Retry-After and a carried deadline", async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [EXAMPLE], {
    env: { ...process.env, NATS_URL: SHARED_NATS },
    timeout: 20_000,
  });
  assert.match(stdout, /plain request 3: 429 .*Retry-After: 1 s, \d+ ms/);
  const carried = /request with 1000 ms deadline: ok, ledger saw (\d+) ms left/.exec(stdout);
  assert.ok(carried, stdout);
  assert.ok(Number(carried[1]) < 1000 - 25, stdout);
  assert.match(stdout, /request with 50 ms deadline: 504 /);
});
