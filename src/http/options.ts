/**
 * Options of the HTTP middleware, declared once with their validation. Every framework adapter
 * (express, fastify, node:http) settles its options here, so a bad option fails at setup with an
 * `InvalidArgumentError` naming it, never on a request.
 */
import { InvalidArgumentError } from "../errors.js";
import type { Limiter } from "../limiter/limiter.js";
import type { MultiDecision } from "../limiter/multi-decision.js";
import {
  expectKnownKeys,
  expectObject,
  optionalBoolean,
  optionalFunction,
  optionalNumber,
} from "../validate.js";

/**
 * Which response header fields to send:
 * - `draft-11`: `RateLimit-Policy` and `RateLimit` as Structured Field Lists, one item per rule
 *   (draft-ietf-httpapi-ratelimit-headers-11; the same grammar as -09 and -10).
 * - `draft-8`, `draft-7`, `draft-6`: the earlier drafts as express-rate-limit writes them.
 * - `legacy`: `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds).
 * - `false`: none (`Retry-After` on a 429 is still sent).
 */
export type HeaderFormat = "draft-11" | "draft-8" | "draft-7" | "draft-6" | "legacy";

export const HEADER_FORMATS: readonly HeaderFormat[] = [
  "draft-11",
  "draft-8",
  "draft-7",
  "draft-6",
  "legacy",
];

/** A value or a promise of it: `key` and `cost` may be async. */
export type MaybePromise<T> = T | Promise<T>;

/** Options shared by every adapter; `Req` and `Res` are the framework's request and reply. */
export interface RateLimitOptions<Req, Res> {
  /**
   * The rule or rules a request must fit, by name. With several, a request must fit every rule,
   * and a refused request consumes from none.
   * @example ["burst", "daily"]
   */
  readonly rules: string | readonly string[];
  /**
   * The limit key of a request, e.g. a user or API-key id.
   * @default the client IP (`req.ip` in Express, `request.ip` in Fastify,
   *   `req.socket.remoteAddress` in node:http)
   */
  readonly key?: (req: Req) => MaybePromise<string>;
  /** Cost of a request, a finite number > 0. @default each rule's `cost` */
  readonly cost?: (req: Req) => MaybePromise<number>;
  /** True: the request is not limited (no decision, no headers). @default never */
  readonly skip?: (req: Req) => boolean;
  /** Header fields to send. @default "draft-11" */
  readonly headers?: HeaderFormat | false;
  /**
   * Send the partition key `pk` (12 bytes of SHA-256 of the limit key, never the key itself)
   * in `draft-11` and `draft-8` fields.
   * @default true
   */
  readonly partitionKey?: boolean;
  /**
   * Answers a refused request instead of the default 429 `application/problem+json`. The rate
   * limit headers and `Retry-After` are already set when it is called.
   */
  readonly onLimited?: (req: Req, res: Res, decision: MultiDecision) => unknown;
  /**
   * Never refuse: a request some rule refuses proceeds, consumes from none, and counts as a
   * shadowed hit in `limiter.stats()`; the headers still show the real state (`r=0`).
   * @default false
   */
  readonly shadow?: boolean;
  /** Status of the default refusal, an integer 400..599. @default 429 */
  readonly statusCode?: number;
}

/** Options after validation. */
export interface SettledOptions<Req, Res> {
  readonly limiter: Limiter;
  readonly rules: readonly string[];
  readonly key: ((req: Req) => MaybePromise<string>) | undefined;
  readonly cost: ((req: Req) => MaybePromise<number>) | undefined;
  readonly skip: ((req: Req) => boolean) | undefined;
  readonly headers: HeaderFormat | false;
  readonly partitionKey: boolean;
  readonly onLimited: ((req: Req, res: Res, decision: MultiDecision) => unknown) | undefined;
  readonly shadow: boolean;
  readonly statusCode: number;
}

const KNOWN = [
  "rules",
  "key",
  "cost",
  "skip",
  "headers",
  "partitionKey",
  "onLimited",
  "shadow",
  "statusCode",
];

/** Validates `options` against `limiter`; `extra` names adapter-only keys (e.g. `limiter`). */
export function settleOptions<Req, Res>(
  limiter: Limiter,
  options: unknown,
  extra: readonly string[] = [],
): SettledOptions<Req, Res> {
  if (typeof limiter !== "object" || limiter === null || typeof limiter.decideAll !== "function")
    throw new InvalidArgumentError("limiter", "a Limiter (createLimiter)", limiter);
  const o = expectObject("options", options);
  expectKnownKeys("options", o, [...KNOWN, ...extra]);
  return {
    limiter,
    rules: settleRules(limiter, o["rules"]),
    key: optionalFunction("options.key", o["key"]) as SettledOptions<Req, Res>["key"],
    cost: optionalFunction("options.cost", o["cost"]) as SettledOptions<Req, Res>["cost"],
    skip: optionalFunction("options.skip", o["skip"]) as SettledOptions<Req, Res>["skip"],
    headers: settleHeaders(o["headers"]),
    partitionKey: optionalBoolean("options.partitionKey", o["partitionKey"], true),
    onLimited: optionalFunction("options.onLimited", o["onLimited"]) as SettledOptions<
      Req,
      Res
    >["onLimited"],
    shadow: optionalBoolean("options.shadow", o["shadow"], false),
    statusCode: optionalNumber("options.statusCode", o["statusCode"], 429, {
      integer: true,
      min: 400,
      max: 599,
    }),
  };
}

function settleRules(limiter: Limiter, value: unknown): readonly string[] {
  const names = typeof value === "string" ? [value] : value;
  const known = limiter.rules.map((r) => r.name);
  if (!Array.isArray(names) || names.length === 0)
    throw new InvalidArgumentError(
      "options.rules",
      "a rule name or a non-empty array of them",
      value,
    );
  for (const [i, name] of names.entries()) {
    const at = typeof value === "string" ? "options.rules" : `options.rules[${i}]`;
    if (typeof name !== "string" || !known.includes(name))
      throw new InvalidArgumentError(
        at,
        `one of the limiter's rules (${known.map((k) => `\`${k}\``).join(", ")})`,
        name,
      );
    if (names.indexOf(name) !== i) throw new InvalidArgumentError(at, "a rule named once", name);
  }
  return [...names] as string[];
}

function settleHeaders(value: unknown): HeaderFormat | false {
  if (value === undefined) return "draft-11";
  if (value === false || HEADER_FORMATS.includes(value as HeaderFormat))
    return value as HeaderFormat | false;
  throw new InvalidArgumentError(
    "options.headers",
    `one of ${HEADER_FORMATS.map((f) => `"${f}"`).join(", ")} or false`,
    value,
  );
}
