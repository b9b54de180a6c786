import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ServiceError, Svcm } from "@nats-io/services";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { createLimiter } from "../../src/limiter/limiter.js";
import { DEADLINE_HEADER, guardEndpoint, guardHandler } from "../../src/nats-service/index.js";
import { SHARED_NATS, uniquePrefix } from "./helpers/cluster-procs.js";

describe("nats-service guard over real NATS", () => {
  let nc: NatsConnection;
  before(async () => {
    nc = await connect({ servers: SHARED_NATS });
  });
  after(async () => {
    await nc.close();
  });

  it("guard - a plain subscribe handler over its limit replies 429 with honest Retry-After, handler not run", async () => {
    const subject = `${uniquePrefix("nsg")}.plain`;
    const limiter = createLimiter({
      rules: [{ name: "rpc", limit: 2, windowMs: 5000 }],
      sweepIntervalMs: 0,
    });
    let runs = 0;
    const handler = guardHandler(limiter, { rule: "rpc" }, (_err, msg) => {
      runs++;
      msg.respond("ok");
    });
    const sub = nc.subscribe(subject, { callback: handler });
    await nc.flush();
    for (let i = 0; i < 2; i++)
      assert.equal((await nc.request(subject, "", { timeout: 1000 })).string(), "ok");
    const refused = await nc.request(subject, "", { timeout: 1000 });
    assert.equal(runs, 2);
    assert.equal(refused.headers?.get("Nats-Service-Error-Code"), "429");
    assert.match(refused.headers?.get("Nats-Service-Error") ?? "", /rpc/);
    const retryMs = Number(refused.headers?.get("Sluice-Retry-After-Ms"));
    const retryS = Number(refused.headers?.get("Retry-After"));
    assert.ok(retryMs > 0 && retryMs <= 5000, String(retryMs));
    assert.equal(retryS, Math.ceil(retryMs / 1000));
    nc.publish(subject, ""); // no reply subject: dropped
    await nc.flush();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(
      {
        admitted: handler.stats().admitted,
        limited: handler.stats().limited,
        dropped: handler.stats().dropped,
      },
      { admitted: 2, limited: 1, dropped: 1 },
    );
    sub.unsubscribe();
    await limiter.close();
  });

  it("guard - a request whose deadline passed gets 504 and a malformed one 400, the handler never runs", async () => {
    const subject = `${uniquePrefix("nsg")}.deadline`;
    const limiter = createLimiter({
      rules: [{ name: "rpc", limit: 100, windowMs: 1000 }],
      sweepIntervalMs: 0,
    });
    let runs = 0;
    const sub = nc.subscribe(subject, {
      callback: guardHandler(limiter, { rule: "rpc" }, (_e, m) => {
        runs++;
        m.respond("ok");
      }),
    });
    await nc.flush();
    for (const [value, code] of [
      ["0", "504"],
      ["-3", "400"],
      ["soon", "400"],
    ] as const) {
      const h = headers();
      h.set(DEADLINE_HEADER, value);
      const reply = await nc.request(subject, "", { timeout: 1000, headers: h });
      assert.equal(reply.headers?.get("Nats-Service-Error-Code"), code, value);
    }
    assert.equal(runs, 0);
    sub.unsubscribe();
    await limiter.close();
  });

  it("guard - an @nats-io/services endpoint over its limit: the client sees a ServiceError 429", async () => {
    const name = uniquePrefix("nsg").replace(/[^-\w]/g, "-");
    const limiter = createLimiter({
      rules: [
        { name: "per-subject", limit: 1, windowMs: 5000 },
        { name: "wide", limit: 100, windowMs: 5000 },
      ],
      sweepIntervalMs: 0,
    });
    // @nats-io/services bundles its own nats-core copy: the same connection, another type identity.
    const srv = await new Svcm(nc as unknown as ConstructorParameters<typeof Svcm>[0]).add({
      name,
      version: "0.0.1",
    });
    let runs = 0;
    srv.addEndpoint("echo", {
      subject: `${name}.echo`,
      handler: guardEndpoint(limiter, { rules: ["per-subject", "wide"] }, (_e, m) => {
        runs++;
        m.respond("ok");
      }),
    });
    await nc.flush();
    assert.equal((await nc.request(`${name}.echo`, "", { timeout: 1000 })).string(), "ok");
    const refused = await nc.request(`${name}.echo`, "", { timeout: 1000 });
    const asServiceMsg = refused as unknown as Parameters<typeof ServiceError.isServiceError>[0];
    assert.ok(ServiceError.isServiceError(asServiceMsg));
    assert.equal(ServiceError.toServiceError(asServiceMsg)?.code, 429);
    assert.ok(Number(refused.headers?.get("Retry-After")) >= 1);
    assert.equal(runs, 1);
    await srv.stop();
    await limiter.close();
  });
});
