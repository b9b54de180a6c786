/** Sluice's public API. Everything a user imports is listed here by name. */

// Distributed mode: node agent, aggregator, transports, wire protocol.
export { createNodeAgent, type NodeAgent } from "./agent/node-agent.js";
export type { NodeAgentOptions } from "./agent/node-agent-options.js";
export type { NodeAgentStats } from "./agent/node-agent-stats.js";
export { defaultNodeId } from "./agent/node-id.js";
export {
  type AggregatorGroupOptions,
  type AggregatorService,
  type AggregatorServiceOptions,
  type AggregatorServiceStats,
  createAggregatorService,
} from "./aggregator/aggregator-service.js";
export { type AllocationInput, allocate } from "./aggregator/allocator.js";
export { assignPartitions } from "./aggregator/assignment.js";
export type { GroupMemberStats } from "./aggregator/group-member.js";
export type { GroupEntry, GroupStore, GroupWatch } from "./aggregator/group-store.js";
export { gcra } from "./algorithms/gcra.js";
export { slidingWindow } from "./algorithms/sliding-window.js";
export { tokenBucket } from "./algorithms/token-bucket.js";
export type { Algorithm, AlgorithmName, AlgorithmParams, Decision } from "./algorithms/types.js";
export {
  type Clock,
  ManualClock,
  monotonicClock,
  type TimerHandle,
  wallClockMs,
} from "./clock/clock.js";
export { ConfigError, DEMO_RULES, loadRules } from "./config/rules-file.js";
export {
  AbortedError,
  ClosedError,
  DeadlineExceededError,
  InvalidArgumentError,
  SluiceError,
  UnknownRuleError,
} from "./errors.js";
export type { GlobalControl } from "./limiter/global-control.js";
export type { AccountingEntry, ChangeCursor, ChangeVisitor } from "./limiter/key-change.js";
export {
  DECISION_LATENCY_BOUNDS_S,
  EXPONENTIAL_SCALE,
  type ExponentialSnapshot,
  type HistogramSnapshot,
  PROPAGATION_LATENCY_BOUNDS_S,
} from "./limiter/latency-histogram.js";
export {
  type AccountingSnapshot,
  createLimiter,
  type Limiter,
  type RuleStats,
} from "./limiter/limiter.js";
export type { AcquireOptions, LimiterOptions } from "./limiter/limiter-options.js";
export type {
  AggregatorLossPolicy,
  CompiledRule,
  RuleConfig,
  RuleMode,
  StoreFailurePolicy,
} from "./limiter/rule.js";
export { StoreUnavailableError, type StrictStore } from "./limiter/strict-store.js";
export { type DecodeOptions, decode } from "./protocol/decode.js";
export type {
  DecodeFailure,
  DecodeResult,
  EntryDropReason,
  SignatureStatus,
} from "./protocol/decode-result.js";
export { encode } from "./protocol/encode.js";
export type { EncodeOptions } from "./protocol/frame.js";
export type {
  DecisionBatch,
  DecisionEntry,
  GrantEntry,
  Heartbeat,
  Message,
  RateUpdate,
  RuleDefaults,
} from "./protocol/messages.js";
export { decisionPartition } from "./protocol/partition.js";
export {
  createSigner,
  createVerifier,
  generateKeyPair,
  type KeySigner,
  type KeyVerifier,
  type Signer,
  type Verifier,
} from "./protocol/signing.js";
export { createSubjects, type Subjects } from "./protocol/subjects.js";
export {
  createRedisCheckpointStore,
  type RedisCheckpointStore,
  type RedisCheckpointStoreOptions,
} from "./store/redis/checkpoint-store.js";
export type { RedisConnectionOptions } from "./store/redis/connection.js";
export {
  createRedisStrictStore,
  type RedisStrictStore,
  type RedisStrictStoreOptions,
  type RedisStrictStoreStats,
} from "./store/redis/strict-store.js";
export {
  ATTR as TELEMETRY_ATTRIBUTES,
  INSTRUMENTS,
  type InstrumentSpec,
} from "./telemetry/instruments.js";
export {
  createTelemetry,
  type ObserveLimiterOptions,
  type OtlpOptions,
  type PrometheusOptions,
  type Telemetry,
  type TelemetryOptions,
  TelemetryStartError,
  type Unobserve,
} from "./telemetry/telemetry.js";
export { createMemoryBus, type MemoryBus, type MemoryTransport } from "./transport/memory.js";
export {
  createMemoryGroupStore,
  type MemoryGroupStore,
} from "./transport/memory-group-store.js";
export {
  type KvGroupStore,
  type KvGroupStoreOptions,
  openKvGroupStore,
} from "./transport/nats/kv-group-store.js";
export {
  connectNats,
  type NatsTlsOptions,
  type NatsTransportOptions,
} from "./transport/nats/nats-transport.js";
export {
  type Subscription,
  type Transport,
  type TransportStatus,
  TransportUnavailableError,
} from "./transport/transport.js";
