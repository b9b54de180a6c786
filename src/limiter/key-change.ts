/**
 * One changed key, as the limiter hands it out: `drain()` passes one cursor, filled in place for
 * each changed key, so draining allocates nothing per key; `snapshot()` copies each into an
 * `AccountingEntry`.
 */

import { OWN_CELLS } from "./slot-layout.js";

/**
 * One changed key during a drain (`Limiter.drain`); counts are in cost units. Valid only during
 * the visitor's call: the same object is filled again for the next key, so copy what you keep.
 * The fields after `deltaRejected` matter to the node agent only.
 */
export interface ChangeCursor {
  readonly rule: string;
  readonly key: string;
  /** Changes each time the key is created anew in this limiter (see key-table.ts). */
  readonly generation: number;
  /** Cumulative admitted cost of this key generation. */
  readonly admitted: number;
  /** Cumulative rejected cost of this key generation. */
  readonly rejected: number;
  /** Admitted cost since the previous drain (or snapshot). */
  readonly deltaAdmitted: number;
  /** Rejected cost since the previous drain (or snapshot). */
  readonly deltaRejected: number;
  /** True the first time this key generation is reported. */
  readonly isNew: boolean;
  /** Global rules: the grant in force (aggregator epoch, per-key version, allowance); 0 if none. */
  readonly grantEpoch: number;
  readonly grantVersion: number;
  readonly allowance: number;
  /** Global rules: how long ago, on average, the hits of `deltaAdmitted` were admitted, ms; else 0. */
  readonly ageMs: number;
  /**
   * Global rules, in a drain after `GlobalControl.reportRecentNext()`: this node's own
   * admissions of the key in its last window or so, by bin, newest first (`recentCost[k]`),
   * with how long ago each bin ended (`recentAgeMs[k]`); `recentCount` bins (0 otherwise).
   */
  readonly recentCount: number;
  readonly recentCost: Float64Array;
  readonly recentAgeMs: Float64Array;
}

/** What one key did between two snapshots: a copy of a cursor, less `ageMs` and the bins. */
export type AccountingEntry = Omit<
  ChangeCursor,
  "ageMs" | "recentCount" | "recentCost" | "recentAgeMs"
>;

/** Receives each changed key of a drain; see {@link ChangeCursor} for how long it is valid. */
export type ChangeVisitor = (change: ChangeCursor) => void;

/** The writable cursor a key table fills. Every field is set in the constructor: one shape. */
export class ChangeCursorRecord implements ChangeCursor {
  rule: string;
  key = "";
  generation = 0;
  admitted = 0;
  rejected = 0;
  deltaAdmitted = 0;
  deltaRejected = 0;
  isNew = false;
  grantEpoch = 0;
  grantVersion = 0;
  allowance = 0;
  ageMs = 0;
  recentCount = 0;
  readonly recentCost = new Float64Array(OWN_CELLS);
  readonly recentAgeMs = new Float64Array(OWN_CELLS);

  constructor(rule: string) {
    this.rule = rule;
  }
}
