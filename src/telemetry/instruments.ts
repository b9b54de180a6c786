/**
 * The one place that names Sluice's instruments and their attributes.
 *
 * Every instrument is read at collection time from counters the limiter, the node agent and the
 * aggregator already keep in plain numbers and typed arrays: observable instruments for counts
 * and levels, a MetricProducer for the two latency histograms. Nothing here runs per decision.
 *
 * Attributes are bounded by construction: rule names (configuration), outcomes, node and
 * aggregator ids (bounded by the fleet), message types, directions and drop reasons (enums).
 * A limit key is never an attribute; a view with an allow-list of the keys below enforces that
 * for every `ratelimit.*` instrument, whatever a future caller passes.
 */

/** Attribute keys, as they appear on OTLP points and (unchanged) as Prometheus labels. */
export const ATTR = {
  /** Rule name, from configuration. */
  rule: "rule",
  /** `admitted` or `rejected` (decisions); `applied` or `ignored` (grants received). */
  outcome: "outcome",
  /** Node id of the service process (`[A-Za-z0-9_-]{1,64}`). */
  node: "node",
  /** Aggregator id. */
  aggregator: "aggregator",
  /** Why a message or entry was dropped (a decode failure or a routing reason). */
  reason: "reason",
  /** Message type: `batch`, `heartbeat`, `update`, `defaults`. */
  type: "type",
  /** `sent` or `received`. */
  direction: "direction",
} as const;

export const ALLOWED_ATTRIBUTES: readonly string[] = Object.values(ATTR);

export type InstrumentKind = "counter" | "updowncounter" | "gauge" | "histogram";

export interface InstrumentSpec {
  /** OTel name; Prometheus shows it with `.` as `_` (and `_total` on counters). */
  readonly name: string;
  readonly kind: InstrumentKind;
  /** UCUM unit; `{x}` annotations are dimensionless counts of x. */
  readonly unit: string;
  readonly description: string;
  readonly attributes: readonly string[];
  /** Where the value comes from. */
  readonly source: string;
}

function spec(
  name: string,
  kind: InstrumentKind,
  unit: string,
  attributes: readonly string[],
  source: string,
  description: string,
): InstrumentSpec {
  return { name, kind, unit, attributes, source, description };
}

const { rule, outcome, node, aggregator, reason, type, direction } = ATTR;

/** Every instrument, by a short handle. docs/telemetry.md has the same table. */
export const INSTRUMENTS = {
  // --- node: limiter ---
  decisions: spec(
    "ratelimit.decisions",
    "counter",
    "{hit}",
    [rule, outcome, node],
    "limiter.stats()[].admittedHits / rejectedHits / shadowedHits",
    "Hits decided, by rule and outcome: admitted, rejected, or shadowed (a would-be rejection of a rule in shadow mode, let through); every mode",
  ),
  decisionDuration: spec(
    "ratelimit.decision.duration",
    "histogram",
    "s",
    [node],
    "limiter.decisionLatency()",
    "Time one check() takes, sampled: 1 call in latencySampleEvery (default 64) is timed",
  ),
  keys: spec(
    "ratelimit.keys",
    "updowncounter",
    "{key}",
    [rule, node],
    "limiter.stats()[].keys",
    "Keys held in the limiter's memory, by rule",
  ),
  keysEvicted: spec(
    "ratelimit.keys.evicted",
    "counter",
    "{key}",
    [rule, node],
    "limiter.stats()[].evictedKeys",
    "Keys evicted because the rule's maxKeys was reached",
  ),
  storeFailures: spec(
    "ratelimit.store.failures",
    "counter",
    "{decision}",
    [rule, node],
    "limiter.stats()[].storeFailures (strict rules)",
    "Strict decisions the shared store did not make in time, settled by onStoreFailure",
  ),
  grantsReceived: spec(
    "ratelimit.grants.received",
    "counter",
    "{grant}",
    [rule, outcome, node],
    "limiter.stats()[].grantsApplied / grantsIgnored / grantsImplausible (global rules)",
    "Grants that reached the limiter: applied, ignored (stale, or for a key no longer held) or implausible (more than the rule allows, or a version jump: dropped)",
  ),
  ruleLimit: spec(
    "ratelimit.rule.limit",
    "gauge",
    "{hit}",
    [rule, node],
    "limiter.rules[].limit",
    "The rule's configured limit per window, per key (global rules: for all nodes together)",
  ),
  // --- node: agent ---
  messages: spec(
    "ratelimit.messages",
    "counter",
    "{message}",
    [type, direction, node, aggregator],
    "agent.stats() / aggregator stats(): batches, heartbeats, updates, defaults",
    "Protocol messages sent and received (node points carry node, aggregator points aggregator)",
  ),
  entries: spec(
    "ratelimit.batch.entries",
    "counter",
    "{entry}",
    [direction, node, aggregator],
    "agent.stats().entriesSent / aggregator stats().entries",
    "Per-key entries in decision batches, sent by nodes and received by the aggregator",
  ),
  invalidMessages: spec(
    "ratelimit.invalid.messages",
    "counter",
    "{message}",
    [reason, node, aggregator],
    "agent / aggregator stats().invalidMessages",
    "Messages dropped whole, by reason (decode failures, wrong type, other node run, older aggregator)",
  ),
  invalidEntries: spec(
    "ratelimit.invalid.entries",
    "counter",
    "{entry}",
    [reason, node, aggregator],
    "agent / aggregator stats().invalidEntries",
    "Entries dropped from otherwise valid messages, by reason",
  ),
  propagationDuration: spec(
    "ratelimit.propagation.duration",
    "histogram",
    "s",
    [node],
    "agent.stats().propagation",
    "From publishing the first batch after a grant to the arrival of the next grant on the node",
  ),
  grantStaleness: spec(
    "ratelimit.grant.staleness",
    "gauge",
    "s",
    [node],
    "agent.stats().aggregatorSilentMs",
    "Time since the aggregator last spoke to this node (no point until it has spoken once)",
  ),
  aggregatorLost: spec(
    "ratelimit.aggregator.lost",
    "gauge",
    "{boolean}",
    [node],
    "agent.stats().aggregatorLost",
    "1 while the node applies onAggregatorLoss (aggregator silent past staleAfterMs, or never heard)",
  ),
  agentLiveNodes: spec(
    "ratelimit.agent.live_nodes",
    "gauge",
    "{node}",
    [node],
    "agent.stats().liveNodes",
    "Live nodes as this node last heard from the aggregator (it divides default shares by it)",
  ),
  // --- aggregator ---
  liveNodes: spec(
    "ratelimit.nodes.live",
    "gauge",
    "{node}",
    [aggregator],
    "aggregator stats().liveNodes (membership)",
    "Nodes the aggregator holds as alive (heartbeat within the node TTL)",
  ),
  usageRatio: spec(
    "ratelimit.usage.ratio",
    "gauge",
    "1",
    [rule, aggregator],
    "aggregator usage()[].maxRatio",
    "Global window admitted / limit of the rule's hottest key; above 1 is overshoot",
  ),
  windowAdmitted: spec(
    "ratelimit.window.admitted",
    "gauge",
    "{hit}",
    [rule, aggregator],
    "aggregator usage()[].admittedInWindow",
    "Admitted cost in the global windows of all the rule's keys, summed",
  ),

  aggregatorDecisions: spec(
    "ratelimit.aggregator.decisions",
    "counter",
    "{hit}",
    [rule, outcome, aggregator],
    "aggregator usage()[].admittedCounted / rejectedCounted",
    "Hits the aggregator counted from the nodes' reports, in cost units, by global rule and outcome (compare with ratelimit.decisions of the nodes)",
  ),
  aggregatorKeys: spec(
    "ratelimit.aggregator.keys",
    "updowncounter",
    "{key}",
    [rule, aggregator],
    "aggregator usage()[].keys",
    "Keys with a global window held by the aggregator, by rule",
  ),
  grantsSent: spec(
    "ratelimit.grants.sent",
    "counter",
    "{grant}",
    [aggregator],
    "aggregator stats().grantsSent",
    "Grants sent to nodes",
  ),
  clockOffset: spec(
    "ratelimit.clock.offset.max",
    "gauge",
    "s",
    [aggregator],
    "max |aggregator stats().nodes[].clockOffsetMs|",
    "Largest estimated offset between a live node's wall clock and the aggregator's (metrics only; never used in rate math)",
  ),
  ticks: spec(
    "ratelimit.aggregator.ticks",
    "counter",
    "{tick}",
    [aggregator],
    "aggregator stats().ticks",
    "Allocation rounds run",
  ),
  tickDuration: spec(
    "ratelimit.aggregator.tick.duration",
    "gauge",
    "s",
    [aggregator],
    "aggregator stats().lastTickMs",
    "Time the last allocation round took",
  ),
} as const satisfies Record<string, InstrumentSpec>;

export type InstrumentHandle = keyof typeof INSTRUMENTS;
