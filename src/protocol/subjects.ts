/**
 * Every NATS subject Sluice uses, versioned, in one place:
 *
 *     <prefix>.v1.decisions.<partition>.<nodeId>   node → aggregator           DecisionBatch
 *     <prefix>.v1.updates.<nodeId>                  aggregator → node           RateUpdate
 *     <prefix>.v1.heartbeats.<nodeId>               node → aggregator, nodes    Heartbeat
 *     <prefix>.v1.defaults                          aggregator → node           RuleDefaults
 *     <prefix>.v1.commands.<nodeId>                 node → aggregator, nodes    KeyCommand
 *
 * The layout follows roles so server permissions can say who may publish what: nodes publish
 * decisions and heartbeats only; only aggregators publish updates and defaults.
 */
import { InvalidArgumentError } from "../errors.js";
import { EXPECTED_ID, isId } from "./fields.js";
import { MAX_PARTITIONS } from "./partition.js";

/** The prefix of every subject unless configured. */
export const DEFAULT_SUBJECT_PREFIX = "ratelimit";
/** The subject version segment; bumps with an incompatible subject layout. */
export const SUBJECT_VERSION = "v1";

export interface SubjectOptions {
  /**
   * First token(s) of every subject: dot-separated tokens of `[A-Za-z0-9_-]`, at most 128
   * characters. Tests use a unique prefix each; deployments can isolate tenants with it.
   * @default "ratelimit"
   * @example "acme.ratelimit"
   */
  readonly prefix?: string;
}

/** The subjects under one prefix. */
export interface Subjects {
  readonly prefix: string;
  /**
   * `<prefix>.v1.decisions.<partition>.<nodeId>`. The sender's id is in the subject so NATS
   * permissions can pin each node user to its own id, and the aggregator drops a batch whose
   * `nodeId` differs from it: a node cannot report counts in another node's name.
   */
  decisions(partition: number, nodeId: string): string;
  /** `<prefix>.v1.decisions.*.*`: every partition and node, for a single aggregator. */
  readonly allDecisions: string;
  /** `<prefix>.v1.decisions.<partition>.*`: one partition, every node. */
  partitionDecisions(partition: number): string;
  /** `<prefix>.v1.updates.<nodeId>`; throws for an id that is not a subject token. */
  updates(nodeId: string): string;
  /** `<prefix>.v1.updates.*`: every node's updates (monitoring). */
  readonly allUpdates: string;
  /** `<prefix>.v1.heartbeats.<nodeId>`: where `nodeId` sends its heartbeats. */
  heartbeat(nodeId: string): string;
  /** `<prefix>.v1.heartbeats.*`: every sender's heartbeats. */
  readonly heartbeats: string;
  readonly defaults: string;
  /** `<prefix>.v1.commands.<nodeId>`: where `nodeId` sends key administration. */
  commands(nodeId: string): string;
  /** `<prefix>.v1.commands.*`: every sender's key administration. */
  readonly allCommands: string;
}

/** The id a sender put in the last token of a decisions or heartbeats subject. */
export function senderOf(subject: string): string {
  return subject.slice(subject.lastIndexOf(".") + 1);
}

const PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/** Builds the subject set for a prefix. Throws {@link InvalidArgumentError} on a bad prefix. */
export function createSubjects(options: SubjectOptions = {}): Subjects {
  const prefix = options.prefix ?? DEFAULT_SUBJECT_PREFIX;
  if (typeof prefix !== "string" || prefix.length > 128 || !PREFIX.test(prefix)) {
    throw new InvalidArgumentError(
      "prefix",
      "dot-separated tokens of [A-Za-z0-9_-], at most 128 characters",
      prefix,
    );
  }
  const base = `${prefix}.${SUBJECT_VERSION}`;
  return {
    prefix,
    decisions(partition, nodeId) {
      checkPartition(partition);
      if (!isId(nodeId)) throw new InvalidArgumentError("nodeId", EXPECTED_ID, nodeId);
      return `${base}.decisions.${partition}.${nodeId}`;
    },
    allDecisions: `${base}.decisions.*.*`,
    partitionDecisions(partition) {
      checkPartition(partition);
      return `${base}.decisions.${partition}.*`;
    },
    updates(nodeId) {
      if (!isId(nodeId)) throw new InvalidArgumentError("nodeId", EXPECTED_ID, nodeId);
      return `${base}.updates.${nodeId}`;
    },
    allUpdates: `${base}.updates.*`,
    heartbeat(nodeId) {
      if (!isId(nodeId)) throw new InvalidArgumentError("nodeId", EXPECTED_ID, nodeId);
      return `${base}.heartbeats.${nodeId}`;
    },
    heartbeats: `${base}.heartbeats.*`,
    defaults: `${base}.defaults`,
    commands(nodeId) {
      if (!isId(nodeId)) throw new InvalidArgumentError("nodeId", EXPECTED_ID, nodeId);
      return `${base}.commands.${nodeId}`;
    },
    allCommands: `${base}.commands.*`,
  };
}

function checkPartition(partition: number): void {
  if (!(Number.isInteger(partition) && partition >= 0 && partition < MAX_PARTITIONS)) {
    throw new InvalidArgumentError(
      "partition",
      `an integer >= 0 and < ${MAX_PARTITIONS}`,
      partition,
    );
  }
}

/** True for a node or aggregator id usable as a subject token: `[A-Za-z0-9_-]{1,64}`. */
export function isValidNodeId(value: unknown): value is string {
  return isId(value);
}
