/**
 * `npm run bench` (second part): what telemetry costs `check()`, in the same run.
 *
 * Cases, each a limiter on a rule of 1e9 per second over 1,024 keys, drained every 2^19 checks
 * (about the node agent's 50 ms at 10 M checks/s):
 * - off: no latency sampling (`latencySampleEvery: 0`), no telemetry;
 * - sampling only: the default `latencySampleEvery` (64), no telemetry;
 * - on: the default sampling, observed by a Telemetry with a Prometheus endpoint on loopback,
 *   scraped over HTTP once every `BENCH_SCRAPE_EVERY` checks (default 1,000,000: about 100 ms of
 *   checks at 10 M/s, some 150 times more often than a 15 s scrape interval) inside the timed
 *   loop, so collection, serialisation and the HTTP exchange (client side included) are all paid
 *   by the case.
 *
 * Method (bench/harness.ts `runPaired`): many short rounds; each runs the three cases back to
 * back, in an order that rotates and reverses from round to round, so drift in machine speed hits
 * them alike. Each round gives a ratio per case: its process CPU time per check over off's in the
 * same round (the wall-clock ratio is printed beside it; on a shared machine it also counts the
 * time other processes held the core). The figures are the median and the spread (quartiles,
 * min..max) of those per-round ratios, as overhead percent. Scrapes and drains are counted in
 * checks, not in wall time, so every round of a case does the same work (with the defaults, one
 * scrape per round of "on"), and each case takes its limiters in turn (see `checkCase`).
 *
 * Goal: the median overhead of "on" against "off" is at most 15%. Prints a table, PASS or FAIL,
 * then one JSON line (the last line of output). A miss is reported, not an error exit.
 *
 * Env: BENCH_ROUNDS (default 48), BENCH_OPS (checks per case per round, default 1,000,000),
 * BENCH_SCRAPE_EVERY (checks per scrape, default 1,000,000; keep BENCH_OPS a multiple of it).
 */
import { Agent, request } from "node:http";
import {
  type ChangeCursor,
  createLimiter,
  createTelemetry,
  type Limiter,
  type Telemetry,
} from "../src/index.js";
import {
  type BenchCase,
  fmtRate,
  type PairedResult,
  round2,
  runPaired,
  type Spread,
  spread,
  table,
} from "./harness.js";

const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 48);
const OPS = Number(process.env["BENCH_OPS"] ?? 1_000_000);
const SCRAPE_EVERY = Number(process.env["BENCH_SCRAPE_EVERY"] ?? 1_000_000);
/** Checks between drains: a power of two, tested every 4,096 checks. */
const DRAIN_EVERY = 2 ** 19;
const KEYS = Array.from({ length: 1024 }, (_, i) => `user:${i}`);
const GOAL_PERCENT = 15;
/** Limiters per case, used in turn round by round (see checkCase). */
const INSTANCES = 4;

let drained = 0;
const drainSink = (c: ChangeCursor) => {
  drained += c.deltaAdmitted;
};

/** One connection, kept alive, as Prometheus keeps it. */
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

function scrapeOnce(url: string): Promise<number> {
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
  readonly limiters: readonly Limiter[];
  scrapes: number;
  /** Time spent inside scrapes, ms (the check loop waits for each). */
  scrapeMs: number;
}

/**
 * A case with INSTANCES limiters, used in turn, one per round: two limiters of the same
 * configuration need not cost the same for the life of a process (where their state sits in
 * memory, for one), and taking turns spreads that over the rounds instead of biasing a whole run.
 * `observe` (the "on" case) moves the telemetry to the limiter in use.
 */
function checkCase(
  name: string,
  latencySampleEvery: number,
  scrape?: { url: string; observe: (limiter: Limiter) => () => void },
): Case {
  const limiters = Array.from({ length: INSTANCES }, () => {
    const limiter = createLimiter({
      rules: [{ name: "api", limit: 1e9, windowMs: 1000 }],
      sweepIntervalMs: 0,
      latencySampleEvery,
    });
    for (const key of KEYS) limiter.check("api", key); // every key created before any timing
    return limiter;
  });
  let i = 0;
  let runs = 0;
  let unobserve: (() => void) | undefined;
  /** Checks done by this case over all its rounds. */
  let done = 0;
  // Half a period in, so a round of BENCH_SCRAPE_EVERY checks holds exactly one scrape.
  let nextScrapeAt = Math.floor(SCRAPE_EVERY / 2);
  const c: Case = {
    name,
    limiters,
    scrapes: 0,
    scrapeMs: 0,
    opsPerRound: OPS,
    async run(n) {
      const limiter = limiters[runs++ % limiters.length]!;
      if (scrape !== undefined) {
        unobserve?.();
        unobserve = scrape.observe(limiter);
      }
      let allowed = 0;
      for (let j = 0; j < n; j++) {
        if (limiter.check("api", KEYS[i]!).allowed) allowed++;
        if (++i === KEYS.length) i = 0;
        // Every 4,096 checks: drain accounting each DRAIN_EVERY, scrape each SCRAPE_EVERY.
        if ((++done & 4095) === 0) {
          if ((done & (DRAIN_EVERY - 1)) === 0) limiter.drain(drainSink);
          if (scrape !== undefined && done >= nextScrapeAt) {
            const start = performance.now();
            allowed += (await scrapeOnce(scrape.url)) > 0 ? 0 : 1;
            c.scrapes++;
            c.scrapeMs += performance.now() - start;
            nextScrapeAt += SCRAPE_EVERY;
          }
        }
      }
      return allowed;
    },
  };
  return c;
}

const pct = (ratio: number) => round2((ratio - 1) * 100);
const signed = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(2)}%`;
/** Per-round ratios as overhead percent: median, quartiles, min and max. */
function overheadSpread(ratios: readonly number[]): Spread {
  const s = spread(ratios);
  return {
    median: pct(s.median),
    q1: pct(s.q1),
    q3: pct(s.q3),
    min: pct(s.min),
    max: pct(s.max),
  };
}

async function main(): Promise<void> {
  console.log(
    `sluice telemetry bench: node ${process.version}, ${ROUNDS} paired rounds of ${OPS} checks per case, 1,024 keys, a scrape every ${SCRAPE_EVERY} checks`,
  );
  const telemetry: Telemetry = await createTelemetry({ prometheus: { port: 0 } });
  const off = checkCase("telemetry off (no sampling)", 0);
  const sampling = checkCase("latency sampling only (1 in 64)", 64);
  const on = checkCase("telemetry on (sampling + scrapes)", 64, {
    url: telemetry.prometheusUrl!,
    observe: (limiter) => telemetry.observeLimiter(limiter, { node: "bench" }),
  });
  const [offR, samplingR, onR] = (await runPaired([off, sampling, on], ROUNDS)) as [
    PairedResult,
    PairedResult,
    PairedResult,
  ];
  const samplingOverhead = overheadSpread(samplingR.ratios);
  const onOverhead = overheadSpread(onR.ratios);
  const samplingWall = overheadSpread(samplingR.wallRatios);
  const onWall = overheadSpread(onR.wallRatios);
  const row = (r: PairedResult, o?: Spread, w?: Spread) => [
    r.name,
    fmtRate(r.opsPerSec),
    `${(1e9 / r.opsPerCpuSec).toFixed(1)} ns`,
    o === undefined ? "" : signed(o.median),
    o === undefined ? "" : `${signed(o.q1)} .. ${signed(o.q3)}`,
    o === undefined ? "" : `${signed(o.min)} .. ${signed(o.max)}`,
    w === undefined ? "" : `${signed(w.median)} (${signed(w.q1)} .. ${signed(w.q3)})`,
  ];
  console.log(
    table(
      [
        "case",
        "checks/s",
        "CPU per check",
        "vs off: median",
        "quartiles",
        "min .. max",
        "wall clock: median (quartiles)",
      ],
      [row(offR), row(samplingR, samplingOverhead, samplingWall), row(onR, onOverhead, onWall)],
    ),
  );
  const scrapeBytes = await scrapeOnce(telemetry.prometheusUrl!);
  const scrapeMsMean = round2(on.scrapeMs / Math.max(1, on.scrapes));
  // Checking time between two scrapes of "on": its median round time over its scrapes per round.
  const scrapesPerRound = OPS / SCRAPE_EVERY;
  const scrapeIntervalMs = round2((OPS * 1000) / onR.opsPerSec / scrapesPerRound);
  const goalMet = onOverhead.median <= GOAL_PERCENT;
  console.log(
    `telemetry on: ${on.scrapes} scrapes of ${scrapeBytes} bytes (warm-up included), ${scrapeMsMean} ms each (collect, serialise, HTTP both ends), one per ${scrapeIntervalMs} ms of checking`,
  );
  console.log(
    `${goalMet ? "PASS" : "FAIL"}: median overhead of telemetry on ${signed(onOverhead.median)} per check over ${ROUNDS} paired rounds (goal <= ${GOAL_PERCENT}%)`,
  );
  for (const c of [off, sampling, on]) for (const l of c.limiters) await l.close();
  agent.destroy();
  await telemetry.close();
  if (drained < 0) console.log("");
  console.log(
    JSON.stringify({
      bench: "telemetry",
      node: process.version,
      rounds: ROUNDS,
      opsPerRound: OPS,
      scrapeEveryChecks: SCRAPE_EVERY,
      scrapeIntervalMs,
      scrapes: on.scrapes,
      scrapeMsMean,
      offChecksPerSec: Math.round(offR.opsPerSec),
      samplingOnlyChecksPerSec: Math.round(samplingR.opsPerSec),
      onChecksPerSec: Math.round(onR.opsPerSec),
      samplingOverheadPercent: samplingOverhead.median,
      samplingOverheadSpread: samplingOverhead,
      overheadPercent: onOverhead.median,
      overheadSpread: onOverhead,
      wallSamplingOverheadSpread: samplingWall,
      wallOverheadSpread: onWall,
      goalPercent: GOAL_PERCENT,
      goalMet,
    }),
  );
}

await main();
