/** `sluice/nats-service`: a guard for NATS request handlers, with deadlines that carry over. */
export {
  deadlineOf,
  forwardBudgetMs,
  type LocalDeadline,
  localDeadline,
  MAX_DEADLINE_MS,
  type ParsedDeadline,
  parseDeadlineHeader,
  remainingMs,
} from "./deadline.js";
export {
  type GuardedHandler,
  type GuardStats,
  guard,
  guardEndpoint,
  guardHandler,
  type ServiceErrorResponder,
} from "./guard.js";
export type { GuardOptions, Refusal, RefusalReason, RequestMsg } from "./guard-options.js";
export {
  DEADLINE_HEADER,
  RETRY_AFTER_HEADER,
  RETRY_AFTER_MS_HEADER,
  SERVICE_ERROR_CODE_HEADER,
  SERVICE_ERROR_HEADER,
  ServiceErrorCode,
} from "./headers.js";
export { type DeadlineRequestOptions, outgoingHeaders, request } from "./request.js";
