/** Sluice's public API. Everything a user imports is listed here by name. */

export { gcra } from "./algorithms/gcra.js";
export { slidingWindow } from "./algorithms/sliding-window.js";
export { tokenBucket } from "./algorithms/token-bucket.js";
export type { Algorithm, AlgorithmName, AlgorithmParams, Decision } from "./algorithms/types.js";
export { type Clock, ManualClock, monotonicClock, type TimerHandle } from "./clock/clock.js";
export {
  AbortedError,
  ClosedError,
  DeadlineExceededError,
  InvalidArgumentError,
  SluiceError,
  UnknownRuleError,
} from "./errors.js";
export type { AccountingEntry, ChangeVisitor } from "./limiter/key-table.js";
export {
  type AccountingSnapshot,
  type AcquireOptions,
  createLimiter,
  type GlobalControl,
  type Limiter,
  type LimiterOptions,
  type RuleStats,
} from "./limiter/limiter.js";
export type {
  AggregatorLossPolicy,
  CompiledRule,
  RuleConfig,
  RuleMode,
  StoreFailurePolicy,
} from "./limiter/rule.js";
export { StoreUnavailableError, type StrictStore } from "./limiter/strict-store.js";
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
