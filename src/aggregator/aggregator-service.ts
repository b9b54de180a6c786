/**
 * The aggregator as a running service: the collector-style pipeline
 *
 *   receiver (transport: decisions.*, heartbeats) -> decode/validate -> AggregatorCore
 *   -> every syncIntervalMs: rate updates to each node, rule defaults to all (exporter)
 *
 * Bad input from the wire is counted by reason and dropped, never thrown. Owns its timers and
 * subscriptions; `close()` releases them (the transport is the caller's to close).
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { type Clock, monotonicClock, type TimerHandle, wallClockMs } from "../clock/clock.js";
import { InvalidArgumentError } from "../errors.js";
import type { CompiledRule } from "../limiter/rule.js";
import { DecisionBatchReader } from "../protocol/decode.js";
import { encode } from "../protocol/encode.js";
import {
  type DecisionBatch,
  type Heartbeat,
  type KeyCommand,
  MAX_OWNERS,
} from "../protocol/messages.js";
import type { Signer } from "../protocol/signing.js";
import { createSubjects, isValidNodeId, senderOf } from "../protocol/subjects.js";
import type { Subscription, Transport } from "../transport/transport.js";
import { expectNumber, optionalNumber } from "../validate.js";
import { AggregatorCore, type AggregatorStats, type RuleUsage } from "./aggregator-core.js";
import type { CheckpointPort } from "./checkpoint-port.js";
import { createGroupCheckpointStore } from "./group-checkpoints.js";
import { GroupMember, type GroupMemberStats } from "./group-member.js";
import type { GroupStore } from "./group-store.js";
import { type AggregatorTuning, resolveTuning } from "./tuning.js";

/**
 * The service's options: where it listens and how it is named, plus any of the aggregator's
 * tuning (`AggregatorTuning`, documented in tuning.ts: unit, default, bounds), checked there.
 */
export interface AggregatorServiceOptions extends Partial<AggregatorTuning> {
  readonly rules: readonly CompiledRule[];
  readonly transport: Transport;
  /** `[A-Za-z0-9_-]{1,64}`. @default `agg-<hostname>-<pid>` */
  readonly aggregatorId?: string;
  /** @default "ratelimit" */
  readonly subjectPrefix?: string;
  readonly clock?: Clock;
  /**
   * Saves the global windows to a store (e.g. `createRedisCheckpointStore`) every `intervalMs`,
   * so a restarted aggregator can call `restoreCheckpoint()` and resume without a warm-up.
   */
  readonly checkpoint?: CheckpointOptions;
  /**
   * Runs this aggregator as one member of a group that shares the partitions (see
   * docs/architecture.md, "Several aggregators"); without it, this aggregator is the only one
   * and takes every partition's reports.
   */
  readonly group?: AggregatorGroupOptions;
  /** Signs every rate update and rule defaults frame (`createSigner` of the group's seed). */
  readonly signer?: Signer;
}

export interface AggregatorGroupOptions {
  /** Where ownership is kept (`openKvGroupStore` for JetStream KV). */
  readonly store: GroupStore;
  /** The group's partition count, 1..256; every member and node must use the same. */
  readonly partitions: number;
  /** A member's lease, ms. @default 1500 */
  readonly leaseMs?: number;
  /** Where partition checkpoints go. @default the group's store (`checkpoints.*`) */
  readonly checkpoints?: CheckpointPort;
  /** Most time `close()` spends handing partitions over, ms. @default 2 x leaseMs */
  readonly drainMs?: number;
}

export type { CheckpointPort } from "./checkpoint-port.js";

export interface CheckpointOptions {
  readonly store: CheckpointPort;
  /** Stable across restarts of the same aggregator. @default "sluice-aggregator" */
  readonly name?: string;
  /** Save period, ms. @default 1000 */
  readonly intervalMs?: number;
}

/** A live node and its estimated clock offset, as in {@link AggregatorServiceStats.nodes}. */
export interface NodeClock {
  id: string;
  /** Node wall clock minus the aggregator's, ms (metrics only). */
  clockOffsetMs: number;
}

/** The live node whose clock is furthest from the aggregator's, or undefined with none. */
export function furthestClock(nodes: readonly NodeClock[]): NodeClock | undefined {
  let furthest: NodeClock | undefined;
  for (const n of nodes) {
    if (furthest === undefined || Math.abs(n.clockOffsetMs) > Math.abs(furthest.clockOffsetMs)) {
      furthest = n;
    }
  }
  return furthest;
}

export interface AggregatorServiceStats extends AggregatorStats {
  aggregatorId: string;
  epoch: number;
  liveNodes: number;
  /** Messages dropped whole, by reason. */
  invalidMessages: Record<string, number>;
  /** Entries dropped from otherwise valid messages, by reason. */
  invalidEntries: Record<string, number>;
  nodes: NodeClock[];
  ticks: number;
  /** Time the last tick took, ms. */
  lastTickMs: number;
  checkpointsSaved: number;
  checkpointErrors: number;
  /** Keys restored from a checkpoint at start (-1 if none was tried). */
  keysRestored: number;
  /** As a group member: its partitions, handoffs, takeovers and saves. */
  group: GroupMemberStats | undefined;
}

export interface AggregatorService {
  readonly core: AggregatorCore;
  /**
   * Resolves once the service runs: at once for a lone aggregator; for a group member, once it
   * has registered (it claims or is handed its partitions after). Rejects if the group's store
   * cannot be reached.
   */
  readonly started: Promise<void>;
  /** The core's per-rule usage now (see `AggregatorCore.usage`). */
  usage(): RuleUsage[];
  /** Admitted cost in the global window of (rule, key) now. */
  windowAdmitted(rule: string, key: string): number;
  /**
   * Loads the last checkpoint (if `checkpoint` is configured and one exists) into the windows
   * and ends the warm-up. Call once, right after creating the service. Returns keys restored.
   */
  restoreCheckpoint(): Promise<number>;
  stats(): AggregatorServiceStats;
  close(): Promise<void>;
}

export function createAggregatorService(options: AggregatorServiceOptions): AggregatorService {
  return new Service(options);
}

/** The id given, or `agg-<hostname>-<pid>`; throws for one that is not a subject token. */
function aggregatorIdOf(o: AggregatorServiceOptions): string {
  const id =
    o.aggregatorId ??
    `agg-${hostname()
      .replace(/[^A-Za-z0-9_-]/g, "-")
      .slice(0, 40)}-${process.pid}`;
  if (!isValidNodeId(id)) {
    throw new InvalidArgumentError(
      "aggregatorId",
      "a string of 1-64 characters from A-Z a-z 0-9 _ -",
      id,
    );
  }
  return id;
}

/**
 * The tuning given, checked; without a warm-up given, the longest global window (at most 5 s),
 * what a restarted run cannot know of the hits admitted just before it.
 */
function serviceTuning(o: AggregatorServiceOptions): AggregatorTuning {
  const given = resolveTuning(o);
  const globalWindows = o.rules.filter((r) => r.mode === "global").map((r) => r.windowMs);
  return {
    ...given,
    warmupMs: given.warmupMs ?? Math.min(5000, Math.max(0, ...globalWindows)),
  };
}

class Service implements AggregatorService {
  readonly core: AggregatorCore;
  readonly started: Promise<void>;
  readonly #member: GroupMember | undefined;
  readonly #drainMs: number;
  readonly #signer: Signer | undefined;
  readonly #transport: Transport;
  readonly #clock: Clock;
  readonly #subs: Subscription[] = [];
  readonly #timer: TimerHandle;
  readonly #subjects;
  readonly #invalidMessages: Record<string, number> = {};
  readonly #invalidEntries: Record<string, number> = {};
  /** Every message is read with it: a batch it returns is consumed (or copied) before the next. */
  readonly #reader = new DecisionBatchReader();
  #ticks = 0;
  #lastTickDurationMs = 0;
  #lastTickStartMs = Number.NEGATIVE_INFINITY;
  #earlyTimer: TimerHandle | undefined;
  readonly #syncIntervalMs: number;
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #checkpoint: CheckpointOptions | undefined;
  readonly #checkpointTimer: TimerHandle | undefined;
  readonly #checkpointTtlMs: number;
  #checkpointsSaved = 0;
  #checkpointErrors = 0;
  #keysRestored = -1;

  constructor(o: AggregatorServiceOptions) {
    const id = aggregatorIdOf(o);
    const tuning = serviceTuning(o);
    const syncIntervalMs = tuning.syncIntervalMs;
    this.#transport = o.transport;
    this.#clock = o.clock ?? monotonicClock;
    this.#subjects = createSubjects(
      o.subjectPrefix === undefined ? {} : { prefix: o.subjectPrefix },
    );
    const g = o.group;
    if (g !== undefined) {
      expectNumber("group.partitions", g.partitions, { integer: true, min: 1, max: MAX_OWNERS });
    }
    this.core = new AggregatorCore({
      rules: o.rules,
      aggregatorId: id,
      epoch: wallClockMs() + randomBytes(4).readUInt32LE() / 2 ** 32,
      tuning,
      startMs: this.#clock.nowMs(),
      ...(g === undefined ? {} : { partitions: g.partitions }),
    });
    this.#signer = o.signer;
    const onMessage = (bytes: Uint8Array, subject: string) => this.#onMessage(bytes, subject);
    this.#subs.push(this.#transport.subscribe(this.#subjects.heartbeats, onMessage));
    this.#subs.push(this.#transport.subscribe(this.#subjects.allCommands, onMessage));
    if (g === undefined) {
      this.#subs.push(this.#transport.subscribe(this.#subjects.allDecisions, onMessage));
    }
    const longest = Math.max(1000, ...o.rules.map((r) => r.windowMs));
    this.#member = g === undefined ? undefined : this.#groupMember(g, o.checkpoint, 2 * longest);
    this.#drainMs = g?.drainMs ?? 2 * (this.#member?.group.leaseMs ?? 0);
    this.started = this.#member?.start() ?? Promise.resolve();
    this.started.catch(() => {}); // the caller's to handle; never an unhandled rejection
    this.#syncIntervalMs = syncIntervalMs;
    this.#timer = this.#clock.setRepeating(() => this.#tick(), syncIntervalMs);
    this.#checkpoint = g === undefined ? o.checkpoint : undefined;
    this.#checkpointTtlMs = 2 * longest;
    const cp = this.#checkpoint;
    this.#checkpointTimer =
      cp === undefined
        ? undefined
        : this.#clock.setRepeating(
            () => void this.#saveCheckpoint(),
            optionalNumber("checkpoint.intervalMs", cp.intervalMs, 1000, { min: 10 }),
          );
  }

  #groupMember(
    g: AggregatorGroupOptions,
    checkpoint: CheckpointOptions | undefined,
    ttlMs: number,
  ): GroupMember {
    return new GroupMember({
      core: this.core,
      transport: this.#transport,
      subjects: this.#subjects,
      clock: this.#clock,
      store: g.store,
      checkpoints: g.checkpoints ?? createGroupCheckpointStore(g.store),
      memberId: this.core.aggregatorId,
      run: this.core.epoch,
      partitions: g.partitions,
      ...(g.leaseMs === undefined ? {} : { leaseMs: g.leaseMs }),
      intervalMs: optionalNumber("checkpoint.intervalMs", checkpoint?.intervalMs, 1000, {
        min: 10,
      }),
      ttlMs,
      accept: (bytes, subject) => {
        const m = this.#accept(bytes, subject);
        return m?.type === "decision-batch" ? m : undefined;
      },
      ingested: () => {
        if (this.core.wantsEarlyTick) this.#earlyTick();
      },
    });
  }

  async restoreCheckpoint(): Promise<number> {
    if (this.#checkpoint === undefined) return 0;
    try {
      const bytes = await this.#checkpoint.store.load(this.#checkpoint.name ?? "sluice-aggregator");
      this.#keysRestored =
        bytes === undefined
          ? 0
          : this.core.restoreWindows(bytes, this.#clock.nowMs(), wallClockMs());
    } catch {
      this.#checkpointErrors++;
      this.#keysRestored = 0;
    }
    return this.#keysRestored;
  }

  async #saveCheckpoint(): Promise<void> {
    const cp = this.#checkpoint;
    if (cp === undefined) return;
    try {
      await cp.store.save(
        cp.name ?? "sluice-aggregator",
        this.core.exportWindows(this.#clock.nowMs(), wallClockMs()),
        this.#checkpointTtlMs,
      );
      this.#checkpointsSaved++;
    } catch {
      this.#checkpointErrors++; // the next save tries again; counted for alerting
    }
  }

  #count(into: Record<string, number>, reason: string, n = 1): void {
    into[reason] = (into[reason] ?? 0) + n;
  }

  #onMessage(bytes: Uint8Array, subject: string): void {
    const m = this.#accept(bytes, subject);
    if (m === undefined) return;
    if (m.type === "decision-batch") this.core.ingestBatch(m, this.#clock.nowMs());
    else if (m.type === "key-command") this.core.administer(m, this.#clock.nowMs());
    else this.core.ingestHeartbeat(m, this.#clock.nowMs(), wallClockMs());
    if (this.core.wantsEarlyTick) this.#earlyTick();
  }

  /** A batch, heartbeat or key command that decodes and names its sender's subject. */
  #accept(bytes: Uint8Array, subject: string): DecisionBatch | Heartbeat | KeyCommand | undefined {
    const r = this.#reader.read(bytes);
    if (!r.ok) {
      this.#count(this.#invalidMessages, r.reason);
      return undefined;
    }
    for (const [reason, n] of Object.entries(r.droppedEntries)) {
      if (n > 0) this.#count(this.#invalidEntries, reason, n);
    }
    const m = r.message;
    if (m.type !== "decision-batch" && m.type !== "heartbeat" && m.type !== "key-command") {
      this.#count(this.#invalidMessages, "wrong-type");
      return undefined;
    }
    // The subject names the sender, and NATS permissions can pin a user to its own subjects:
    // a message in another sender's name is an impersonation attempt.
    if (senderOf(subject) !== m.nodeId) {
      this.#count(this.#invalidMessages, "sender-mismatch");
      return undefined;
    }
    return m;
  }

  /**
   * A node joined: grant it the hot keys now, not up to a sync interval later. At most one extra
   * tick per tenth of an interval, however many nodes join at once; within that gap of the last
   * tick, it runs when the gap ends.
   */
  #earlyTick(): void {
    if (this.#earlyTimer !== undefined) return;
    const waitMs = this.#lastTickStartMs + this.#syncIntervalMs / 10 - this.#clock.nowMs();
    if (waitMs <= 0) {
      this.#tick();
      return;
    }
    this.#earlyTimer = this.#clock.setTimer(() => {
      this.#earlyTimer = undefined;
      if (this.core.wantsEarlyTick) this.#tick();
    }, waitMs);
  }

  #tick(): void {
    if (this.#closed) return;
    const started = this.#clock.nowMs();
    this.#lastTickStartMs = started;
    const member = this.#member;
    const { updates, defaults } = this.core.tick(
      started,
      wallClockMs(),
      member === undefined ? undefined : (p) => member.canGrant(p, started),
    );
    const options = this.#signer === undefined ? undefined : { signer: this.#signer };
    for (const u of updates) {
      const subject = this.#subjects.updates(u.targetNodeId);
      for (const frame of encode({ type: "rate-update", ...u }, options)) {
        this.#transport.publish(subject, frame);
      }
    }
    // A member with nothing to announce stays quiet: nodes follow its partitions' owners.
    if (member === undefined || (defaults.owners?.length ?? 0) > 0) {
      for (const frame of encode({ type: "rule-defaults", ...defaults }, options)) {
        this.#transport.publish(this.#subjects.defaults, frame);
      }
    }
    this.#ticks++;
    this.#lastTickDurationMs = this.#clock.nowMs() - started;
  }

  usage(): RuleUsage[] {
    return this.core.usage(this.#clock.nowMs());
  }

  windowAdmitted(rule: string, key: string): number {
    return this.core.windowAdmitted(rule, key, this.#clock.nowMs());
  }

  stats(): AggregatorServiceStats {
    return {
      ...this.core.stats,
      aggregatorId: this.core.aggregatorId,
      epoch: this.core.epoch,
      liveNodes: this.core.membership.liveCount,
      invalidMessages: { ...this.#invalidMessages },
      invalidEntries: { ...this.#invalidEntries },
      nodes: [...this.core.membership.all()].map((n) => ({
        id: n.id,
        clockOffsetMs: n.clockOffsetMs,
      })),
      ticks: this.#ticks,
      lastTickMs: this.#lastTickDurationMs,
      checkpointsSaved: this.#checkpointsSaved,
      checkpointErrors: this.#checkpointErrors,
      keysRestored: this.#keysRestored,
      group: this.#member?.stats(),
    };
  }

  async close(): Promise<void> {
    if (this.#closing === undefined) this.#closing = this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    // A member hands its partitions over first, ticking and ingesting meanwhile.
    if (this.#member !== undefined) await this.#member.close(this.#drainMs).catch(() => {});
    this.#closed = true;
    this.#timer.cancel();
    this.#earlyTimer?.cancel();
    this.#checkpointTimer?.cancel();
    if (this.#checkpoint !== undefined) await this.#saveCheckpoint(); // the latest windows
    for (const s of this.#subs) s.unsubscribe();
  }
}
