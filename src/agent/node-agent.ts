/**
 * The node agent: connects a service's limiter to the aggregator over a transport.
 *
 * Out: every `syncIntervalMs`, one decision batch per partition with the cumulative counts of
 *      the global-rule keys that changed (earlier when many keys changed); a heartbeat every
 *      `heartbeatIntervalMs`.
 * In:  rate updates addressed to this node run (grants, applied when newer), and the rule
 *      defaults broadcast (live node count for the default share; also the aggregator's pulse).
 *
 * Counts are cumulative per (node epoch, key generation), so a lost, repeated or reordered
 * batch neither loses nor double-counts hits. After a reconnect the agent re-sends every held
 * key's counts, in case a batch was lost with the connection, and once more when it next hears
 * the aggregator (which may have come back after it); a key generation first reported around the
 * outage is reported as first until then, since a lost first report loses what came before it
 * (regression test: test/integration/cluster-nats-restart.test.ts). When nothing has come from the
 * aggregator for `staleAfterMs`, each global rule's `onAggregatorLoss` policy takes over until
 * it speaks again.
 *
 * While it follows no aggregator (at start, and while the aggregator is lost) the agent also
 * listens to the other nodes' heartbeats and answers a node run it has not seen with one of its
 * own, so nodes learn of each other within a round trip: the `static` policy's share is then
 * limit / the nodes it knows of (at least the last count the aggregator gave), not the whole limit
 * for a node that believes it is alone. For `discoveryMs` after start, until an aggregator is
 * heard, keys the static policy decides are refused (with the rest of that moment as the wait),
 * since a node cannot yet know how many share the limit: eight nodes started together before
 * their aggregator would otherwise each admit the whole limit.
 */
import { hostname } from "node:os";
import { type Clock, monotonicClock, type TimerHandle, wallClockMs } from "../clock/clock.js";
import { InvalidArgumentError } from "../errors.js";
import {
  type HistogramSnapshot,
  LatencyHistogram,
  PROPAGATION_LATENCY_BOUNDS_S,
} from "../limiter/latency-histogram.js";
import type { Limiter } from "../limiter/limiter.js";
import { encodeDecisionBatch } from "../protocol/decision-batch.js";
import { decode } from "../protocol/decode.js";
import type { DecodeFailure, EntryDropReason } from "../protocol/decode-result.js";
import { encodeHeartbeat } from "../protocol/heartbeat.js";
import { DEFAULT_SYNC_INTERVAL_MS, SYNC_INTERVAL_BOUNDS } from "../protocol/limits.js";
import { type DecisionEntry, Role, type RuleGroup } from "../protocol/messages.js";
import { decisionPartition } from "../protocol/partition.js";
import { createSubjects, isValidNodeId, type Subjects } from "../protocol/subjects.js";
import type { Subscription, Transport } from "../transport/transport.js";
import { optionalBoolean, optionalNumber } from "../validate.js";

/** How far back, at least, first reports count as possibly lost when the link breaks, ms. */
const FIRST_REPORT_LOOK_BACK_MS = 1000;
/**
 * How far ahead of this node's wall clock an aggregator epoch may be (hosts' clocks disagree by
 * far less than this when they are synchronised at all).
 */
const MAX_EPOCH_AHEAD_MS = 10 * 60_000;

/** Least time between two heartbeats sent to answer node runs not seen before, ms. */
const ANSWER_GAP_MS = 20;
/** A peer heard of is counted for this many of its heartbeat intervals after its last one. */
const PEER_TTL_HEARTBEATS = 6;

/** Least time between two warnings about implausible grants, ms. */
const IMPLAUSIBLE_WARNING_MS = 60_000;

/** Bound on the key generations remembered while the link is down (beyond: counts may be lost). */
const MAX_DOUBTFUL_FIRST_REPORTS = 100_000;

/**
 * Where between two of the aggregator's ticks a node's report goes out, as a fraction of the
 * sync interval after the tick's broadcast arrives (see `#onTickHeard`): half leaves the node
 * time to spend the tick's grants and the report half an interval of slack either way.
 */
const REPORT_PHASE = 0.5;

export interface NodeAgentOptions {
  readonly limiter: Limiter;
  readonly transport: Transport;
  /**
   * This node's id, `[A-Za-z0-9_-]{1,64}`, unique among live nodes.
   * @default `<hostname>-<pid>`, cleaned to fit
   */
  readonly nodeId?: string;
  /** First token(s) of every subject. @default "ratelimit" */
  readonly subjectPrefix?: string;
  /** How often counts are published, ms (10..10000). @default DEFAULT_SYNC_INTERVAL_MS (25) */
  readonly syncIntervalMs?: number;
  /**
   * Whether counts are published half a sync interval after each tick of the aggregator is
   * heard (its defaults broadcast), rather than on this node's own timer: every node is then
   * read at the same point of its grant cycle, and shares do not depend on when each node
   * started. The own timer remains the backstop when no tick is heard. @default true
   */
  readonly alignReports?: boolean;
  /** How often a heartbeat is sent, ms (50..60000). @default 500 */
  readonly heartbeatIntervalMs?: number;
  /** Aggregator silence after which `onAggregatorLoss` applies, ms. @default 2000 */
  readonly staleAfterMs?: number;
  /** Decision subjects to spread batches over (1..65536); the aggregator reads them all. @default 1 */
  readonly partitions?: number;
  /** Publish early once this many keys changed within an interval. @default 5000 */
  readonly maxBatchKeys?: number;
  /**
   * Nodes assumed live before the aggregator says (the node also counts the peers whose
   * heartbeats it hears, and takes the larger), for the default share. @default 1
   */
  readonly initialLiveNodes?: number;
  /**
   * After start, until the aggregator is first heard, how long keys decided by the `static`
   * loss policy are refused while the node learns of its peers, ms (0..60000). The aggregator
   * broadcasts every sync interval and peers answer within a round trip, so a node joining a
   * running fleet is refused at most about one interval; with no aggregator, nodes decide at
   * limit / the nodes they heard of once it has passed. 0 turns the hold off.
   * @default 4 x syncIntervalMs, at least 100
   */
  readonly discoveryMs?: number;
  readonly clock?: Clock;
  /**
   * Where the agent's warnings go (implausible grants, a sign of forged updates), at most one a
   * minute each. @default `process.emitWarning(message, "SluiceWarning")`
   */
  readonly onWarning?: (message: string) => void;
}

export interface NodeAgentStats {
  nodeId: string;
  nodeEpoch: number;
  batchesSent: number;
  entriesSent: number;
  heartbeatsSent: number;
  updatesReceived: number;
  grantsReceived: number;
  defaultsReceived: number;
  /** Messages dropped whole, by reason (decode failures, or addressed to another run). */
  invalidMessages: Record<string, number>;
  /** Entries dropped from otherwise valid messages, by reason. */
  invalidEntries: Record<string, number>;
  liveNodes: number;
  /**
   * Broadcasts of fewer live nodes not yet believed (from an aggregator run heard for less than
   * two heartbeat intervals, as after an aggregator restart).
   */
  liveNodesHeldBack: number;
  /**
   * Aggregator runs followed although their epoch was lower than the last one's (taken only
   * once that one had gone silent: a restart on a host whose clock is behind).
   */
  aggregatorRewinds: number;
  aggregatorLost: boolean;
  /** ms since the aggregator last spoke, on this node's clock; Infinity if never. */
  aggregatorSilentMs: number;
  resyncs: number;
  /**
   * Propagation latency: from publishing the first batch after the previous grant to the arrival
   * of the next grant, so the time one round of counts takes to come back as grants. Hits in that
   * batch were counted up to one sync interval earlier still.
   */
  propagation: HistogramSnapshot;
}

export interface NodeAgent {
  readonly nodeId: string;
  readonly nodeEpoch: number;
  stats(): NodeAgentStats;
  /** Publishes the pending counts now (also done on every sync tick). */
  flush(): void;
  /**
   * Resolves once this node decides global rules with a known share: `true` when it first hears
   * an aggregator, `false` when `discoveryMs` passes without one (it then decides at limit / the
   * nodes it heard of) or the agent closes first. For start-up ordering and readiness probes:
   * `check()` never needs it (until then, it refuses what the static policy would decide).
   */
  ready(): Promise<boolean>;
  /**
   * Publishes a last batch and a leaving notice (the aggregator then drops this node at once and
   * hands its grants to the others), stops every timer and subscription. The limiter's global
   * rules then follow their `onAggregatorLoss` policy (`stats().aggregatorLost` still says what
   * was last heard of the aggregator). Does not close the transport.
   */
  close(): Promise<void>;
}

export function createNodeAgent(options: NodeAgentOptions): NodeAgent {
  return new Agent(options);
}

/** `<hostname>-<pid>` reduced to the id alphabet. */
export function defaultNodeId(): string {
  const host =
    hostname()
      .replace(/[^A-Za-z0-9_-]/g, "-")
      .slice(0, 40) || "node";
  return `${host}-${process.pid}`;
}

class Agent implements NodeAgent {
  readonly nodeId: string;
  readonly nodeEpoch: number;
  readonly #limiter: Limiter;
  readonly #transport: Transport;
  readonly #clock: Clock;
  readonly #subjects: Subjects;
  readonly #syncIntervalMs: number;
  readonly #staleAfterMs: number;
  readonly #partitions: number;
  readonly #maxBatchKeys: number;
  readonly #globalRules: Set<string>;
  readonly #timers: TimerHandle[] = [];
  readonly #subs: Subscription[] = [];
  #seq = 0;
  #heartbeatSeq = 0;
  readonly #heartbeatIntervalMs: number;
  /** When the aggregator run now heard (its epoch) was first heard, on this node's clock. */
  #epochHeardSinceMs = Number.NEGATIVE_INFINITY;
  #lastAggregatorMs = -Infinity;
  #aggregatorEpoch = 0;
  #lost = false;
  #closed = false;
  /** When this node last flushed, and last heard the followed aggregator's tick (its defaults). */
  #lastFlushMs = Number.NEGATIVE_INFINITY;
  #tickHeardMs = Number.NEGATIVE_INFINITY;
  /** The flush set for REPORT_PHASE of an interval after the aggregator's tick was heard. */
  #phasedFlush: TimerHandle | undefined;
  readonly #alignReports: boolean;
  /** Reconnected: re-send every key's counts once more when the aggregator is next heard. */
  #resyncWhenHeard = false;
  /** From a disconnect until that resync: batches sent meanwhile may reach no aggregator. */
  #linkUnsure = false;
  /** The resync is due: after the next flush, the first reports are no longer in doubt. */
  #resyncDue = false;
  /**
   * Key generations (`rule \0 key \0 generation`) whose first report may be lost: those first
   * reported while the link was unsure or shortly before it broke. Only a first report makes the
   * aggregator count what was admitted before it, so until the resync every report of them says
   * "first": the aggregator counts the generation in full from whichever arrives first, and
   * takes differences from the rest.
   */
  readonly #doubtfulFirstReports = new Set<string>();
  /** First reports of the current and the previous look-back period. */
  #recentFirstReports = new Set<string>();
  #olderFirstReports = new Set<string>();
  #recentSinceMs = 0;
  /** Monotonic time of the first batch published since the last grant arrived; -1 if none. */
  #firstUnansweredMs = -1;
  readonly #propagation = new LatencyHistogram(PROPAGATION_LATENCY_BOUNDS_S);
  readonly #warn: (message: string) => void;
  #lastImplausibleWarningMs = Number.NEGATIVE_INFINITY;
  #implausibleSinceWarning = 0;
  /** Other node runs heard of while following no aggregator: id -> [epoch, last heard]. */
  readonly #peers = new Map<string, [epoch: number, lastHeardMs: number]>();
  /** The heartbeat subscription, held while no aggregator is followed. */
  #peerSub: Subscription | undefined;
  #lastHeartbeatMs = Number.NEGATIVE_INFINITY;
  #answerTimer: TimerHandle | undefined;
  /** The live count last given by an aggregator, or `initialLiveNodes` before any. */
  #aggregatorLiveNodes: number;
  #everHeard = false;
  readonly #ready: Promise<boolean>;
  #markReady: (heard: boolean) => void = () => {};
  #discoveryTimer: TimerHandle | undefined;
  readonly #stats: Omit<NodeAgentStats, "aggregatorLost" | "aggregatorSilentMs" | "propagation">;

  constructor(o: NodeAgentOptions) {
    this.#limiter = o.limiter;
    this.#transport = o.transport;
    this.#clock = o.clock ?? monotonicClock;
    if (o.onWarning !== undefined && typeof o.onWarning !== "function") {
      throw new InvalidArgumentError("onWarning", "a function", o.onWarning);
    }
    this.#warn = o.onWarning ?? ((message) => process.emitWarning(message, "SluiceWarning"));
    this.nodeId = o.nodeId ?? defaultNodeId();
    if (!isValidNodeId(this.nodeId)) {
      throw new InvalidArgumentError(
        "nodeId",
        "a string of 1-64 characters from A-Z a-z 0-9 _ -",
        o.nodeId,
      );
    }
    this.#syncIntervalMs = optionalNumber(
      "syncIntervalMs",
      o.syncIntervalMs,
      DEFAULT_SYNC_INTERVAL_MS,
      SYNC_INTERVAL_BOUNDS,
    );
    const heartbeatIntervalMs = optionalNumber("heartbeatIntervalMs", o.heartbeatIntervalMs, 500, {
      min: 50,
      max: 60_000,
    });
    this.#heartbeatIntervalMs = heartbeatIntervalMs;
    this.#alignReports = optionalBoolean("alignReports", o.alignReports, true);
    this.#staleAfterMs = optionalNumber("staleAfterMs", o.staleAfterMs, 2000, { above: 0 });
    this.#partitions = optionalNumber("partitions", o.partitions, 1, {
      integer: true,
      min: 1,
      max: 65_536,
    });
    this.#maxBatchKeys = optionalNumber("maxBatchKeys", o.maxBatchKeys, 5000, {
      integer: true,
      min: 1,
    });
    const initialLiveNodes = optionalNumber("initialLiveNodes", o.initialLiveNodes, 1, {
      integer: true,
      min: 1,
      max: 65_535,
    });
    this.#aggregatorLiveNodes = initialLiveNodes;
    const discoveryMs = optionalNumber(
      "discoveryMs",
      o.discoveryMs,
      Math.max(100, 4 * this.#syncIntervalMs),
      { min: 0, max: 60_000 },
    );
    this.#subjects = createSubjects(
      o.subjectPrefix === undefined ? {} : { prefix: o.subjectPrefix },
    );
    this.nodeEpoch = wallClockMs() + Math.random();
    this.#globalRules = new Set(
      this.#limiter.rules.filter((r) => r.mode === "global").map((r) => r.name),
    );
    this.#stats = {
      nodeId: this.nodeId,
      nodeEpoch: this.nodeEpoch,
      batchesSent: 0,
      entriesSent: 0,
      heartbeatsSent: 0,
      updatesReceived: 0,
      grantsReceived: 0,
      defaultsReceived: 0,
      invalidMessages: {},
      invalidEntries: {},
      liveNodes: initialLiveNodes,
      resyncs: 0,
      liveNodesHeldBack: 0,
      aggregatorRewinds: 0,
    };
    const g = this.#limiter.global;
    g.setLiveNodes(initialLiveNodes);
    g.setSyncIntervalMs(this.#syncIntervalMs);
    g.setStaticHold(this.#clock.nowMs() + discoveryMs);
    this.#ready = new Promise((resolve) => {
      this.#markReady = (heard) => {
        this.#markReady = () => {};
        this.#discoveryTimer?.cancel();
        this.#discoveryTimer = undefined;
        resolve(heard);
      };
    });
    this.#discoveryTimer = this.#clock.setTimer(() => this.#markReady(false), discoveryMs);
    this.#setLost(true); // until the aggregator speaks, the loss policy decides

    this.#subs.push(
      this.#transport.subscribe(this.#subjects.updates(this.nodeId), (bytes) =>
        this.#onUpdate(bytes),
      ),
      this.#transport.subscribe(this.#subjects.defaults, (bytes) => this.#onDefaults(bytes)),
      this.#transport.onStatus((s) => {
        if (s.type === "disconnected") {
          // Batches published shortly before the link broke may be lost with it, too.
          this.#linkUnsure = true;
          for (const id of this.#olderFirstReports) this.#doubt(id);
          for (const id of this.#recentFirstReports) this.#doubt(id);
        } else if (s.type === "reconnected") {
          this.#stats.resyncs++;
          g.markAllDirty();
          this.#resyncWhenHeard = true;
        }
      }),
    );
    this.#timers.push(
      this.#clock.setRepeating(() => this.#tick(), this.#syncIntervalMs),
      this.#clock.setRepeating(() => this.#earlyFlush(), Math.max(5, this.#syncIntervalMs / 5)),
      this.#clock.setRepeating(() => this.#heartbeat(), heartbeatIntervalMs),
    );
    this.#heartbeat();
  }

  ready(): Promise<boolean> {
    return this.#ready;
  }

  stats(): NodeAgentStats {
    return {
      ...this.#stats,
      invalidMessages: { ...this.#stats.invalidMessages },
      invalidEntries: { ...this.#stats.invalidEntries },
      aggregatorLost: this.#lost,
      aggregatorSilentMs: this.#clock.nowMs() - this.#lastAggregatorMs,
      propagation: this.#propagation.snapshot(),
    };
  }

  #tick(): void {
    const now = this.#clock.nowMs();
    const silent = now - this.#lastAggregatorMs > this.#staleAfterMs;
    if (silent !== this.#lost) this.#setLost(silent);
    if (this.#lost) this.#expirePeers(now);
    // Paced by the aggregator's ticks while they are heard (see `#onTickHeard`); on our own
    // interval otherwise, and as a backstop if a broadcast went missing.
    const phased = now - this.#tickHeardMs <= 2 * this.#syncIntervalMs;
    if (!phased || now - this.#lastFlushMs >= 1.5 * this.#syncIntervalMs) this.flush();
  }

  /**
   * The followed aggregator ticked (its defaults broadcast, sent every tick, just arrived): the
   * next report goes out REPORT_PHASE of an interval from now, so that it lands mid-way between
   * two ticks, after this node has had time to spend the grants of this one. On our own timer
   * the phase of a node's report to the aggregator's tick was fixed by when each started, and it
   * decided what the node was given: a node reporting just after a tick, before spending that
   * tick's grant, looked as if it still held it and was skipped at the next tick. In the
   * in-memory reference, eight nodes offering the same load were admitted 16 to 57 hits/s (fair:
   * 37.5). Reporting at one phase, every node is read at the same point of its cycle.
   */
  #onTickHeard(): void {
    if (!this.#alignReports) return;
    const now = this.#clock.nowMs();
    this.#tickHeardMs = now;
    if (this.#phasedFlush !== undefined || this.#closed) return;
    const delayMs = this.#syncIntervalMs * REPORT_PHASE;
    // An aggregator ticking faster than we report (nodes at 50 ms, aggregator at 25) is
    // followed at every other tick, not at each.
    if (now + delayMs - this.#lastFlushMs < this.#syncIntervalMs * 0.75) return;
    this.#phasedFlush = this.#clock.setTimer(() => {
      this.#phasedFlush = undefined;
      this.flush();
    }, delayMs);
  }

  #earlyFlush(): void {
    if (this.#limiter.global.pendingChanges() >= this.#maxBatchKeys) this.flush();
  }

  #setLost(lost: boolean): void {
    this.#lost = lost;
    this.#limiter.global.setAggregatorLost(lost);
    if (lost && this.#peerSub === undefined && !this.#closed) {
      this.#peerSub = this.#transport.subscribe(this.#subjects.heartbeats, (bytes) =>
        this.#onPeerHeartbeat(bytes),
      );
    } else if (!lost && this.#peerSub !== undefined) {
      // The aggregator counts the nodes now; its broadcasts carry the count.
      this.#peerSub.unsubscribe();
      this.#peerSub = undefined;
      this.#peers.clear();
      this.#answerTimer?.cancel();
      this.#answerTimer = undefined;
    }
  }

  /**
   * A heartbeat heard while no aggregator is followed: a node run not heard of before is
   * counted and answered (one heartbeat of ours, at most one per ANSWER_GAP_MS, serves every
   * newcomer at once, since heartbeats are broadcast); a leaving notice uncounts its run.
   */
  #onPeerHeartbeat(bytes: Uint8Array): void {
    const r = decode(bytes);
    if (!r.ok || r.message.type !== "heartbeat") return; // the aggregator-side checks count these
    const hb = r.message;
    if (hb.nodeId === this.nodeId || hb.role === Role.aggregator) return;
    const known = this.#peers.get(hb.nodeId);
    if (hb.role === Role.nodeLeaving) {
      if (known !== undefined && known[0] === hb.nodeEpoch) this.#peers.delete(hb.nodeId);
      this.#applyPeerCount();
      return;
    }
    if (known !== undefined && hb.nodeEpoch < known[0]) return; // a late word from an old run
    const isNew = known === undefined || known[0] !== hb.nodeEpoch;
    this.#peers.set(hb.nodeId, [hb.nodeEpoch, this.#clock.nowMs()]);
    if (!isNew) return;
    this.#applyPeerCount();
    this.#answer();
  }

  #answer(): void {
    if (this.#answerTimer !== undefined || this.#closed) return;
    const waitMs = this.#lastHeartbeatMs + ANSWER_GAP_MS - this.#clock.nowMs();
    if (waitMs <= 0) {
      this.#heartbeat();
      return;
    }
    this.#answerTimer = this.#clock.setTimer(() => {
      this.#answerTimer = undefined;
      this.#heartbeat();
    }, waitMs);
  }

  #expirePeers(now: number): void {
    const ttlMs = PEER_TTL_HEARTBEATS * this.#heartbeatIntervalMs;
    let expired = false;
    for (const [id, [, lastHeardMs]] of this.#peers) {
      if (now - lastHeardMs > ttlMs) {
        this.#peers.delete(id);
        expired = true;
      }
    }
    if (expired) this.#applyPeerCount();
  }

  /**
   * The loss policy's share while no aggregator is followed: limit / the larger of the nodes
   * heard of (with this one) and the aggregator's last count.
   */
  #applyPeerCount(): void {
    if (!this.#lost) return;
    const known = this.#peers.size + 1;
    const n = known > this.#aggregatorLiveNodes ? known : this.#aggregatorLiveNodes;
    if (n === this.#stats.liveNodes) return;
    this.#stats.liveNodes = n;
    this.#limiter.global.setLiveNodes(n);
  }

  flush(): void {
    if (this.#closed) return;
    this.#lastFlushMs = this.#clock.nowMs();
    const byPartition = new Map<number, Map<string, DecisionEntry[]>>();
    const globalRules = this.#globalRules;
    const partitions = this.#partitions;
    const now = this.#clock.nowMs();
    if (now - this.#recentSinceMs >= FIRST_REPORT_LOOK_BACK_MS) {
      this.#olderFirstReports = this.#recentFirstReports;
      this.#recentFirstReports = new Set();
      this.#recentSinceMs = now;
    }
    const doubtful = this.#doubtfulFirstReports;
    this.#limiter.drain((c) => {
      const rule = c.rule;
      if (!globalRules.has(rule)) return;
      const key = c.key;
      let first = c.isNew;
      if (first || doubtful.size > 0) {
        const id = `${rule}\0${key}\0${c.generation}`;
        if (!first) first = doubtful.has(id);
        if (first) {
          this.#recentFirstReports.add(id);
          if (this.#linkUnsure) this.#doubt(id);
        }
      }
      const p = partitions === 1 ? 0 : decisionPartition(rule, key, partitions);
      let byRule = byPartition.get(p);
      if (byRule === undefined) {
        byRule = new Map();
        byPartition.set(p, byRule);
      }
      let entries = byRule.get(rule);
      if (entries === undefined) {
        entries = [];
        byRule.set(rule, entries);
      }
      entries.push({
        key,
        generation: c.generation % 2 ** 32,
        admitted: c.admitted,
        rejected: c.rejected,
        isNew: first,
        grantEpoch: c.grantEpoch,
        grantVersion: c.grantVersion,
        allowance: c.allowance,
        admittedSinceLast: c.deltaAdmitted,
        ageMs: c.ageMs,
      });
    });
    if (this.#resyncDue) {
      // Every held key was in this flush, and the aggregator is there to hear it.
      this.#resyncDue = false;
      doubtful.clear();
    }
    if (byPartition.size === 0) return;
    this.#seq = (this.#seq + 1) >>> 0;
    const seq = this.#seq;
    const sentAtWallMs = wallClockMs();
    for (const [partition, byRule] of byPartition) {
      const groups: RuleGroup<DecisionEntry>[] = [];
      for (const [rule, entries] of byRule) {
        groups.push({ rule, entries });
        this.#stats.entriesSent += entries.length;
      }
      const frames = encodeDecisionBatch({
        nodeId: this.nodeId,
        nodeEpoch: this.nodeEpoch,
        seq,
        sentAtWallMs,
        groups,
      });
      if (this.#firstUnansweredMs < 0) this.#firstUnansweredMs = this.#clock.nowMs();
      const subject = this.#subjects.decisions(partition, this.nodeId);
      for (const frame of frames) this.#transport.publish(subject, frame);
      this.#stats.batchesSent += frames.length;
    }
  }

  #doubt(id: string): void {
    if (this.#doubtfulFirstReports.size < MAX_DOUBTFUL_FIRST_REPORTS) {
      this.#doubtfulFirstReports.add(id);
    }
  }

  #heartbeat(): void {
    if (this.#closed) return;
    this.#sendHeartbeat(Role.node);
  }

  #sendHeartbeat(role: typeof Role.node | typeof Role.nodeLeaving): void {
    this.#heartbeatSeq = (this.#heartbeatSeq + 1) >>> 0;
    this.#lastHeartbeatMs = this.#clock.nowMs();
    this.#transport.publish(
      this.#subjects.heartbeat(this.nodeId),
      encodeHeartbeat({
        nodeId: this.nodeId,
        nodeEpoch: this.nodeEpoch,
        seq: this.#heartbeatSeq,
        sentAtWallMs: wallClockMs(),
        role,
      }),
    );
    this.#stats.heartbeatsSent++;
  }

  #invalid(
    reason:
      | DecodeFailure
      | "wrong-type"
      | "other-node-run"
      | "older-aggregator"
      | "future-aggregator",
  ): void {
    this.#stats.invalidMessages[reason] = (this.#stats.invalidMessages[reason] ?? 0) + 1;
  }

  #countDropped(dropped: Record<EntryDropReason, number>): void {
    for (const [reason, n] of Object.entries(dropped)) {
      if (n > 0) this.#stats.invalidEntries[reason] = (this.#stats.invalidEntries[reason] ?? 0) + n;
    }
  }

  /**
   * The aggregator spoke: a newer epoch replaces an older one. An older one is ignored while the
   * run this node follows is heard (a late message from a dead run, or a forgery); once that run
   * has been silent past `staleAfterMs` (the loss policy is in force) it is taken: an epoch is a
   * run's start on its host's wall clock, and a run restarted on a host whose clock is behind
   * the last one's would otherwise be ignored until its clock caught up.
   */
  #heardFrom(aggregatorEpoch: number): boolean {
    const rewound = aggregatorEpoch < this.#aggregatorEpoch;
    if (rewound && !this.#lost) {
      this.#invalid("older-aggregator");
      return false;
    }
    // An epoch is its run's start on the wall clock: one far ahead of ours is forged (or from a
    // host whose clock is badly wrong). Taken, it would make this node ignore every real
    // aggregator run until one started later than it claims.
    if (aggregatorEpoch > wallClockMs() + MAX_EPOCH_AHEAD_MS) {
      this.#invalid("future-aggregator");
      return false;
    }
    if (rewound) {
      // The grants of the silent run would outrank this one's (higher epoch): drop them. Keys
      // then decide as the loss policy did until the new run's first grants, which come with
      // its next tick; the counts themselves are kept and re-sent (below).
      this.#stats.aggregatorRewinds++;
      this.#limiter.global.dropGrants();
      this.#resyncWhenHeard = true;
    }
    if (aggregatorEpoch !== this.#aggregatorEpoch) this.#epochHeardSinceMs = this.#clock.nowMs();
    this.#aggregatorEpoch = aggregatorEpoch;
    this.#lastAggregatorMs = this.#clock.nowMs();
    if (!this.#everHeard) {
      this.#everHeard = true;
      this.#limiter.global.setStaticHold(Number.NEGATIVE_INFINITY); // the aggregator is there
      this.#markReady(true);
    }
    if (this.#lost) this.#setLost(false);
    if (this.#resyncWhenHeard) {
      // The aggregator is back on the server (it subscribes before it publishes); it may have
      // come back after us, so what we re-sent at our reconnect may have reached nobody.
      this.#resyncWhenHeard = false;
      this.#linkUnsure = false;
      this.#resyncDue = true;
      this.#limiter.global.markAllDirty();
    }
    return true;
  }

  #onUpdate(bytes: Uint8Array): void {
    const r = decode(bytes);
    if (!r.ok) {
      this.#invalid(r.reason);
      return;
    }
    this.#countDropped(r.droppedEntries);
    const m = r.message;
    if (m.type !== "rate-update") {
      this.#invalid("wrong-type");
      return;
    }
    if (m.targetNodeId !== this.nodeId || m.targetNodeEpoch !== this.nodeEpoch) {
      this.#invalid("other-node-run");
      return;
    }
    if (!this.#heardFrom(m.aggregatorEpoch)) return;
    this.#stats.updatesReceived++;
    if (this.#firstUnansweredMs >= 0) {
      this.#propagation.record((this.#clock.nowMs() - this.#firstUnansweredMs) / 1000);
      this.#firstUnansweredMs = -1;
    }
    const g = this.#limiter.global;
    let implausible = 0;
    for (const group of m.groups) {
      for (const e of group.entries) {
        this.#stats.grantsReceived++;
        if (g.applyGrant(group.rule, e.key, m.aggregatorEpoch, e) === "implausible") implausible++;
      }
    }
    if (implausible > 0) this.#implausibleGrants(implausible, m.aggregatorId);
  }

  /**
   * Grants that no aggregator could have sent (more than the rule allows, or a version jump no
   * tick explains) were dropped: counted as invalid entries, and said once per
   * IMPLAUSIBLE_WARNING_MS with the count since, since it means someone can publish updates to
   * this node (check the server's permissions, docs/operations.md).
   */
  #implausibleGrants(n: number, aggregatorId: string): void {
    const dropped = this.#stats.invalidEntries;
    dropped["implausible-grant"] = (dropped["implausible-grant"] ?? 0) + n;
    this.#implausibleSinceWarning += n;
    const now = this.#clock.nowMs();
    if (now - this.#lastImplausibleWarningMs < IMPLAUSIBLE_WARNING_MS) return;
    this.#lastImplausibleWarningMs = now;
    this.#warn(
      `Sluice node ${this.nodeId} dropped ${this.#implausibleSinceWarning} implausible grant(s) ` +
        `(the latest in an update naming aggregator "${aggregatorId}"): it gave more than the rule ` +
        "allows or jumped versions; someone may be publishing forged rate updates. Check that " +
        "only aggregators may publish to the updates subjects.",
    );
    this.#implausibleSinceWarning = 0;
  }

  #onDefaults(bytes: Uint8Array): void {
    const r = decode(bytes);
    if (!r.ok) {
      this.#invalid(r.reason);
      return;
    }
    const m = r.message;
    if (m.type !== "rule-defaults") {
      this.#invalid("wrong-type");
      return;
    }
    if (!this.#heardFrom(m.aggregatorEpoch)) return;
    this.#stats.defaultsReceived++;
    this.#onTickHeard();
    if (!(m.liveNodes >= 1) || m.liveNodes === this.#stats.liveNodes) return;
    // A fewer-nodes count from an aggregator run heard for less than two heartbeat intervals is
    // not believed yet: a restarted aggregator counts the nodes as their heartbeats arrive (0,
    // 1, 2, ...), and believing it would raise every ungranted key's default share to the whole
    // limit on every node at once. Two intervals is every node's next heartbeat, with margin; a
    // real departure is followed then, from the next broadcast.
    if (
      m.liveNodes < this.#stats.liveNodes &&
      this.#clock.nowMs() - this.#epochHeardSinceMs < this.#heartbeatIntervalMs * 2
    ) {
      this.#stats.liveNodesHeldBack++;
      return;
    }
    this.#stats.liveNodes = m.liveNodes;
    this.#aggregatorLiveNodes = m.liveNodes;
    this.#limiter.global.setLiveNodes(m.liveNodes);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.flush();
    // The last word: this node decides nothing more with its grants, so the aggregator can hand
    // what it held to the others now, not after the heartbeat TTL. From here on the limiter's
    // global rules follow their `onAggregatorLoss` policy, as with a silent aggregator.
    this.#sendHeartbeat(Role.nodeLeaving);
    this.#limiter.global.setAggregatorLost(true);
    this.#closed = true;
    for (const t of this.#timers) t.cancel();
    this.#phasedFlush?.cancel();
    this.#phasedFlush = undefined;
    this.#answerTimer?.cancel();
    this.#answerTimer = undefined;
    this.#markReady(false);
    this.#peerSub?.unsubscribe();
    this.#peerSub = undefined;
    for (const s of this.#subs) s.unsubscribe();
  }
}
