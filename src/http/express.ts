/**
 * Express 5 adapter: `app.use(expressRateLimit(limiter, { rules }))`. Structural types only, so
 * Sluice never loads Express.
 */
import type { Limiter } from "../limiter/limiter.js";
import type { RateLimitOptions } from "./options.js";
import { settleOptions } from "./options.js";
import { PROBLEM_CONTENT_TYPE } from "./problem.js";
import { createRequestLimiter } from "./request-limit.js";

/** What the middleware reads of an Express request. */
export interface ExpressRequestLike {
  readonly ip?: string | undefined;
}
/** What the middleware writes on an Express response. */
export interface ExpressResponseLike {
  append(name: string, value: string): unknown;
  status(code: number): unknown;
  type(contentType: string): unknown;
  send(body: string): unknown;
}
export type ExpressNext = (error?: unknown) => void;

export type ExpressRateLimitOptions<
  Req extends ExpressRequestLike = ExpressRequestLike,
  Res extends ExpressResponseLike = ExpressResponseLike,
> = RateLimitOptions<Req, Res>;

export function expressRateLimit<
  Req extends ExpressRequestLike = ExpressRequestLike,
  Res extends ExpressResponseLike = ExpressResponseLike,
>(
  limiter: Limiter,
  options: ExpressRateLimitOptions<Req, Res>,
): (req: Req, res: Res, next: ExpressNext) => Promise<void> {
  const core = createRequestLimiter(settleOptions<Req, Res>(limiter, options));
  const onLimited = core.options.onLimited;
  return async (req, res, next) => {
    try {
      const outcome = await core.limit(req, (r) => r.ip);
      if (outcome === undefined) return next();
      for (const [name, value] of outcome.headers) res.append(name, value);
      if (!outcome.refused) return next();
      if (onLimited !== undefined) {
        await onLimited(req, res, outcome.decision);
        return;
      }
      res.status(outcome.status);
      res.type(PROBLEM_CONTENT_TYPE);
      res.send(JSON.stringify(outcome.problem));
    } catch (error) {
      next(error);
    }
  };
}
