/**
 * The aggregator service's side of group membership: the Group (group.ts) decides which
 * partitions this run owns; this carries its decisions out on the core and the transport.
 *
 *   wanted(p)    subscribe to `decisions.<p>.*`; hold its batches until p is acquired
 *   acquired(p)  restore p from its checkpoint (the handoff's, or for a takeover the last
 *                periodic one), then feed the core the held batches (after a handoff only)
 *                and every later one
 *   handOff(p)   (the group already stopped granting p) save p with its grants; the name goes
 *                into the transfer record
 *   released(p)  drop p from the core, unsubscribe
 *
 * Every `intervalMs`, each partition owned and granting is saved under `partition.<p>` (windows
 * and streams, not grants), for a takeover after a crash. Held batches are bounded per partition:
 * beyond `MAX_HELD` the oldest go (counts are cumulative, so a later batch still carries them).
 */
import { type Clock, type TimerHandle, wallClockMs } from "../clock/clock.js";
import { copyDecisionBatch } from "../protocol/decision-batch.js";
import type { DecisionBatch } from "../protocol/messages.js";
import type { Subjects } from "../protocol/subjects.js";
import type { Subscription, Transport } from "../transport/transport.js";
import type { AggregatorCore } from "./aggregator-core.js";
import type { CheckpointPort } from "./checkpoint-port.js";
import { Group, type GroupStats } from "./group.js";
import type { GroupStore } from "./group-store.js";
import type { AcquireKind, GroupListener } from "./group-types.js";

/** Most batches held for a partition not yet acquired. */
const MAX_HELD = 10_000;

export interface GroupMemberOptions {
  readonly core: AggregatorCore;
  readonly transport: Transport;
  readonly subjects: Subjects;
  readonly clock: Clock;
  readonly store: GroupStore;
  readonly checkpoints: CheckpointPort;
  readonly memberId: string;
  readonly run: number;
  readonly partitions: number;
  readonly leaseMs?: number;
  /** Periodic save of each owned partition, ms. */
  readonly intervalMs: number;
  /** TTL given to saves. */
  readonly ttlMs: number;
  /**
   * A decoded batch's validation, as the service does it (sender, type); counts failures. The
   * batch may be reused at the next call, so one held for later is copied.
   */
  readonly accept: (bytes: Uint8Array, subject: string) => DecisionBatch | undefined;
  /** After a batch is ingested (the service may tick early). */
  readonly ingested: () => void;
}

export interface GroupMemberStats extends GroupStats {
  readonly owned: number;
  readonly learning: number;
  /** Owned partitions granted from now: not learning, the lease not in doubt, not handed off. */
  readonly granting: number;
  readonly checkpointsSaved: number;
  readonly checkpointErrors: number;
  readonly heldBatchesDropped: number;
  readonly keysRestored: number;
  readonly errors: number;
}

interface Feed {
  sub: Subscription;
  /** Batches held until the partition is acquired; undefined once it is. */
  held: DecisionBatch[] | undefined;
  /**
   * Saved for a handoff: later batches are the next owner's to count (it receives them too), so
   * they are dropped here, unless the handoff fails and the partition is granted again.
   */
  handedOff: boolean;
}

export class GroupMember implements GroupListener {
  readonly group: Group;
  readonly #o: GroupMemberOptions;
  readonly #feeds = new Map<number, Feed>();
  readonly #timer: TimerHandle;
  #saved = 0;
  #saveErrors = 0;
  #dropped = 0;
  #restored = 0;
  #errors = 0;

  constructor(o: GroupMemberOptions) {
    this.#o = o;
    this.group = new Group({
      store: o.store,
      memberId: o.memberId,
      run: o.run,
      partitions: o.partitions,
      clock: o.clock,
      ...(o.leaseMs === undefined ? {} : { leaseMs: o.leaseMs }),
      listener: this,
    });
    this.#timer = o.clock.setRepeating(() => void this.#saveAll(), o.intervalMs);
  }

  start(): Promise<void> {
    return this.group.start();
  }

  canGrant(p: number, nowMs: number): boolean {
    return this.group.canGrant(p, nowMs);
  }

  wanted(p: number): void {
    this.#feed(p);
  }

  ready(): Promise<void> {
    return this.#o.transport.flush();
  }

  async acquired(
    p: number,
    epoch: number,
    how: AcquireKind,
    checkpoint: string | undefined,
  ): Promise<void> {
    const feed = this.#feed(p);
    const name = checkpoint ?? `partition.${p}`;
    const bytes = await this.#o.checkpoints.load(name);
    const now = this.#o.clock.nowMs();
    const from = bytes === undefined ? undefined : { bytes, handoff: how === "handoff" };
    this.#restored += this.#o.core.acquirePartition(p, epoch, from, now, wallClockMs());
    // After a takeover the held batches are not fed in: sent before the nodes heard of this
    // owner, their counts would all be binned now; each node reports every key again, with when
    // it admitted them, once it hears this owner (and counts are cumulative: nothing is lost).
    const held = how === "handoff" ? (feed.held ?? []) : [];
    feed.held = undefined;
    for (const b of held) this.#o.core.ingestBatch(b, now, p);
    if (held.length > 0) this.#o.ingested();
  }

  renewed(p: number, epoch: number): void {
    this.#o.core.renewPartition(p, epoch);
  }

  async handOff(p: number, to: string): Promise<string> {
    const core = this.#o.core;
    const epoch = core.ownership?.epochOf(p) ?? 0;
    const feed = this.#feeds.get(p);
    if (feed !== undefined) feed.handedOff = true;
    const bytes = core.exportPartition(p, this.#o.clock.nowMs(), wallClockMs(), true);
    const name = `handoff.${p}.${epoch}.${to}`;
    await this.#o.checkpoints.save(name, bytes, this.#o.ttlMs);
    return name;
  }

  released(p: number): void {
    this.#o.core.releasePartition(p);
    const feed = this.#feeds.get(p);
    feed?.sub.unsubscribe();
    this.#feeds.delete(p);
  }

  error(): void {
    this.#errors++;
  }

  stats(): GroupMemberStats {
    const list = this.#o.core.ownership?.list() ?? [];
    const now = this.#o.clock.nowMs();
    return {
      ...this.group.stats(),
      owned: list.length,
      learning: list.filter((x) => x.learning).length,
      granting: list.filter((x) => !x.learning && this.group.canGrant(x.partition, now)).length,
      checkpointsSaved: this.#saved,
      checkpointErrors: this.#saveErrors,
      heldBatchesDropped: this.#dropped,
      keysRestored: this.#restored,
      errors: this.#errors,
    };
  }

  /** Hands every partition over (up to `timeoutMs`), then leaves the group. */
  async close(drainMs: number): Promise<void> {
    if (drainMs > 0) await this.group.drain(drainMs);
    this.#timer.cancel();
    await this.group.close(true);
    for (const f of this.#feeds.values()) f.sub.unsubscribe();
    this.#feeds.clear();
  }

  #feed(p: number): Feed {
    const feed = this.#feeds.get(p);
    if (feed !== undefined) return feed;
    const created: Feed = {
      held: [],
      handedOff: false,
      sub: this.#o.transport.subscribe(this.#o.subjects.partitionDecisions(p), (bytes, subject) =>
        this.#onBatch(created, p, bytes, subject),
      ),
    };
    this.#feeds.set(p, created);
    return created;
  }

  #onBatch(feed: Feed, p: number, bytes: Uint8Array, subject: string): void {
    const batch = this.#o.accept(bytes, subject);
    if (batch === undefined) return;
    if (feed.held !== undefined) {
      feed.held.push(copyDecisionBatch(batch)); // the accepted batch is reused at the next read
      if (feed.held.length > MAX_HELD) {
        feed.held.shift();
        this.#dropped++;
      }
      return;
    }
    const now = this.#o.clock.nowMs();
    if (feed.handedOff) {
      if (!this.group.canGrant(p, now)) return;
      feed.handedOff = false; // the handoff failed: the partition is this run's again
    }
    this.#o.core.ingestBatch(batch, now, p);
    this.#o.ingested();
  }

  async #saveAll(): Promise<void> {
    const now = this.#o.clock.nowMs();
    const owned = this.#o.core.ownership?.list() ?? [];
    const ps = owned.map((o) => o.partition).filter((p) => this.group.canGrant(p, now));
    const saves = this.#o.core.exportPartitions(ps, now, wallClockMs(), false);
    for (const [partition, bytes] of saves) {
      try {
        await this.#o.checkpoints.save(`partition.${partition}`, bytes, this.#o.ttlMs);
        this.#saved++;
      } catch {
        this.#saveErrors++;
      }
    }
  }
}
