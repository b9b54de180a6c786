/**
 * A forged rate update on a NATS server without authorization (where the example permissions of
 * deploy/nats-server.conf are missing): the forger copies the real aggregator's epoch and sends
 * one grant a million versions ahead with an allowance of 1e9. The node drops it as implausible,
 * counts and reports it, keeps applying the real grants, and the limit holds. (Taken, that one
 * grant let the node admit everything and made it ignore every real grant after it.)
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createNodeAgent, type NodeAgent } from "../../src/agent/node-agent.js";
import { createAggregatorService } from "../../src/aggregator/aggregator-service.js";
import { wallClockMs } from "../../src/clock/clock.js";
import { createLimiter, type Limiter } from "../../src/limiter/limiter.js";
import { decode } from "../../src/protocol/decode.js";
import { encode } from "../../src/protocol/encode.js";
import { createSubjects } from "../../src/protocol/subjects.js";
import { connectNats } from "../../src/transport/nats/nats-transport.js";
import type { Transport } from "../../src/transport/transport.js";
import { SHARED_NATS, sleep, uniquePrefix } from "./helpers/cluster-procs.js";

const LIMIT = 200;

test("cluster forged grant - a grant a million versions ahead with a huge allowance is dropped and counted; real grants go on", async () => {
  const prefix = uniquePrefix("forged");
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
  const open: { close(): Promise<void> }[] = [];
  try {
    const aggTransport = await connectNats({ servers: SHARED_NATS, name: "forged-agg" });
    const forger = await connectNats({ servers: SHARED_NATS, name: "forged-forger" });
    open.push(aggTransport, forger);
    const compiled = createLimiter({ rules, sweepIntervalMs: 0 }).rules;
    const aggregator = createAggregatorService({
      rules: compiled,
      transport: aggTransport,
      subjectPrefix: prefix,
      warmupMs: 0,
    });
    open.push(aggregator);
    await aggTransport.flush();
    // The forger learns what a real update looks like from the wire.
    let lastReal: { epoch: number; version: number; target: string; nodeEpoch: number } | undefined;
    forger.subscribe(subjects.allUpdates, (bytes) => {
      const r = decode(bytes);
      if (!r.ok || r.message.type !== "rate-update" || r.message.aggregatorId === "forger") return;
      for (const e of r.message.groups.flatMap((g) => g.entries)) {
        if (e.key !== "hot" || r.message.targetNodeId !== "victim") continue;
        lastReal = {
          epoch: r.message.aggregatorEpoch,
          version: e.version,
          target: r.message.targetNodeId,
          nodeEpoch: r.message.targetNodeEpoch,
        };
      }
    });
    await forger.flush();
    const nodes: { limiter: Limiter; agent: NodeAgent; transport: Transport }[] = [];
    const warnings: string[] = [];
    for (const nodeId of ["victim", "other"]) {
      const transport = await connectNats({ servers: SHARED_NATS, name: `forged-${nodeId}` });
      const limiter = createLimiter({ rules, sweepIntervalMs: 0 });
      const agent = createNodeAgent({
        limiter,
        transport,
        nodeId,
        subjectPrefix: prefix,
        onWarning: (m) => warnings.push(`${nodeId}: ${m}`),
      });
      nodes.push({ limiter, agent, transport });
      open.push(transport, limiter, agent);
    }
    for (const n of nodes) assert.equal(await n.agent.ready(), true);

    // Both nodes offer the hot key at 4x the limit, in 5 ms steps, for 3.5 s; the forged grant
    // goes out at 1 s. Admissions are kept per step with the step's time, to read windows of
    // 1 s afterwards (on a busy machine a step can take much longer than 5 ms).
    const stepMs = 5;
    const perStep: number[] = [];
    const stepAt: number[] = [];
    let forgedAt = -1;
    const start = performance.now();
    while (performance.now() - start < 3500) {
      let admitted = 0;
      for (const n of nodes) {
        for (let h = 0; h < (4 * LIMIT * stepMs) / 1000 / nodes.length; h++) {
          if (n.limiter.check("api", "hot").allowed) admitted++;
        }
      }
      perStep.push(admitted);
      stepAt.push(performance.now());
      if (forgedAt < 0 && performance.now() - start >= 1000 && lastReal !== undefined) {
        forgedAt = perStep.length;
        const real = lastReal;
        const [frame] = encode({
          type: "rate-update",
          aggregatorId: "forger",
          aggregatorEpoch: real.epoch,
          seq: 1,
          targetNodeId: real.target,
          targetNodeEpoch: real.nodeEpoch,
          sentAtWallMs: wallClockMs(),
          groups: [
            {
              rule: "api",
              entries: [
                {
                  key: "hot",
                  generation: 0,
                  version: real.version + 1_000_000,
                  allowance: 1e9,
                  rampFrom: 1e9,
                  rampMs: 0,
                  retryAfterMs: 0,
                },
              ],
            },
          ],
        });
        forger.publish(subjects.updates(real.target), frame!);
      }
      await sleep(stepMs);
    }
    assert.ok(forgedAt > 0, "the forged grant went out");
    const victim = nodes[0]!;
    const s = victim.agent.stats();
    assert.equal(s.invalidEntries["implausible-grant"], 1, JSON.stringify(s.invalidEntries));
    assert.equal(victim.limiter.stats()[0]!.grantsImplausible, 1);
    assert.equal(warnings.length, 1, "one warning");
    assert.match(warnings[0]!, /victim: .*dropped 1 implausible grant/);
    // Every window of 1 s held the limit, before and after the forgery.
    const windowSum = (end: number) => {
      let sum = 0;
      for (let i = end; i >= 0 && stepAt[i]! > stepAt[end]! - 1000; i--) sum += perStep[i]!;
      return sum;
    };
    let worst = 0;
    for (let end = 0; end < perStep.length; end++) worst = Math.max(worst, windowSum(end));
    assert.ok(worst <= 1.1 * LIMIT, `worst window ${worst} of ${LIMIT}`);
    // Real grants kept applying after the forged one.
    const appliedAtForgery = victim.limiter.stats()[0]!.grantsApplied;
    await sleep(200);
    for (let h = 0; h < 20; h++) victim.limiter.check("api", "hot");
    await sleep(200);
    assert.ok(victim.limiter.stats()[0]!.grantsApplied > appliedAtForgery, "real grants applied");
    const lastSecond = windowSum(perStep.length - 1);
    assert.ok(lastSecond >= 0.8 * LIMIT, `the last second admitted ${lastSecond} of ${LIMIT}`);
  } finally {
    for (const o of open.reverse()) await o.close();
  }
});
