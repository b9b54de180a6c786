/**
 * A list of (slot, key generation) pairs in a typed array that grows by doubling, so filling it
 * allocates nothing once warm. A key table remembers with it which keys had hits at a drain;
 * the generation tells, later, whether a slot still holds that key.
 */
export class SlotGenerations {
  #pairs = new Float64Array(256);
  #length = 0;

  /** Pairs held. */
  get length(): number {
    return this.#length >> 1;
  }

  add(slot: number, generation: number): void {
    if (this.#length + 2 > this.#pairs.length) {
      const bigger = new Float64Array(this.#pairs.length * 2);
      bigger.set(this.#pairs);
      this.#pairs = bigger;
    }
    this.#pairs[this.#length++] = slot;
    this.#pairs[this.#length++] = generation;
  }

  /** The slot of pair `i` (0 <= i < length). */
  slot(i: number): number {
    return this.#pairs[2 * i]!;
  }

  /** The generation of pair `i` (0 <= i < length). */
  generation(i: number): number {
    return this.#pairs[2 * i + 1]!;
  }

  clear(): void {
    this.#length = 0;
  }
}
