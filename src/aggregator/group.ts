/**
 * One aggregator's part in a group: which of the P decision partitions it owns, through leases
 * and compare-and-set writes in the group store (group-records.ts has the keys).
 *
 * In:  the store's watch of members and partitions, this run's clock.
 * Out: to its listener (the aggregator service), a partition wanted (subscribe to its reports),
 *      acquired (with the checkpoint to restore and the owner epoch to fence with), to hand off
 *      (stop granting and save it), released; and `canGrant(p, nowMs)`.
 *
 * Rules this keeps:
 * - A member is alive while its lease is renewed: this run rewrites its member key every
 *   lease / 3 and counts itself valid until (send time of its last successful write) + lease -
 *   margin, on its own monotonic clock. Another member counts it gone once a whole lease on *its*
 *   clock has passed without a write of that key, as far as its watch is known current (up to its
 *   own last write the watch delivered, watch-currency.ts), or the key was deleted, or a newer
 *   run of the id registered. A write is seen after it was sent, so a member is gone for the
 *   others only after it has stopped counting itself valid (clock rates differ far less than the
 *   margin). A lease is judged lapsed when a renewal is acknowledged late, not when it is sent.
 * - `canGrant` is false for every partition from the moment the lease may have lapsed (a pause,
 *   a store that does not answer); after a renewal that finds it lapsed each partition held is
 *   claimed again by compare-and-set on the revision this run wrote, so one taken meanwhile is
 *   let go, and one kept gets a new owner epoch. A transfer is taken by compare-and-set too.
 * - Partitions go where rendezvous hashing over the live, not draining members says
 *   (assignment.ts). A partition nobody holds, or whose owner is gone, is claimed by the member
 *   it should go to; one held by a live member is transferred by that member: it stops granting,
 *   saves the partition, and writes the new owner into the partition's record, by compare-and-set,
 *   with the checkpoint's name. The revision of a claim or transfer is the new owner epoch, above
 *   every earlier one; nodes accept a partition's grants only from its newest epoch.
 */
import type { Clock, TimerHandle } from "../clock/clock.js";
import { CasConflictError } from "../errors.js";
import { assignPartitions } from "./assignment.js";
import {
  decodeMember,
  decodePartition,
  encodeRecord,
  MEMBER_PREFIX,
  memberIdOf,
  PARTITION_PREFIX,
  type PartitionValue,
  partitionOf,
} from "./group-records.js";
import type { GroupEntry, GroupStore, GroupWatch } from "./group-store.js";
import {
  type AcquireKind,
  type GroupListener,
  type GroupOptions,
  type GroupStats,
  type Held,
  type Member,
  newGroupStats,
  type PartitionRecord,
} from "./group-types.js";
import { WatchCurrency } from "./watch-currency.js";

export type { AcquireKind, GroupListener, GroupOptions, GroupStats } from "./group-types.js";

export class Group {
  readonly memberId: string;
  readonly run: number;
  readonly partitions: number;
  readonly leaseMs: number;
  readonly #store: GroupStore;
  readonly #clock: Clock;
  readonly #listener: GroupListener;
  readonly #members = new Map<string, Member>();
  readonly #records = new Map<number, PartitionRecord>();
  readonly #held = new Map<number, Held>();
  readonly #wanted = new Set<number>();
  /** Partitions with a write or a listener call in flight. */
  readonly #busy = new Set<number>();
  readonly #watches: GroupWatch[] = [];
  readonly #timers: TimerHandle[] = [];
  #validUntilMs = Number.NEGATIVE_INFINITY;
  #watchStartMs = 0;
  #draining = false;
  #closed = false;
  #evaluating = false;
  #again = false;
  /** Partitions whose cached record lost a compare-and-set: not acted on until read again. */
  readonly #stale = new Set<number>();
  /** A store call failed (not by a conflict) since the last beat. */
  #stalled = false;
  /** No transfer out before this time (this run's clock): set while a drain is announced. */
  #transfersFrom = 0;
  readonly #watchCurrency = new WatchCurrency();
  #stats = newGroupStats();

  constructor(o: GroupOptions) {
    this.memberId = o.memberId;
    this.run = o.run;
    this.partitions = o.partitions;
    this.leaseMs = o.leaseMs ?? 1500;
    this.#store = o.store;
    this.#clock = o.clock;
    this.#listener = o.listener;
  }

  /** Watches the store, registers this run and starts the lease and assignment loop. */
  async start(): Promise<void> {
    this.#watchStartMs = this.#clock.nowMs();
    this.#watches.push(
      await this.#store.watch(MEMBER_PREFIX, (e) => this.#onMember(e)),
      await this.#store.watch(PARTITION_PREFIX, (e) => this.#onPartition(e)),
    );
    // What this run will be given is wanted before anyone can see it registered: an owner hands a
    // partition over as soon as it sees the newcomer, and reports sent after its save must reach
    // the newcomer.
    const others = this.liveMembers().filter((id) => id !== this.memberId);
    const desired = assignPartitions(this.partitions, [...others, this.memberId]);
    for (let p = 0; p < this.partitions; p++) {
      if (desired[p] === this.memberId && !this.#wanted.has(p)) {
        this.#wanted.add(p);
        this.#listener.wanted(p);
      }
    }
    await this.#listener.ready?.();
    await this.#renew();
    this.#timers.push(this.#clock.setRepeating(() => this.#beat(), this.leaseMs / 3));
    this.#schedule();
  }

  /** Whether this run may grant for `p` now: held, in use, and within its lease. */
  canGrant(p: number, nowMs: number): boolean {
    return this.#held.get(p)?.phase === "active" && nowMs < this.#validUntilMs;
  }

  /** The owner epoch of `p` if this run holds it. */
  epochOf(p: number): number | undefined {
    return this.#held.get(p)?.epoch;
  }

  /** The partitions this run holds, with their epochs (any phase). */
  held(): [partition: number, epoch: number][] {
    return [...this.#held].map(([p, h]) => [p, h.epoch]);
  }

  /** Until when (this run's clock) its lease is known valid. */
  get validUntilMs(): number {
    return this.#validUntilMs;
  }

  /** The live members (this run included while valid), as the assignment counts them. */
  liveMembers(nowMs = this.#clock.nowMs()): string[] {
    const ids: string[] = [];
    for (const [id, m] of this.#members) {
      if (id === this.memberId) continue;
      if (this.#isAlive(id, m, nowMs) && !m.draining) ids.push(id);
    }
    if (!this.#draining && nowMs < this.#validUntilMs) ids.push(this.memberId);
    return ids;
  }

  stats(): GroupStats {
    return { ...this.#stats };
  }

  /**
   * Stops taking partitions and hands every one held to the members that should own them next;
   * resolves when none is held, when no other member is there to take them, or after
   * `timeoutMs`.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.#draining = true;
    this.#transfersFrom = Number.POSITIVE_INFINITY;
    await this.#renew();
    // The members that take over learn from this write that they will, and start receiving the
    // partitions' reports; the handoffs wait a beat for that (this run grants meanwhile).
    await new Promise<void>((resolve) => this.#clock.setTimer(resolve, this.leaseMs / 3));
    this.#transfersFrom = 0;
    this.#schedule();
    const until = this.#clock.nowMs() + timeoutMs;
    while (this.#held.size > 0 && this.#clock.nowMs() < until && !this.#closed) {
      if (this.liveMembers().length === 0) break;
      await new Promise<void>((resolve) => this.#clock.setTimer(resolve, 20));
    }
  }

  /** Stops the loop and the watches; with `leave`, deletes this run's member key. */
  async close(leave = true): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) t.cancel();
    for (const w of this.#watches) w.stop();
    if (leave) {
      await this.#store.delete(MEMBER_PREFIX + this.memberId).catch((e) => this.#error(e));
    }
  }

  #beat(): void {
    this.#stalled = false;
    this.#stale.clear(); // at most one attempt a beat on a record whose re-read did not come
    void this.#renew();
    this.#schedule();
  }

  async #renew(): Promise<void> {
    if (this.#closed) return;
    const sentAt = this.#clock.nowMs();
    let revision: number;
    try {
      revision = await this.#store.put(
        MEMBER_PREFIX + this.memberId,
        encodeRecord({ run: this.run, draining: this.#draining }),
      );
    } catch (e) {
      this.#stats.renewFailures++;
      this.#error(e);
      return;
    }
    // Judged when the write is acknowledged: one sent in time but acknowledged after the lease
    // ran out renews a lease that lapsed meanwhile.
    const lapsed = !(this.#clock.nowMs() < this.#validUntilMs);
    this.#validUntilMs = Math.max(this.#validUntilMs, sentAt + this.leaseMs - this.#marginMs());
    this.#watchCurrency.wrote(revision, sentAt);
    if (lapsed) {
      // The lease may have lapsed before this write: another member may have taken what this
      // run held, so each is claimed again before it grants.
      for (const h of this.#held.values()) if (h.phase === "active") h.phase = "suspect";
    }
  }

  #marginMs(): number {
    return this.leaseMs / 5;
  }

  #onMember(e: GroupEntry): void {
    const id = memberIdOf(e.key);
    if (id === undefined) return;
    if (id === this.memberId) this.#watchCurrency.delivered(e.revision);
    const known = this.#members.get(id);
    if (known !== undefined && e.revision <= known.revision) return;
    const v = e.deleted ? undefined : decodeMember(e.value);
    this.#members.set(id, {
      run: v?.run ?? known?.run ?? 0,
      draining: v?.draining ?? false,
      deleted: e.deleted || v === undefined,
      seenAtMs: this.#clock.nowMs(),
      revision: e.revision,
    });
    this.#schedule();
  }

  #onPartition(e: GroupEntry): void {
    const p = partitionOf(e.key);
    if (p === undefined || p >= this.partitions) return;
    const known = this.#records.get(p);
    if (known !== undefined && e.revision <= known.revision) return;
    this.#stale.delete(p);
    this.#records.set(p, {
      value: e.deleted ? undefined : decodePartition(e.value),
      revision: e.revision,
      deleted: e.deleted,
    });
    const held = this.#held.get(p);
    // Someone else wrote the record after this run's last write: it is not ours any more.
    if (held !== undefined && e.revision > held.revision && !this.#busy.has(p)) this.#lost(p);
    this.#schedule();
  }

  /** Whether member `id` is alive for this run at `nowMs` (see the rules above). */
  #isAlive(id: string, m: Member | undefined, nowMs: number): boolean {
    if (id === this.memberId) return !this.#closed && nowMs < this.#validUntilMs;
    if (m === undefined || m.deleted) return false;
    const since = m.seenAtMs > this.#watchStartMs ? m.seenAtMs : this.#watchStartMs;
    const asOf = this.#watchCurrency.asOfMs;
    const current = asOf < nowMs ? asOf : nowMs;
    return current - since < this.leaseMs;
  }

  /** Whether the run `run` of member `id` still holds what it claimed. */
  #runAlive(id: string, run: number, nowMs: number): boolean {
    if (id === this.memberId) return run === this.run && this.#isAlive(id, undefined, nowMs);
    const m = this.#members.get(id);
    return m !== undefined && m.run === run && this.#isAlive(id, m, nowMs);
  }

  #schedule(): void {
    if (this.#closed) return;
    if (this.#evaluating) {
      this.#again = true;
      return;
    }
    this.#evaluating = true;
    queueMicrotask(() => {
      this.#evaluating = false;
      this.#evaluate();
      if (this.#again) {
        this.#again = false;
        this.#schedule();
      }
    });
  }

  /** One pass over the partitions: claims, transfers in and out, re-claims after a lapse. */
  #evaluate(): void {
    if (this.#closed || this.#stalled) return;
    const now = this.#clock.nowMs();
    const desired = assignPartitions(this.partitions, this.liveMembers(now));
    for (let p = 0; p < this.partitions; p++) {
      if (this.#busy.has(p) || this.#stale.has(p)) continue;
      const held = this.#held.get(p);
      const want = desired[p];
      if (held !== undefined) this.#evaluateHeld(p, held, want, now);
      else this.#evaluateOther(p, want === this.memberId, now);
    }
  }

  #evaluateHeld(p: number, held: Held, want: string | undefined, now: number): void {
    if (held.phase === "suspect") {
      if (now < this.#validUntilMs) this.#reclaim(p, held);
      return;
    }
    if (held.phase !== "active" || want === undefined || want === this.memberId) return;
    if (now >= this.#validUntilMs || now < this.#transfersFrom) return;
    const to = this.#members.get(want);
    if (to !== undefined && this.#isAlive(want, to, now)) this.#transfer(p, held, want, to.run);
  }

  #evaluateOther(p: number, mine: boolean, now: number): void {
    const record = this.#records.get(p);
    const v = record?.value;
    if (v !== undefined && v.owner === this.memberId && v.run === this.run) {
      // Transferred to this run: take it with its checkpoint. Recorded as ours but not held
      // (an acquisition that failed): claimed again.
      if (v.state === "transfer") this.#accept(p, record!, v);
      else if (now < this.#validUntilMs && !this.#draining) this.#claim(p, record, "takeover");
      return;
    }
    if (!mine) {
      if (this.#wanted.delete(p)) this.#listener.released(p, "unwanted");
      return;
    }
    if (!this.#wanted.has(p)) {
      this.#wanted.add(p);
      this.#listener.wanted(p);
    }
    if (now >= this.#validUntilMs || this.#draining) return;
    if (record === undefined || record.deleted || v === undefined) {
      this.#claim(p, record, "fresh");
    } else if (!this.#runAlive(v.owner, v.run, now)) {
      this.#claim(p, record, "takeover");
    }
  }

  #claim(p: number, record: PartitionRecord | undefined, how: "fresh" | "takeover"): void {
    const value = encodeRecord({ owner: this.memberId, run: this.run, state: "owned" });
    const write =
      record === undefined || record.deleted
        ? this.#store.create(PARTITION_PREFIX + p, value)
        : this.#store.update(PARTITION_PREFIX + p, value, record.revision);
    this.#busy.add(p);
    void write
      .then((revision) => {
        this.#stats.claims++;
        if (how === "takeover") this.#stats.takeovers++;
        return this.#acquire(p, revision, how, undefined);
      })
      .catch((e) => this.#failed(p, e))
      .finally(() => this.#done(p));
  }

  /**
   * Takes a partition transferred to this run by writing it as owned, by compare-and-set on the
   * transfer's revision: the epoch is this write's, so a transfer record that is no longer the
   * latest (superseded by a write this run has not seen yet) is never granted from.
   */
  #accept(p: number, record: PartitionRecord, v: PartitionValue): void {
    this.#busy.add(p);
    const value = encodeRecord({ owner: this.memberId, run: this.run, state: "owned" });
    void this.#store
      .update(PARTITION_PREFIX + p, value, record.revision)
      .then((revision) => {
        this.#stats.handoffsIn++;
        return this.#acquire(p, revision, "handoff", v.checkpoint);
      })
      .catch((e) => this.#failed(p, e))
      .finally(() => this.#done(p));
  }

  async #acquire(
    p: number,
    revision: number,
    how: AcquireKind,
    checkpoint: string | undefined,
  ): Promise<void> {
    const held: Held = { epoch: revision, revision, phase: "importing" };
    this.#held.set(p, held);
    this.#wanted.delete(p);
    try {
      await this.#listener.acquired(p, revision, how, checkpoint);
    } catch (e) {
      this.#held.delete(p);
      this.#listener.released(p, "failed");
      throw e;
    }
    if (this.#held.get(p) === held) held.phase = "active";
  }

  #transfer(p: number, held: Held, to: string, toRun: number): void {
    held.phase = "handing-off";
    this.#busy.add(p);
    void this.#listener
      .handOff(p, to)
      .then((checkpoint) =>
        this.#store.update(
          PARTITION_PREFIX + p,
          encodeRecord({
            owner: to,
            run: toRun,
            state: "transfer",
            from: this.memberId,
            checkpoint,
          }),
          held.revision,
        ),
      )
      .then(() => {
        this.#held.delete(p);
        this.#stats.handoffsOut++;
        this.#listener.released(p, "handed-off");
      })
      .catch((e) => {
        if (e instanceof CasConflictError) {
          this.#lost(p);
          this.#failed(p, e);
        } else {
          held.phase = "active"; // the save failed: keep granting, try again at the next beat
          this.#unavailable(e);
        }
      })
      .finally(() => this.#done(p));
  }

  #reclaim(p: number, held: Held): void {
    const record = this.#records.get(p)?.value;
    const value = encodeRecord(record ?? { owner: this.memberId, run: this.run, state: "owned" });
    this.#busy.add(p);
    void this.#store
      .update(PARTITION_PREFIX + p, value, held.revision)
      .then((revision) => {
        held.revision = revision;
        held.epoch = revision;
        held.phase = "active";
        this.#listener.renewed(p, revision);
      })
      .catch((e) => {
        if (e instanceof CasConflictError) {
          this.#lost(p);
          this.#failed(p, e);
        } else this.#unavailable(e);
      })
      .finally(() => this.#done(p));
  }

  /** A write or an acquisition of `p` failed; after a conflict, its record is read again. */
  #failed(p: number, e: unknown): void {
    if (!(e instanceof CasConflictError)) {
      this.#unavailable(e);
      return;
    }
    this.#stats.casConflicts++;
    this.#stale.add(p);
    void this.#store
      .get(PARTITION_PREFIX + p)
      .then((entry) => {
        if (entry !== undefined) this.#onPartition(entry);
      })
      .catch((err) => this.#error(err));
  }

  #lost(p: number): void {
    if (!this.#held.delete(p)) return;
    this.#stats.taken++;
    this.#listener.released(p, "taken");
  }

  #done(p: number): void {
    this.#busy.delete(p);
    this.#schedule();
  }

  /** A store call failed other than by a conflict: no more attempts until the next beat. */
  #unavailable(e: unknown): void {
    this.#stalled = true;
    this.#error(e);
  }

  #error(e: unknown): void {
    this.#listener.error?.(e);
  }
}
