/**
 * One node's stream of counts for one key: what the aggregator knows of that node and key.
 *
 * In:  the entries of the node's batches (cumulative admitted and rejected cost per key
 *      generation, and the grant the node holds).
 * Out: what each report adds (the cost to put in the window and the demand), and what the node
 *      may still admit without hearing from the aggregator again (its committed allowance).
 *
 * Counts are cumulative per (node epoch, key generation), so a report lower than the last one is
 * old or reordered and adds nothing; a stream not seen before counts its report in full when the
 * node says it is the generation's first, and only its `admittedSinceLast` otherwise (the
 * aggregator restarted, or reclaimed the key). A grant cannot be taken back before the node
 * confirms it (its report carries the grant it holds), so until then the highest allowance sent
 * counts as committed.
 */
import type { DecisionEntry } from "../protocol/messages.js";
import type { NodeRecord } from "./membership.js";

export class NodeStream {
  readonly node: NodeRecord;
  generation: number;
  admitted: number;
  rejected: number;
  /** Cost reported since the demand was last folded (see demand.ts). */
  pendingDemand = 0;
  /** Whether a report came since the demand was last folded. */
  reportedSinceDemand = false;
  demandRatePerMs = 0;
  lastDemandMs: number;
  /** The allowance the node says it holds, and whether it holds a grant at all. */
  holdsGrant = false;
  heldAllowance = 0;
  confirmedVersion = 0;
  sentVersion = 0;
  sentAllowance = 0;
  /** The highest allowance sent since the last confirmation of the latest version. */
  maxUnconfirmed = 0;
  /** False for a placeholder: a live node granted ahead that has not reported this key. */
  reported = true;
  /** What whole-unit rounding owes this node (see `roundToUnits`), within one unit. */
  roundingCarry = 0;
  /** When the last grant sent said the window frees capacity next (aggregator clock). */
  sentFreeAtMs = Number.NEGATIVE_INFINITY;

  constructor(
    node: NodeRecord,
    generation: number,
    admitted: number,
    rejected: number,
    nowMs: number,
  ) {
    this.node = node;
    this.generation = generation;
    this.admitted = admitted;
    this.rejected = rejected;
    this.lastDemandMs = nowMs;
  }

  /** A live node granted ahead of its first report of the key (generation 0). */
  static placeholder(node: NodeRecord, nowMs: number): NodeStream {
    const s = new NodeStream(node, 0, 0, 0, nowMs);
    s.reported = false;
    return s;
  }
}

/** What one report adds; `stale` when it repeated or predated what was counted. */
export interface Reconciled {
  readonly stream: NodeStream;
  readonly admitted: number;
  readonly rejected: number;
  readonly stale: boolean;
}

/**
 * Applies `e`, a report of `node`, to the key's `streams` (the stream is created or replaced in
 * place when the report opens a new one). Returns what it adds, or undefined when it is older
 * than what was counted (then nothing changes). `epoch` is this aggregator run's: only a grant
 * of ours confirms what we sent.
 */
export function reconcile(
  streams: NodeStream[],
  node: NodeRecord,
  e: DecisionEntry,
  nowMs: number,
  epoch: number,
): Reconciled | undefined {
  const r = newReconciled();
  return reconcileInto(r, streams, node, e, nowMs, epoch) ? r : undefined;
}

/** A {@link Reconciled} to pass to {@link reconcileInto}, which overwrites it. */
export type ReconciledInto = { -readonly [K in keyof Reconciled]: Reconciled[K] };

export function newReconciled(): ReconciledInto {
  return { stream: undefined as unknown as NodeStream, admitted: 0, rejected: 0, stale: false };
}

/**
 * As {@link reconcile}, writing what the report adds into `r` (reused from one entry to the
 * next); returns false when it is older than what was counted (then `r` is unchanged).
 */
export function reconcileInto(
  r: ReconciledInto,
  streams: NodeStream[],
  node: NodeRecord,
  e: DecisionEntry,
  nowMs: number,
  epoch: number,
): boolean {
  let s: NodeStream | undefined;
  for (const x of streams) {
    if (x.node === node) {
      s = x;
      break;
    }
  }
  let dA: number;
  let dR: number;
  let stale = false;
  if (s !== undefined && s.generation === 0) {
    // The first report from a node we granted ahead: adopt its generation and keep the grant
    // bookkeeping; a new generation's counts are all new.
    s.generation = e.generation;
    dA = e.isNew ? e.admitted : 0;
    dR = e.isNew ? e.rejected : 0;
    s.admitted = e.admitted;
    s.rejected = e.rejected;
    s.reported = true;
  } else if (s === undefined || s.generation !== e.generation) {
    // A stream we have not seen: a generation reported for the first time counts in full;
    // otherwise what this report adds counts, and its cumulative values become the baseline.
    dA = e.isNew ? e.admitted : Math.min(e.admittedSinceLast, e.admitted);
    dR = e.isNew ? e.rejected : 0;
    const fresh = new NodeStream(node, e.generation, e.admitted, e.rejected, nowMs);
    if (s === undefined) streams.push(fresh);
    else streams[streams.indexOf(s)] = fresh;
    s = fresh;
  } else {
    dA = e.admitted - s.admitted;
    dR = e.rejected - s.rejected;
    if (dA < 0 || dR < 0) return false;
    stale = dA === 0 && dR === 0 && e.grantVersion <= s.confirmedVersion;
    s.admitted = e.admitted;
    s.rejected = e.rejected;
  }
  s.pendingDemand += dA + dR;
  s.reportedSinceDemand = true;
  // What the node holds now, consistent with the counts it sent in the same entry.
  s.holdsGrant = e.grantEpoch > 0;
  s.heldAllowance = e.allowance;
  if (e.grantEpoch === epoch && e.grantVersion >= s.confirmedVersion) {
    s.confirmedVersion = e.grantVersion;
    if (s.confirmedVersion >= s.sentVersion) s.maxUnconfirmed = 0;
  }
  r.stream = s;
  r.admitted = dA;
  r.rejected = dR;
  r.stale = stale;
  return true;
}

/**
 * What `s` may still admit beyond its reported count without hearing from us again: the unused
 * part of the grant it holds, or `defaultShare` when it reported the key holding none, or the
 * highest allowance sent and not yet confirmed, whichever is larger. A placeholder counts what we
 * sent it only: it could take its default share too if hits reached it before our grant, a risk
 * taken on purpose (counting it would hold back a hot key's whole budget until every node
 * confirmed).
 */
export function committedAllowance(s: NodeStream, defaultShare: number): number {
  const held = s.holdsGrant ? s.heldAllowance - s.admitted : s.reported ? defaultShare : 0;
  const inFlight = s.sentVersion > s.confirmedVersion ? s.maxUnconfirmed - s.admitted : 0;
  const c = held > inFlight ? held : inFlight;
  return c > 0 ? c : 0;
}
