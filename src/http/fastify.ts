/**
 * Fastify 5 plugin: `app.register(fastifyRateLimit, { limiter, rules })`, an onRequest hook.
 * It skips encapsulation the way fastify-plugin does (`Symbol.for("skip-override")`), so the
 * hook applies to every route of the instance it is registered on. Structural types only, so
 * Sluice never loads Fastify.
 */
import type { Limiter } from "../limiter/limiter.js";
import type { RateLimitOptions } from "./options.js";
import { settleOptions } from "./options.js";
import { PROBLEM_CONTENT_TYPE } from "./problem.js";
import { createRequestLimiter } from "./request-limit.js";

/** What the hook reads of a Fastify request. */
export interface FastifyRequestLike {
  readonly ip: string;
}
/** What the hook writes on a Fastify reply. */
export interface FastifyReplyLike {
  header(name: string, value: string): unknown;
  getHeader(name: string): unknown;
  code(statusCode: number): unknown;
  type(contentType: string): unknown;
  send(payload: string): unknown;
  readonly sent: boolean;
}
/** What the plugin needs of a Fastify instance. */
export interface FastifyInstanceLike {
  addHook(
    name: "onRequest",
    hook: (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<unknown>,
  ): unknown;
}

export type FastifyRateLimitOptions<
  Req extends FastifyRequestLike = FastifyRequestLike,
  Res extends FastifyReplyLike = FastifyReplyLike,
> = RateLimitOptions<Req, Res> & { readonly limiter: Limiter };

async function plugin(instance: FastifyInstanceLike, options: FastifyRateLimitOptions) {
  const { limiter, ...rest } = (options ?? {}) as FastifyRateLimitOptions;
  const core = createRequestLimiter(
    settleOptions<FastifyRequestLike, FastifyReplyLike>(limiter, rest),
  );
  const onLimited = core.options.onLimited;
  instance.addHook("onRequest", async (request, reply) => {
    const outcome = await core.limit(request, (r) => r.ip);
    if (outcome === undefined) return;
    for (const [name, value] of outcome.headers) appendHeader(reply, name, value);
    if (!outcome.refused) return;
    if (onLimited !== undefined) {
      await onLimited(request, reply, outcome.decision);
      return reply;
    }
    reply.code(outcome.status);
    reply.type(PROBLEM_CONTENT_TYPE);
    return reply.send(JSON.stringify(outcome.problem));
  });
}

/** Fastify's `header()` replaces; list fields split over several lines are joined instead. */
function appendHeader(reply: FastifyReplyLike, name: string, value: string) {
  const prior = reply.getHeader(name);
  reply.header(name, typeof prior === "string" ? `${prior}, ${value}` : value);
}

Object.defineProperty(plugin, Symbol.for("skip-override"), { value: true });
Object.defineProperty(plugin, Symbol.for("fastify.display-name"), { value: "sluice-rate-limit" });

export const fastifyRateLimit: (
  instance: FastifyInstanceLike,
  options: FastifyRateLimitOptions,
) => Promise<void> = plugin;
