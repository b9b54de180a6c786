/**
 * `npm run bench` (second part): what telemetry costs `check()`, in the same run.
 *
 * Cases, interleaved round by round (bench/harness.ts), each a limiter on a rule of 1e9 per
 * second over 1,024 keys, drained every 50 ms as the node agent does:
 * - off: no latency sampling (`latencySampleEvery: 0`), no telemetry;
 * - sampling only: the default `latencySampleEvery` (64), no telemetry;
 * - on: the default sampling, observed by a Telemetry with a Prometheus endpoint on loopback,
 *   scraped over HTTP every `BENCH_SCRAPE_MS` (default 100 ms, 150 times more often than a
 *   15 s scrape interval) inside the timed loop, so collection, serialisation and the HTTP
 *   exchange (client side included) are all paid by the case.
 *
 * Goal: "on" costs at most 15% more per check than "off". Prints a table, then one JSON line
 * (the last line of output).
 */
import { Agent, request } from "node:http";
import { createLimiter, createTelemetry, type Limiter, type Telemetry } from "../src/index.js";
import { type BenchCase, fmtRate, round2, runInterleaved, table } from "./harness.js";

const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 15);
const OPS = Number(process.env["BENCH_OPS"] ?? 2_000_000);
const SCRAPE_MS = Number(process.env["BENCH_SCRAPE_MS"] ?? 100);
const SYNC_INTERVAL_MS = 50;
const KEYS = Array.from({ length: 1024 }, (_, i) => `user:${i}`);
const GOAL_PERCENT = 15;

let drained = 0;
const drainSink = (_r: string, _k: string, _g: number, _a: number, _j: number, da: number) => {
  drained += da;
};

/** One connection, kept alive, as Prometheus keeps it. */
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

function scrape(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      let bytes = 0;
      res.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
      });
      res.on("end", () => resolve(bytes));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

interface Case extends BenchCase {
  readonly limiter: Limiter;
  scrapes: number;
  /** Time spent inside scrapes, ms (the check loop waits for each). */
  scrapeMs: number;
}

function checkCase(name: string, latencySampleEvery: number, scrapeUrl?: string): Case {
  const limiter = createLimiter({
    rules: [{ name: "api", limit: 1e9, windowMs: 1000 }],
    sweepIntervalMs: 0,
    latencySampleEvery,
  });
  let i = 0;
  let nextSyncMs = performance.now() + SYNC_INTERVAL_MS;
  let nextScrapeMs = performance.now() + SCRAPE_MS;
  const c: Case = {
    name,
    limiter,
    scrapes: 0,
    scrapeMs: 0,
    opsPerRound: OPS,
    async run(n) {
      let allowed = 0;
      for (let j = 0; j < n; j++) {
        if (limiter.check("api", KEYS[i]!).allowed) allowed++;
        if (++i === KEYS.length) i = 0;
        // Every 4,096 hits: drain accounting each sync interval, scrape each scrape interval.
        if ((j & 4095) === 0) {
          const now = performance.now();
          if (now >= nextSyncMs) {
            limiter.drain(drainSink);
            nextSyncMs = now + SYNC_INTERVAL_MS;
          }
          if (scrapeUrl !== undefined && now >= nextScrapeMs) {
            allowed += (await scrape(scrapeUrl)) > 0 ? 0 : 1;
            const end = performance.now();
            c.scrapes++;
            c.scrapeMs += end - now;
            nextScrapeMs = end + SCRAPE_MS;
          }
        }
      }
      return allowed;
    },
  };
  return c;
}

async function main(): Promise<void> {
  console.log(
    `sluice telemetry bench: node ${process.version}, ${ROUNDS} rounds of ${OPS} checks, 1,024 keys, scrape every ${SCRAPE_MS} ms`,
  );
  const telemetry: Telemetry = await createTelemetry({ prometheus: { port: 0 } });
  const off = checkCase("telemetry off (no sampling)", 0);
  const sampling = checkCase("latency sampling only (1 in 64)", 64);
  const on = checkCase("telemetry on (sampling + scrapes)", 64, telemetry.prometheusUrl!);
  telemetry.observeLimiter(on.limiter, { node: "bench" });
  const results = await runInterleaved([off, sampling, on], ROUNDS);
  const rate = (c: Case) => results.find((r) => r.name === c.name)!.opsPerSec;
  const offRate = rate(off);
  const overhead = (r: number) => (offRate / r - 1) * 100;
  console.log(
    table(
      ["case", "checks/s", "per check", "vs off"],
      results.map((r) => [
        r.name,
        fmtRate(r.opsPerSec),
        `${(1e9 / r.opsPerSec).toFixed(1)} ns`,
        `${overhead(r.opsPerSec) >= 0 ? "+" : ""}${round2(overhead(r.opsPerSec))}%`,
      ]),
    ),
  );
  const scrapeBytes = await scrape(telemetry.prometheusUrl!);
  const overheadPercent = round2(overhead(rate(on)));
  const scrapeMsMean = round2(on.scrapeMs / Math.max(1, on.scrapes));
  console.log(
    `telemetry on: ${on.scrapes} scrapes of ${scrapeBytes} bytes, ${scrapeMsMean} ms each (collect, serialise, HTTP both ends); overhead ${overheadPercent}% (goal <= ${GOAL_PERCENT}%)`,
  );
  for (const c of [off, sampling, on]) await c.limiter.close();
  agent.destroy();
  await telemetry.close();
  if (drained < 0) console.log("");
  console.log(
    JSON.stringify({
      bench: "telemetry",
      node: process.version,
      rounds: ROUNDS,
      opsPerRound: OPS,
      scrapeIntervalMs: SCRAPE_MS,
      scrapes: on.scrapes,
      scrapeMsMean,
      offChecksPerSec: Math.round(offRate),
      samplingOnlyChecksPerSec: Math.round(rate(sampling)),
      onChecksPerSec: Math.round(rate(on)),
      samplingOverheadPercent: round2(overhead(rate(sampling))),
      overheadPercent,
      goalPercent: GOAL_PERCENT,
    }),
  );
}

await main();
