/** What a node agent counts, as `NodeAgent.stats()` reports it, and the counting itself. */
import type { HistogramSnapshot } from "../limiter/latency-histogram.js";
import type { DecodeFailure, EntryDropReason } from "../protocol/decode-result.js";

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
  /** Key administration on global rules sent from this node, and applied here from others. */
  commandsSent: number;
  commandsApplied: number;
  /** Key administration from others for a rule this node has not as a global rule. */
  commandsIgnored: number;
  /**
   * Propagation latency: from publishing the first batch after the previous grant to the arrival
   * of the next grant, so the time one round of counts takes to come back as grants. Hits in that
   * batch were counted up to one sync interval earlier still.
   */
  propagation: HistogramSnapshot;
}

/** The counters an agent keeps; the rest of its stats is read when they are taken. */
export type AgentCounters = Omit<
  NodeAgentStats,
  "aggregatorLost" | "aggregatorSilentMs" | "propagation"
>;

/** Why a whole message was dropped: it failed to decode, or is not for this node to take. */
export type InvalidMessageReason =
  | DecodeFailure
  | "wrong-type"
  | "other-node-run"
  | "older-aggregator"
  | "future-aggregator"
  | "older-owner";

/** Every counter at zero, for node run (`nodeId`, `nodeEpoch`) starting with `liveNodes`. */
export function newCounters(nodeId: string, nodeEpoch: number, liveNodes: number): AgentCounters {
  return {
    nodeId,
    nodeEpoch,
    batchesSent: 0,
    entriesSent: 0,
    heartbeatsSent: 0,
    updatesReceived: 0,
    grantsReceived: 0,
    defaultsReceived: 0,
    invalidMessages: {},
    invalidEntries: {},
    liveNodes,
    resyncs: 0,
    commandsSent: 0,
    commandsApplied: 0,
    commandsIgnored: 0,
    liveNodesHeldBack: 0,
    aggregatorRewinds: 0,
  };
}

export function countInvalidMessage(c: AgentCounters, reason: InvalidMessageReason): void {
  c.invalidMessages[reason] = (c.invalidMessages[reason] ?? 0) + 1;
}

/** Entries dropped from an otherwise valid message, `n` by reason. */
export function countDroppedEntries(
  c: AgentCounters,
  dropped: Partial<Record<EntryDropReason | "implausible-grant" | "older-owner", number>>,
): void {
  for (const [reason, n] of Object.entries(dropped)) {
    if (n > 0) c.invalidEntries[reason] = (c.invalidEntries[reason] ?? 0) + n;
  }
}
