/**
 * Checkpoints of the aggregator's windows: what a restarted run needs to grant at once instead of
 * warming up.
 *
 * Out: for each global rule, its keys' non-empty bins by age (0 = the bin in progress), with each
 * burst bin's offsets and how far into the current bin the save was, and each node stream's
 * counts; with the wall time of the save, since monotonic clocks of two runs share no origin.
 * In:  such bytes and the wall time now: each bin goes back in as the saving run read it, shifted
 * by the time since the save, over whichever bins this run has (never freeing earlier), and the
 * streams resume from their counts (so the first report after the restart is a plain difference,
 * and a batch lost while no aggregator listened still counts). Grants are not saved in a periodic
 * checkpoint: nodes report what they hold. A handoff's checkpoint (`grants`) saves them too: each
 * key's version and each stream's grant bookkeeping (what it holds, what was sent and not yet
 * confirmed), placeholders included, so the next owner counts every allowance the last one
 * handed out.
 */
import { isValidNodeId } from "../protocol/subjects.js";
import * as gw from "./global-window.js";
import type { KeyState, RuleState } from "./key-state.js";
import type { NodeRecord } from "./membership.js";
import { NodeStream } from "./node-stream.js";

/**
 * Format 2 saves bins by age with their mean and first admission offsets and the save's offset
 * into the current bin (format 1, segment costs by age only, is not read: such a checkpoint
 * restores nothing and the run warms up).
 */
const CHECKPOINT_VERSION = 2;

interface SavedRule {
  readonly binMs: number;
  readonly nowOffsetMs: number;
  readonly keys: SavedKey[];
}
type SavedKey = [key: string, bins: SavedBin[], streams?: SavedStream[], version?: number];
type SavedBin = [age: number, cost: number, meanOffsetMs: number, firstOffsetMs: number];
type SavedStream = [
  nodeId: string,
  nodeEpoch: number,
  generation: number,
  admitted: number,
  rejected: number,
  grant?: SavedGrant,
];
/** A stream's grant bookkeeping (handoff checkpoints only). */
type SavedGrant = [
  holdsGrant: 0 | 1,
  heldAllowance: number,
  confirmedVersion: number,
  sentVersion: number,
  sentAllowance: number,
  maxUnconfirmed: number,
  demandRatePerMs: number,
  roundingCarry: number,
];

/** What a checkpoint holds: every key, or those `keysOf` gives per rule; with `grants`, theirs. */
export interface CheckpointScope {
  readonly keysOf?: (rs: RuleState) => Iterable<[string, KeyState]>;
  readonly grants?: boolean;
}

function savedGrant(s: NodeStream): SavedGrant {
  return [
    s.holdsGrant ? 1 : 0,
    s.heldAllowance,
    s.confirmedVersion,
    s.sentVersion,
    s.sentAllowance,
    s.maxUnconfirmed,
    s.demandRatePerMs,
    s.roundingCarry,
  ];
}

function isCount(x: unknown): x is number {
  return typeof x === "number" && Number.isFinite(x) && x >= 0;
}

function isPositive(x: unknown): x is number {
  return typeof x === "number" && Number.isFinite(x) && x > 0;
}

/** The windows and streams of `rules` at `nowMs` (aggregator clock), saved at `wallMs`. */
export function encodeCheckpoint(
  rules: Iterable<RuleState>,
  nowMs: number,
  wallMs: number,
  scope: CheckpointScope = {},
): Uint8Array {
  const out: Record<string, SavedRule> = {};
  const grants = scope.grants === true;
  for (const rs of rules) {
    const keys: SavedKey[] = [];
    let nowOffsetMs = 0;
    for (const [key, ks] of scope.keysOf?.(rs) ?? rs.keys) {
      const saved = gw.binsByAge(ks.window, rs.shape, nowMs);
      nowOffsetMs = saved.nowOffsetMs;
      if (saved.bins.length === 0 && ks.streams.length === 0) continue;
      const streams: SavedStream[] = [];
      for (const s of ks.streams) {
        if (!s.node.alive || !(s.reported || grants)) continue;
        const st: SavedStream = [s.node.id, s.node.epoch, s.generation, s.admitted, s.rejected];
        if (grants) st.push(savedGrant(s));
        streams.push(st);
      }
      const bins = saved.bins.map(
        (b): SavedBin => [b.age, b.cost, b.meanOffsetMs, b.firstOffsetMs],
      );
      keys.push(grants ? [key, bins, streams, ks.version] : [key, bins, streams]);
    }
    out[rs.rule.name] = { binMs: rs.shape.binMs, nowOffsetMs, keys };
  }
  return new TextEncoder().encode(JSON.stringify({ v: CHECKPOINT_VERSION, wallMs, rules: out }));
}

/**
 * One checkpoint per partition of `partitions` (its keys only), from one pass over the keys of
 * `rules`: a member saving all it owns does not walk every key once per partition.
 */
export function encodePartitionCheckpoints(
  rules: Iterable<RuleState>,
  partitions: readonly number[],
  nowMs: number,
  wallMs: number,
  grants: boolean,
): Map<number, Uint8Array> {
  const all = [...rules];
  const byPartition = new Map<number, Map<RuleState, [string, KeyState][]>>();
  for (const p of partitions) byPartition.set(p, new Map());
  for (const rs of all) {
    for (const entry of rs.keys) {
      const byRule = byPartition.get(entry[1].partition);
      if (byRule === undefined) continue;
      const list = byRule.get(rs);
      if (list === undefined) byRule.set(rs, [entry]);
      else list.push(entry);
    }
  }
  const out = new Map<number, Uint8Array>();
  for (const [p, byRule] of byPartition) {
    const keysOf = (rs: RuleState) => byRule.get(rs) ?? [];
    out.set(p, encodeCheckpoint(all, nowMs, wallMs, { keysOf, grants }));
  }
  return out;
}

/** Where a restore puts what it reads. */
export interface RestoreTarget {
  rule(name: string): RuleState | undefined;
  /** The key's state, created (and counted) when the run does not hold it yet. */
  key(rs: RuleState, key: string): KeyState;
  /** The node run, made known to membership; undefined for a run older than the one known. */
  node(id: string, epoch: number): NodeRecord | undefined;
}

/**
 * Restores `bytes` (from {@link encodeCheckpoint}) into `target` at `nowMs`, `wallMs` being the
 * wall time now. Returns the number of keys restored, or undefined when the bytes are not a
 * checkpoint of this format (nothing is restored then).
 */
export function restoreCheckpoint(
  bytes: Uint8Array,
  target: RestoreTarget,
  nowMs: number,
  wallMs: number,
): number | undefined {
  let doc: { v?: number; wallMs?: number; rules?: Record<string, Partial<SavedRule>> };
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes)) as typeof doc;
  } catch {
    return undefined;
  }
  if (typeof doc !== "object" || doc === null) return undefined;
  if (doc.v !== CHECKPOINT_VERSION || typeof doc.wallMs !== "number") return undefined;
  if (typeof doc.rules !== "object" || doc.rules === null) return undefined;
  const elapsedMs = Math.max(0, wallMs - doc.wallMs);
  let restored = 0;
  for (const [name, saved] of Object.entries(doc.rules)) {
    const rs = target.rule(name);
    const { binMs, nowOffsetMs, keys } = saved;
    if (rs === undefined || !Array.isArray(keys) || !isPositive(binMs)) continue;
    const offsetMs = isCount(nowOffsetMs) ? nowOffsetMs : 0;
    for (const [key, bins, streams, version] of keys) {
      if (typeof key !== "string" || !Array.isArray(bins)) continue;
      const ks = target.key(rs, key);
      if (isCount(version) && version > ks.version) ks.version = version;
      for (const bin of bins) restoreBin(rs, ks, bin, { binMs, offsetMs, elapsedMs, nowMs });
      for (const st of Array.isArray(streams) ? streams : []) restoreStream(ks, st, target, nowMs);
      restored++;
    }
  }
  return restored;
}

function restoreBin(
  rs: RuleState,
  ks: KeyState,
  bin: unknown,
  at: { binMs: number; offsetMs: number; elapsedMs: number; nowMs: number },
): void {
  if (!Array.isArray(bin)) return;
  const [age, cost, meanOffsetMs, firstOffsetMs] = bin as unknown[];
  if (!isCount(age) || !Number.isInteger(age) || !isPositive(cost)) return;
  const saved = {
    age,
    cost,
    meanOffsetMs: meanOffsetMs === -1 || isCount(meanOffsetMs) ? meanOffsetMs : 0,
    firstOffsetMs: isCount(firstOffsetMs) ? firstOffsetMs : 0,
  };
  gw.restoreBin(ks.window, rs.shape, at.nowMs, saved, at.binMs, at.offsetMs, at.elapsedMs);
}

function restoreStream(ks: KeyState, st: unknown, target: RestoreTarget, nowMs: number): void {
  if (!Array.isArray(st)) return;
  const [id, epoch, generation, admitted, rejected, grant] = st as unknown[];
  if (!isValidNodeId(id) || ![epoch, generation, admitted, rejected].every(isCount)) return;
  const g = Array.isArray(grant) && grant.length === 8 && grant.every(isCount) ? grant : undefined;
  // Generation 0 is a placeholder (granted ahead, not reported): kept only with its grant.
  if (generation === 0 && g === undefined) return;
  const node = target.node(id, epoch as number);
  if (node === undefined || ks.streams.some((x) => x.node === node)) return;
  const s =
    generation === 0
      ? NodeStream.placeholder(node, nowMs)
      : new NodeStream(node, generation as number, admitted as number, rejected as number, nowMs);
  if (g !== undefined) {
    const [holds, held, confirmed, sentVersion, sentAllowance, maxUnconfirmed, rate, carry] =
      g as number[];
    s.holdsGrant = holds === 1;
    s.heldAllowance = held!;
    s.confirmedVersion = confirmed!;
    s.sentVersion = sentVersion!;
    s.sentAllowance = sentAllowance!;
    s.maxUnconfirmed = maxUnconfirmed!;
    s.demandRatePerMs = rate!;
    s.roundingCarry = carry!;
  }
  ks.streams.push(s);
}
