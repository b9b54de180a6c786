/**
 * `sluice/http`: rate limiting middleware for Express, Fastify and node:http, with the IETF
 * RateLimit header fields and RFC 9457 problem bodies.
 */
export {
  type ExpressNext,
  type ExpressRateLimitOptions,
  type ExpressRequestLike,
  type ExpressResponseLike,
  expressRateLimit,
} from "./express.js";
export {
  type FastifyInstanceLike,
  type FastifyRateLimitOptions,
  type FastifyReplyLike,
  type FastifyRequestLike,
  fastifyRateLimit,
} from "./fastify.js";
export { formatHeaders, type HeaderPairs } from "./headers.js";
export { type NodeRateLimitOptions, nodeRateLimit } from "./node-http.js";
export { HEADER_FORMATS, type HeaderFormat, type RateLimitOptions } from "./options.js";
export { PARTITION_KEY_BYTES, partitionKeyOf } from "./partition-key.js";
export {
  PROBLEM_CONTENT_TYPE,
  QUOTA_EXCEEDED_TYPE,
  type QuotaExceededProblem,
  quotaExceeded,
} from "./problem.js";
export { type RuleState, ruleState } from "./rule-state.js";
