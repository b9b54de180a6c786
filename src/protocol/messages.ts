/**
 * The four messages of the protocol (format version `FORMAT_VERSION`), as plain objects.
 * Encoders take the `...Fields` shapes (the `type` tag is optional there); `decode()` returns the
 * tagged {@link Message}.
 *
 * Times are wall-clock milliseconds since the Unix epoch (`sentAtWallMs`, epochs) and serve
 * only clock-offset estimates and run identity; rate math never uses them. Counts are in cost
 * units.
 */

/**
 * Which side sent a heartbeat. `nodeLeaving` is a node's last heartbeat, sent when its agent
 * closes: it decides no more hits with its grants, so the aggregator drops it at once instead
 * of after the heartbeat TTL.
 */
export const Role = { node: 1, aggregator: 2, nodeLeaving: 3 } as const;
export type Role = (typeof Role)[keyof typeof Role];

/** One key's cumulative counters in a {@link DecisionBatch}. */
export interface DecisionEntry {
  /** The limit key: 1 to 1024 UTF-8 bytes. */
  readonly key: string;
  /** Identifies one incarnation of the key on the node (u32); compared for equality only. */
  readonly generation: number;
  /** Cumulative admitted cost of this key generation since the node epoch; finite, >= 0. */
  readonly admitted: number;
  /** Cumulative rejected cost of this key generation since the node epoch; finite, >= 0. */
  readonly rejected: number;
  /** True the first time the node reports this key generation (its counts are all new). */
  readonly isNew: boolean;
  /**
   * The grant the node holds for this key generation, consistent with the counts above: the
   * aggregator epoch it came from (0 when none; finite, >= 0), its version (u32) and allowance
   * (finite, >= 0). The aggregator learns from it what the node may still admit.
   */
  readonly grantEpoch: number;
  readonly grantVersion: number;
  readonly allowance: number;
  /**
   * Admitted cost since the node last reported this key (finite, >= 0). Cumulative counts make
   * every other use idempotent; this one lets an aggregator that has not seen the key's stream
   * before (it restarted) count the hits of this report instead of only using it as a baseline.
   */
  readonly admittedSinceLast: number;
  /**
   * How long before this batch was sent, on average, the hits of `admittedSinceLast` were
   * admitted, ms (finite, >= 0; 0 when none). A duration on the node's monotonic clock, so no
   * clock comparison between hosts: the aggregator bins the hits at its receipt time minus this.
   */
  readonly ageMs: number;
}

/** One rule's entries. A message may hold several groups for the same rule. */
export interface RuleGroup<E> {
  /** Rule name: 1 to 64 UTF-8 bytes. */
  readonly rule: string;
  readonly entries: readonly E[];
}

/** Node → aggregator: what the node admitted and rejected, cumulatively, per key. */
export interface DecisionBatchFields {
  /** The sending node; `[A-Za-z0-9_-]{1,64}`. */
  readonly nodeId: string;
  /** Identifies one run of the node (its start time in wall ms, plus randomness); finite, >= 0. */
  readonly nodeEpoch: number;
  /**
   * Sequence number of the send (u32, wraps). Parts of a split send share it, so receivers
   * must not deduplicate by `seq`: cumulative counters already make repeats harmless.
   */
  readonly seq: number;
  /** Sender's wall clock at send, ms; finite, >= 0. */
  readonly sentAtWallMs: number;
  /**
   * The newest owner epoch the node knows for the batch's partition (0 when none, or under a
   * lone aggregator); finite, >= 0. A new owner of the partition learns from it that the node's
   * report was sent after the node heard of it, so the grants it reports are all it holds.
   */
  readonly ownerEpoch?: number;
  readonly groups: readonly RuleGroup<DecisionEntry>[];
}

/** One key's grant in a {@link RateUpdate}. */
export interface GrantEntry {
  /** The limit key: 1 to 1024 UTF-8 bytes. */
  readonly key: string;
  /** The key generation this grant is for (u32), as the node reported it. */
  readonly generation: number;
  /** Per-key grant version (u32); a node applies only a newer one. */
  readonly version: number;
  /**
   * Cumulative admitted cost of this key generation up to which the node may admit;
   * finite, >= 0.
   */
  readonly allowance: number;
  /**
   * What of `allowance` is usable at receipt; the rest becomes usable linearly over `rampMs`
   * (the node's monotonic clock): the aggregator hands out budget as the window frees it, not
   * a tick ahead. Equal to `allowance` (or above it) for a grant usable at once; finite, >= 0.
   */
  readonly rampFrom: number;
  /** How long after receipt all of `allowance` is usable, ms; finite, >= 0. */
  readonly rampMs: number;
  /**
   * How long, from the aggregator's tick that sent this grant, until the key's global window
   * next frees capacity beyond what is handed out, ms (finite, >= 0): what a node out of room
   * answers as `retryAfterMs`. A duration, never a wall time. It is a lower bound: the freed
   * capacity is granted at the aggregator's next tick after that (up to a sync interval later)
   * and may go to another node.
   */
  readonly retryAfterMs: number;
}

/**
 * A decisions partition and its owner epoch, as an aggregator of a group holds it. Owner epochs
 * of one partition only grow (each claim or transfer gets a higher one): a node takes grants and
 * defaults for a partition only from its newest owner epoch.
 */
export interface PartitionOwner {
  /** The partition, an integer in [0, 65535]. */
  readonly partition: number;
  /** Its owner epoch; finite, > 0. */
  readonly epoch: number;
}

/** Aggregator → one node: grants for that node's keys. */
export interface RateUpdateFields {
  /** The sending aggregator; `[A-Za-z0-9_-]{1,64}`. */
  readonly aggregatorId: string;
  /** Identifies one run of the aggregator; finite, >= 0. */
  readonly aggregatorEpoch: number;
  /** Sequence number of the send (u32); parts of a split send share it. */
  readonly seq: number;
  /** The node these grants are for; `[A-Za-z0-9_-]{1,64}`. */
  readonly targetNodeId: string;
  /** The run of that node the grants answer; a node ignores grants for another epoch. */
  readonly targetNodeEpoch: number;
  /** Sender's wall clock at send, ms; finite, >= 0. */
  readonly sentAtWallMs: number;
  /**
   * The partitions the sender owns as a member of an aggregator group, with their owner epochs
   * (at most {@link MAX_OWNERS}); a grant applies only if its key's partition is listed here at
   * the newest owner epoch the node knows of, and with that epoch. Empty (or absent when
   * encoding) for a lone aggregator: its `aggregatorEpoch` covers every partition.
   */
  readonly owners?: readonly PartitionOwner[];
  readonly groups: readonly RuleGroup<GrantEntry>[];
}

/** Liveness of a node or an aggregator; the receiver estimates clock offset from it. */
export interface HeartbeatFields {
  /** The sender's id (a node's or an aggregator's); `[A-Za-z0-9_-]{1,64}`. */
  readonly nodeId: string;
  /** The sender's run identity; finite, >= 0. */
  readonly nodeEpoch: number;
  /** Sequence number (u32). */
  readonly seq: number;
  /** Sender's wall clock at send, ms; finite, >= 0. Offset ≈ receivedWall − sentAtWallMs. */
  readonly sentAtWallMs: number;
  readonly role: Role;
}

/** One rule's default share in a {@link RuleDefaults}. */
export interface RuleDefault {
  /** Rule name: 1 to 64 UTF-8 bytes. */
  readonly rule: string;
  /** What a node may admit for a key it has no grant for: limit ÷ live nodes, in cost per window. */
  readonly defaultShare: number;
}

/** Aggregator → every node: the default share of each rule. */
export interface RuleDefaultsFields {
  readonly aggregatorId: string;
  readonly aggregatorEpoch: number;
  /** Sequence number (u32); parts of a split send share it. */
  readonly seq: number;
  readonly sentAtWallMs: number;
  /** Live nodes the shares were computed for (u16). */
  readonly liveNodes: number;
  /**
   * The group's number of decisions partitions (u16, at most {@link MAX_OWNERS}); 0 (or absent
   * when encoding) for a lone aggregator. Nodes of a group must split their reports into as many.
   */
  readonly partitions?: number;
  /** As in {@link RateUpdateFields.owners}: what the sender owns; its defaults apply to those. */
  readonly owners?: readonly PartitionOwner[];
  readonly rules: readonly RuleDefault[];
}

/** What a {@link KeyCommandFields} does to its key. */
export type KeyOp = "reset" | "penalty" | "reward" | "block";

/**
 * A node → the aggregators and the other nodes: key administration on a global rule, as called
 * on the sending node (which has applied it already).
 */
export interface KeyCommandFields {
  /** The sender's id; `[A-Za-z0-9_-]{1,64}`. */
  readonly nodeId: string;
  /** The sender's run identity; finite, >= 0. */
  readonly nodeEpoch: number;
  /** Sequence number (u32), per sender. */
  readonly seq: number;
  readonly sentAtWallMs: number;
  readonly op: KeyOp;
  /** Rule name: 1 to 64 UTF-8 bytes. */
  readonly rule: string;
  /** The key: 1 to 1024 UTF-8 bytes. */
  readonly key: string;
  /** `penalty`, `reward`: the cost charged or refunded, > 0; else 0. */
  readonly cost: number;
  /** `block`: how long, ms, > 0; else 0. */
  readonly durationMs: number;
}

export interface DecisionBatch extends DecisionBatchFields {
  readonly type: "decision-batch";
  readonly ownerEpoch: number;
}
export interface RateUpdate extends RateUpdateFields {
  readonly type: "rate-update";
  readonly owners: readonly PartitionOwner[];
}
export interface Heartbeat extends HeartbeatFields {
  readonly type: "heartbeat";
}
export interface KeyCommand extends KeyCommandFields {
  readonly type: "key-command";
}
export interface RuleDefaults extends RuleDefaultsFields {
  readonly type: "rule-defaults";
  readonly partitions: number;
  readonly owners: readonly PartitionOwner[];
}

/** Most decisions partitions of an aggregator group, and so most owners listed in a message. */
export const MAX_OWNERS = 256;

/** Any decoded message; switch on `type`. */
export type Message = DecisionBatch | RateUpdate | Heartbeat | RuleDefaults | KeyCommand;
