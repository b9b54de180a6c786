/**
 * `npm run bench`: node-side decision throughput, Sluice against its peers, in one run.
 *
 * Cases (each on a rule of 1e9 per second, so hits are admitted and every library does its full
 * admit path; keys cycle through a pre-built array so key construction is not measured):
 * - sluice check(): the keyed limiter, accounting on (it always is) and drained through
 *   `drain()` every 50 ms as the node agent does, 1,024 and 100,000 keys;
 * - plain JS keyed token bucket: a Map of {tokens, last} objects, same clock, 1,024 / 100,000 keys;
 * - `limiter` TokenBucket: one bucket per key in a Map, tryRemoveTokens(1), 1,024 keys;
 * - rate-limiter-flexible RateLimiterMemory: `await consume(key)`, 1,024 keys.
 *
 * Then bytes per key: heap growth for 100,000 fresh keys of the form `user:<n>` (key strings
 * included, since the limiter keeps them), per algorithm.
 *
 * Every case runs in every round, interleaved; a case's figure is its median over the rounds with
 * the range, and a ratio is the median (and range) of the per-round ratios of the two cases, each
 * round's cases having run within the same second or so.
 *
 * Prints a table, then one JSON line (the last line of output).
 */
import { TokenBucket } from "limiter";
import { RateLimiterMemory } from "rate-limiter-flexible";
import { type ChangeCursor, createLimiter } from "../src/index.js";
import { type BenchCase, fmtRate, round2, runInterleaved, table } from "./harness.js";

const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 7);
const OPS = Number(process.env["BENCH_OPS"] ?? 2_000_000);
const SYNC_INTERVAL_MS = 50;
let drained = 0;
const drainSink = (c: ChangeCursor) => {
  drained += c.deltaAdmitted;
};

function makeKeys(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `user:${i}`);
}

function sluiceCase(name: string, keyCount: number): BenchCase {
  const limiter = createLimiter({
    rules: [{ name: "api", limit: 1e9, windowMs: 1000 }],
    maxKeys: 200_000,
    sweepIntervalMs: 0,
  });
  const keys = makeKeys(keyCount);
  let i = 0;
  let nextSyncMs = performance.now() + SYNC_INTERVAL_MS;
  return {
    name,
    opsPerRound: OPS,
    run(n) {
      let allowed = 0;
      for (let j = 0; j < n; j++) {
        if (limiter.check("api", keys[i]!).allowed) allowed++;
        if (++i === keyCount) i = 0;
        // Drain accounting every sync interval, as the node agent does (checked every 4,096 hits).
        if ((j & 4095) === 0 && performance.now() >= nextSyncMs) {
          limiter.drain(drainSink);
          nextSyncMs += SYNC_INTERVAL_MS;
        }
      }
      return allowed;
    },
  };
}

/** The plain keyed token bucket a careful engineer writes in ten minutes. */
function plainCase(name: string, keyCount: number): BenchCase {
  const capacity = 1e9;
  const ratePerMs = 1e9 / 1000;
  const buckets = new Map<string, { tokens: number; lastMs: number }>();
  const check = (key: string): boolean => {
    const now = performance.now();
    let b = buckets.get(key);
    if (b === undefined) {
      b = { tokens: capacity, lastMs: now };
      buckets.set(key, b);
    }
    b.tokens = Math.min(capacity, b.tokens + (now - b.lastMs) * ratePerMs);
    b.lastMs = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
    return false;
  };
  const keys = makeKeys(keyCount);
  let i = 0;
  return {
    name,
    opsPerRound: OPS,
    run(n) {
      let allowed = 0;
      for (let j = 0; j < n; j++) {
        if (check(keys[i]!)) allowed++;
        if (++i === keyCount) i = 0;
      }
      return allowed;
    },
  };
}

function limiterCase(name: string, keyCount: number): BenchCase {
  const buckets = new Map<string, TokenBucket>();
  const keys = makeKeys(keyCount);
  let i = 0;
  return {
    name,
    opsPerRound: OPS,
    run(n) {
      let allowed = 0;
      for (let j = 0; j < n; j++) {
        const key = keys[i]!;
        let b = buckets.get(key);
        if (b === undefined) {
          b = new TokenBucket({ bucketSize: 1e9, tokensPerInterval: 1e9, interval: "second" });
          buckets.set(key, b);
        }
        if (b.tryRemoveTokens(1)) allowed++;
        if (++i === keyCount) i = 0;
      }
      return allowed;
    },
  };
}

function rlflexCase(name: string, keyCount: number): BenchCase {
  const rl = new RateLimiterMemory({ points: 1e9, duration: 1 });
  const keys = makeKeys(keyCount);
  let i = 0;
  return {
    name,
    opsPerRound: Math.max(1, OPS / 4),
    async run(n) {
      let allowed = 0;
      for (let j = 0; j < n; j++) {
        try {
          await rl.consume(keys[i]!);
          allowed++;
        } catch {
          // rejected: RateLimiterMemory signals it by rejecting
        }
        if (++i === keyCount) i = 0;
      }
      return allowed;
    },
  };
}

function heapUsed(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  // Typed-array backing stores live outside the JS heap: count them too.
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function bytesPerKey(algorithm: "token-bucket" | "gcra" | "sliding-window", n: number): number {
  const before = heapUsed();
  const limiter = createLimiter({
    rules: [{ name: "m", algorithm, limit: 100, windowMs: 1000 }],
    maxKeys: n,
    sweepIntervalMs: 0,
  });
  for (let i = 0; i < n; i++) limiter.check("m", `user:${i}`);
  limiter.snapshot();
  const after = heapUsed();
  void limiter.close();
  if (limiter.stats()[0]!.keys !== n) throw new Error("key count mismatch in memory bench");
  return (after - before) / n;
}

async function main(): Promise<void> {
  const hasGc = typeof (globalThis as { gc?: unknown }).gc === "function";
  console.log(`sluice local bench: node ${process.version}, ${ROUNDS} rounds, median of rounds`);
  const cases = [
    sluiceCase("sluice check() 1,024 keys", 1024),
    sluiceCase("sluice check() 100,000 keys", 100_000),
    plainCase("plain JS bucket 1,024 keys", 1024),
    plainCase("plain JS bucket 100,000 keys", 100_000),
    limiterCase("limiter TokenBucket 1,024 keys", 1024),
    rlflexCase("rlflex RateLimiterMemory 1,024 keys", 1024),
  ];
  const results = await runInterleaved(cases, ROUNDS);
  const byName = (name: string) => results.find((r) => r.name === name)!;
  /** Median and range over the rounds of `a`'s rate over `b`'s in the same round. */
  const ratio = (a: string, b: string) => {
    const ra = byName(a).rounds;
    const rb = byName(b).rounds;
    const per = ra.map((x, i) => x / rb[i]!).sort((x, y) => x - y);
    const mid = per.length >> 1;
    const median = per.length % 2 === 1 ? per[mid]! : (per[mid - 1]! + per[mid]!) / 2;
    return { median: round2(median), min: round2(per[0]!), max: round2(per[per.length - 1]!) };
  };
  const S1K = "sluice check() 1,024 keys";
  const S100K = "sluice check() 100,000 keys";
  const rows = results.map((r) => {
    const q = ratio(S1K, r.name);
    return [
      r.name,
      fmtRate(r.opsPerSec),
      `${fmtRate(Math.min(...r.rounds))} .. ${fmtRate(Math.max(...r.rounds))}`,
      `${(1e9 / r.opsPerSec).toFixed(0)} ns`,
      `${q.median}x (${q.min} .. ${q.max})`,
    ];
  });
  console.log(
    table(["case", "checks/s", "range over rounds", "per check", "sluice 1k / case"], rows),
  );

  const memory = {
    "token-bucket": round2(bytesPerKey("token-bucket", 100_000)),
    gcra: round2(bytesPerKey("gcra", 100_000)),
    "sliding-window(10)": round2(bytesPerKey("sliding-window", 100_000)),
  };
  console.log(
    `bytes per key (100,000 keys, key strings included${hasGc ? "" : ", no --expose-gc: noisy"}):`,
    memory,
  );
  const ratios = {
    vsRlflexMemory: ratio(S1K, "rlflex RateLimiterMemory 1,024 keys"),
    vsPlainBucket: ratio(S1K, "plain JS bucket 1,024 keys"),
    vsLimiterTokenBucket: ratio(S1K, "limiter TokenBucket 1,024 keys"),
    vsPlainBucket100k: ratio(S100K, "plain JS bucket 100,000 keys"),
  };
  const summary = {
    bench: "local",
    node: process.version,
    opsPerSec: Object.fromEntries(results.map((r) => [r.name, Math.round(r.opsPerSec)])),
    /** Medians of the per-round ratios, with their ranges in `ratioRange`. */
    ratio: Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, v.median])),
    ratioRange: Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, [v.min, v.max]])),
    bytesPerKey: memory,
    drainedAdmitted: drained,
  };
  console.log(JSON.stringify(summary));
}

await main();
