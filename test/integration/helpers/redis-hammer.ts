/**
 * Child process for the multi-process tests: `node dist/test/integration/helpers/redis-hammer.js
 * '<json config>'`. Connects its own strict store, prints `ready`, waits for a line on stdin (so
 * every process starts hammering at once), then fires `hits` decisions of `cost` on one key with
 * `inFlight` outstanding, and prints one JSON line: {admitted, rejected, storeFailures}.
 */
import { createLimiter, createRedisStrictStore, type RuleConfig } from "../../../src/index.js";
import { waitForRelease } from "./released-children.js";

interface HammerConfig {
  readonly url: string;
  readonly keyPrefix: string;
  readonly rule: RuleConfig;
  readonly key: string;
  readonly hits: number;
  readonly inFlight: number;
  readonly cost: number;
  readonly overLimitCache: boolean;
}

const config = JSON.parse(process.argv[2]!) as HammerConfig;
const strictStore = createRedisStrictStore({
  url: config.url,
  keyPrefix: config.keyPrefix,
  ...(config.overLimitCache ? {} : { overLimitCache: false as const }),
});
const limiter = createLimiter({ rules: [config.rule], strictStore, sweepIntervalMs: 0 });
const rule = limiter.rules[0]!;

await strictStore.peek(rule, `${config.key}:warm-up`); // connected and scripts loaded
process.stdout.write("ready\n");
await waitForRelease();

let admitted = 0;
let rejected = 0;
let next = 0;
async function worker(): Promise<void> {
  while (next < config.hits) {
    next++;
    const d = await limiter.checkAsync(rule.name, config.key, config.cost);
    if (d.allowed) admitted++;
    else rejected++;
  }
}
await Promise.all(Array.from({ length: config.inFlight }, worker));
const storeFailures = limiter.stats()[0]!.storeFailures;
await limiter.close();
process.stdout.write(`${JSON.stringify({ admitted, rejected, storeFailures })}\n`);
