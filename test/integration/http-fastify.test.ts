/**
 * fastifyRateLimit registered on a real Fastify 5 app: the hook reaches routes declared after
 * it at the root (no encapsulation), the fields, a 429 problem, shadow mode.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import Fastify from "fastify";
import { fastifyRateLimit } from "../../src/http/index.js";
import { createLimiter } from "../../src/limiter/limiter.js";
import { parsedField } from "./helpers/http-listen.js";

function limiterOf() {
  return createLimiter({
    rules: [{ name: "burst", limit: 2, windowMs: 10_000 }],
    sweepIntervalMs: 0,
  });
}

test("http fastify - fields on every route, then a 429 problem with Retry-After", async () => {
  const limiter = limiterOf();
  const app = Fastify();
  await app.register(fastifyRateLimit, { limiter, rules: "burst" });
  app.get("/", async () => "ok");
  const url = await app.listen({ port: 0, host: "127.0.0.1" });
  try {
    for (let i = 0; i < 2; i++) {
      const res = await fetch(url);
      assert.equal(res.status, 200);
      assert.equal(parsedField(res, "RateLimit")!["burst"]!["r"], 1 - i);
      assert.equal(parsedField(res, "RateLimit-Policy")!["burst"]!["q"], 2);
      assert.equal(await res.text(), "ok");
    }
    const res = await fetch(url);
    assert.equal(res.status, 429);
    assert.match(res.headers.get("Content-Type")!, /^application\/problem\+json/);
    assert.ok(Number(res.headers.get("Retry-After")) >= 1);
    const body = (await res.json()) as { status: number; "violated-policies": string[] };
    assert.equal(body.status, 429);
    assert.deepEqual(body["violated-policies"], ["burst"]);
  } finally {
    await app.close();
    await limiter.close();
  }
});

test("http fastify - shadow mode lets every request through with r=0 shown", async () => {
  const limiter = limiterOf();
  const app = Fastify();
  await app.register(fastifyRateLimit, { limiter, rules: "burst", shadow: true });
  app.get("/", async () => "ok");
  const url = await app.listen({ port: 0, host: "127.0.0.1" });
  try {
    let last: Response | undefined;
    for (let i = 0; i < 4; i++) {
      last = await fetch(url);
      assert.equal(last.status, 200);
      if (i < 3) await last.text();
    }
    assert.equal(parsedField(last!, "RateLimit")!["burst"]!["r"], 0);
    await last!.text();
    assert.equal(limiter.stats()[0]!.shadowedHits, 2);
  } finally {
    await app.close();
    await limiter.close();
  }
});

test("http fastify - a bad option fails the registration", async () => {
  const limiter = limiterOf();
  const app = Fastify();
  app.register(fastifyRateLimit, { limiter, rules: "nope" });
  await assert.rejects(async () => {
    await app.ready();
  }, /options\.rules/);
  await app.close();
  await limiter.close();
});
