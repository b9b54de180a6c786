/**
 * A key's counts as a drain hands them out, from its slot's cells (slot-layout.ts): cumulative
 * admitted and rejected cost since the table's start. Each key also carries a `generation`,
 * unique per table, that changes whenever the key is created again after reclamation or
 * eviction, so a consumer of cumulative counts (the aggregator) knows to start a new baseline
 * instead of reading the restart as a lost update.
 */
import { ChangeCursorRecord } from "./key-change.js";
import {
  ADMITTED,
  GENERATION,
  PENDING_ADMITTED,
  PENDING_REJECTED,
  REJECTED,
  REPORTED,
} from "./slot-layout.js";

/**
 * The counts an evicted key had not yet reported, as the record the next drain hands out (its
 * age stays 0); undefined when it had none.
 */
export function retiredCounts(
  rule: string,
  key: string,
  slots: Float64Array,
  extra: number,
): ChangeCursorRecord | undefined {
  const da = slots[extra + PENDING_ADMITTED]!;
  const dr = slots[extra + PENDING_REJECTED]!;
  if (!(da > 0 || dr > 0)) return undefined;
  const e = new ChangeCursorRecord(rule);
  e.key = key;
  e.generation = slots[extra + GENERATION]!;
  e.admitted = slots[extra + ADMITTED]! + da;
  e.rejected = slots[extra + REJECTED]! + dr;
  e.deltaAdmitted = da;
  e.deltaRejected = dr;
  e.isNew = slots[extra + REPORTED] === 0;
  return e;
}

/**
 * Folds the key's pending counts into its cumulative ones and fills `c` with them (the counting
 * fields only; the grant fields are the caller's). Returns the admitted cost just folded.
 */
export function foldCounts(
  c: ChangeCursorRecord,
  key: string,
  slots: Float64Array,
  extra: number,
): number {
  const da = slots[extra + PENDING_ADMITTED]!;
  const dr = slots[extra + PENDING_REJECTED]!;
  const admitted = slots[extra + ADMITTED]! + da;
  const rejected = slots[extra + REJECTED]! + dr;
  slots[extra + ADMITTED] = admitted;
  slots[extra + REJECTED] = rejected;
  slots[extra + PENDING_ADMITTED] = 0;
  slots[extra + PENDING_REJECTED] = 0;
  c.key = key;
  c.generation = slots[extra + GENERATION]!;
  c.admitted = admitted;
  c.rejected = rejected;
  c.deltaAdmitted = da;
  c.deltaRejected = dr;
  c.isNew = slots[extra + REPORTED] === 0;
  slots[extra + REPORTED] = 1;
  return da;
}
