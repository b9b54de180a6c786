/**
 * Membership: which nodes are alive, learnt from heartbeats (and any batch) with a TTL.
 *
 * A node is identified by its id; a new epoch under the same id is a restart, which ends the
 * old run (its grants died with it). A node silent for `ttlMs` is dropped, and the aggregator
 * gives its share back to the others. Clock offsets are estimated here for metrics only.
 */

export interface NodeRecord {
  readonly id: string;
  epoch: number;
  /** Aggregator monotonic time of the last message from this run. */
  lastSeenMs: number;
  /** False once dropped or replaced by a newer epoch; holders of the record check it. */
  alive: boolean;
  /**
   * Estimated node wall clock minus aggregator wall clock, ms: the largest (sent - received) of
   * the recent heartbeats, since transit delay only makes that difference smaller.
   */
  clockOffsetMs: number;
  offsetSamples: number[];
  /** Aggregator monotonic time of the last batch (the first of a flush's partitions). */
  lastBatchMs: number;
  /**
   * Smoothed time between this node's batches, ms (0 until two have come), pauses left out: its
   * sync interval.
   */
  batchIntervalMs: number;
}

const OFFSET_SAMPLES = 16;
/** Batches of one node closer than this are the partitions of one flush (sync interval >= 10). */
const SAME_FLUSH_MS = 5;

export interface TouchResult {
  readonly node: NodeRecord;
  /** A run never seen before (first contact, or a restart). */
  readonly joined: boolean;
  /** The run this one replaced, if the node restarted. */
  readonly replaced: NodeRecord | undefined;
}

export class Membership {
  readonly #nodes = new Map<string, NodeRecord>();
  readonly ttlMs: number;

  constructor(ttlMs: number) {
    this.ttlMs = ttlMs;
  }

  get liveCount(): number {
    return this.#nodes.size;
  }

  get(id: string): NodeRecord | undefined {
    return this.#nodes.get(id);
  }

  all(): IterableIterator<NodeRecord> {
    return this.#nodes.values();
  }

  /**
   * Records that node `id` in run `epoch` spoke at `nowMs`. An older epoch than the one known is
   * a late message from a dead run: returns undefined and changes nothing.
   */
  touch(id: string, epoch: number, nowMs: number): TouchResult | undefined {
    const known = this.#nodes.get(id);
    if (known !== undefined && known.epoch === epoch) {
      known.lastSeenMs = nowMs;
      return { node: known, joined: false, replaced: undefined };
    }
    if (known !== undefined && epoch < known.epoch) return undefined;
    const node: NodeRecord = {
      id,
      epoch,
      lastSeenMs: nowMs,
      alive: true,
      clockOffsetMs: 0,
      offsetSamples: [],
      lastBatchMs: Number.NEGATIVE_INFINITY,
      batchIntervalMs: 0,
    };
    if (known !== undefined) known.alive = false;
    this.#nodes.set(id, node);
    return { node, joined: true, replaced: known };
  }

  /** Adds a clock sample from a heartbeat: the node's send time and our receive time (wall). */
  observeClock(node: NodeRecord, sentAtWallMs: number, receivedWallMs: number): void {
    node.offsetSamples.push(sentAtWallMs - receivedWallMs);
    if (node.offsetSamples.length > OFFSET_SAMPLES) node.offsetSamples.shift();
    node.clockOffsetMs = Math.max(...node.offsetSamples);
  }

  /**
   * A batch from `node` arrived at `nowMs`: its own sync interval is estimated from the batches'
   * spacing (the partitions of one flush come together and count once), and its demand waits
   * that long for a report. A node sends nothing when nothing changed, so a gap of more than
   * three intervals is a pause, not a sample; shorter gaps pull the estimate down faster than
   * longer ones push it up.
   */
  observeBatch(node: NodeRecord, nowMs: number): void {
    const gap = nowMs - node.lastBatchMs;
    if (gap < SAME_FLUSH_MS) return;
    const est = node.batchIntervalMs;
    if (est === 0) node.batchIntervalMs = gap < 10_000 ? gap : 0;
    else if (gap <= 3 * est) node.batchIntervalMs = est + (gap < est ? 0.5 : 0.1) * (gap - est);
    node.lastBatchMs = nowMs;
  }

  /**
   * Drops node `id` in run `epoch` at its own word (its last heartbeat); returns it, or undefined
   * when that run is not the one known (a late notice from an older run changes nothing).
   */
  leave(id: string, epoch: number): NodeRecord | undefined {
    const known = this.#nodes.get(id);
    if (known === undefined || known.epoch !== epoch) return undefined;
    this.#drop(known);
    return known;
  }

  /**
   * This aggregator did not run for `ms` (a pause, a stall): nobody could be heard meanwhile,
   * so that time does not count towards any node's silence.
   */
  excuse(ms: number): void {
    for (const node of this.#nodes.values()) node.lastSeenMs += ms;
  }

  /** Drops every node silent for longer than the TTL; returns them. */
  expire(nowMs: number): NodeRecord[] {
    const dropped: NodeRecord[] = [];
    for (const node of this.#nodes.values()) {
      if (nowMs - node.lastSeenMs > this.ttlMs) {
        this.#drop(node);
        dropped.push(node);
      }
    }
    return dropped;
  }

  #drop(node: NodeRecord): void {
    node.alive = false;
    this.#nodes.delete(node.id);
  }
}
