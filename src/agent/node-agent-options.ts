/**
 * What a node agent is given: the options with their units, defaults and bounds, and the checks
 * that settle them or throw `InvalidArgumentError` naming the first bad one.
 */

import { type Clock, monotonicClock } from "../clock/clock.js";
import { InvalidArgumentError } from "../errors.js";
import type { Limiter } from "../limiter/limiter.js";
import { DEFAULT_SYNC_INTERVAL_MS, SYNC_INTERVAL_BOUNDS } from "../protocol/limits.js";
import { createVerifier, type Verifier } from "../protocol/signing.js";
import { createSubjects, isValidNodeId, type Subjects } from "../protocol/subjects.js";
import type { Transport } from "../transport/transport.js";
import { optionalBoolean, optionalNumber } from "../validate.js";
import { defaultNodeId } from "./node-id.js";

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
  /**
   * Aggregator (or partition owner) silence after which keys holding a grant decide by this
   * node's own admissions in the window before (it re-uses only what they free: the nodes
   * together stay within the limit), until it speaks again or `staleAfterMs` passes, ms; 0: off.
   * @default 4 x syncIntervalMs, at least 100 (and under staleAfterMs)
   */
  readonly fallbackAfterMs?: number;
  /**
   * Decision subjects to spread batches over (1..65536). A lone aggregator reads them all; under
   * a group of aggregators the node takes the group's count from its rule defaults. @default 1
   */
  readonly partitions?: number;
  /**
   * The aggregator group's public keys (nkeys, `A...`; several while a key is rotated): rate
   * updates and rule defaults not signed by one of them are dropped and counted (`unsigned`,
   * `bad-signature`). Without it, signatures are not checked.
   */
  readonly verifyKeys?: readonly string[];
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

/** The agent's options, checked, with their defaults filled in. */
export interface SettledNodeAgentOptions {
  readonly limiter: Limiter;
  readonly transport: Transport;
  readonly clock: Clock;
  readonly warn: (message: string) => void;
  readonly nodeId: string;
  readonly subjects: Subjects;
  readonly syncIntervalMs: number;
  readonly heartbeatIntervalMs: number;
  readonly alignReports: boolean;
  readonly staleAfterMs: number;
  readonly partitions: number;
  readonly maxBatchKeys: number;
  readonly initialLiveNodes: number;
  readonly discoveryMs: number;
  readonly fallbackAfterMs: number;
  readonly verifier: Verifier | undefined;
}

export function settleNodeAgentOptions(o: NodeAgentOptions): SettledNodeAgentOptions {
  const clock = o.clock ?? monotonicClock;
  if (o.onWarning !== undefined && typeof o.onWarning !== "function") {
    throw new InvalidArgumentError("onWarning", "a function", o.onWarning);
  }
  const warn = o.onWarning ?? ((message) => process.emitWarning(message, "SluiceWarning"));
  const nodeId = o.nodeId ?? defaultNodeId();
  if (!isValidNodeId(nodeId)) {
    throw new InvalidArgumentError(
      "nodeId",
      "a string of 1-64 characters from A-Z a-z 0-9 _ -",
      o.nodeId,
    );
  }
  const syncIntervalMs = optionalNumber(
    "syncIntervalMs",
    o.syncIntervalMs,
    DEFAULT_SYNC_INTERVAL_MS,
    SYNC_INTERVAL_BOUNDS,
  );
  const heartbeatIntervalMs = optionalNumber("heartbeatIntervalMs", o.heartbeatIntervalMs, 500, {
    min: 50,
    max: 60_000,
  });
  const alignReports = optionalBoolean("alignReports", o.alignReports, true);
  const staleAfterMs = optionalNumber("staleAfterMs", o.staleAfterMs, 2000, { above: 0 });
  const partitions = optionalNumber("partitions", o.partitions, 1, {
    integer: true,
    min: 1,
    max: 65_536,
  });
  const maxBatchKeys = optionalNumber("maxBatchKeys", o.maxBatchKeys, 5000, {
    integer: true,
    min: 1,
  });
  const initialLiveNodes = optionalNumber("initialLiveNodes", o.initialLiveNodes, 1, {
    integer: true,
    min: 1,
    max: 65_535,
  });
  const discoveryMs = optionalNumber(
    "discoveryMs",
    o.discoveryMs,
    Math.max(100, 4 * syncIntervalMs),
    { min: 0, max: 60_000 },
  );
  const subjects = createSubjects(o.subjectPrefix === undefined ? {} : { prefix: o.subjectPrefix });
  return {
    limiter: o.limiter,
    transport: o.transport,
    clock,
    warn,
    nodeId,
    subjects,
    syncIntervalMs,
    heartbeatIntervalMs,
    alignReports,
    staleAfterMs,
    partitions,
    maxBatchKeys,
    initialLiveNodes,
    discoveryMs,
    fallbackAfterMs: optionalNumber(
      "fallbackAfterMs",
      o.fallbackAfterMs,
      Math.min(Math.max(100, 4 * syncIntervalMs), staleAfterMs / 2),
      { min: 0, max: 600_000 },
    ),
    verifier: o.verifyKeys === undefined ? undefined : createVerifier([...o.verifyKeys]),
  };
}
