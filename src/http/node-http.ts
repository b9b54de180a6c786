/**
 * node:http adapter: `await limit(req, res)` before handling a request; false means it has
 * answered the refusal itself and the handler must stop.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Limiter } from "../limiter/limiter.js";
import type { RateLimitOptions } from "./options.js";
import { settleOptions } from "./options.js";
import { PROBLEM_CONTENT_TYPE } from "./problem.js";
import { createRequestLimiter } from "./request-limit.js";

export type NodeRateLimitOptions = RateLimitOptions<IncomingMessage, ServerResponse>;

const clientIp = (req: IncomingMessage) => req.socket.remoteAddress;

export function nodeRateLimit(
  limiter: Limiter,
  options: NodeRateLimitOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  const core = createRequestLimiter(
    settleOptions<IncomingMessage, ServerResponse>(limiter, options),
  );
  const onLimited = core.options.onLimited;
  return async (req, res) => {
    const outcome = await core.limit(req, clientIp);
    if (outcome === undefined) return true;
    for (const [name, value] of outcome.headers) res.appendHeader(name, value);
    if (!outcome.refused) return true;
    if (onLimited !== undefined) {
      await onLimited(req, res, outcome.decision);
      return false;
    }
    res.statusCode = outcome.status;
    res.setHeader("Content-Type", PROBLEM_CONTENT_TYPE);
    res.end(JSON.stringify(outcome.problem));
    return false;
  };
}
