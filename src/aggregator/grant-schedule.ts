/**
 * Which grants go out after an allocation, and what they say.
 *
 * In:  each node stream's new share, what it holds, and the wait until the budget covers more.
 * Out: grant entries for the nodes whose allowance moved enough (or who are out of room), with a
 *      new per-key version each, the part usable at once (scheduled grants), and the wait.
 *
 * A grant says "this key generation may have admitted up to `allowance`". Small changes are not
 * worth a message, except to a node out of room: there even a small increase lets it admit its
 * next hit (a skipped one would never be sent, since a node that cannot admit reports nothing
 * that would change its share), and a wait that moved by more than a sync interval is what it
 * answers its refusals with.
 */
import type {
  GrantEntry,
  PartitionOwner,
  RateUpdateFields,
  RuleDefaultsFields,
  RuleGroup,
} from "../protocol/messages.js";
import { type AllocationInput, maxMinFair } from "./allocator.js";
import type { RuleState } from "./key-state.js";
import type { NodeRecord } from "./membership.js";
import type { NodeStream } from "./node-stream.js";

/** Grants to send, by node and rule. */
export type GrantsByNode = Map<NodeRecord, Map<string, GrantEntry[]>>;

/** What scheduling needs besides the streams and their shares. */
export interface ScheduleInput {
  readonly rule: string;
  readonly key: string;
  readonly limit: number;
  /** A grant is re-sent when it moves by more than this fraction of the limit. */
  readonly materialChange: number;
  readonly syncIntervalMs: number;
  /** Scheduled grants' ramp, ms; 0 without. */
  readonly rampMs: number;
  /** Per stream, of its new allowance, what is usable at once (ramp); undefined: all of it. */
  readonly usableNow: readonly number[] | undefined;
  readonly nowMs: number;
  /**
   * The wait until the budget covers one more hit, ms (0: the next tick); called at most once,
   * and only when a grant may go out.
   */
  readonly waitMs: () => number;
}

/** The per-key grant version: one counter per key, over all its nodes. */
export interface VersionCounter {
  version: number;
}

/**
 * Adds to `out` a grant for each stream whose new allowance (`admitted + shares[j]`) should be
 * sent; `nodes[j].committed` is what the stream held before. Returns how many grants it added.
 */
export function scheduleGrants(
  key: VersionCounter,
  streams: readonly NodeStream[],
  shares: readonly number[],
  nodes: readonly AllocationInput[],
  x: ScheduleInput,
  out: GrantsByNode,
): number {
  const threshold = Math.max(x.limit * x.materialChange, 1e-9);
  // The wait, asked for the first time a stream is out of room or a grant goes out (undefined
  // until then), and the freeing time it means: a real freeing time is absolute and stable; "the
  // next tick" (0) moves with every tick, so it compares as -Infinity.
  let waitMs: number | undefined;
  let freeAt = 0;
  let sent = 0;
  for (let j = 0; j < streams.length; j++) {
    const s = streams[j]!;
    if (!s.node.alive) continue;
    const allowance = s.admitted + shares[j]!;
    const outOfRoom = s.sentAllowance - s.admitted < 1;
    const starved = outOfRoom && allowance > s.sentAllowance;
    if (outOfRoom && waitMs === undefined) {
      waitMs = x.waitMs();
      freeAt = waitMs > 0 ? x.nowMs + waitMs : Number.NEGATIVE_INFINITY;
    }
    const waitMoved =
      outOfRoom &&
      freeAt !== s.sentFreeAtMs &&
      !(Math.abs(freeAt - s.sentFreeAtMs) <= x.syncIntervalMs);
    if (
      s.sentVersion > 0 &&
      !starved &&
      !waitMoved &&
      Math.abs(allowance - s.sentAllowance) <= threshold
    ) {
      continue;
    }
    if (waitMs === undefined) {
      waitMs = x.waitMs();
      freeAt = waitMs > 0 ? x.nowMs + waitMs : Number.NEGATIVE_INFINITY;
    }
    s.sentFreeAtMs = freeAt;
    key.version = (key.version + 1) >>> 0 || 1;
    s.sentVersion = key.version;
    s.sentAllowance = allowance;
    if (allowance > s.maxUnconfirmed) s.maxUnconfirmed = allowance;
    const rampFrom =
      x.usableNow === undefined ? allowance : s.admitted + nodes[j]!.committed + x.usableNow[j]!;
    addGrant(
      out,
      s.node,
      x.rule,
      new Grant(
        x.key,
        s.generation,
        s.sentVersion,
        allowance,
        rampFrom < allowance ? rampFrom : allowance,
        rampFrom < allowance ? x.rampMs : 0,
        waitMs,
      ),
    );
    sent++;
  }
  return sent;
}

/**
 * One grant of a rate update: a `GrantEntry` with its fields in the wire's order, made by a
 * constructor, so every grant has the same shape.
 */
class Grant implements GrantEntry {
  constructor(
    readonly key: string,
    readonly generation: number,
    readonly version: number,
    readonly allowance: number,
    readonly rampFrom: number,
    readonly rampMs: number,
    readonly retryAfterMs: number,
  ) {}
}

/** The header every rate update of one tick shares. */
export interface UpdateHeader {
  readonly aggregatorId: string;
  readonly aggregatorEpoch: number;
  readonly seq: number;
  readonly sentAtWallMs: number;
  /** A group member's partitions with their owner epochs (empty for a lone aggregator). */
  readonly owners: readonly PartitionOwner[];
}

/** One rate update per node with grants in `out`. */
export function rateUpdates(out: GrantsByNode, header: UpdateHeader): RateUpdateFields[] {
  const updates: RateUpdateFields[] = [];
  for (const [node, byRule] of out) {
    const groups: RuleGroup<GrantEntry>[] = [];
    for (const [rule, entries] of byRule) groups.push({ rule, entries });
    updates.push({ ...header, targetNodeId: node.id, targetNodeEpoch: node.epoch, groups });
  }
  return updates;
}

/** The rule defaults of a tick: each rule's limit shared among the `live` nodes. */
export function ruleDefaults(
  h: UpdateHeader,
  rules: Iterable<RuleState>,
  live: number,
  partitions: number,
): RuleDefaultsFields {
  const shares: RuleDefaultsFields["rules"][number][] = [];
  for (const rs of rules) shares.push({ rule: rs.rule.name, defaultShare: rs.rule.limit / live });
  return {
    aggregatorId: h.aggregatorId,
    aggregatorEpoch: h.aggregatorEpoch,
    seq: h.seq,
    sentAtWallMs: h.sentAtWallMs,
    liveNodes: Math.min(live, 65535),
    partitions,
    owners: h.owners,
    rules: shares,
  };
}

function addGrant(out: GrantsByNode, node: NodeRecord, rule: string, entry: GrantEntry): void {
  let byRule = out.get(node);
  if (byRule === undefined) {
    byRule = new Map();
    out.set(node, byRule);
  }
  let entries = byRule.get(rule);
  if (entries === undefined) {
    entries = [];
    byRule.set(rule, entries);
  }
  entries.push(entry);
}

/**
 * Scheduled grants: of each node's increase (share beyond what it holds), the part usable at
 * once, max-min fair over the increases from what the window has freed by now (a light node's
 * small increase comes whole: ramped, its next hit could find less than one unit usable); the
 * rest ramps in. At any moment the nodes together can then use at most `budgetNow` plus the
 * straight line under the freeing, so the safety sum holds over the whole ramp. Undefined when
 * what has freed covers every increase (then every grant is usable at once).
 */
export function usableNow(
  nodes: readonly AllocationInput[],
  shares: readonly number[],
  budgetNow: number,
  grantable: number,
  held: number,
): number[] | undefined {
  let added = 0;
  for (let j = 0; j < nodes.length; j++) {
    const c = nodes[j]!.committed;
    if (shares[j]! > c) added += shares[j]! - c;
  }
  const freeNow = (budgetNow < grantable ? budgetNow : grantable) - held;
  if (added === 0 || freeNow >= added) return undefined;
  return maxMinFair(
    freeNow > 0 ? freeNow : 0,
    nodes.map(({ committed: c }, j) => ({ demand: shares[j]! > c ? shares[j]! - c : 0 })),
  );
}
