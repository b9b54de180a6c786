/**
 * nodeRateLimit on a real node:http server, requests by fetch, fields parsed with
 * structured-headers: refusals (429, Retry-After, problem JSON), several rules, skip, key, cost,
 * onLimited, shadow mode, headers off. The adapters share this core; the Express and Fastify
 * files check their own wiring.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import { nodeRateLimit, partitionKeyOf } from "../../src/http/index.js";
import { createLimiter, type Limiter } from "../../src/limiter/limiter.js";
import { listen, parsedField } from "./helpers/http-listen.js";

const DAY_MS = 86_400_000;

interface Problem {
  readonly type: string;
  readonly status: number;
  readonly "violated-policies": string[];
}

function limiterOf(): Limiter {
  return createLimiter({
    rules: [
      { name: "burst", limit: 3, windowMs: 60_000 },
      { name: "daily", limit: 5, windowMs: DAY_MS },
    ],
    sweepIntervalMs: 0,
  });
}

async function serve(
  limiter: Limiter,
  options: Parameters<typeof nodeRateLimit>[1],
  run: (url: string) => Promise<void>,
) {
  const limit = nodeRateLimit(limiter, options);
  const server = createServer(async (req, res) => {
    if (!(await limit(req, res))) return;
    res.end("ok");
  });
  const s = await listen(server);
  try {
    await run(s.url);
  } finally {
    await s.close();
    await limiter.close();
  }
}

test("http node - a refusal is a 429 problem with Retry-After, and the fields say r=0", async () => {
  await serve(limiterOf(), { rules: "burst" }, async (url) => {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(url);
      assert.equal(res.status, 200);
      const rl = parsedField(res, "RateLimit")!;
      assert.equal(rl["burst"]!["r"], 2 - i);
      assert.deepEqual(rl["burst"]!["pk"], new Uint8Array(partitionKeyOf("127.0.0.1")));
      assert.equal(res.headers.get("Retry-After"), null);
      await res.text();
    }
    const res = await fetch(url);
    assert.equal(res.status, 429);
    assert.equal(res.headers.get("Content-Type"), "application/problem+json");
    const retry = Number(res.headers.get("Retry-After"));
    assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 60, `Retry-After ${retry}`);
    const rl = parsedField(res, "RateLimit")!;
    assert.equal(rl["burst"]!["r"], 0);
    assert.equal(rl["burst"]!["t"], retry);
    const body = (await res.json()) as Problem;
    assert.equal(body.type, "https://iana.org/assignments/http-problem-types#quota-exceeded");
    assert.equal(body.status, 429);
    assert.deepEqual(body["violated-policies"], ["burst"]);
  });
});

test("http node - two rules show two items; a request one refuses consumes from neither", async () => {
  const limiter = limiterOf();
  await serve(limiter, { rules: ["burst", "daily"] }, async (url) => {
    const first = await fetch(url);
    const policy = parsedField(first, "RateLimit-Policy")!;
    assert.deepEqual(Object.keys(policy), ["burst", "daily"]);
    assert.equal(policy["burst"]!["q"], 3);
    assert.equal(policy["burst"]!["w"], 60);
    assert.equal(policy["daily"]!["q"], 5);
    assert.equal(policy["daily"]!["w"], 86400);
    await first.text();
    for (let i = 0; i < 2; i++) await (await fetch(url)).text();
    for (let i = 0; i < 3; i++) {
      const res = await fetch(url);
      assert.equal(res.status, 429);
      assert.deepEqual(((await res.json()) as Problem)["violated-policies"], ["burst"]);
    }
    assert.equal(limiter.peek("daily", "127.0.0.1").remaining, 5 - 3 - 1, "daily took only 3");
  });
});

test("http node - skip sends nothing and decides nothing; key and cost come from the request", async () => {
  const limiter = limiterOf();
  await serve(
    limiter,
    {
      rules: "daily",
      skip: (req) => req.url === "/health",
      key: async (req) => String(req.headers["x-user"]),
      cost: (req) => (req.url === "/heavy" ? 3 : 1),
    },
    async (url) => {
      const health = await fetch(`${url}/health`);
      assert.equal(health.headers.get("RateLimit"), null);
      await health.text();
      const heavy = await fetch(`${url}/heavy`, { headers: { "x-user": "ann" } });
      assert.equal(parsedField(heavy, "RateLimit")!["daily"]!["r"], 2);
      await heavy.text();
      const other = await fetch(url, { headers: { "x-user": "bob" } });
      assert.equal(parsedField(other, "RateLimit")!["daily"]!["r"], 4);
      await other.text();
      assert.equal(
        limiter.stats().find((s) => s.rule === "daily")!.admittedHits,
        2,
        "hits, not cost; /health decided nothing",
      );
    },
  );
});

test("http node - onLimited answers the refusal, with the fields already set", async () => {
  await serve(
    limiterOf(),
    {
      rules: "burst",
      cost: () => 4,
      onLimited: (_req, res, decision) => {
        res.statusCode = 503;
        res.end(`refused by ${decision.refusedBy}`);
      },
    },
    async (url) => {
      const res = await fetch(url);
      assert.equal(res.status, 503);
      assert.equal(await res.text(), "refused by 0");
      const rl = parsedField(res, "RateLimit")!;
      assert.equal(rl["burst"]!["t"], 60, "a cost that never fits reports the window");
      assert.equal(res.headers.get("Retry-After"), "60");
    },
  );
});

test("http node - shadow mode never refuses, shows r=0 and counts shadowed hits", async () => {
  const limiter = limiterOf();
  await serve(limiter, { rules: "burst", shadow: true }, async (url) => {
    const statuses = [];
    let last: Response | undefined;
    for (let i = 0; i < 5; i++) {
      last = await fetch(url);
      statuses.push(last.status);
      if (i < 4) await last.text();
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200]);
    assert.equal(parsedField(last!, "RateLimit")!["burst"]!["r"], 0);
    assert.equal(await last!.text(), "ok");
    const stats = limiter.stats().find((s) => s.rule === "burst")!;
    assert.equal(stats.shadowedHits, 2);
    assert.equal(stats.admittedHits, 3);
  });
});

test("http node - headers false sends no rate limit fields, only Retry-After on a 429", async () => {
  await serve(limiterOf(), { rules: "burst", headers: false, cost: () => 3 }, async (url) => {
    const ok = await fetch(url);
    assert.equal(ok.headers.get("RateLimit"), null);
    assert.equal(ok.headers.get("RateLimit-Policy"), null);
    await ok.text();
    const no = await fetch(url);
    assert.equal(no.status, 429);
    assert.equal(no.headers.get("RateLimit"), null);
    assert.ok(Number(no.headers.get("Retry-After")) >= 1);
    await no.text();
  });
});

test("http node - legacy and draft-6 formats for migrations", async () => {
  await serve(limiterOf(), { rules: ["burst", "daily"], headers: "legacy" }, async (url) => {
    const res = await fetch(url);
    assert.equal(res.headers.get("X-RateLimit-Limit"), "3");
    assert.equal(res.headers.get("X-RateLimit-Remaining"), "2");
    const reset = Number(res.headers.get("X-RateLimit-Reset"));
    assert.ok(reset > Date.now() / 1000 && reset <= Date.now() / 1000 + 61);
    await res.text();
  });
  await serve(limiterOf(), { rules: "daily", headers: "draft-6" }, async (url) => {
    const res = await fetch(url);
    assert.equal(res.headers.get("RateLimit-Limit"), "5");
    assert.equal(res.headers.get("RateLimit-Remaining"), "4");
    assert.equal(res.headers.get("RateLimit-Policy"), "5;w=86400");
    await res.text();
  });
});
