import assert from "node:assert/strict";
import { test } from "node:test";
import {
  lagCompensationOf,
  resolveTuning,
  TUNING_FIELDS,
  tuningFlagsFromEnv,
} from "../../../src/aggregator/tuning.js";
import { aggregatorCommand } from "../../../src/cli/aggregator-command.js";
import { InvalidArgumentError } from "../../../src/errors.js";

test("tuning - defaults fill what is not given; the lag compensation follows the interval and the ramp", () => {
  const t = resolveTuning({});
  assert.equal(t.syncIntervalMs, 25);
  assert.equal(t.pacing, 1.5);
  assert.equal(t.hitWaitCompensation, true);
  assert.equal(t.echoDamping, false);
  assert.equal(t.warmupMs, undefined, "left to the service, which knows the rules");
  assert.equal(lagCompensationOf(t), 12.5);
  assert.equal(lagCompensationOf(resolveTuning({ grantRampMs: 50 })), 7.5);
  assert.equal(lagCompensationOf(resolveTuning({ lagCompensationMs: 3 })), 3);
});

test("tuning - a bad value is refused, naming the field, the expectation and the value", () => {
  assert.throws(
    () => resolveTuning({ syncIntervalMs: 5 }),
    (err: unknown) =>
      err instanceof InvalidArgumentError &&
      err.field === "syncIntervalMs" &&
      /finite number >= 10 and <= 10000, got `5`/.test(err.message),
  );
  assert.throws(() => resolveTuning({ pacing: -1 }, "options"), /`options\.pacing`/);
  assert.throws(
    () => resolveTuning({ echoDamping: "yes" as unknown as boolean }),
    /`echoDamping` to be true or false/,
  );
});

test("tuning - every field has its flag in `sluice aggregator --help` and a bench variable", () => {
  for (const f of TUNING_FIELDS) {
    assert.ok(aggregatorCommand.usage.includes(f.flag), `${f.flag} in --help`);
    assert.match(f.env, /^ACC_[A-Z_]+$/);
  }
  assert.equal(new Set(TUNING_FIELDS.map((f) => f.flag)).size, TUNING_FIELDS.length);
});

test("tuning - the bench's variables become aggregator flags; a wrong word is refused", () => {
  assert.deepEqual(
    tuningFlagsFromEnv({ ACC_PACING: "1.25", ACC_HIT_WAIT: "off", ACC_SYNC_MS: "50" }, [
      "syncIntervalMs",
    ]),
    ["--pacing", "1.25", "--no-hit-wait"],
  );
  assert.deepEqual(tuningFlagsFromEnv({ ACC_ECHO_DAMPING: "on" }), ["--echo-damping"]);
  assert.throws(() => tuningFlagsFromEnv({ ACC_ECHO_DAMPING: "off" }), /ACC_ECHO_DAMPING/);
  assert.throws(() => tuningFlagsFromEnv({ ACC_PACING: "fast" }), /ACC_PACING/);
});
