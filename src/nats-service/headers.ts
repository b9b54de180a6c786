/**
 * Header names and service error codes of the NATS service edge. Durations in headers are
 * milliseconds or seconds as named; never wall-clock times, because hosts' clocks drift.
 */

/** Remaining time budget of a request, in ms (a duration, decimal, >= 0). */
export const DEADLINE_HEADER = "Sluice-Deadline-Ms";
/** The `@nats-io/services` error code header (the code as decimal text). */
export const SERVICE_ERROR_CODE_HEADER = "Nats-Service-Error-Code";
/** The `@nats-io/services` error description header. */
export const SERVICE_ERROR_HEADER = "Nats-Service-Error";
/** Seconds until a retry may be admitted, rounded up (as HTTP's `Retry-After`). */
export const RETRY_AFTER_HEADER = "Retry-After";
/** Milliseconds until a retry may be admitted, rounded up: the precise form of `Retry-After`. */
export const RETRY_AFTER_MS_HEADER = "Sluice-Retry-After-Ms";

/** Service error codes the guard replies with (HTTP's meanings). */
export const ServiceErrorCode = {
  /** The request carried a malformed `Sluice-Deadline-Ms`. */
  badDeadline: 400,
  /** A rule refused the request. */
  limited: 429,
  /** The request's deadline passed, or capacity cannot come before it. */
  deadlineExceeded: 504,
} as const;
