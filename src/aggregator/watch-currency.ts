/**
 * How current a group member's watch of the store is: the send time of the latest of the
 * member's own writes the watch has delivered. The watch delivers in write order, so every write
 * made before that one has been delivered too; a watch that fell behind (its server died, its
 * consumer is being recreated) stops advancing it. Other members are judged gone only as of it.
 */
export class WatchCurrency {
  /** Send times of this run's writes not yet seen on the watch, by revision. */
  readonly #pending = new Map<number, number>();
  #asOfMs = Number.NEGATIVE_INFINITY;

  /** The watch has delivered every write sent before this time (this run's clock). */
  get asOfMs(): number {
    return this.#asOfMs;
  }

  /** This run's write, sent at `sentAtMs`, was stored at `revision`. */
  wrote(revision: number, sentAtMs: number): void {
    this.#pending.set(revision, sentAtMs);
  }

  /** The watch delivered this run's write at `revision`. */
  delivered(revision: number): void {
    for (const [r, sentAt] of this.#pending) {
      if (r > revision) continue;
      if (sentAt > this.#asOfMs) this.#asOfMs = sentAt;
      this.#pending.delete(r);
    }
  }
}
