/** expressRateLimit in a real Express 5 app: the fields, a 429 problem, onLimited, skip. */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import express from "express";
import { expressRateLimit } from "../../src/http/index.js";
import { createLimiter } from "../../src/limiter/limiter.js";
import { listen, parsedField } from "./helpers/http-listen.js";

function limiterOf() {
  return createLimiter({
    rules: [
      { name: "burst", limit: 2, windowMs: 10_000 },
      { name: "daily", limit: 100, windowMs: 86_400_000 },
    ],
    sweepIntervalMs: 0,
  });
}

test("http express - two items per field, then a 429 problem with Retry-After", async () => {
  const limiter = limiterOf();
  const app = express();
  app.use(
    expressRateLimit(limiter, {
      rules: ["burst", "daily"],
      skip: (req) => req.path === "/health",
    }),
  );
  app.get("/", (_req, res) => {
    res.send("ok");
  });
  app.get("/health", (_req, res) => {
    res.send("up");
  });
  const s = await listen(createServer(app));
  try {
    const health = await fetch(`${s.url}/health`);
    assert.equal(health.headers.get("RateLimit"), null);
    await health.text();
    for (let i = 0; i < 2; i++) {
      const res = await fetch(s.url);
      assert.equal(res.status, 200);
      const rl = parsedField(res, "RateLimit")!;
      assert.deepEqual(Object.keys(rl), ["burst", "daily"]);
      assert.equal(rl["burst"]!["r"], 1 - i);
      assert.equal(rl["daily"]!["r"], 99 - i);
      assert.equal(await res.text(), "ok");
    }
    const res = await fetch(s.url);
    assert.equal(res.status, 429);
    assert.match(res.headers.get("Content-Type")!, /^application\/problem\+json/);
    assert.ok(Number(res.headers.get("Retry-After")) >= 1);
    const body = (await res.json()) as { "violated-policies": string[] };
    assert.deepEqual(body["violated-policies"], ["burst"]);
    assert.equal(limiter.peek("daily", "127.0.0.1").remaining, 97, "the refusal took nothing");
  } finally {
    await s.close();
    await limiter.close();
  }
});

test("http express - onLimited replaces the default answer; key by header", async () => {
  const limiter = limiterOf();
  const app = express();
  app.use(
    expressRateLimit(limiter, {
      rules: "burst",
      key: (req) => String(req.headers["x-api-key"]),
      onLimited: (_req, res) => {
        res.status(418).send("slow down");
      },
    }),
  );
  app.get("/", (_req, res) => {
    res.send("ok");
  });
  const s = await listen(createServer(app));
  try {
    const get = (k: string) => fetch(s.url, { headers: { "x-api-key": k } });
    for (let i = 0; i < 2; i++) await (await get("a")).text();
    const refused = await get("a");
    assert.equal(refused.status, 418);
    assert.equal(await refused.text(), "slow down");
    assert.equal(parsedField(refused, "RateLimit")!["burst"]!["r"], 0);
    const other = await get("b");
    assert.equal(other.status, 200);
    await other.text();
  } finally {
    await s.close();
    await limiter.close();
  }
});
