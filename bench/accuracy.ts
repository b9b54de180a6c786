/**
 * `npm run bench:accuracy`: how close a global limit is held across real node processes over the
 * real NATS server, beside the naive split (limit / N per node) and an exact central limiter.
 *
 * Per scenario and per mode, one run of:
 * - `global`: 1 `sluice aggregator` process + 8 `sluice loadgen` processes (7 before a join)
 *   with a `mode: "global"` sliding-window rule of LIMIT per WINDOW_MS per key, everything with
 *   its default options (so the nodes learn the fleet's size as a deployment's would); the
 *   `no-aggregator` scenario runs the same nodes with no aggregator at all;
 * - `naive`: the same 8 loadgen processes with a `mode: "local"` rule of LIMIT / 8 each and no
 *   aggregator.
 * Every node offers Zipf-distributed hits over KEYS keys (the top HOT keys are offered at least
 * twice the limit), on a per-node `--schedule`, and reports every key's admitted and rejected
 * counts per REPORT_MS bucket (wall-clock aligned, so buckets of different processes line up).
 *
 * Computed from those reports, summed over nodes (see test/support/window-analysis.ts): each hot key's
 * admitted cost in every sliding window of WINDOW_MS (measured at every bucket end) over the
 * limit; the settling time after a shift, join or leave; and the decisions that differ from an
 * exact sliding-window limiter. Prints progress to stderr, a table to stdout, and as the last
 * line one JSON object with every figure. Bounded: every child has its own duration and is
 * killed when the run ends or this process exits.
 *
 * Environment: NATS_URL (default nats://127.0.0.1:4222); ACC_SCENARIOS=steady,shift,... to run a
 * subset; ACC_REPORT_MS (default 25); ACC_DUMP=<dir> to write each run's per-bucket counts there;
 * ACC_MODES=global to skip the naive runs. For experiments with the aggregator's tuning: its
 * fields' variables (`env` in src/aggregator/tuning.ts: ACC_SYNC_MS, the sync interval of nodes
 * and aggregator, default 25, the convergence goal being two of them; ACC_GRANT_RAMP_MS,
 * ACC_LAG_MS, ACC_PACING, ACC_HIT_WAIT=off, ACC_ECHO_DAMPING=on, ...); unset, the defaults
 * apply. The settings used are printed.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { maxMinFair } from "../src/aggregator/allocator.js";
import { tuningFlagsFromEnv } from "../src/aggregator/tuning.js";
import { wallClockMs } from "../src/clock/clock.js";
import { decode } from "../src/protocol/decode.js";
import { DEFAULT_SYNC_INTERVAL_MS } from "../src/protocol/limits.js";
import { createSubjects } from "../src/protocol/subjects.js";
import { connectNats } from "../src/transport/nats/nats-transport.js";
import { runSim, type SimResult } from "../test/support/fleet-sim.js";
import {
  convergence,
  decisionErrors,
  exactReplay,
  inBandHoldFraction,
  type KeySeries,
  ratioStats,
  sumRange,
  windowSums,
} from "../test/support/window-analysis.js";
import { table } from "./harness.js";

const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const LIMIT = 300;
const WINDOW_MS = 1000;
const NODES = 8;
const RATE_PER_NODE = 1500;
const KEYS = 100;
const ZIPF = 1.1;
const HOT = 3;
const REPORT_MS = Number(process.env["ACC_REPORT_MS"] ?? 25);
const SYNC_INTERVAL_MS = Number(process.env["ACC_SYNC_MS"] ?? DEFAULT_SYNC_INTERVAL_MS);
const MODES = (process.env["ACC_MODES"] ?? "global,naive")
  .split(",")
  .map((m) => m.trim())
  .filter((m): m is Mode => m === "global" || m === "naive");
/**
 * The aggregator's tuning set from the environment (its fields' `env` names in tuning.ts, e.g.
 * ACC_PACING, ACC_HIT_WAIT=off), as flags passed to it; the sync interval and the warm-up are
 * set for every process by this bench itself.
 */
const TUNING_OPTIONS = tuningFlagsFromEnv(process.env, ["syncIntervalMs", "warmupMs"]);
/** Windows ending before this (ms after the nodes start) are the cold start, measured apart. */
const WARMUP_MS = 2000;
/** The last ms of a run are left out: nodes stop a few ms apart. */
const TAIL_MS = 100;
/** The aggregator starts this long before the nodes. */
const AGGREGATOR_LEAD_MS = 500;
/** Longest wait for every process to have loaded its code. */
const BOOT_TIMEOUT_MS = 30_000;
const TOLERANCE = 0.05;
const HOLD_MS = WINDOW_MS;
const LOOK_MS = 2000;
/** Offsets from an event (ms) at which the window ratio is printed. */
const AROUND_MS = [-500, 0, 50, 100, 150, 200, 300, 500, 1000, 1500];
const GOAL_STEADY_MEAN = 0.03;
const GOAL_WORST = 1.05;
const GOAL_CONVERGE_MS = 2 * SYNC_INTERVAL_MS;

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const LAUNCH = fileURLToPath(new URL("./accuracy-launch.js", import.meta.url));
const DUMP_DIR = process.env["ACC_DUMP"];
const HOT_KEYS = Array.from({ length: HOT }, (_, i) => `k${i}`);
const ALL_KEYS = Array.from({ length: KEYS }, (_, i) => `k${i}`);

type Mode = "global" | "naive";
type EventKind = "shift" | "join" | "leave";

interface NodePlan {
  readonly id: string;
  /** ms after the common start at which this process starts its load. */
  readonly startMs: number;
  readonly durationMs: number;
  readonly schedule: string;
}

interface Scenario {
  readonly name: string;
  readonly what: string;
  readonly durationMs: number;
  /** False: the global run has no aggregator (nodes on their own from the start). */
  readonly aggregator?: false;
  readonly event?: { readonly kind: EventKind; readonly atMs: number; readonly node?: string };
  readonly nodes: readonly NodePlan[];
}

const ids = Array.from({ length: NODES }, (_, i) => `node-${i}`);
const SKEWED_RATES = [6000, 3000, 1500, 750, 375, 188, 94, 93]; // sum 12,000 = 8 x 1,500
const STEADY_MS = 8000;
const EVENT_RUN_MS = 9000;
const EVENT_AT_MS = 4000;
const steadyNodes = ids.map((id) => ({
  id,
  startMs: 0,
  durationMs: STEADY_MS,
  schedule: `0:${RATE_PER_NODE}`,
}));
const SCENARIOS: readonly Scenario[] = [
  {
    name: "steady",
    what: `8 nodes, ${RATE_PER_NODE} hits/s each`,
    durationMs: STEADY_MS,
    nodes: steadyNodes,
  },
  {
    name: "skewed",
    what: `8 nodes, ${SKEWED_RATES.join("/")} hits/s`,
    durationMs: STEADY_MS,
    nodes: ids.map((id, i) => ({
      id,
      startMs: 0,
      durationMs: STEADY_MS,
      schedule: `0:${SKEWED_RATES[i]}`,
    })),
  },
  {
    name: "shift",
    what: `nodes 0-3 at ${2 * RATE_PER_NODE}/s, then from ${EVENT_AT_MS / 1000} s nodes 4-7 instead`,
    durationMs: EVENT_RUN_MS,
    event: { kind: "shift", atMs: EVENT_AT_MS },
    nodes: ids.map((id, i) => ({
      id,
      startMs: 0,
      durationMs: EVENT_RUN_MS,
      schedule:
        i < 4
          ? `0:${2 * RATE_PER_NODE},${EVENT_AT_MS}:0`
          : `0:0,${EVENT_AT_MS}:${2 * RATE_PER_NODE}`,
    })),
  },
  {
    name: "join",
    what: `7 nodes at ${RATE_PER_NODE}/s; node-7 joins at ${EVENT_AT_MS / 1000} s`,
    durationMs: EVENT_RUN_MS,
    event: { kind: "join", atMs: EVENT_AT_MS, node: "node-7" },
    nodes: ids.map((id, i) => ({
      id,
      startMs: i === 7 ? EVENT_AT_MS : 0,
      durationMs: i === 7 ? EVENT_RUN_MS - EVENT_AT_MS : EVENT_RUN_MS,
      schedule: `0:${RATE_PER_NODE}`,
    })),
  },
  {
    name: "leave",
    what: `8 nodes at ${RATE_PER_NODE}/s; node-7 stops at ${EVENT_AT_MS / 1000} s`,
    durationMs: EVENT_RUN_MS,
    event: { kind: "leave", atMs: EVENT_AT_MS, node: "node-7" },
    nodes: ids.map((id, i) => ({
      id,
      startMs: 0,
      durationMs: i === 7 ? EVENT_AT_MS : EVENT_RUN_MS,
      schedule: `0:${RATE_PER_NODE}`,
    })),
  },
  {
    name: "no-aggregator",
    what: `8 nodes, ${RATE_PER_NODE} hits/s each, started with no aggregator running`,
    durationMs: STEADY_MS,
    aggregator: false,
    nodes: steadyNodes,
  },
];

// ---------------------------------------------------------------- child processes

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    for (const c of live) c.kill("SIGKILL");
    process.exit(130);
  });
}

function log(line: string): void {
  process.stderr.write(`[accuracy] ${line}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

type LineHandler = (o: Record<string, unknown>) => void;

function start(name: string, argv: string[], onLine: LineHandler, errors: string[]): ChildProcess {
  const child = spawn(process.execPath, argv, { stdio: ["pipe", "pipe", "pipe"] });
  live.add(child);
  child.on("exit", () => live.delete(child));
  child.stdin!.on("error", () => {}); // a child that died early: nothing to tell it
  createInterface({ input: child.stdout! }).on("line", (line) => {
    if (!line.startsWith("{")) return;
    try {
      onLine(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not one of our JSON lines
    }
  });
  createInterface({ input: child.stderr! }).on("line", (line) => {
    errors.push(`${name}: ${line}`);
    process.stderr.write(`  [${name}] ${line}\n`);
  });
  return child;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

async function stop(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  await Promise.race([exited(child), sleep(graceMs)]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGKILL");
    await exited(child);
  }
}

// ---------------------------------------------------------------- one run

interface RunData {
  readonly scenario: Scenario;
  readonly mode: Mode;
  readonly t0: number;
  readonly buckets: number;
  readonly series: Map<string, KeySeries>;
  /** The hot keys' series per node: node id -> key -> counts. */
  readonly nodeSeries: Map<string, Map<string, KeySeries>>;
  /** Wall ms at which each node's load started (its first heartbeat). */
  readonly starts: Map<string, number>;
  readonly launchLateMs: number[];
  /** 1-minute load average of the machine when the run started. */
  readonly loadavg1m: number;
  readonly aggregator: Record<string, unknown> | undefined;
  readonly nodeSummaries: Record<string, unknown>[];
  /** Send stamp to receipt at an observer process, ms. */
  readonly batchLatencyMs: number[];
  readonly updateLatencyMs: number[];
  readonly trace: unknown[][];
  readonly errors: string[];
}

function rulesFor(mode: Mode): string {
  const rule =
    mode === "global"
      ? {
          name: "acc",
          mode: "global",
          algorithm: "sliding-window",
          limit: LIMIT,
          windowMs: WINDOW_MS,
        }
      : {
          name: "acc",
          mode: "local",
          algorithm: "sliding-window",
          limit: LIMIT / NODES,
          windowMs: WINDOW_MS,
        };
  return JSON.stringify({ rules: [rule] });
}

async function runOnce(scenario: Scenario, mode: Mode, rulesFile: string): Promise<RunData> {
  const runLoad = round(loadavg()[0] ?? 0, 2);
  const prefix = `acc-${scenario.name}-${mode}-${randomBytes(3).toString("hex")}`;
  const subjects = createSubjects({ prefix });
  const errors: string[] = [];
  const starts = new Map<string, number>();
  const launchLateMs: number[] = [];
  const nodeSummaries: Record<string, unknown>[] = [];
  const batchLatencyMs: number[] = [];
  const updateLatencyMs: number[] = [];
  const trace: unknown[][] = [];
  const buckets = Math.ceil(scenario.durationMs / REPORT_MS) + 8;
  const emptySeries = (keys: readonly string[]) =>
    new Map<string, KeySeries>(
      keys.map((k) => [
        k,
        { admitted: new Float64Array(buckets), offered: new Float64Array(buckets) },
      ]),
    );
  const series = emptySeries(ALL_KEYS);
  const nodeSeries = new Map<string, Map<string, KeySeries>>();
  let aggregator: Record<string, unknown> | undefined;
  const children: ChildProcess[] = [];
  const ready: Promise<void>[] = [];
  let t0 = Number.NaN;
  const transport = await connectNats({
    servers: NATS_URL.split(","),
    name: "sluice-bench-accuracy",
  });
  /**
   * Starts `sluice <argv>` through the launcher, `offsetMs` after the common start; with `startAt`
   * (loadgen only) the process connects at once and its load starts at that instant exactly.
   */
  const launch = (
    name: string,
    offsetMs: number,
    argv: string[],
    onLine: LineHandler,
    startAt = false,
  ) => {
    let isReady: () => void = () => {};
    ready.push(new Promise<void>((resolve) => (isReady = resolve)));
    const child = start(
      name,
      [LAUNCH, `${startAt ? "start-at:" : ""}${offsetMs}`, ...argv],
      (o) => {
        if (o["type"] === "ready") isReady();
        else if (o["type"] === "launch") launchLateMs.push(Number(o["lateMs"]));
        else onLine(o);
      },
      errors,
    );
    child.on("exit", () => isReady());
    children.push(child);
    return child;
  };
  try {
    // An observer of the control loop: how long batches and updates take to reach a third
    // process (send stamp to receipt, same host clock), and a trace of the hot keys (key last in each row).
    const observe = (bytes: Uint8Array) => {
      const now = wallClockMs();
      const r = decode(bytes);
      if (!r.ok) return;
      const m = r.message;
      if (m.type === "decision-batch") {
        batchLatencyMs.push(now - m.sentAtWallMs);
        if (DUMP_DIR === undefined) return;
        for (const g of m.groups)
          for (const e of g.entries)
            if (HOT_KEYS.includes(e.key))
              trace.push([
                now - t0,
                "batch",
                m.nodeId,
                e.admitted,
                e.rejected,
                e.grantVersion,
                e.allowance,
                e.key,
              ]);
      } else if (m.type === "rate-update") {
        updateLatencyMs.push(now - m.sentAtWallMs);
        if (DUMP_DIR === undefined) return;
        for (const g of m.groups)
          for (const e of g.entries)
            if (HOT_KEYS.includes(e.key))
              trace.push([now - t0, "grant", m.targetNodeId, e.version, e.allowance, e.key]);
      }
    };
    transport.subscribe(subjects.allDecisions, observe);
    transport.subscribe(subjects.allUpdates, observe);
    await transport.flush();
    if (mode === "global" && scenario.aggregator !== false) {
      launch(
        "aggregator",
        -AGGREGATOR_LEAD_MS,
        [
          "aggregator",
          "--rules",
          rulesFile,
          "--prefix",
          prefix,
          "--nats",
          NATS_URL,
          "--sync-interval-ms",
          String(SYNC_INTERVAL_MS),
          // It starts before any node: there are no earlier hits to wait for.
          "--warmup-ms",
          "0",
          "--report-ms",
          "1000",
          "--duration-ms",
          String(AGGREGATOR_LEAD_MS + scenario.durationMs + 6000),
          ...TUNING_OPTIONS,
          "--json",
        ],
        (o) => {
          if (o["type"] === "aggregator") aggregator = o;
        },
      );
    }
    const nodeChildren = scenario.nodes.map((n) =>
      launch(
        n.id,
        n.startMs,
        [
          "loadgen",
          "--rules",
          rulesFile,
          "--rule",
          "acc",
          "--node-id",
          n.id,
          "--schedule",
          n.schedule,
          "--keys",
          String(KEYS),
          "--zipf",
          String(ZIPF),
          "--track",
          String(KEYS),
          "--duration-ms",
          String(n.durationMs),
          "--report-ms",
          String(REPORT_MS),
          "--sync-interval-ms",
          String(SYNC_INTERVAL_MS),
          "--prefix",
          prefix,
          "--nats",
          NATS_URL,
          "--json",
        ],
        (o) => {
          if (o["type"] === "loadgen-summary") nodeSummaries.push(o);
          else if (o["type"] === "loadgen-start") {
            const at = Number(o["atWallMs"]);
            starts.set(n.id, at);
            if (n.startMs === 0) launchLateMs.push(at - t0);
          } else if (o["type"] === "loadgen") {
            const b = Math.round((Number(o["atWallMs"]) - t0) / REPORT_MS);
            if (!(b >= 0 && b < buckets)) return;
            const tracked = o["tracked"] as Record<string, [number, number]>;
            let own = nodeSeries.get(n.id);
            if (own === undefined) {
              own = emptySeries(HOT_KEYS);
              nodeSeries.set(n.id, own);
            }
            for (const [key, [a, r]] of Object.entries(tracked)) {
              const s = series.get(key);
              if (s === undefined) continue;
              s.admitted[b]! += a;
              s.offered[b]! += a + r;
              const mine = own.get(key);
              if (mine !== undefined) {
                mine.admitted[b]! += a;
                mine.offered[b]! += a + r;
              }
            }
          }
        },
        // Connected first, load at the start instant exactly; without an aggregator, started at
        // that instant instead, load at once, as a fleet deployed before its aggregator would.
        n.startMs === 0 && scenario.aggregator !== false,
      ),
    );
    // Every process has loaded its code: agree on the start.
    const bootStarted = wallClockMs();
    await Promise.race([Promise.all(ready), sleep(BOOT_TIMEOUT_MS)]);
    const bootMs = wallClockMs() - bootStarted;
    if (bootMs >= BOOT_TIMEOUT_MS) errors.push(`processes not ready after ${BOOT_TIMEOUT_MS} ms`);
    log(`  ${children.length} processes ready in ${Math.round(bootMs)} ms (load ${runLoad})`);
    t0 = Math.ceil((wallClockMs() + AGGREGATOR_LEAD_MS + 300) / REPORT_MS) * REPORT_MS;
    for (const c of children) c.stdin?.end(`${t0}\n`);
    const deadline = t0 + scenario.durationMs + 10_000;
    await Promise.race([Promise.all(nodeChildren.map(exited)), sleep(deadline - wallClockMs())]);
    for (const [i, c] of nodeChildren.entries()) {
      const id = scenario.nodes[i]!.id;
      if (c.exitCode === null && c.signalCode === null)
        errors.push(`${id}: still running at the deadline, killed`);
      else if (c.exitCode !== 0) errors.push(`${id}: exited with ${c.exitCode ?? c.signalCode}`);
    }
  } finally {
    await Promise.all(children.map((c) => stop(c, 3000)));
    await transport.close();
  }
  return {
    scenario,
    mode,
    t0,
    loadavg1m: runLoad,
    buckets,
    series,
    nodeSeries,
    starts,
    launchLateMs,
    aggregator,
    nodeSummaries,
    batchLatencyMs,
    updateLatencyMs,
    trace,
    errors,
  };
}

/** Writes a run's per-bucket counts (hot keys, and all keys summed) for inspection. */
function dump(run: RunData): void {
  mkdirSync(DUMP_DIR!, { recursive: true });
  const all = {
    admitted: new Array<number>(run.buckets).fill(0),
    offered: new Array<number>(run.buckets).fill(0),
  };
  for (const s of run.series.values()) {
    for (let b = 0; b < run.buckets; b++) {
      all.admitted[b]! += s.admitted[b]!;
      all.offered[b]! += s.offered[b]!;
    }
  }
  const hot = Object.fromEntries(
    HOT_KEYS.map((k) => {
      const s = run.series.get(k)!;
      return [k, { admitted: [...s.admitted], offered: [...s.offered] }];
    }),
  );
  writeFileSync(
    join(DUMP_DIR!, `${run.scenario.name}-${run.mode}.json`),
    JSON.stringify({
      t0: run.t0,
      reportMs: REPORT_MS,
      starts: Object.fromEntries(run.starts),
      launchLateMs: run.launchLateMs,
      trace: run.trace,
      hot,
      all,
      errors: run.errors,
    }),
  );
}

// ---------------------------------------------------------------- figures

interface EventFigures {
  kind: EventKind;
  /** Hot keys' mean and lowest window ratio in the window's length before the event. */
  meanRatioBefore: number;
  lowestRatioBefore: number;
  /** Event time, ms after the common start. */
  atMs: number;
  /** For a shift: ms between the first and the last node switching. */
  spreadMs: number;
  convergeMs: number | null;
  convergeSyncIntervals: number | null;
  firstBackInBandMs: number | null;
  leftBand: boolean;
  minRatioAfter: number;
  maxRatioAfter: number;
  /** Hot keys' mean window ratio at the first bucket end at or after each offset from the event. */
  around: Record<string, number>;
}

interface Figures {
  meanRatio: number;
  lowestWindowRatio: number;
  worstWindowRatio: number;
  windows: number;
  perKey: Record<string, { mean: number; min: number; max: number }>;
  /** Lowest offered-per-window / limit of any hot key over the measured windows. */
  hotOfferedMinRatio: number;
  /** Highest window ratio of any hot key among the windows ending in the first WARMUP_MS. */
  coldStartWorstRatio: number;
  event?: EventFigures;
  exact: {
    hotAdmittedVsExact: number;
    allAdmittedVsExact: number;
    hotBucketDiffFraction: number;
    decisionsDiffer: number;
    wronglyAdmitted: number;
    wronglyRejected: number;
    offered: number;
    hotDecisionsDiffer: number;
  };
  /**
   * Per node, over the measured span and the hot keys: offered and admitted per second, and the
   * max-min fair share of the limit given what every node offered (water-filling per key).
   * `fairnessGap`: half the sum of |admitted - fair| over the sum of admitted, i.e. the fraction
   * of what was admitted that went to the wrong node.
   */
  perNode: Record<string, { offeredPerSec: number; admittedPerSec: number; fairPerSec: number }>;
  fairnessGap: number;
  /**
   * Of the measured bucket ends, the fraction from which every hot key's window stays within
   * the 5% band for a whole window: how often the convergence test would pass at a random
   * instant. In `steady` (no event) it is the baseline the event scenarios are held to.
   */
  inBandHoldFraction: number;
  nodeStartSpreadMs: number;
  maxLaunchLateMs: number;
  loadavg1m: number;
  /**
   * Message latencies seen by an observer process (send stamp to receipt), and the agents' own
   * propagation (first batch after a grant to the next grant), ms.
   */
  latency: {
    batchP50Ms: number;
    batchP99Ms: number;
    updateP50Ms: number;
    updateP99Ms: number;
    propagationMeanMs: number;
    propagationMaxMs: number;
  };
  aggregator?: Record<string, unknown>;
  errors: string[];
}

function round(x: number, digits = 4): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function eventTime(run: RunData): { atWallMs: number; spreadMs: number } | undefined {
  const ev = run.scenario.event;
  if (ev === undefined) return undefined;
  const startOf = (id: string) => run.starts.get(id) ?? run.t0 + (ev.kind === "join" ? ev.atMs : 0);
  if (ev.kind === "shift") {
    const switches = run.scenario.nodes.map((n) => startOf(n.id) + ev.atMs);
    return {
      atWallMs: Math.min(...switches),
      spreadMs: Math.max(...switches) - Math.min(...switches),
    };
  }
  const node = ev.node ?? "";
  return { atWallMs: ev.kind === "join" ? startOf(node) : startOf(node) + ev.atMs, spreadMs: 0 };
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

function latencyFigures(run: RunData): Figures["latency"] {
  let sumS = 0;
  let count = 0;
  let maxS = 0;
  for (const s of run.nodeSummaries) {
    const h = (s["agent"] as { propagation?: { sumS: number; count: number; maxS: number } })
      ?.propagation;
    if (h === undefined || h.count === 0) continue;
    sumS += h.sumS;
    count += h.count;
    maxS = Math.max(maxS, h.maxS);
  }
  return {
    batchP50Ms: percentile(run.batchLatencyMs, 0.5),
    batchP99Ms: percentile(run.batchLatencyMs, 0.99),
    updateP50Ms: percentile(run.updateLatencyMs, 0.5),
    updateP99Ms: percentile(run.updateLatencyMs, 0.99),
    propagationMeanMs: count > 0 ? round((sumS / count) * 1000, 1) : Number.NaN,
    propagationMaxMs: count > 0 ? round(maxS * 1000, 1) : Number.NaN,
  };
}

function analyze(run: RunData): Figures {
  const n = Math.round(WINDOW_MS / REPORT_MS);
  const from = Math.round(WARMUP_MS / REPORT_MS);
  const to = Math.floor((run.scenario.durationMs - TAIL_MS) / REPORT_MS);
  const endOf = (b: number) => run.t0 + b * REPORT_MS;
  const perKey: Figures["perKey"] = {};
  const ratios: Float64Array[] = [];
  let meanSum = 0;
  let lowest = Infinity;
  let worst = -Infinity;
  let windows = 0;
  let hotOfferedMin = Infinity;
  let coldWorst = -Infinity;
  let hotAdmitted = 0;
  let hotExact = 0;
  let hotOffered = 0;
  let hotBucketDiff = 0;
  let hotErr = 0;
  for (const key of HOT_KEYS) {
    const s = run.series.get(key)!;
    const sums = windowSums(s.admitted, n);
    const st = ratioStats(sums, LIMIT, from, to);
    perKey[key] = { mean: round(st.mean), min: round(st.min), max: round(st.max) };
    meanSum += st.mean;
    lowest = Math.min(lowest, st.min);
    worst = Math.max(worst, st.max);
    windows += st.windows;
    hotOfferedMin = Math.min(
      hotOfferedMin,
      ratioStats(windowSums(s.offered, n), LIMIT, from, to).min,
    );
    coldWorst = Math.max(coldWorst, ratioStats(sums, LIMIT, 1, from - 1).max);
    ratios.push(sums.map((x) => x / LIMIT));
    const exact = exactReplay(s.offered, LIMIT, n);
    hotAdmitted += sumRange(s.admitted, from, to);
    hotExact += sumRange(exact, from, to);
    hotOffered += sumRange(s.offered, from, to);
    for (let b = from; b <= to; b++) hotBucketDiff += Math.abs(s.admitted[b]! - exact[b]!);
    const e = decisionErrors(s, LIMIT, n, from, to);
    hotErr += e.wronglyAdmitted + e.wronglyRejected;
  }
  let allAdmitted = 0;
  let allExact = 0;
  let offered = 0;
  let over = 0;
  let under = 0;
  for (const key of ALL_KEYS) {
    const s = run.series.get(key)!;
    allAdmitted += sumRange(s.admitted, from, to);
    allExact += sumRange(exactReplay(s.offered, LIMIT, n), from, to);
    const e = decisionErrors(s, LIMIT, n, from, to);
    offered += e.offered;
    over += e.wronglyAdmitted;
    under += e.wronglyRejected;
  }
  // Spread of the nodes that start together (a joining node starts later on purpose).
  const starts = [...run.starts]
    .filter(([id]) => run.scenario.nodes.find((p) => p.id === id)?.startMs === 0)
    .map(([, t]) => t);
  const fair = fairness(run, from, to);
  const figures: Figures = {
    perNode: fair.perNode,
    fairnessGap: fair.gap,
    inBandHoldFraction: round(
      inBandHoldFraction(ratios, from, to, Math.round(HOLD_MS / REPORT_MS), TOLERANCE),
      3,
    ),
    meanRatio: round(meanSum / HOT_KEYS.length),
    lowestWindowRatio: round(lowest),
    worstWindowRatio: round(worst),
    windows,
    perKey,
    hotOfferedMinRatio: round(hotOfferedMin, 2),
    coldStartWorstRatio: round(coldWorst),
    exact: {
      hotAdmittedVsExact: round(hotAdmitted / hotExact),
      allAdmittedVsExact: round(allAdmitted / allExact),
      hotBucketDiffFraction: round(hotBucketDiff / hotOffered),
      decisionsDiffer: round((over + under) / offered, 5),
      wronglyAdmitted: over,
      wronglyRejected: under,
      offered,
      hotDecisionsDiffer: round(hotErr / hotOffered, 5),
    },
    nodeStartSpreadMs: starts.length > 0 ? Math.max(...starts) - Math.min(...starts) : Number.NaN,
    maxLaunchLateMs: Math.max(0, ...run.launchLateMs),
    loadavg1m: run.loadavg1m,
    latency: latencyFigures(run),
    errors: run.errors.slice(0, 20),
  };
  if (run.aggregator !== undefined) {
    const a = run.aggregator;
    figures.aggregator = {
      batches: a["batches"],
      entries: a["entries"],
      grantsSent: a["grantsSent"],
      nodesJoined: a["nodesJoined"],
      nodesDropped: a["nodesDropped"],
      lastTickMs: a["lastTickMs"],
      invalidMessages: a["invalidMessages"],
    };
  }
  const ev = eventTime(run);
  if (ev !== undefined && run.scenario.event !== undefined) {
    const c = convergence(ratios, endOf, ev.atWallMs, to, {
      tolerance: TOLERANCE,
      holdMs: HOLD_MS,
      lookMs: LOOK_MS,
    });
    const evBucket = Math.floor((ev.atWallMs - run.t0) / REPORT_MS);
    const before = HOT_KEYS.map((k) =>
      ratioStats(windowSums(run.series.get(k)!.admitted, n), LIMIT, evBucket - n, evBucket),
    );
    figures.event = {
      kind: run.scenario.event.kind,
      meanRatioBefore: round(before.reduce((a, s) => a + s.mean, 0) / before.length),
      lowestRatioBefore: round(Math.min(...before.map((s) => s.min))),
      atMs: Math.round(ev.atWallMs - run.t0),
      spreadMs: Math.round(ev.spreadMs),
      convergeMs: c.convergeMs === null ? null : Math.round(c.convergeMs),
      convergeSyncIntervals:
        c.convergeMs === null ? null : round(c.convergeMs / SYNC_INTERVAL_MS, 1),
      firstBackInBandMs: c.firstBackInBandMs === null ? null : Math.round(c.firstBackInBandMs),
      leftBand: c.leftBand,
      minRatioAfter: round(c.minRatio),
      maxRatioAfter: round(c.maxRatio),
      around: Object.fromEntries(
        AROUND_MS.map((off) => {
          const b = Math.ceil((ev.atWallMs + off - run.t0) / REPORT_MS);
          const r = ratios.reduce((a, x) => a + (x[b] ?? Number.NaN), 0) / ratios.length;
          return [String(off), round(r, 3)];
        }),
      ),
    };
  }
  return figures;
}

/** Per-node offered, admitted and fair shares of the hot keys over buckets [from, to]. */
function fairness(
  run: RunData,
  from: number,
  to: number,
): { perNode: Figures["perNode"]; gap: number } {
  const ids = [...run.nodeSeries.keys()].sort();
  const seconds = ((to - from + 1) * REPORT_MS) / 1000;
  const capacity = (LIMIT * (to - from + 1) * REPORT_MS) / WINDOW_MS;
  const offered = new Map(ids.map((id) => [id, 0]));
  const admitted = new Map(ids.map((id) => [id, 0]));
  const fairTotal = new Map(ids.map((id) => [id, 0]));
  for (const key of HOT_KEYS) {
    const o = ids.map((id) => sumRange(run.nodeSeries.get(id)!.get(key)!.offered, from, to));
    const a = ids.map((id) => sumRange(run.nodeSeries.get(id)!.get(key)!.admitted, from, to));
    const f = maxMinFair(
      capacity,
      o.map((demand) => ({ demand })),
    );
    ids.forEach((id, j) => {
      offered.set(id, offered.get(id)! + o[j]!);
      admitted.set(id, admitted.get(id)! + a[j]!);
      fairTotal.set(id, fairTotal.get(id)! + f[j]!);
    });
  }
  const perNode: Figures["perNode"] = {};
  let off = 0;
  let sum = 0;
  for (const id of ids) {
    perNode[id] = {
      offeredPerSec: round(offered.get(id)! / seconds, 1),
      admittedPerSec: round(admitted.get(id)! / seconds, 1),
      fairPerSec: round(fairTotal.get(id)! / seconds, 1),
    };
    off += Math.abs(admitted.get(id)! - fairTotal.get(id)!);
    sum += admitted.get(id)!;
  }
  return { perNode, gap: sum > 0 ? round(off / 2 / sum) : Number.NaN };
}

// ---------------------------------------------------------------- output

function pct(x: number, digits = 1): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(digits)}%` : "n/a";
}

function convergeText(e: EventFigures | undefined): string {
  if (e === undefined) return "-";
  if (e.convergeMs === null) {
    return e.firstBackInBandMs === null ? "never" : `never (back ${e.firstBackInBandMs} ms)`;
  }
  if (!e.leftBand) return "0 (stayed in band)";
  return `${e.convergeMs} ms = ${e.convergeSyncIntervals} SI`;
}

function conditions(): Record<string, unknown> {
  let git = "unknown";
  try {
    git = execFileSync("git", ["describe", "--always", "--dirty"], { cwd: ROOT }).toString().trim();
  } catch {
    // not a git checkout
  }
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    loadavg1m: round(loadavg()[0] ?? 0, 2),
    git,
    nats: NATS_URL,
  };
}

async function main(): Promise<number> {
  const only = process.env["ACC_SCENARIOS"]?.split(",").map((s) => s.trim());
  const scenarios = SCENARIOS.filter((s) => only === undefined || only.includes(s.name));
  if (WINDOW_MS % REPORT_MS !== 0) throw new Error("ACC_REPORT_MS must divide the window");
  const before = conditions();
  log("in-memory reference (one process, manual clock, 3 ms message latency)...");
  const sim: SimResult = await runSim({ limit: LIMIT, syncIntervalMs: SYNC_INTERVAL_MS });
  const dir = mkdtempSync(join(tmpdir(), "sluice-accuracy-"));
  const results: Record<Mode, Record<string, Figures>> = { global: {}, naive: {} };
  try {
    const files: Record<Mode, string> = {
      global: join(dir, "global.json"),
      naive: join(dir, "naive.json"),
    };
    writeFileSync(files.global, rulesFor("global"));
    writeFileSync(files.naive, rulesFor("naive"));
    log(
      `NATS ${NATS_URL}; rule sliding-window ${LIMIT} per ${WINDOW_MS} ms per key; ${KEYS} keys, Zipf ${ZIPF}; buckets ${REPORT_MS} ms; sync ${SYNC_INTERVAL_MS} ms${TUNING_OPTIONS.length > 0 ? `; ${TUNING_OPTIONS.join(" ")}` : ""}; load ${before["loadavg1m"]}`,
    );
    for (const sc of scenarios) {
      for (const mode of MODES) {
        if (sc.aggregator === false && mode === "naive") continue; // the same as steady's
        log(`${sc.name} / ${mode}: ${sc.what} (${sc.durationMs / 1000} s)...`);
        const run = await runOnce(sc, mode, files[mode]);
        if (DUMP_DIR !== undefined) dump(run);
        const f = analyze(run);
        results[mode][sc.name] = f;
        log(
          `  mean ${f.meanRatio}, lowest ${f.lowestWindowRatio}, worst ${f.worstWindowRatio}, converge ${convergeText(f.event)}, differ ${pct(f.exact.decisionsDiffer, 2)}, unfair ${pct(f.fairnessGap, 1)}; batches p50/p99 ${f.latency.batchP50Ms}/${f.latency.batchP99Ms} ms, updates ${f.latency.updateP50Ms}/${f.latency.updateP99Ms} ms, propagation mean ${f.latency.propagationMeanMs} max ${f.latency.propagationMaxMs} ms${f.errors.length > 0 ? `, ${f.errors.length} error lines` : ""}`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const after = conditions();

  console.log(
    `Sluice accuracy: 8 node processes + 1 aggregator (none in no-aggregator) over NATS (${NATS_URL}), Node ${before["node"]}, ${before["cpus"]} CPUs, load ${before["loadavg1m"]} -> ${after["loadavg1m"]}, ${before["git"]}`,
  );
  console.log(
    `Rule: sliding window, ${LIMIT} per ${WINDOW_MS} ms per key; ${KEYS} keys, Zipf ${ZIPF}; hot keys ${HOT_KEYS.join(", ")} (offered >= 2x the limit); windows of ${WINDOW_MS} ms at every ${REPORT_MS} ms bucket end, from ${WARMUP_MS} ms after start; sync interval ${SYNC_INTERVAL_MS} ms (SI). Naive = mode local, ${LIMIT}/${NODES} per node.\n`,
  );
  const rows: string[][] = [];
  for (const sc of scenarios) {
    for (const mode of ["global", "naive"] as const) {
      const f = results[mode][sc.name];
      if (f === undefined) continue;
      rows.push([
        mode === "global" ? sc.name : "",
        mode === "global" ? "sluice global" : `naive ${LIMIT}/${NODES}`,
        f.meanRatio.toFixed(3),
        f.lowestWindowRatio.toFixed(3),
        f.worstWindowRatio.toFixed(3),
        f.coldStartWorstRatio.toFixed(3),
        f.event === undefined ? "-" : f.event.meanRatioBefore.toFixed(2),
        f.event === undefined
          ? "-"
          : `${f.event.minRatioAfter.toFixed(2)}..${f.event.maxRatioAfter.toFixed(2)}`,
        convergeText(f.event),
        pct(f.exact.decisionsDiffer, 1),
        pct(f.exact.hotDecisionsDiffer, 1),
        f.exact.hotAdmittedVsExact.toFixed(3),
        f.hotOfferedMinRatio.toFixed(1),
        mode === "global" ? `${f.latency.batchP99Ms}/${f.latency.updateP99Ms}` : "-",
      ]);
    }
  }
  console.log(
    table(
      [
        "scenario",
        "limiter",
        "mean",
        "lowest",
        "worst",
        "first 2 s",
        "before",
        "2 s after",
        "back within 5%",
        "differ",
        "differ hot",
        "vs exact",
        "offered",
        "p99 ms",
      ],
      rows,
    ),
  );
  console.log(
    [
      "",
      "mean / lowest / worst: hot keys' admitted per sliding window / limit, windows ending from 2 s on;",
      "first 2 s: the worst of the windows ending in the first 2 s (the cold start).",
      "before: hot keys' mean window ratio in the second before the event. 2 s after: lowest..highest",
      "window ratio in the 2 s after it. back within 5%: from the event until every hot key's window",
      "stays within 5% of the limit for a whole window (SI = sync interval); 'back' = first return.",
      "differ: decisions that differ from an exact sliding window given the same admitted history",
      "(all 100 keys / hot keys). vs exact: hot keys' admitted / what an exact central limiter admits",
      "replayed on the same offered counts. offered: hot keys' lowest offered per window / limit.",
      "p99 ms: batches / rate updates, send stamp to receipt at an observer process (machine load).",
    ].join("\n"),
  );
  const eventRows: string[][] = [];
  for (const sc of scenarios) {
    for (const mode of ["global", "naive"] as const) {
      const e = results[mode][sc.name]?.event;
      if (e === undefined) continue;
      eventRows.push([
        mode === "global" ? sc.name : "",
        mode === "global" ? "sluice global" : "naive",
        ...AROUND_MS.map((off) => (e.around[String(off)] ?? Number.NaN).toFixed(2)),
      ]);
    }
  }
  if (eventRows.length > 0) {
    console.log("\nHot keys' mean window ratio around each event (ms from the event):");
    console.log(
      table(
        ["event", "limiter", ...AROUND_MS.map((off) => (off > 0 ? `+${off}` : String(off)))],
        eventRows,
      ),
    );
  }
  console.log(
    `\nIn-memory reference (steady, hot key only, 8 agents + aggregator in one process on a manual clock, 3 ms message latency, same rule and sync interval; no machine noise): mean ${sim.meanRatio.toFixed(3)}, lowest ${sim.lowestWindowRatio.toFixed(3)}, worst ${sim.worstWindowRatio.toFixed(3)} (windows from 2 s to 12 s).`,
  );
  const goals: Record<string, { goal: string; value: unknown; pass: boolean }> = {};
  const g = results.global;
  for (const name of ["steady", "skewed"]) {
    const f = g[name];
    if (f === undefined) continue;
    goals[`${name}.mean`] = {
      goal: `mean within ${GOAL_STEADY_MEAN * 100}% of the limit`,
      value: f.meanRatio,
      pass: Math.abs(f.meanRatio - 1) <= GOAL_STEADY_MEAN,
    };
  }
  for (const [name, f] of Object.entries(g)) {
    const worst = Math.max(f.worstWindowRatio, f.coldStartWorstRatio);
    goals[`${name}.worst`] = {
      goal: `no window above ${GOAL_WORST * 100}% of the limit, from the first window`,
      value: worst,
      pass: worst <= GOAL_WORST,
    };
    if (f.event !== undefined) {
      goals[`${name}.converge`] = {
        goal: `back within 5% in ${GOAL_CONVERGE_MS} ms (2 sync intervals)`,
        value: f.event.convergeMs,
        pass: f.event.convergeMs !== null && f.event.convergeMs <= GOAL_CONVERGE_MS,
      };
    }
  }
  const baseline = g["steady"]?.inBandHoldFraction;
  if (baseline !== undefined) {
    console.log(
      `\nBaseline for "back within 5%": in steady (no event), a whole window with every hot key in the band follows ${(baseline * 100).toFixed(0)}% of instants (${Object.entries(
        g,
      )
        .map(([n, f]) => `${n} ${(f.inBandHoldFraction * 100).toFixed(0)}%`)
        .join(", ")}).`,
    );
  }
  console.log("\nGoals (sluice global):");
  for (const [name, r] of Object.entries(goals)) {
    console.log(
      `  ${r.pass ? "PASS" : "MISS"}  ${name.padEnd(16)} ${r.goal}: ${r.value === null ? "never" : r.value}`,
    );
  }
  const missed = Object.entries(goals).filter(([, r]) => !r.pass);
  console.log(
    missed.length === 0
      ? "All goals met in this run."
      : `Goals missed in this run: ${missed.map(([n]) => n).join(", ")}.`,
  );
  const errorCount = Object.values(results)
    .flatMap((r) => Object.values(r))
    .reduce((a, f) => a + f.errors.length, 0);
  if (errorCount > 0) console.log(`(${errorCount} error lines from child processes; see JSON)`);
  console.log(
    JSON.stringify({
      bench: "accuracy",
      conditions: { before, after },
      config: {
        limit: LIMIT,
        windowMs: WINDOW_MS,
        algorithm: "sliding-window",
        nodes: NODES,
        ratePerNode: RATE_PER_NODE,
        keys: KEYS,
        zipf: ZIPF,
        hotKeys: HOT_KEYS,
        reportMs: REPORT_MS,
        syncIntervalMs: SYNC_INTERVAL_MS,
        warmupMs: WARMUP_MS,
        tolerance: TOLERANCE,
        holdMs: HOLD_MS,
        aggregatorFlags: TUNING_OPTIONS,
      },
      scenarios: results.global,
      naive: results.naive,
      simulation: { ...sim, admittedPerBucket: undefined },
      goals,
    }),
  );
  return 0;
}

process.exitCode = await main();
