import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { DeadlineExceededError } from "../../src/errors.js";
import { createLimiter, type Limiter } from "../../src/limiter/limiter.js";
import { DEADLINE_HEADER, guardHandler, request } from "../../src/nats-service/index.js";
import { SHARED_NATS, uniquePrefix } from "./helpers/cluster-procs.js";

/** Slack for scheduling and the network in deadline assertions, ms. */
const MARGIN_MS = 60;
const RESERVE_MS = 20;

interface Chain {
  readonly a: string;
  readonly limiter: Limiter;
  /** Budgets C received, ms. */
  readonly cBudgets: number[];
  /** For each request B forwarded: ms from B's receipt to its forward, and the budget it got. */
  readonly bForwards: { waitedMs: number; receivedMs: number }[];
  stop(): Promise<void>;
}

/** A → B (guarded: one request per `windowMs`) → C, each a subscription on `nc`. */
function startChain(nc: NatsConnection, windowMs: number, cDelayMs = 0): Chain {
  const p = uniquePrefix("nsc");
  const limiter = createLimiter({
    rules: [{ name: "b", algorithm: "token-bucket", limit: 1, windowMs }],
    sweepIntervalMs: 0,
  });
  const cBudgets: number[] = [];
  const bForwards: { waitedMs: number; receivedMs: number }[] = [];
  const subs = [
    nc.subscribe(`${p}.c`, {
      callback: (_e, m) => {
        cBudgets.push(Number(m.headers?.get(DEADLINE_HEADER)));
        setTimeout(() => m.respond("c"), cDelayMs);
      },
    }),
    nc.subscribe(`${p}.b`, {
      callback: (() => {
        const receipts = new WeakMap<object, number>();
        const guarded = guardHandler(limiter, { rule: "b", key: () => "b" }, async (_e, m: Msg) => {
          const receivedMs = Number(m.headers?.get(DEADLINE_HEADER));
          bForwards.push({ waitedMs: performance.now() - (receipts.get(m) ?? 0), receivedMs });
          const reply = await request(nc, `${p}.c`, m.data, {
            deadline: m,
            reserveMs: RESERVE_MS,
          }).catch((e: Error) => e);
          m.respond(reply instanceof Error ? `error:${reply.name}` : `b>${reply.string()}`);
        });
        return (err: Error | null, m: Msg) => {
          receipts.set(m, performance.now());
          guarded(err, m);
        };
      })(),
    }),
    nc.subscribe(`${p}.a`, {
      callback: (_e, m) => {
        void request(nc, `${p}.b`, "", { timeoutMs: Number(m.string()) }).then(
          (reply) => m.respond(reply.headers?.get("Nats-Service-Error-Code") || reply.string()),
          (e: Error) => m.respond(`error:${e.name}`),
        );
      },
    }),
  ];
  return {
    a: `${p}.a`,
    limiter,
    cBudgets,
    bForwards,
    async stop() {
      for (const s of subs) s.unsubscribe();
      await limiter.close();
    },
  };
}

describe("nats-service chain of three over real NATS", () => {
  let nc: NatsConnection;
  before(async () => {
    nc = await connect({ servers: SHARED_NATS });
  });
  after(async () => {
    await nc.close();
  });

  /** A's request with a budget; returns its reply and how long A's caller waited. */
  async function callA(
    chain: Chain,
    budgetMs: number,
  ): Promise<{ reply: string; elapsedMs: number }> {
    await nc.flush();
    const start = performance.now();
    const reply = await nc.request(chain.a, String(budgetMs), { timeout: 5000 });
    return { reply: reply.string(), elapsedMs: performance.now() - start };
  }

  it("chain - B waits for capacity within the deadline; C receives less, by B's wait and reserve", async () => {
    const chain = startChain(nc, 300);
    assert.equal((await callA(chain, 2000)).reply, "b>c"); // takes B's only token
    const { reply, elapsedMs } = await callA(chain, 1000);
    assert.equal(reply, "b>c");
    const second = chain.bForwards[1]!;
    assert.ok(second.waitedMs > 100, `B waited ${second.waitedMs} ms for capacity`);
    const cBudget = chain.cBudgets[1]!;
    assert.ok(
      cBudget <= second.receivedMs - second.waitedMs - RESERVE_MS + 1,
      `C got ${cBudget} ms`,
    );
    assert.ok(cBudget > 0);
    assert.ok(elapsedMs <= 1000 + MARGIN_MS, `A's caller waited ${elapsedMs} ms`);
    await chain.stop();
  });

  it("chain - when B's wait would pass the caller's deadline it refuses at once with 504; C is never called", async () => {
    const chain = startChain(nc, 5000);
    assert.equal((await callA(chain, 2000)).reply, "b>c");
    const { reply, elapsedMs } = await callA(chain, 400);
    assert.equal(reply, "504");
    assert.ok(elapsedMs < 400, `refused after ${elapsedMs} ms: it slept`);
    assert.equal(chain.cBudgets.length, 1);
    await chain.stop();
  });

  it("chain - nothing waits past A's deadline, even when C is slow", async () => {
    const chain = startChain(nc, 100, 2000);
    const { reply, elapsedMs } = await callA(chain, 300);
    assert.equal(reply, "error:TimeoutError");
    assert.ok(elapsedMs <= 300 + MARGIN_MS, `A's caller waited ${elapsedMs} ms`);
    assert.ok(chain.cBudgets[0]! <= 300 - RESERVE_MS);
    await chain.stop();
  });

  it("chain - a deadline too short to forward is a DeadlineExceededError, nothing sent", async () => {
    await assert.rejects(
      request(nc, `${uniquePrefix("nsc")}.none`, "", { timeoutMs: 10, reserveMs: 20 }),
      DeadlineExceededError,
    );
  });
});
