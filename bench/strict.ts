/**
 * `npm run bench` (second part): strict mode on Redis against rate-limiter-flexible's
 * `RateLimiterRedis`, on the same Redis server, in one run.
 *
 * Cases (closed loop: each of N workers awaits one call, then sends the next; rounds of each case
 * interleaved so machine noise spreads over all of them):
 * - sluice strict: `limiter.checkAsync()` on a strict token-bucket rule through
 *   `createRedisStrictStore` (defaults: auto-pipelining, over-limit cache on), 1,024 keys cycled,
 *   limit 1e9/s so every hit is admitted and runs the full script;
 * - rlflex redis: `RateLimiterRedis.consume(key)` with an ioredis client as its docs set it up
 *   (`enableOfflineQueue: false`, RESP2 like ours), same keys and limit; and once more with
 *   `enableAutoPipelining: true` on its client, to show how much of the gap is pipelining;
 * - each with 64 and with 1 call in flight;
 * - the floor of the 1-in-flight case: ioredis `PING` with one call in flight, a round trip that
 *   does no work. No limiter that asks Redis once per hit can go faster than this one at a time,
 *   so `ceilingVsRlflexRedis1` (PING over `RateLimiterRedis`, 1 in flight) is the most any such
 *   design could reach against it on this machine;
 * - a hot key over its limit (1 per hour, exhausted first), 64 in flight, with and without the
 *   over-limit cache: how much of a flood of refused hits stays off Redis.
 *
 * Reports throughput (median of the rounds) and p50/p99 latency (all calls of all rounds), then
 * one JSON line, the last line of output. Env: BENCH_STRICT_ROUND_MS (default 1000),
 * BENCH_STRICT_ROUNDS (default 3), REDIS_URL (default redis://127.0.0.1:6379).
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { RateLimiterRedis } from "rate-limiter-flexible";
import {
  createLimiter,
  createRedisStrictStore,
  type Limiter,
  type RedisStrictStore,
} from "../src/index.js";
import { fmtRate, median, round2, table } from "./harness.js";

const ROUND_MS = Number(process.env["BENCH_STRICT_ROUND_MS"] ?? 1000);
const ROUNDS = Number(process.env["BENCH_STRICT_ROUNDS"] ?? 3);
const URL = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379";
const KEYS = Array.from({ length: 1024 }, (_, i) => `user:${i}`);
const PREFIX = `sluice-bench:${randomBytes(4).toString("hex")}:`;
const MAX_SAMPLES = 4_000_000;

interface AsyncCase {
  readonly name: string;
  readonly inFlight: number;
  /** One call; `i` counts calls, for picking keys. */
  readonly call: (i: number) => Promise<unknown>;
}

interface CaseResult {
  readonly name: string;
  readonly opsPerSec: number;
  readonly p50Us: number;
  readonly p99Us: number;
}

/** Runs `c` for `ms` with `c.inFlight` workers; appends latencies (µs) to `samples`. */
async function runRound(c: AsyncCase, ms: number, samples: Samples): Promise<number> {
  let calls = 0;
  const start = performance.now();
  const until = start + ms;
  async function worker(): Promise<void> {
    while (performance.now() < until) {
      const t0 = performance.now();
      await c.call(calls++);
      samples.add((performance.now() - t0) * 1000);
    }
  }
  await Promise.all(Array.from({ length: c.inFlight }, worker));
  return (calls * 1000) / (performance.now() - start);
}

class Samples {
  readonly values = new Float64Array(MAX_SAMPLES);
  size = 0;
  add(us: number): void {
    if (this.size < MAX_SAMPLES) this.values[this.size++] = us;
  }
  percentile(p: number): number {
    const sorted = this.values.slice(0, this.size).sort();
    return sorted[Math.min(this.size - 1, Math.floor(p * this.size))] ?? Number.NaN;
  }
}

async function runAll(cases: readonly AsyncCase[]): Promise<CaseResult[]> {
  for (const c of cases) await runRound(c, Math.min(300, ROUND_MS), new Samples()); // warm-up
  const rates = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  const samples = new Map<string, Samples>(cases.map((c) => [c.name, new Samples()]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of cases)
      rates.get(c.name)!.push(await runRound(c, ROUND_MS, samples.get(c.name)!));
    process.stderr.write(`  round ${r + 1}/${ROUNDS}\r`);
  }
  process.stderr.write("\n");
  return cases.map((c) => ({
    name: c.name,
    opsPerSec: median(rates.get(c.name)!),
    p50Us: samples.get(c.name)!.percentile(0.5),
    p99Us: samples.get(c.name)!.percentile(0.99),
  }));
}

function sluiceLimiter(overLimitCache: boolean): { limiter: Limiter; store: RedisStrictStore } {
  const store = createRedisStrictStore({
    url: URL,
    keyPrefix: PREFIX,
    ...(overLimitCache ? {} : { overLimitCache: false as const }),
  });
  const limiter = createLimiter({
    rules: [
      { name: "api", limit: 1e9, windowMs: 1000, mode: "strict", storeTimeoutMs: 5000 },
      { name: "hot", limit: 1, windowMs: 3_600_000, mode: "strict", storeTimeoutMs: 5000 },
    ],
    strictStore: store,
    sweepIntervalMs: 0,
  });
  return { limiter, store };
}

async function main(): Promise<void> {
  const { limiter: sluice, store } = sluiceLimiter(true);
  const { limiter: sluiceNoCache, store: storeNoCache } = sluiceLimiter(false);
  await Promise.all([store.ready(), storeNoCache.ready()]);
  const rlflexClient = new Redis(URL, { protocol: 2, enableOfflineQueue: false });
  const rlflexPipelinedClient = new Redis(URL, {
    protocol: 2,
    enableOfflineQueue: false,
    enableAutoPipelining: true,
  });
  const rlflexOptions = { points: 1e9, duration: 1, keyPrefix: `${PREFIX}rlflx` };
  const rlflex = new RateLimiterRedis({ storeClient: rlflexClient, ...rlflexOptions });
  const rlflexPipelined = new RateLimiterRedis({
    storeClient: rlflexPipelinedClient,
    ...rlflexOptions,
  });
  await Promise.all(
    [rlflexClient, rlflexPipelinedClient].map(
      (c) => new Promise((resolve) => c.once("ready", resolve)),
    ),
  );
  // Exhaust the hot key once, so every later hit on it is refused.
  await sluice.checkAsync("hot", "hot");

  const key = (i: number) => KEYS[i & 1023]!;
  const cases: AsyncCase[] = [
    {
      name: "sluice strict, 64 in flight",
      inFlight: 64,
      call: (i) => sluice.checkAsync("api", key(i)),
    },
    { name: "rlflex redis, 64 in flight", inFlight: 64, call: (i) => rlflex.consume(key(i)) },
    {
      name: "rlflex redis + autopipelining, 64 in flight",
      inFlight: 64,
      call: (i) => rlflexPipelined.consume(key(i)),
    },
    {
      name: "sluice strict, 1 in flight",
      inFlight: 1,
      call: (i) => sluice.checkAsync("api", key(i)),
    },
    { name: "rlflex redis, 1 in flight", inFlight: 1, call: (i) => rlflex.consume(key(i)) },
    { name: "ioredis PING (floor), 1 in flight", inFlight: 1, call: () => rlflexClient.ping() },
    {
      name: "sluice hot refused key, cache on, 64 in flight",
      inFlight: 64,
      call: () => sluice.checkAsync("hot", "hot"),
    },
    {
      name: "sluice hot refused key, cache off, 64 in flight",
      inFlight: 64,
      call: () => sluiceNoCache.checkAsync("hot", "hot"),
    },
  ];
  const results = await runAll(cases);
  const byName = new Map(results.map((r) => [r.name, r]));
  const get = (name: string) => byName.get(name)!;

  console.log(
    table(
      ["case", "throughput", "p50 µs", "p99 µs"],
      results.map((r) => [r.name, fmtRate(r.opsPerSec), r.p50Us.toFixed(0), r.p99Us.toFixed(0)]),
    ),
  );

  const ids: Record<string, string> = {
    sluiceStrict64: "sluice strict, 64 in flight",
    rlflexRedis64: "rlflex redis, 64 in flight",
    rlflexRedisAutopipelining64: "rlflex redis + autopipelining, 64 in flight",
    sluiceStrict1: "sluice strict, 1 in flight",
    rlflexRedis1: "rlflex redis, 1 in flight",
    redisPing1: "ioredis PING (floor), 1 in flight",
    sluiceHotCacheOn64: "sluice hot refused key, cache on, 64 in flight",
    sluiceHotCacheOff64: "sluice hot refused key, cache off, 64 in flight",
  };
  const pick = (f: (r: CaseResult) => number) =>
    Object.fromEntries(Object.entries(ids).map(([id, name]) => [id, round2(f(get(name)))]));
  const ratio = (a: string, b: string) => round2(get(ids[a]!).opsPerSec / get(ids[b]!).opsPerSec);
  const stats = store.stats();
  const statsNoCache = storeNoCache.stats();
  console.log(
    `sluice: ${round2(stats.storeCalls / stats.scriptCalls)} hits per script call on average; ` +
      `over-limit cache answered ${stats.overLimitCacheHits} refused hits locally ` +
      `(${statsNoCache.storeCalls} Redis calls without the cache)`,
  );

  await Promise.all([sluice.close(), sluiceNoCache.close()]);
  const admin = new Redis(URL, { protocol: 2 });
  for (const stream of [admin.scanStream({ match: `${PREFIX}*`, count: 1000 })]) {
    for await (const batch of stream)
      if ((batch as string[]).length) await admin.del(...(batch as string[]));
  }
  await Promise.all([admin.quit(), rlflexClient.quit(), rlflexPipelinedClient.quit()]);

  console.log(
    JSON.stringify({
      bench: "strict",
      opsPerSec: pick((r) => r.opsPerSec),
      p50Us: pick((r) => r.p50Us),
      p99Us: pick((r) => r.p99Us),
      ratio: {
        vsRlflexRedis64: ratio("sluiceStrict64", "rlflexRedis64"),
        vsRlflexRedis1: ratio("sluiceStrict1", "rlflexRedis1"),
        ceilingVsRlflexRedis1: ratio("redisPing1", "rlflexRedis1"),
        vsRlflexRedisAutopipelining64: ratio("sluiceStrict64", "rlflexRedisAutopipelining64"),
        hotCacheOnVsOff: ratio("sluiceHotCacheOn64", "sluiceHotCacheOff64"),
      },
    }),
  );
}

await main();
