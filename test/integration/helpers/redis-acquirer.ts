/**
 * Child process of the strict `acquire()` test: `node redis-acquirer.js '<json config>'`.
 * Connects its own strict store, prints `ready`, waits for the release line, then keeps
 * `inFlight` callers in `acquire()` on one key with `timeoutMs` each, for `durationMs`, and
 * prints one JSON line with what happened (see {@link AcquirerResult}). A caller refused past its
 * deadline pauses 10 ms before it calls again, as a client would, instead of spinning.
 */
import {
  createLimiter,
  createRedisStrictStore,
  DeadlineExceededError,
  type RuleConfig,
} from "../../../src/index.js";
import { waitForRelease } from "./released-children.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface AcquirerConfig {
  readonly url: string;
  readonly keyPrefix: string;
  readonly rule: RuleConfig;
  readonly key: string;
  readonly inFlight: number;
  readonly timeoutMs: number;
  readonly durationMs: number;
}

export interface AcquirerResult {
  readonly admitted: number;
  /** Admitted after waiting at least 5 ms (the wait between attempts was used). */
  readonly admittedAfterWait: number;
  readonly deadlineErrors: number;
  /**
   * DeadlineExceededError thrown within a fifth of `timeoutMs` of the call: it gave up without
   * sleeping (a sleep would have lasted the store's wait, longer than the timeout).
   */
  readonly deadlineErrorsAtOnce: number;
  readonly otherErrors: string[];
  /** Longest time a call took beyond its own deadline, ms (0 when none overran). */
  readonly maxOverrunMs: number;
  readonly storeFailures: number;
}

const config = JSON.parse(process.argv[2]!) as AcquirerConfig;
const strictStore = createRedisStrictStore({ url: config.url, keyPrefix: config.keyPrefix });
const limiter = createLimiter({ rules: [config.rule], strictStore, sweepIntervalMs: 0 });
const rule = limiter.rules[0]!;

await strictStore.peek(rule, `${config.key}:warm-up`); // connected and scripts loaded
process.stdout.write("ready\n");
await waitForRelease();

const endMs = performance.now() + config.durationMs;
const r = {
  admitted: 0,
  admittedAfterWait: 0,
  deadlineErrors: 0,
  deadlineErrorsAtOnce: 0,
  otherErrors: [] as string[],
  maxOverrunMs: 0,
};
async function caller(): Promise<void> {
  while (performance.now() < endMs) {
    const started = performance.now();
    try {
      await limiter.acquire(rule.name, config.key, { timeoutMs: config.timeoutMs });
      r.admitted++;
      if (performance.now() - started >= 5) r.admittedAfterWait++;
    } catch (err) {
      if (!(err instanceof DeadlineExceededError)) r.otherErrors.push(String(err));
      else {
        r.deadlineErrors++;
        if (performance.now() - started < config.timeoutMs / 5) r.deadlineErrorsAtOnce++;
      }
    }
    const overrun = performance.now() - started - config.timeoutMs;
    if (overrun > r.maxOverrunMs) r.maxOverrunMs = overrun;
    if (performance.now() - started < config.timeoutMs) await sleep(10);
  }
}
await Promise.all(Array.from({ length: config.inFlight }, caller));
const storeFailures = limiter.stats()[0]!.storeFailures;
await limiter.close();
process.stdout.write(`${JSON.stringify({ ...r, storeFailures } satisfies AcquirerResult)}\n`);
