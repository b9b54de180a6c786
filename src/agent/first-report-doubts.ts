/**
 * Which first reports may have been lost around a broken link, and the resync that ends the
 * doubt.
 *
 * Only a key generation's first report makes the aggregator count what was admitted before it;
 * a later report is taken as a difference. So a first report lost with the connection loses the
 * hits before it, unless a later report says "first" again. Doubtful are the generations first
 * reported while the link was unsure (from a disconnect until the resync) or within the
 * look-back before it broke (batches published just before a break may be lost with it). Until
 * the resync, every report of a doubtful generation says "first": the aggregator counts the
 * generation in full from whichever arrives first, and takes differences from the rest.
 *
 * The resync: after a reconnect (or when a new aggregator run must be told everything), every
 * held key is re-sent once more when the aggregator is next heard, since it may have come back
 * after this node and missed what was re-sent at the reconnect. The flush that carries that
 * resync reaches an aggregator that is there, so after it nothing is in doubt.
 */

/** How far back, at least, first reports count as possibly lost when the link breaks, ms. */
const FIRST_REPORT_LOOK_BACK_MS = 1000;
/** Bound on the key generations remembered while the link is down (beyond: counts may be lost). */
const MAX_DOUBTFUL_FIRST_REPORTS = 100_000;

export class FirstReportDoubts {
  /** From a disconnect until the resync: batches sent meanwhile may reach no aggregator. */
  #linkUnsure = false;
  /** Every key's counts are to be re-sent once more when the aggregator is next heard. */
  #resyncWhenHeard = false;
  /** The resync is due: after the next flush, the first reports are no longer in doubt. */
  #resyncDue = false;
  /** Key generations (`rule \0 key \0 generation`) whose first report may be lost. */
  readonly #doubtful = new Set<string>();
  /** First reports of the current and the previous look-back period. */
  #recent = new Set<string>();
  #older = new Set<string>();
  #recentSinceMs = 0;

  /** Generations whose every report says "first" until the resync. */
  get doubtful(): number {
    return this.#doubtful.size;
  }

  /** The link broke: what was first reported in the look-back is in doubt, and what follows. */
  disconnected(): void {
    this.#linkUnsure = true;
    for (const id of this.#older) this.#doubt(id);
    for (const id of this.#recent) this.#doubt(id);
  }

  /** Every key is to be re-sent once more when the aggregator is next heard (a reconnect). */
  resyncWhenHeard(): void {
    this.#resyncWhenHeard = true;
  }

  /**
   * The aggregator was heard. True when the resync starts now: the caller marks every key
   * changed, so the next flush carries them all; the link is sure again from here.
   */
  aggregatorHeard(): boolean {
    if (!this.#resyncWhenHeard) return false;
    this.#resyncWhenHeard = false;
    this.#linkUnsure = false;
    this.#resyncDue = true;
    return true;
  }

  /** A flush starts at `nowMs`: first reports older than two look-back periods are forgotten. */
  beginFlush(nowMs: number): void {
    if (nowMs - this.#recentSinceMs >= FIRST_REPORT_LOOK_BACK_MS) {
      this.#older = this.#recent;
      this.#recent = new Set();
      this.#recentSinceMs = nowMs;
    }
  }

  /**
   * Whether this report of a key generation goes out as its first: when the limiter says so
   * (`isNew`) or its first report is in doubt. A first report is remembered for the look-back,
   * and is itself in doubt while the link is unsure.
   */
  isFirst(rule: string, key: string, generation: number, isNew: boolean): boolean {
    let first = isNew;
    if (isNew || this.#doubtful.size > 0) {
      const id = `${rule}\0${key}\0${generation}`;
      if (!first) first = this.#doubtful.has(id);
      if (first) {
        this.#recent.add(id);
        if (this.#linkUnsure) this.#doubt(id);
      }
    }
    return first;
  }

  /** The flush's reports are out: if it carried the resync, nothing is in doubt any more. */
  endFlush(): void {
    if (this.#resyncDue) {
      // Every held key was in this flush, and the aggregator is there to hear it.
      this.#resyncDue = false;
      this.#doubtful.clear();
    }
  }

  #doubt(id: string): void {
    if (this.#doubtful.size < MAX_DOUBTFUL_FIRST_REPORTS) this.#doubtful.add(id);
  }
}
