/**
 * Where a key table keeps each key's numbers: one `Float64Array` holding every slot side by
 * side, each slot the rule algorithm's state cells followed by the cells below, at these offsets
 * from the end of the algorithm's state (`extra` = slot x stride + algorithm stride):
 *
 *     [algorithm state (stride cells)] [pendingAdmitted, pendingRejected, flags] [admitted, rejected, generation, reported]
 *      hot: read and written by every decision ------------------------------  cold: drain only
 *
 * Global rules add the cells of the key's grant from the aggregator after those (see
 * grant-cells.ts), so a decision touches one map entry and one or two cache lines.
 */

/** Cost admitted / rejected since the last drain. */
export const PENDING_ADMITTED = 0;
export const PENDING_REJECTED = 1;
/** RECENT and DIRTY bits, below. */
export const FLAGS = 2;
/** Cumulative admitted / rejected cost of this key generation, up to the last drain. */
export const ADMITTED = 3;
export const REJECTED = 4;
/** The key generation (unique per table; see key-table.ts). */
export const GENERATION = 5;
/** 1 once this key generation has been handed out by a drain. */
export const REPORTED = 6;
/** Cells every rule's slot has after the algorithm's state. */
export const EXTRA_CELLS = 7;

// Global rules only, after the cells above.
/** The grant in force: aggregator epoch, per-key version, allowance (0, 0, 0: none). */
export const GRANT_EPOCH = 7;
export const GRANT_VERSION = 8;
export const GRANT_ALLOWANCE = 9;
/** Sum of (admission time - table start) x cost of the pending admitted hits. */
export const PENDING_TIME = 10;
/**
 * A grant's ramp (see `GrantCells.apply`): the allowance usable at GRANT_AT, growing linearly to
 * GRANT_ALLOWANCE at GRANT_END; GRANT_END = -Infinity when the whole allowance is usable.
 */
export const GRANT_BASE = 11;
export const GRANT_AT = 12;
export const GRANT_END = 13;
/** When the aggregator's window frees capacity for the key next (this node's clock). */
export const GRANT_FREE_AT = 14;
/** When the grant in force arrived (this node's clock): the base of the version-jump bound. */
export const GRANT_HEARD_AT = 15;
/**
 * The node's own admissions of the key over its last window and a little more, for the fallback
 * while the aggregator (or the key's partition owner) is silent (see `GrantCells.decideSilent`):
 * OWN_CELLS bins of windowMs / OWN_BINS each, a ring; OWN_BIN_AT is the absolute number of the
 * newest. OWN_SINCE names the silence the cap OWN_CAP was taken for (NaN: none).
 */
export const OWN_BINS = 16;
export const OWN_BIN_AT = 16;
export const OWN_SINCE = 17;
export const OWN_CAP = 18;
/** The ring index of the newest bin (OWN_BIN_AT modulo OWN_CELLS). */
export const OWN_NEWEST = 19;
export const OWN_RING = 20;
/** Cells a global rule's slot has after the algorithm's state. */
export const GLOBAL_EXTRA_CELLS = OWN_RING + OWN_BINS + 4;
/** Bins in the ring: a window's, one more for the check, and room for the silence's start. */
export const OWN_CELLS = OWN_BINS + 4;

/** FLAGS bit: used since the eviction hand (or, for global rules, the sweep) last passed. */
export const RECENT = 1;
/** FLAGS bit: in the list of slots the next drain reports. */
export const DIRTY = 2;
export const RECENT_DIRTY = 3;
