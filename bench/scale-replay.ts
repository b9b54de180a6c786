/**
 * `npm run bench:scale`, throughput section: the replayed load. Every frame is encoded before
 * anything is timed; the publisher only hands the stored bytes to the NATS client.
 *
 * Workload (the shape of bench/aggregator.ts): `NODES` simulated nodes, one global
 * sliding-window rule. Per round (one sync interval of the node, 25 ms) each node reports the
 * `HOT_KEYS` hot keys and `COLD_PER_ROUND` cold keys of its own slice of the rest, taken in
 * turn. Counts are cumulative per (node epoch, key generation 1) and grow every time a node
 * reports a key, so every entry of every round adds new hits to the aggregator's windows. A
 * node's entries of one round are split by decision partition, one frame per partition on
 * `<prefix>.v1.decisions.<partition>.<nodeId>`, all frames of a round under one seq, as the node
 * agent sends them. Entries carry no grant (an open loop: the replay cannot apply the grants the
 * aggregators send back).
 *
 * Heartbeats (role node) are the one thing encoded while publishing: they carry the wall clock,
 * which the aggregator reads as the node's clock, and cost one small frame per node per period.
 *
 * Flow control: the publisher keeps at most `windowEntries` entries published and not yet
 * ingested, as the aggregators' own reports count them (`entries`, summed over the members).
 * So the load offered is as much as the aggregators take, the backlog each one holds stays
 * bounded (far below the server's pending limit for a slow consumer), and none is ever starved
 * while the window is open.
 */
import { encodeDecisionBatch } from "../src/protocol/decision-batch.js";
import { encodeHeartbeat } from "../src/protocol/heartbeat.js";
import { DEFAULT_SYNC_INTERVAL_MS } from "../src/protocol/limits.js";
import { type DecisionEntry, Role } from "../src/protocol/messages.js";
import { decisionPartition } from "../src/protocol/partition.js";
import { createSubjects } from "../src/protocol/subjects.js";
import type { Transport } from "../src/transport/transport.js";
import { sleep } from "../test/integration/helpers/cluster-procs.js";

export const RULE = "api";
export const NODES = 8;
export const KEYS = 100_000;
export const HOT_KEYS = 250;
export const COLD_PER_ROUND = 500;
export const ENTRIES_PER_ROUND = NODES * (HOT_KEYS + COLD_PER_ROUND);
/** Admitted and rejected per entry of a hot key (every round) and of a cold key. */
const HOT_COUNTS = [4, 1] as const;
const COLD_COUNTS = [8, 2] as const;
const HEARTBEAT_MS = 200;

export interface ReplayFrame {
  /** Index into the subject table: node * partitions + partition. */
  readonly subject: number;
  readonly bytes: Uint8Array;
  readonly entries: number;
}

export interface Workload {
  readonly partitions: number;
  readonly rounds: readonly (readonly ReplayFrame[])[];
  readonly entries: number;
  readonly bytes: number;
  readonly frames: number;
  readonly nodeIds: readonly string[];
  readonly nodeEpochs: readonly number[];
  /** Entries per partition, over every round. */
  readonly entriesByPartition: readonly number[];
  /** Wall-clock ms spent encoding. */
  readonly encodeMs: number;
}

/** Encodes `rounds` rounds of the workload for `partitions` decision partitions. */
export function encodeWorkload(rounds: number, partitions: number): Workload {
  const startedMs = performance.now();
  const keys = Array.from({ length: KEYS }, (_, i) => `user:${i}`);
  const partitionOf = new Uint16Array(KEYS);
  for (let k = 0; k < KEYS; k++) partitionOf[k] = decisionPartition(RULE, keys[k]!, partitions);
  const reports = Array.from({ length: NODES }, () => new Uint32Array(KEYS));
  const nodeIds = Array.from({ length: NODES }, (_, j) => `replay-${j}`);
  const baseMs = Date.now();
  const nodeEpochs = nodeIds.map((_, j) => baseMs + j);
  /** Cold keys of node j: HOT_KEYS + j, HOT_KEYS + j + NODES, ... */
  const coldCount = nodeIds.map((_, j) => Math.ceil((KEYS - HOT_KEYS - j) / NODES));
  const entryFor = (node: number, k: number): DecisionEntry => {
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
      grantEpoch: 0,
      grantVersion: 0,
      allowance: 0,
      admittedSinceLast: a,
      ageMs: DEFAULT_SYNC_INTERVAL_MS / 2,
    };
    return entry as DecisionEntry;
  };
  const out: ReplayFrame[][] = [];
  let entries = 0;
  let bytes = 0;
  let frames = 0;
  const entriesByPartition = new Array<number>(partitions).fill(0);
  for (let round = 0; round < rounds; round++) {
    const roundFrames: ReplayFrame[] = [];
    for (let j = 0; j < NODES; j++) {
      const byPartition: DecisionEntry[][] = Array.from({ length: partitions }, () => []);
      const add = (k: number) => byPartition[partitionOf[k]!]!.push(entryFor(j, k));
      for (let k = 0; k < HOT_KEYS; k++) add(k);
      for (let c = 0; c < COLD_PER_ROUND; c++) {
        add(HOT_KEYS + j + ((round * COLD_PER_ROUND + c) % coldCount[j]!) * NODES);
      }
      for (let p = 0; p < partitions; p++) {
        const list = byPartition[p]!;
        if (list.length === 0) continue;
        const encoded = encodeDecisionBatch({
          nodeId: nodeIds[j]!,
          nodeEpoch: nodeEpochs[j]!,
          seq: round + 1,
          sentAtWallMs: baseMs + round * DEFAULT_SYNC_INTERVAL_MS,
          groups: [{ rule: RULE, entries: list }],
        });
        // A split batch (never at these sizes) counts its entries once, on its first frame.
        encoded.forEach((f, i) => {
          roundFrames.push({
            subject: j * partitions + p,
            bytes: f,
            entries: i === 0 ? list.length : 0,
          });
          bytes += f.length;
          frames++;
        });
        entries += list.length;
        entriesByPartition[p]! += list.length;
      }
    }
    out.push(roundFrames);
  }
  return {
    partitions,
    rounds: out,
    entries,
    bytes,
    frames,
    nodeIds,
    nodeEpochs,
    entriesByPartition,
    encodeMs: performance.now() - startedMs,
  };
}

export interface ReplayOptions {
  readonly transport: Transport;
  readonly prefix: string;
  readonly workload: Workload;
  /** Entries the aggregators have ingested so far (their latest reports, summed). */
  readonly ingested: () => number;
  readonly windowEntries: number;
  readonly durationMs: number;
}

export interface ReplayResult {
  readonly roundsSent: number;
  readonly entriesSent: number;
  /** The publisher ran out of rounds before the time was up. */
  readonly exhausted: boolean;
  /** Times the publisher found the window full, and time it spent waiting on it. */
  readonly windowWaits: number;
  readonly windowWaitMs: number;
}

/** Sends one heartbeat per node with the wall clock of now. */
function heartbeats(o: ReplayOptions, seq: number): void {
  const subjects = createSubjects({ prefix: o.prefix });
  const w = o.workload;
  for (let j = 0; j < w.nodeIds.length; j++) {
    const nodeId = w.nodeIds[j]!;
    o.transport.publish(
      subjects.heartbeat(nodeId),
      encodeHeartbeat({
        nodeId,
        nodeEpoch: w.nodeEpochs[j]!,
        seq,
        sentAtWallMs: Date.now(),
        role: Role.node,
      }),
    );
  }
}

/**
 * Publishes the workload's rounds in order for `durationMs` (or until they run out), at most
 * `windowEntries` ahead of what the aggregators ingested. Yields to the event loop after every
 * round, so the client writes what was published and the aggregators' reports are read.
 */
export class Replay {
  /** Entries published so far. */
  sent = 0;
  readonly done: Promise<ReplayResult>;

  constructor(o: ReplayOptions) {
    this.done = this.#run(o);
  }

  async #run(o: ReplayOptions): Promise<ReplayResult> {
    const w = o.workload;
    const s = createSubjects({ prefix: o.prefix });
    const subjects: string[] = [];
    for (const nodeId of w.nodeIds) {
      for (let p = 0; p < w.partitions; p++) subjects.push(s.decisions(p, nodeId));
    }
    const startedMs = performance.now();
    const endMs = startedMs + o.durationMs;
    let heartbeatSeq = 0;
    let nextHeartbeatMs = startedMs;
    let round = 0;
    let waits = 0;
    let waitMs = 0;
    const baseline = o.ingested();
    for (;;) {
      const now = performance.now();
      if (now >= endMs) break;
      if (now >= nextHeartbeatMs) {
        heartbeats(o, ++heartbeatSeq);
        nextHeartbeatMs = now + HEARTBEAT_MS;
      }
      if (round >= w.rounds.length) {
        await sleep(Math.min(50, endMs - now));
        continue;
      }
      if (this.sent - (o.ingested() - baseline) > o.windowEntries) {
        waits++;
        await sleep(1);
        waitMs += performance.now() - now;
        continue;
      }
      for (const f of w.rounds[round]!) {
        o.transport.publish(subjects[f.subject]!, f.bytes);
        this.sent += f.entries;
      }
      round++;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    await o.transport.flush();
    return {
      roundsSent: round,
      entriesSent: this.sent,
      exhausted: round >= w.rounds.length,
      windowWaits: waits,
      windowWaitMs: waitMs,
    };
  }
}
