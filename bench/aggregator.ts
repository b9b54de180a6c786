/**
 * `npm run bench:aggregator`: the aggregator's ingest throughput in one process, on the real
 * decode path, with its CPU time and memory at 100,000 active keys.
 *
 * Workload (one round = one sync interval, the default 25 ms, of simulated time, on a manual
 * clock):
 * - 8 simulated nodes each send one DecisionBatch per round of 750 entries for one global
 *   sliding-window rule: 250 hot keys that every node reports every round, and 500 cold keys
 *   from that node's own slice of the rest of the 100,000 keys (sticky routing: a cold key is
 *   always reported by the same node), taken in turn, so every key is reported within 25 rounds.
 * - Per node and key, a hot key has 200 decisions a second: 5 per round (4 admitted, 1
 *   rejected); a cold key has 10 decisions (8 and 2) each time it is reported, about every
 *   625 ms. So a round carries 6,000 entries standing for 50,000 decisions: 240,000 entries and
 *   2,000,000 decisions per simulated second. At the earlier 50 ms interval the same load was
 *   200,000 entries a second (hot entries of 10 decisions, 1,000 cold keys a round): a shorter
 *   interval splits only the keys that have hits in every interval into more entries.
 * - The loop is closed: the grants the aggregator sends back are applied to the simulated nodes,
 *   whose next entries carry the grant they hold (epoch, version, allowance), as real nodes do.
 *
 * Timed: decode of every frame + `ingestBatch` + `tick()` (and, apart, encoding the rate updates
 * the tick returns, which the service does next). Not timed: building and encoding the batches,
 * and applying grants to the simulated nodes. CPU time is `process.cpuUsage()` over the timed
 * parts only; "CPU at 2 M/s" is that CPU time over the simulated time it covered, i.e. the share
 * of one core the aggregator needs to keep up with this load in real time.
 *
 * Memory: heap + ArrayBuffers after a full GC (`node --expose-gc`), before the aggregator exists
 * and after the run with all 100,000 keys held, divided by the keys held.
 *
 * Digest: sha1 over the JSON of every tick's rate updates and rule defaults, in order (not
 * timed), so that a change meant to be behaviour-neutral can be checked against the code before it.
 *
 * Prints a table, then one JSON line (the last line of output).
 */
import { createHash } from "node:crypto";
import { AggregatorCore } from "../src/aggregator/aggregator-core.js";
import { resolveTuning } from "../src/aggregator/tuning.js";
import { ManualClock } from "../src/clock/clock.js";
import { compileRules } from "../src/config/rules-file.js";
import { encodeDecisionBatch } from "../src/protocol/decision-batch.js";
import { DecisionBatchReader } from "../src/protocol/decode.js";
import { encode } from "../src/protocol/encode.js";
import { DEFAULT_SYNC_INTERVAL_MS } from "../src/protocol/limits.js";
import type { DecisionBatch, DecisionEntry } from "../src/protocol/messages.js";
import { median, round2, table } from "./harness.js";

const NODES = 8;
const KEYS = 100_000;
const HOT_KEYS = 250;
const COLD_PER_ROUND = 500;
/** Admitted and rejected per entry of a hot key (every round) and of a cold key. */
const HOT_COUNTS = [4, 1] as const;
const COLD_COUNTS = [8, 2] as const;
const DECISIONS_PER_ROUND =
  NODES *
  (HOT_KEYS * (HOT_COUNTS[0] + HOT_COUNTS[1]) + COLD_PER_ROUND * (COLD_COUNTS[0] + COLD_COUNTS[1]));
const SYNC_INTERVAL_MS = DEFAULT_SYNC_INTERVAL_MS;
const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 400);
const RULE = "api";

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error("Run with node --expose-gc (npm run bench:aggregator does) for memory figures.");
}

function memoryBytes(): { heap: number; arrayBuffers: number; total: number } {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, arrayBuffers: m.arrayBuffers, total: m.heapUsed + m.arrayBuffers };
}

// Simulated nodes: per node and key, how often it reported the key, and the grant it holds.
const keys = Array.from({ length: KEYS }, (_, i) => `user:${i}`);
const reports = Array.from({ length: NODES }, () => new Uint32Array(KEYS));
const grantVersion = Array.from({ length: NODES }, () => new Uint32Array(KEYS));
const grantAllowance = Array.from({ length: NODES }, () => new Float64Array(KEYS));
const keyIndex = new Map(keys.map((k, i) => [k, i]));
/** Cold keys of node j: HOT_KEYS + j, HOT_KEYS + j + NODES, ... */
const coldCount = Array.from({ length: NODES }, (_, j) => Math.ceil((KEYS - HOT_KEYS - j) / NODES));
const nodeIds = Array.from({ length: NODES }, (_, j) => `node-${j}`);
const nodeEpochs = nodeIds.map((_, j) => 1_764_000_000_000 + j);
const AGGREGATOR_EPOCH = 1_764_000_000_123;

function entryFor(node: number, k: number): DecisionEntry {
  const n = ++reports[node]![k]!;
  const [a, r] = k < HOT_KEYS ? HOT_COUNTS : COLD_COUNTS;
  // Built as a variable, not a literal: the entry type grows fields now and then, and the
  // encoder reads only the ones it knows.
  const entry = {
    key: keys[k]!,
    generation: 1,
    admitted: n * a,
    rejected: n * r,
    isNew: n === 1,
    grantEpoch: grantVersion[node]![k]! > 0 ? AGGREGATOR_EPOCH : 0,
    grantVersion: grantVersion[node]![k]!,
    allowance: grantAllowance[node]![k]!,
    admittedSinceLast: a,
    ageMs: SYNC_INTERVAL_MS / 2,
  };
  return entry as DecisionEntry;
}

function encodeRound(round: number): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (let j = 0; j < NODES; j++) {
    const entries: DecisionEntry[] = [];
    for (let k = 0; k < HOT_KEYS; k++) entries.push(entryFor(j, k));
    for (let c = 0; c < COLD_PER_ROUND; c++) {
      const slot = (round * COLD_PER_ROUND + c) % coldCount[j]!;
      entries.push(entryFor(j, HOT_KEYS + j + slot * NODES));
    }
    frames.push(
      ...encodeDecisionBatch({
        nodeId: nodeIds[j]!,
        nodeEpoch: nodeEpochs[j]!,
        seq: round + 1,
        sentAtWallMs: 1_764_000_000_000 + round * SYNC_INTERVAL_MS,
        groups: [{ rule: RULE, entries }],
      }),
    );
  }
  return frames;
}

/** One reader per frame of a round: a batch read stays valid until its reader reads again. */
const readers = Array.from({ length: NODES }, () => new DecisionBatchReader());
const rules = compileRules([
  { name: RULE, mode: "global", algorithm: "sliding-window", limit: 1000, windowMs: 1000 },
]);
const memBefore = memoryBytes();
const clock = new ManualClock(1_000_000);
const core = new AggregatorCore({
  rules,
  aggregatorId: "bench",
  epoch: AGGREGATOR_EPOCH,
  tuning: resolveTuning({ syncIntervalMs: SYNC_INTERVAL_MS, warmupMs: 0 }),
  startMs: clock.nowMs(),
});

const phaseNs = { decode: 0n, ingest: 0n, tick: 0n, encodeUpdates: 0n };
let cpuUs = 0;
let cpuWithEncodeUs = 0;
let entries = 0;
let frameBytes = 0;
let frameCount = 0;
let grants = 0;
let maxRoundMs = 0;
const roundMs: number[] = [];
const digest = createHash("sha1");
process.stderr.write(`[aggregator] ${ROUNDS} rounds of ${NODES} batches...\n`);
for (let round = 0; round < ROUNDS; round++) {
  const frames = encodeRound(round);
  for (const f of frames) frameBytes += f.length;
  frameCount += frames.length;
  clock.advance(SYNC_INTERVAL_MS);

  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const batches: DecisionBatch[] = [];
  for (let i = 0; i < frames.length; i++) {
    const r = readers[i]!.read(frames[i]!);
    if (r.ok && r.message.type === "decision-batch") batches.push(r.message);
  }
  const t1 = process.hrtime.bigint();
  for (const b of batches) {
    core.ingestBatch(b, clock.nowMs());
    for (const g of b.groups) entries += g.entries.length;
  }
  const t2 = process.hrtime.bigint();
  const { updates, defaults } = core.tick(clock.nowMs(), 1_764_000_000_000 + clock.nowMs());
  const t3 = process.hrtime.bigint();
  const cpu1 = process.cpuUsage(cpu0);
  let updateBytes = 0;
  for (const u of updates)
    for (const f of encode({ type: "rate-update", ...u })) updateBytes += f.length;
  for (const f of encode({ type: "rule-defaults", ...defaults })) updateBytes += f.length;
  const t4 = process.hrtime.bigint();
  const cpu2 = process.cpuUsage(cpu0);
  phaseNs.decode += t1 - t0;
  phaseNs.ingest += t2 - t1;
  phaseNs.tick += t3 - t2;
  phaseNs.encodeUpdates += t4 - t3;
  cpuUs += cpu1.user + cpu1.system;
  cpuWithEncodeUs += cpu2.user + cpu2.system;
  maxRoundMs = Math.max(maxRoundMs, Number(t4 - t0) / 1e6);
  roundMs.push(Number(t4 - t0) / 1e6);
  if (updateBytes < 0) console.log(""); // keeps the encoding observable
  digest.update(JSON.stringify(updates));
  digest.update(JSON.stringify(defaults));

  // The simulated nodes apply their grants (not timed).
  for (const u of updates) {
    const j = nodeIds.indexOf(u.targetNodeId);
    for (const g of u.groups) {
      for (const e of g.entries) {
        const k = keyIndex.get(e.key)!;
        if (e.version > grantVersion[j]![k]!) {
          grantVersion[j]![k] = e.version;
          grantAllowance[j]![k] = e.allowance;
        }
        grants++;
      }
    }
  }
  if ((round + 1) % 50 === 0) process.stderr.write(`  round ${round + 1}/${ROUNDS}\r`);
}
process.stderr.write("\n");
const memAfter = memoryBytes();

const timedNs = Number(phaseNs.decode + phaseNs.ingest + phaseNs.tick);
const withEncodeNs = timedNs + Number(phaseNs.encodeUpdates);
const simulatedMs = ROUNDS * SYNC_INTERVAL_MS;
const decisions = ROUNDS * DECISIONS_PER_ROUND;
const keysHeld = core.stats.keys;
const nodeKeyRecords = HOT_KEYS * NODES + (keysHeld - HOT_KEYS);
const bytesPerKey = (memAfter.total - memBefore.total) / keysHeld;
const figures = {
  bench: "aggregator",
  nodes: NODES,
  rounds: ROUNDS,
  simulatedSeconds: simulatedMs / 1000,
  decisionsPerEntry: round2(decisions / entries),
  offeredDecisionsPerSec: Math.round((decisions / simulatedMs) * 1000),
  offeredEntriesPerSec: Math.round((entries / simulatedMs) * 1000),
  decisionsPerSec: Math.round((decisions / timedNs) * 1e9),
  entriesPerSec: Math.round((entries / timedNs) * 1e9),
  entriesPerSecWithUpdateEncoding: Math.round((entries / withEncodeNs) * 1e9),
  cpuPercent: round2((cpuUs / 1000 / simulatedMs) * 100),
  cpuPercentWithUpdateEncoding: round2((cpuWithEncodeUs / 1000 / simulatedMs) * 100),
  nsPerEntry: {
    decode: round2(Number(phaseNs.decode) / entries),
    ingest: round2(Number(phaseNs.ingest) / entries),
    tick: round2(Number(phaseNs.tick) / entries),
    encodeUpdates: round2(Number(phaseNs.encodeUpdates) / entries),
  },
  medianRoundMs: round2(median(roundMs)),
  /** The first rounds create the keys and warm the JIT; the slowest round after them. */
  maxRoundMsAfterWarmup: round2(Math.max(...roundMs.slice(20))),
  maxRoundMs: round2(maxRoundMs),
  bytesPerEntryOnWire: round2(frameBytes / entries),
  frames: frameCount,
  grantsReturned: grants,
  keys: keysHeld,
  nodeKeyRecords,
  heapMB: round2(memAfter.heap / 2 ** 20),
  arrayBuffersMB: round2(memAfter.arrayBuffers / 2 ** 20),
  aggregatorMB: round2((memAfter.total - memBefore.total) / 2 ** 20),
  bytesPerKey: Math.round(bytesPerKey),
  updatesDigest: digest.digest("hex"),
  gcAvailable: gc !== undefined,
  node: process.version,
};

console.log(
  `Aggregator ingest: ${NODES} simulated nodes x ${HOT_KEYS + COLD_PER_ROUND} entries per ${SYNC_INTERVAL_MS} ms round, ${figures.decisionsPerEntry} decisions per entry on average (${figures.offeredDecisionsPerSec.toLocaleString("en-US")} decisions/s, ${figures.offeredEntriesPerSec.toLocaleString("en-US")} entries/s offered), ${ROUNDS} rounds = ${simulatedMs / 1000} s simulated, ${keysHeld.toLocaleString("en-US")} keys held. Node ${process.version}.\n`,
);
console.log(
  table(
    ["measure", "value"],
    [
      ["decode + ingest + tick", `${(figures.entriesPerSec / 1e6).toFixed(2)} M entries/s`],
      ["  = decisions", `${(figures.decisionsPerSec / 1e6).toFixed(1)} M decisions/s`],
      [
        "  per entry: decode / ingest / tick",
        `${figures.nsPerEntry.decode} / ${figures.nsPerEntry.ingest} / ${figures.nsPerEntry.tick} ns`,
      ],
      ["  + encoding the updates", `${figures.nsPerEntry.encodeUpdates} ns per entry`],
      ["CPU at 2 M decisions/s", `${figures.cpuPercent}% of one core`],
      ["  with update encoding", `${figures.cpuPercentWithUpdateEncoding}% of one core`],
      [
        `round (${SYNC_INTERVAL_MS} ms simulated): median / slowest`,
        `${figures.medianRoundMs} / ${figures.maxRoundMsAfterWarmup} ms (${figures.maxRoundMs} ms in the first 20)`,
      ],
      ["wire", `${figures.bytesPerEntryOnWire} B per entry`],
      ["keys held / node-key records", `${keysHeld} / ${nodeKeyRecords}`],
      ["aggregator memory", `${figures.aggregatorMB} MB = ${figures.bytesPerKey} B per key`],
      ["process heap + ArrayBuffers", `${figures.heapMB} + ${figures.arrayBuffersMB} MB`],
    ],
  ),
);
console.log(JSON.stringify(figures));
