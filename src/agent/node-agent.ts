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
 * While it follows no aggregator (at start, and while it is lost) the agent counts its peers by
 * their heartbeats (peer-discovery.ts): the `static` share is then limit / the nodes it knows of
 * (at least the aggregator's last count). Until one is heard, for `discoveryMs` after start, keys
 * the static policy decides are refused: eight nodes started before their aggregator would
 * otherwise each admit the whole limit. Reports go out at one phase of the aggregator's tick
 * (report-phasing.ts). Under a group of aggregators, each partition follows its own owner
 * (partition-owners.ts): grants only from its newest owner epoch, the loss policy for the
 * partitions whose owner is silent.
 */
import { type Clock, type TimerHandle, wallClockMs } from "../clock/clock.js";
import { LatencyHistogram, PROPAGATION_LATENCY_BOUNDS_S } from "../limiter/latency-histogram.js";
import type { Limiter } from "../limiter/limiter.js";
import { encodeDecisionBatch } from "../protocol/decision-batch.js";
import { type DecodeOptions, decode } from "../protocol/decode.js";
import { encodeHeartbeat } from "../protocol/heartbeat.js";
import { type PartitionOwner, Role } from "../protocol/messages.js";
import type { Subjects } from "../protocol/subjects.js";
import type { Subscription, Transport } from "../transport/transport.js";
import { FirstReportDoubts } from "./first-report-doubts.js";
import { ImplausibleGrantWarning } from "./implausible-grant-warning.js";
import { KeyCommandLink } from "./key-commands.js";
import { type NodeAgentOptions, settleNodeAgentOptions } from "./node-agent-options.js";
import {
  type AgentCounters,
  countDroppedEntries,
  countInvalidMessage,
  type InvalidMessageReason,
  type NodeAgentStats,
  newCounters,
} from "./node-agent-stats.js";
import { PartitionOwners } from "./partition-owners.js";
import { PeerDiscovery } from "./peer-discovery.js";
import { ReportBatch } from "./report-batch.js";
import { ReportPhasing } from "./report-phasing.js";

/**
 * How far ahead of this node's wall clock an aggregator epoch may be (hosts' clocks disagree by
 * far less than this when they are synchronised at all).
 */
const MAX_EPOCH_AHEAD_MS = 10 * 60_000;

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

class Agent implements NodeAgent {
  readonly nodeId: string;
  readonly nodeEpoch: number;
  readonly #limiter: Limiter;
  readonly #transport: Transport;
  readonly #clock: Clock;
  readonly #subjects: Subjects;
  readonly #syncIntervalMs: number;
  readonly #staleAfterMs: number;
  readonly #fallbackAfterMs: number;
  /** An aggregator group's partition owners, as heard (its partition count is the node's). */
  readonly #owners: PartitionOwners;
  /** Signatures are checked when the agent has the group's keys. */
  readonly #decodeOptions: DecodeOptions;
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
  readonly #phasing: ReportPhasing;
  readonly #doubts = new FirstReportDoubts();
  readonly #peers: PeerDiscovery;
  /** Monotonic time of the first batch published since the last grant arrived; -1 if none. */
  #firstUnansweredMs = -1;
  readonly #propagation = new LatencyHistogram(PROPAGATION_LATENCY_BOUNDS_S);
  readonly #implausibleWarning: ImplausibleGrantWarning;
  /** The live count last given by an aggregator, or `initialLiveNodes` before any. */
  #aggregatorLiveNodes: number;
  #everHeard = false;
  readonly #ready: Promise<boolean>;
  #markReady: (heard: boolean) => void = () => {};
  #discoveryTimer: TimerHandle | undefined;
  readonly #stats: AgentCounters;
  #commands: KeyCommandLink | undefined;

  constructor(options: NodeAgentOptions) {
    const o = settleNodeAgentOptions(options);
    this.#limiter = o.limiter;
    this.#transport = o.transport;
    this.#clock = o.clock;
    this.#implausibleWarning = new ImplausibleGrantWarning(o.nodeId, o.clock, o.warn);
    this.nodeId = o.nodeId;
    this.#syncIntervalMs = o.syncIntervalMs;
    this.#heartbeatIntervalMs = o.heartbeatIntervalMs;
    this.#staleAfterMs = o.staleAfterMs;
    this.#fallbackAfterMs = o.fallbackAfterMs;
    this.#owners = new PartitionOwners(o.partitions);
    this.#decodeOptions = o.verifier === undefined ? {} : { verify: o.verifier };
    this.#maxBatchKeys = o.maxBatchKeys;
    this.#aggregatorLiveNodes = o.initialLiveNodes;
    this.#subjects = o.subjects;
    this.nodeEpoch = wallClockMs() + Math.random();
    this.#globalRules = new Set(
      this.#limiter.rules.filter((r) => r.mode === "global").map((r) => r.name),
    );
    this.#stats = newCounters(this.nodeId, this.nodeEpoch, o.initialLiveNodes);
    this.#phasing = new ReportPhasing({
      clock: this.#clock,
      syncIntervalMs: this.#syncIntervalMs,
      align: o.alignReports,
      flush: () => this.flush(),
    });
    this.#peers = new PeerDiscovery({
      transport: this.#transport,
      subjects: this.#subjects,
      clock: this.#clock,
      nodeId: this.nodeId,
      heartbeatIntervalMs: this.#heartbeatIntervalMs,
      answer: () => this.#heartbeat(),
      onChange: (known) => this.#applyPeerCount(known),
    });
    const g = this.#limiter.global;
    g.setLiveNodes(o.initialLiveNodes);
    g.setSyncIntervalMs(this.#syncIntervalMs);
    g.setStaticHold(this.#clock.nowMs() + o.discoveryMs);
    this.#ready = new Promise((resolve) => {
      this.#markReady = (heard) => {
        this.#markReady = () => {};
        this.#discoveryTimer?.cancel();
        this.#discoveryTimer = undefined;
        resolve(heard);
      };
    });
    this.#discoveryTimer = this.#clock.setTimer(() => this.#markReady(false), o.discoveryMs);
    this.#setLost(true); // until the aggregator speaks, the loss policy decides
    this.#start();
  }

  /** Subscribes to what the aggregator sends and to the link's status; starts the timers. */
  #start(): void {
    const { nodeId, nodeEpoch } = this;
    const link = { limiter: this.#limiter, transport: this.#transport, subjects: this.#subjects };
    this.#commands = new KeyCommandLink({ ...link, nodeId, nodeEpoch, counters: this.#stats });
    this.#subs.push(
      this.#transport.subscribe(this.#subjects.updates(this.nodeId), (bytes) =>
        this.#onUpdate(bytes),
      ),
      this.#transport.subscribe(this.#subjects.defaults, (bytes) => this.#onDefaults(bytes)),
      this.#transport.onStatus((s) => {
        // Batches published shortly before the link broke may be lost with it, too.
        if (s.type === "disconnected") this.#doubts.disconnected();
        else if (s.type === "reconnected") {
          this.#stats.resyncs++;
          this.#limiter.global.markAllDirty();
          this.#doubts.resyncWhenHeard();
        }
      }),
    );
    this.#timers.push(
      this.#clock.setRepeating(() => this.#tick(), this.#syncIntervalMs),
      this.#clock.setRepeating(() => this.#earlyFlush(), Math.max(5, this.#syncIntervalMs / 5)),
      this.#clock.setRepeating(() => this.#heartbeat(), this.#heartbeatIntervalMs),
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
    const g = this.#limiter.global;
    let silent = now - this.#lastAggregatorMs > this.#staleAfterMs;
    if (this.#owners.following) {
      // Under a group: each partition whose owner is silent follows the loss policy alone.
      const lost = this.#owners.refreshLost(now, this.#staleAfterMs);
      if (lost.changed !== null) g.setPartitionsLost(lost.changed, this.#owners.partitionOf);
      silent = lost.all;
    }
    if (silent !== this.#lost) this.#setLost(silent);
    const quiet = this.#owners.refreshSilent(now, this.#fallbackAfterMs, this.#lastAggregatorMs);
    if (quiet !== null) g.setSilent(quiet, this.#owners.partitionOf);
    if (this.#lost) this.#peers.expire(now);
    // Paced by the aggregator's ticks while heard (report-phasing.ts), else by our own interval.
    if (this.#phasing.dueOnOwnTimer(now)) this.flush();
  }

  #earlyFlush(): void {
    if (this.#limiter.global.pendingChanges() >= this.#maxBatchKeys) this.flush();
  }

  #setLost(lost: boolean): void {
    this.#lost = lost;
    this.#limiter.global.setAggregatorLost(lost);
    // While no aggregator is followed, the node counts its peers; an aggregator counts them now.
    if (lost) this.#peers.listen();
    else this.#peers.stop();
  }

  /**
   * The loss policy's share while no aggregator is followed: limit / the larger of the nodes
   * heard of (`known`, with this one) and the aggregator's last count.
   */
  #applyPeerCount(known: number): void {
    if (!this.#lost) return;
    const n = known > this.#aggregatorLiveNodes ? known : this.#aggregatorLiveNodes;
    if (n === this.#stats.liveNodes) return;
    this.#stats.liveNodes = n;
    this.#limiter.global.setLiveNodes(n);
  }

  flush(): void {
    if (this.#closed) return;
    const now = this.#clock.nowMs();
    this.#phasing.flushed(now);
    this.#doubts.beginFlush(now);
    const batch = this.#collect();
    this.#doubts.endFlush();
    if (batch.size > 0) this.#publish(batch);
  }

  /** Drains the limiter's global-rule changes into decision entries. */
  #collect(): ReportBatch {
    const batch = new ReportBatch(this.#owners.partitions);
    for (const p of this.#owners.takeMarkers()) batch.touch(p);
    const globalRules = this.#globalRules;
    const doubts = this.#doubts;
    this.#limiter.drain((c) => {
      if (globalRules.has(c.rule)) {
        batch.addChange(c, doubts.isFirst(c.rule, c.key, c.generation, c.isNew));
      }
    });
    return batch;
  }

  /** One decision batch per partition (split into frames that fit), on its subject. */
  #publish(batch: ReportBatch): void {
    this.#seq = (this.#seq + 1) >>> 0;
    const header = {
      nodeId: this.nodeId,
      nodeEpoch: this.nodeEpoch,
      seq: this.#seq,
      sentAtWallMs: wallClockMs(),
    };
    for (const { partition, groups, entries } of batch.partitions()) {
      this.#stats.entriesSent += entries;
      const ownerEpoch = this.#owners.epochOf(partition);
      const frames = encodeDecisionBatch({ ...header, ownerEpoch, groups });
      if (this.#firstUnansweredMs < 0) this.#firstUnansweredMs = this.#clock.nowMs();
      const subject = this.#subjects.decisions(partition, this.nodeId);
      for (const frame of frames) this.#transport.publish(subject, frame);
      this.#stats.batchesSent += frames.length;
    }
  }

  #heartbeat(): void {
    if (this.#closed) return;
    this.#sendHeartbeat(Role.node);
  }

  #sendHeartbeat(role: typeof Role.node | typeof Role.nodeLeaving): void {
    this.#heartbeatSeq = (this.#heartbeatSeq + 1) >>> 0;
    this.#peers.heartbeatSent(this.#clock.nowMs());
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

  #invalid(reason: InvalidMessageReason): void {
    countInvalidMessage(this.#stats, reason);
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
    // An epoch is its run's start on the wall clock: one far ahead is forged (or badly wrong);
    // taken, it would make this node ignore every real run until one started later than that.
    if (aggregatorEpoch > wallClockMs() + MAX_EPOCH_AHEAD_MS) {
      this.#invalid("future-aggregator");
      return false;
    }
    if (rewound) {
      // The silent run's grants would outrank this one's (higher epoch): drop them; keys decide
      // by the loss policy until the new run's first grants. Counts are kept and re-sent.
      this.#stats.aggregatorRewinds++;
      this.#limiter.global.dropGrants();
      this.#doubts.resyncWhenHeard();
    }
    if (aggregatorEpoch !== this.#aggregatorEpoch) {
      this.#epochHeardSinceMs = this.#clock.nowMs();
      if (this.#everHeard) this.#resync();
    }
    this.#aggregatorEpoch = aggregatorEpoch;
    this.#spoke(this.#clock.nowMs());
    return true;
  }

  /** A new aggregator run or owner: every key again, with when this node admitted its hits. */
  #resync(): void {
    this.#limiter.global.markAllDirty();
    this.#limiter.global.reportRecentNext();
  }

  /** An aggregator (or a group member) that this node follows spoke at `nowMs`. */
  #spoke(nowMs: number): void {
    this.#lastAggregatorMs = nowMs;
    if (!this.#everHeard) {
      this.#everHeard = true;
      this.#limiter.global.setStaticHold(Number.NEGATIVE_INFINITY); // the aggregator is there
      this.#markReady(true);
    }
    if (this.#lost) this.#setLost(false);
    // The aggregator is back on the server (it subscribes before it publishes); it may have
    // come back after us, so what we re-sent at our reconnect may have reached nobody.
    if (this.#doubts.aggregatorHeard()) this.#limiter.global.markAllDirty();
  }

  /** A group member spoke, listing `owners`: returns those at their newest epoch, followed. */
  #heardGroup(owners: readonly PartitionOwner[]): Map<number, number> {
    const now = this.#clock.nowMs();
    const seen = this.#owners.observe(owners, now, this.#staleAfterMs);
    if (seen.older > 0) this.#invalid("older-owner");
    if (seen.dropGrants) this.#limiter.global.dropGrants();
    if (seen.changed) this.#resync();
    if (seen.current.size > 0) this.#spoke(now);
    return seen.current;
  }

  #onUpdate(bytes: Uint8Array): void {
    const r = decode(bytes, this.#decodeOptions);
    if (!r.ok) {
      this.#invalid(r.reason);
      return;
    }
    countDroppedEntries(this.#stats, r.droppedEntries);
    const m = r.message;
    if (m.type !== "rate-update") {
      this.#invalid("wrong-type");
      return;
    }
    if (m.targetNodeId !== this.nodeId || m.targetNodeEpoch !== this.nodeEpoch) {
      this.#invalid("other-node-run");
      return;
    }
    const group = m.owners.length > 0 ? this.#heardGroup(m.owners) : undefined;
    if (group === undefined && !this.#heardFrom(m.aggregatorEpoch)) return;
    this.#stats.updatesReceived++;
    if (this.#firstUnansweredMs >= 0) {
      this.#propagation.record((this.#clock.nowMs() - this.#firstUnansweredMs) / 1000);
      this.#firstUnansweredMs = -1;
    }
    const g = this.#limiter.global;
    let implausible = 0;
    let older = 0;
    for (const { rule, entries } of m.groups) {
      for (const e of entries) {
        this.#stats.grantsReceived++;
        // Under a group, a grant is its partition owner's, at the newest epoch, or none.
        const epoch =
          group === undefined
            ? m.aggregatorEpoch
            : group.get(this.#owners.partitionOf(rule, e.key));
        if (epoch === undefined) older++;
        else if (g.applyGrant(rule, e.key, epoch, e) === "implausible") implausible++;
      }
    }
    if (older > 0) countDroppedEntries(this.#stats, { "older-owner": older });
    if (implausible > 0) {
      // Dropped: counted as invalid entries, and said (at most once a minute), since it means
      // someone can publish updates to this node.
      countDroppedEntries(this.#stats, { "implausible-grant": implausible });
      this.#implausibleWarning.dropped(implausible, m.aggregatorId);
    }
  }

  #onDefaults(bytes: Uint8Array): void {
    const r = decode(bytes, this.#decodeOptions);
    if (!r.ok) {
      this.#invalid(r.reason);
      return;
    }
    const m = r.message;
    if (m.type !== "rule-defaults") {
      this.#invalid("wrong-type");
      return;
    }
    if (m.owners.length > 0) {
      if (this.#owners.adopt(m.partitions)) {
        this.#limiter.global.setPartitionsLost(undefined, this.#owners.partitionOf);
        this.#limiter.global.markAllDirty();
      }
      if (this.#heardGroup(m.owners).size === 0) return; // nothing current in it
    } else if (!this.#heardFrom(m.aggregatorEpoch)) return;
    this.#stats.defaultsReceived++;
    this.#phasing.tickHeard();
    if (!(m.liveNodes >= 1) || m.liveNodes === this.#stats.liveNodes) return;
    // A fewer-nodes count from a run heard for under two heartbeat intervals is not believed: a
    // restarted aggregator counts nodes as heartbeats arrive (believed, every ungranted key
    // would get the whole limit on every node); a real departure is believed then.
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
    // The last word: no more decisions with its grants, so the aggregator can hand them to the
    // others now, not after the TTL. From here global rules follow `onAggregatorLoss`.
    this.#sendHeartbeat(Role.nodeLeaving);
    this.#limiter.global.setAggregatorLost(true);
    this.#closed = true;
    for (const t of this.#timers) t.cancel();
    this.#phasing.close();
    this.#peers.close();
    this.#commands?.close();
    this.#markReady(false);
    for (const s of this.#subs) s.unsubscribe();
  }
}
