/**
 * Signed updates over real NATS, on a server without authorization: a member of an aggregator
 * group signs its frames with the group's key, the nodes are given the group's public key, and a
 * forger who copies the real updates (owner epochs and all) sends plausible grants, unsigned or
 * signed with another key. The nodes drop and count every forgery, keep applying the real
 * grants, and the limit holds.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createNodeAgent, type NodeAgent } from "../../src/agent/node-agent.js";
import { createAggregatorService } from "../../src/aggregator/aggregator-service.js";
import { wallClockMs } from "../../src/clock/clock.js";
import { createLimiter, type Limiter } from "../../src/limiter/limiter.js";
import { decode } from "../../src/protocol/decode.js";
import { encode } from "../../src/protocol/encode.js";
import type { RateUpdate } from "../../src/protocol/messages.js";
import { createSigner, generateKeyPair } from "../../src/protocol/signing.js";
import { createSubjects } from "../../src/protocol/subjects.js";
import { openKvGroupStore } from "../../src/transport/nats/kv-group-store.js";
import { connectNats } from "../../src/transport/nats/nats-transport.js";
import { SHARED_NATS, sleep, uniquePrefix } from "./helpers/cluster-procs.js";

const LIMIT = 200;
const FORGERIES = 20;

test("cluster signed updates - forged grants, unsigned or signed with another key, are dropped and counted; the limit holds", async () => {
  const prefix = uniquePrefix("signed");
  const subjects = createSubjects({ prefix });
  const rules = [
    {
      name: "api",
      mode: "global" as const,
      algorithm: "sliding-window" as const,
      limit: LIMIT,
      windowMs: 1000,
    },
  ];
  const group = generateKeyPair();
  const intruder = createSigner(generateKeyPair().seed);
  const open: { close(): Promise<void> }[] = [];
  try {
    const aggTransport = await connectNats({ servers: SHARED_NATS, name: "signed-agg" });
    const forger = await connectNats({ servers: SHARED_NATS, name: "signed-forger" });
    open.push(aggTransport, forger);
    const store = await openKvGroupStore(aggTransport, {
      bucket: prefix.replace(/[^A-Za-z0-9_-]/g, "_"),
      ttlMs: 60_000,
    });
    open.push(store);
    const aggregator = createAggregatorService({
      rules: createLimiter({ rules, sweepIntervalMs: 0 }).rules,
      transport: aggTransport,
      subjectPrefix: prefix,
      warmupMs: 0,
      group: { store, partitions: 4, leaseMs: 600 },
      signer: createSigner(group.seed),
    });
    open.push(aggregator);
    await aggregator.started;
    // The forger learns what a real update to the victim looks like from the wire.
    let lastReal: RateUpdate | undefined;
    forger.subscribe(subjects.updates("victim"), (bytes) => {
      const r = decode(bytes);
      if (r.ok && r.message.type === "rate-update" && r.signature === "unchecked") {
        lastReal = r.message;
      }
    });
    await forger.flush();
    const nodes: { limiter: Limiter; agent: NodeAgent }[] = [];
    for (const nodeId of ["victim", "other"]) {
      const transport = await connectNats({ servers: SHARED_NATS, name: `signed-${nodeId}` });
      const limiter = createLimiter({ rules, sweepIntervalMs: 0 });
      const agent = createNodeAgent({
        limiter,
        transport,
        nodeId,
        subjectPrefix: prefix,
        verifyKeys: [group.publicKey],
      });
      nodes.push({ limiter, agent });
      open.push(transport, limiter, agent);
    }
    for (const n of nodes) assert.equal(await n.agent.ready(), true);

    // Both nodes offer the hot key at 4x the limit in 5 ms steps for 3.5 s; from 1 s on, the
    // forger sends a plausible grant every 50 ms, half unsigned, half signed by another key.
    const perStep: number[] = [];
    const stepAt: number[] = [];
    let sent = 0;
    const start = performance.now();
    while (performance.now() - start < 3500) {
      let admitted = 0;
      for (const n of nodes) {
        for (let h = 0; h < 2; h++) if (n.limiter.check("api", "hot").allowed) admitted++;
      }
      perStep.push(admitted);
      stepAt.push(performance.now());
      const due = Math.floor((performance.now() - start - 1000) / 50);
      if (lastReal !== undefined && due >= sent && sent < 2 * FORGERIES) {
        const real = lastReal;
        const entries = real.groups.flatMap((g) => g.entries).filter((e) => e.key === "hot");
        const e = entries[0];
        if (e !== undefined) {
          const forged = {
            ...real,
            sentAtWallMs: wallClockMs(),
            groups: [
              {
                rule: "api",
                entries: [{ ...e, version: e.version + 1, allowance: e.allowance + LIMIT / 2 }],
              },
            ],
          };
          const options = sent % 2 === 0 ? undefined : { signer: intruder };
          for (const f of encode(forged, options)) forger.publish(subjects.updates("victim"), f);
          sent++;
        }
      }
      await sleep(5);
    }
    await sleep(200);
    assert.equal(sent, 2 * FORGERIES, "every forgery went out");
    const s = nodes[0]!.agent.stats();
    assert.equal(s.invalidMessages.unsigned, FORGERIES, JSON.stringify(s.invalidMessages));
    assert.equal(s.invalidMessages["bad-signature"], FORGERIES);
    assert.ok(s.updatesReceived > 0, "the real, signed grants were applied");
    assert.equal(s.aggregatorLost, false);
    // Every window of 1 s held the limit.
    let worst = 0;
    for (let i = 0, j = 0; i < perStep.length; i++) {
      while (stepAt[i]! - stepAt[j]! >= 1000) j++;
      let sum = 0;
      for (let k = j; k <= i; k++) sum += perStep[k]!;
      if (sum > worst) worst = sum;
    }
    assert.ok(worst <= LIMIT * 1.05, `${worst} admitted in one second of ${LIMIT}`);
  } finally {
    for (const o of open.reverse()) await o.close();
  }
});
