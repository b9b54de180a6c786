/**
 * A key's global window at the aggregator: the cost admitted fleet-wide over the rule's window,
 * in bins on the aggregator's monotonic clock.
 *
 * In:  admitted cost with its admission time (receipt minus the age the node reported).
 * Out: what the window holds now, what its oldest part holds (the budget that frees next), and
 *      when it will have freed a given amount, all read from the same model of each bin.
 *
 * A bin's hits are read as spread evenly over it, as admissions that go on from one bin to the
 * next are, except in a bin that begins a burst (its first hit came while the bin before was
 * empty: the first burst of a cold start, a key that turns hot, load back after a pause). Its
 * hits started inside it, so it keeps the offset of its first admission e and the cost-weighted
 * sum of their offsets (their mean m), and they are read as spread evenly from
 * max(e, 2m - binMs) to the bin's end: from where they started (a burst that runs on to the bin's
 * end, exactly; a single instant, as leaving over the rest of the bin, never early; a stray hit
 * before the burst moves e, not the mean, much). Read as spread over the whole bin, they counted
 * as leaving the window up to a bin early, and that budget would be granted before it freed (the
 * first window after a fleet starts would overshoot by up to a bin's share of the limit). Hits
 * bunched early in such a bin are read as later than they were, which only holds budget back.
 *
 * Layout (a Float64Array of 1 + 3R cells, R = bins + 1 ring slots): [current bin index, R costs,
 * R offset sums (CONTINUES for a bin that continued the one before), R first offsets]. Bin j
 * covers [j * binMs, (j + 1) * binMs) and lives in slot j mod R. Pure: time is always an argument.
 */
import { InvalidArgumentError } from "../errors.js";

/** The shape of a window: its length and how many bins cover it. */
export interface WindowShape {
  readonly windowMs: number;
  readonly bins: number;
  readonly binMs: number;
  /** Ring slots: bins + 1 (the bin the window start cuts, and the bin in progress). */
  readonly ring: number;
}

export function windowShape(windowMs: number, bins: number): WindowShape {
  if (!(windowMs > 0 && Number.isInteger(bins) && bins >= 1)) {
    throw new InvalidArgumentError("bins", "an integer >= 1 over a window > 0 ms", bins);
  }
  return { windowMs, bins, binMs: windowMs / bins, ring: bins + 1 };
}

const CURRENT = 0;
/** The offset cell of a bin whose first hit came while the bin before held hits. */
const CONTINUES = -1;

export function createGlobalWindow(shape: WindowShape, nowMs: number): Float64Array {
  const w = new Float64Array(1 + 3 * shape.ring);
  w[CURRENT] = Math.floor(nowMs / shape.binMs);
  return w;
}

function costCell(shape: WindowShape, bin: number): number {
  const ring = shape.ring;
  const s = bin % ring;
  return 1 + (s < 0 ? s + ring : s);
}

function offsetCell(shape: WindowShape, bin: number): number {
  return costCell(shape, bin) + shape.ring;
}

function firstCell(shape: WindowShape, bin: number): number {
  return costCell(shape, bin) + 2 * shape.ring;
}

/** Moves the ring to the bin holding `nowMs`, emptying the bins that left; returns its index. */
export function advanceWindow(w: Float64Array, shape: WindowShape, nowMs: number): number {
  const current = w[CURRENT]!;
  const k = Math.floor(nowMs / shape.binMs);
  if (k <= current) return current; // a clock standing still or going back changes nothing
  const ring = shape.ring;
  if (k - current >= ring) w.fill(0, 1);
  else {
    for (let j = current + 1; j <= k; j++) {
      const at = costCell(shape, j);
      w[at] = 0;
      w[at + ring] = 0;
      w[at + 2 * ring] = 0;
    }
  }
  w[CURRENT] = k;
  return k;
}

/**
 * Adds `cost` admitted at `atMs` (clamped into the window: a hit older than the window counts in
 * its oldest bin, one from the future in the current bin).
 */
export function addAdmitted(
  w: Float64Array,
  shape: WindowShape,
  nowMs: number,
  atMs: number,
  cost: number,
): void {
  const k = advanceWindow(w, shape, nowMs);
  let bin = Math.floor(atMs / shape.binMs);
  if (bin > k) bin = k;
  else if (bin < k - shape.bins) bin = k - shape.bins;
  let offset = atMs - bin * shape.binMs;
  if (offset < 0) offset = 0;
  else if (offset > shape.binMs) offset = shape.binMs;
  addToBin(w, shape, bin, k, cost, offset, offset, true);
}

/**
 * Adds `cost` to bin `bin` (k: the current bin) with `sumOffset` its mean offset into it and
 * `firstOffset` its earliest. A bin's first cost decides whether it continues the bin before
 * (when `mayContinue` and that bin holds cost) or begins a burst.
 */
function addToBin(
  w: Float64Array,
  shape: WindowShape,
  bin: number,
  k: number,
  cost: number,
  sumOffset: number,
  firstOffset: number,
  mayContinue: boolean,
): void {
  const at = costCell(shape, bin);
  const sum = at + shape.ring;
  const first = sum + shape.ring;
  if (w[at] === 0) {
    const continues = mayContinue && bin > k - shape.bins && w[costCell(shape, bin - 1)]! > 0;
    w[sum] = continues ? CONTINUES : 0;
    w[first] = firstOffset;
  } else if (firstOffset < w[first]!) {
    w[first] = firstOffset; // a late report of an earlier hit
  }
  w[at]! += cost;
  if (w[sum] !== CONTINUES) w[sum]! += cost * sumOffset;
}

/** Where bin `bin`'s hits are read to start (see the module header), absolute ms. */
function spreadStart(w: Float64Array, shape: WindowShape, bin: number, cost: number): number {
  const start = bin * shape.binMs;
  const at = offsetCell(shape, bin);
  const sum = w[at]!;
  if (sum === CONTINUES) return start;
  const byMean = (2 * sum) / cost - shape.binMs;
  const first = w[at + shape.ring]!;
  const from = first > byMean ? first : byMean;
  if (!(from > 0)) return start;
  return start + (from < shape.binMs * 0.999 ? from : shape.binMs * 0.999);
}

/** Cost of bin `bin` read as admitted before `atMs`. */
function costBefore(w: Float64Array, shape: WindowShape, bin: number, atMs: number): number {
  const cost = w[costCell(shape, bin)]!;
  if (!(cost > 0)) return 0;
  const end = (bin + 1) * shape.binMs;
  if (atMs >= end) return cost;
  const from = spreadStart(w, shape, bin, cost);
  return atMs <= from ? 0 : (cost * (atMs - from)) / (end - from);
}

/** Empties every bin (a key's reset), keeping the ring at the bin holding `nowMs`. */
export function clearWindow(w: Float64Array, shape: WindowShape, nowMs: number): void {
  advanceWindow(w, shape, nowMs);
  w.fill(0, 1);
}

/** Takes up to `cost` out of the bins, newest first (a refund); an emptied bin is cleared. */
export function removeNewest(w: Float64Array, shape: WindowShape, nowMs: number, cost: number) {
  const k = advanceWindow(w, shape, nowMs);
  let left = cost;
  for (let bin = k; bin >= k - shape.bins && left > 0; bin--) {
    const at = costCell(shape, bin);
    const taken = Math.min(w[at]!, left);
    left -= taken;
    w[at] = w[at]! - taken;
    if (w[at]! > 0) {
      // The offset sum is cost-weighted: it shrinks in proportion (a CONTINUES mark stays).
      const sum = at + shape.ring;
      if (w[sum] !== CONTINUES) w[sum] = (w[sum]! * w[at]!) / (w[at]! + taken);
    } else {
      w[at] = 0;
      w[at + shape.ring] = 0;
      w[at + 2 * shape.ring] = 0;
    }
  }
}

/** Cost admitted in the window ending at `nowMs`, that is after `nowMs - windowMs`. */
export function windowUsed(w: Float64Array, shape: WindowShape, nowMs: number): number {
  const k = advanceWindow(w, shape, nowMs);
  // Every slot holds a bin of the window; only the oldest (k - bins) is cut by its start.
  let sum = 0;
  for (let i = 1; i <= shape.ring; i++) sum += w[i]!;
  sum -= costBefore(w, shape, k - shape.bins, nowMs - shape.windowMs);
  return sum > 0 ? sum : 0;
}

/**
 * Cost in the window's oldest `bandMs` at `nowMs`: what the window will have freed `bandMs` from
 * now if nothing new comes.
 */
export function oldestBand(
  w: Float64Array,
  shape: WindowShape,
  nowMs: number,
  bandMs: number,
): number {
  const k = advanceWindow(w, shape, nowMs);
  const cut = nowMs - shape.windowMs;
  let sum = 0;
  for (let j = k - shape.bins; j <= k; j++) {
    if (j * shape.binMs >= cut + bandMs) break;
    sum += costBefore(w, shape, j, cut + bandMs) - costBefore(w, shape, j, cut);
  }
  return sum;
}

/**
 * How long from `nowMs` until the window, receiving nothing new, has freed `needed` beyond what
 * its oldest `afterMs` hold, ms: the inverse of {@link oldestBand} past `afterMs`. The window's
 * length when it never holds that much.
 */
export function freeingTime(
  w: Float64Array,
  shape: WindowShape,
  nowMs: number,
  afterMs: number,
  needed: number,
): number {
  const k = advanceWindow(w, shape, nowMs);
  const cut = nowMs - shape.windowMs + afterMs;
  let freed = 0;
  for (let j = k - shape.bins; j <= k; j++) {
    const cost = w[costCell(shape, j)]!;
    const end = (j + 1) * shape.binMs;
    if (!(cost > 0) || end <= cut) continue;
    const left = cost - costBefore(w, shape, j, cut);
    if (freed + left >= needed) {
      // Linear from max(cut, spread start) to the bin's end.
      const start = spreadStart(w, shape, j, cost);
      const from = start > cut ? start : cut;
      return from + ((needed - freed) * (end - from)) / left - cut;
    }
    freed += left;
  }
  return shape.windowMs;
}

/**
 * What the window frees over the `spanMs` after its oldest `afterMs`, as the largest straight
 * rise from now that never runs ahead of the freeing (a node's ramp is linear, the freeing is not:
 * it is linear between the bins' spread starts and ends, so only those kinks need checking).
 */
export function freeingLine(
  w: Float64Array,
  shape: WindowShape,
  nowMs: number,
  afterMs: number,
  spanMs: number,
): number {
  const k = advanceWindow(w, shape, nowMs);
  const base = afterMs > 0 ? oldestBand(w, shape, nowMs, afterMs) : 0;
  let slope = (oldestBand(w, shape, nowMs, afterMs + spanMs) - base) / spanMs;
  const from = nowMs - shape.windowMs + afterMs;
  for (let j = k - shape.bins; j <= k; j++) {
    const end = (j + 1) * shape.binMs;
    if (end <= from) continue;
    if (j * shape.binMs >= from + spanMs) break;
    const cost = w[costCell(shape, j)]!;
    const kinks = cost > 0 ? [spreadStart(w, shape, j, cost), end] : [end];
    for (const x of kinks) {
      if (x <= from || x >= from + spanMs) continue;
      const s = (oldestBand(w, shape, nowMs, afterMs + (x - from)) - base) / (x - from);
      if (s < slope) slope = s;
    }
  }
  return slope > 0 ? slope * spanMs : 0;
}

/**
 * One bin of a saved window: its age (0: the bin in progress), cost, and the mean offset of its
 * admissions into it when it began a burst (-1 when it continued the bin before it).
 */
export interface SavedBin {
  readonly age: number;
  readonly cost: number;
  readonly meanOffsetMs: number;
  /** Offset of its first admission, when it began a burst. */
  readonly firstOffsetMs: number;
}

/** The window's non-empty bins by age at `nowMs`, with how far into the current bin `nowMs` is. */
export function binsByAge(
  w: Float64Array,
  shape: WindowShape,
  nowMs: number,
): { readonly bins: SavedBin[]; readonly nowOffsetMs: number } {
  const k = advanceWindow(w, shape, nowMs);
  const bins: SavedBin[] = [];
  for (let age = 0; age <= shape.bins; age++) {
    const cost = w[costCell(shape, k - age)]!;
    if (cost > 0) {
      const sum = w[offsetCell(shape, k - age)]!;
      const continues = sum === CONTINUES;
      bins.push({
        age,
        cost,
        meanOffsetMs: continues ? CONTINUES : sum / cost,
        firstOffsetMs: continues ? 0 : w[firstCell(shape, k - age)]!,
      });
    }
  }
  return { bins, nowOffsetMs: Math.max(0, nowMs - k * shape.binMs) };
}

/**
 * Adds a bin saved by {@link binsByAge} from a window of `savedBinMs` bins, `elapsedMs` after it
 * was saved (`savedNowOffsetMs` into its current bin). Its hits go in as the saving run read
 * them, shifted by the time since: spread evenly from their spread start (see the module header)
 * to the bin's end (to the save, for the bin then in progress), over whichever bins of this
 * window that span covers. A part that ends inside a bin is read as reaching that bin's end,
 * since a bin's reading can only end there: later than it was, never earlier, so a restore frees
 * nothing before the saving run would have, whatever bins each run uses. Returns false when the
 * bin has left the window since.
 */
export function restoreBin(
  w: Float64Array,
  shape: WindowShape,
  nowMs: number,
  saved: SavedBin,
  savedBinMs: number,
  savedNowOffsetMs: number,
  elapsedMs: number,
): boolean {
  // The saved bin's span, in ms relative to the save (<= 0).
  const binStart = -savedNowOffsetMs - saved.age * savedBinMs;
  const binEnd = binStart + savedBinMs;
  const byMean = saved.meanOffsetMs >= 0 ? 2 * saved.meanOffsetMs - savedBinMs : 0;
  const firstAt = saved.meanOffsetMs >= 0 ? saved.firstOffsetMs : 0;
  const from = firstAt > byMean ? firstAt : byMean;
  let spanStart = binStart + (from > 0 ? from : 0);
  const spanEnd = binEnd < 0 ? binEnd : 0;
  if (spanStart > spanEnd) spanStart = spanEnd;
  const start = nowMs - elapsedMs + spanStart;
  const end = nowMs - elapsedMs + spanEnd;
  const oldest = nowMs - shape.windowMs;
  if (end <= oldest) return false;
  const k = advanceWindow(w, shape, nowMs);
  const first = Math.max(Math.floor(start / shape.binMs), k - shape.bins);
  const perMs = end > start ? saved.cost / (end - start) : 0;
  for (let bin = first; bin <= k && bin * shape.binMs <= end; bin++) {
    const binFrom = bin * shape.binMs;
    const a = Math.max(start, binFrom, oldest);
    const b = Math.min(end, binFrom + shape.binMs);
    // A point span (no length) is all in the bin that holds it.
    const cost = perMs > 0 ? perMs * (b - a) : end < binFrom + shape.binMs ? saved.cost : 0;
    if (!(cost > 0)) continue;
    // Read from where the part starts, never as spread over the whole bin.
    const mean = (a + binFrom + shape.binMs) / 2 - binFrom;
    addToBin(w, shape, bin, k, cost, mean, a - binFrom, false);
  }
  return true;
}
