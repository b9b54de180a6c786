/**
 * The node agent under a group of aggregators, on the in-memory bus and a manual clock, driven
 * with hand-made owner messages: grants apply only from a partition's newest owner epoch, a
 * partition whose owner is silent follows the loss policy alone, a new epoch gets a marker batch
 * carrying it, and with the group's keys only signed updates apply.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createNodeAgent, type NodeAgent } from "../../../src/agent/node-agent.js";
import { ManualClock } from "../../../src/clock/clock.js";
import { createLimiter, type Limiter } from "../../../src/limiter/limiter.js";
import type { RuleConfig } from "../../../src/limiter/rule.js";
import { decode } from "../../../src/protocol/decode.js";
import { encode } from "../../../src/protocol/encode.js";
import type { PartitionOwner } from "../../../src/protocol/messages.js";
import { decisionPartition } from "../../../src/protocol/partition.js";
import { createSigner, generateKeyPair, type Signer } from "../../../src/protocol/signing.js";
import { createSubjects } from "../../../src/protocol/subjects.js";
import { createMemoryBus, type MemoryTransport } from "../../../src/transport/memory.js";

const P = 2;
const RULE: RuleConfig = {
  name: "api",
  mode: "global",
  algorithm: "sliding-window",
  limit: 1000,
  windowMs: 1000,
  onAggregatorLoss: "open",
};
const subjects = createSubjects();
/** A key of each partition. */
const KEYS = [0, 1].map(
  (p) =>
    Array.from({ length: 50 }, (_, i) => `k${i}`).find(
      (k) => decisionPartition("api", k, P) === p,
    )!,
);

function setUp(verifyKeys?: string[]) {
  const clock = new ManualClock(10_000);
  const bus = createMemoryBus();
  const limiter: Limiter = createLimiter({ rules: [RULE], clock, sweepIntervalMs: 0 });
  const agent: NodeAgent = createNodeAgent({
    limiter,
    transport: bus.connect(),
    clock,
    nodeId: "n",
    partitions: P,
    staleAfterMs: 500,
    discoveryMs: 0,
    ...(verifyKeys === undefined ? {} : { verifyKeys }),
  });
  const aggregator: MemoryTransport = bus.connect();
  const step = async (ms: number) => {
    for (let i = 0; i < ms; i += 5) {
      clock.advance(5);
      await bus.settle();
    }
  };
  const defaults = (id: string, owners: PartitionOwner[], signer?: Signer) => {
    const m = {
      type: "rule-defaults" as const,
      aggregatorId: id,
      aggregatorEpoch: 1,
      seq: 1,
      sentAtWallMs: 0,
      liveNodes: 1,
      partitions: P,
      owners,
      rules: [{ rule: "api", defaultShare: 1000 }],
    };
    for (const f of encode(m, signer === undefined ? undefined : { signer })) {
      aggregator.publish(subjects.defaults, f);
    }
  };
  let version = 0;
  /** A grant ahead (generation 0) of `allowance` for `key`. */
  const grant = (
    id: string,
    owners: PartitionOwner[],
    key: string,
    allowance: number,
    signer?: Signer,
  ) => {
    const m = {
      type: "rate-update" as const,
      aggregatorId: id,
      aggregatorEpoch: 1,
      seq: 1,
      targetNodeId: "n",
      targetNodeEpoch: agent.nodeEpoch,
      sentAtWallMs: 0,
      owners,
      groups: [
        {
          rule: "api",
          entries: [
            {
              key,
              generation: 0,
              version: ++version,
              allowance,
              rampFrom: allowance,
              rampMs: 0,
              retryAfterMs: 100,
            },
          ],
        },
      ],
    };
    for (const f of encode(m, signer === undefined ? undefined : { signer })) {
      aggregator.publish(subjects.updates("n"), f);
    }
  };
  const admits = (key: string, n: number) => {
    let ok = 0;
    for (let i = 0; i < n; i++) if (limiter.check("api", key).allowed) ok++;
    return ok;
  };
  const close = async () => {
    await agent.close();
    await limiter.close();
  };
  return { clock, bus, limiter, agent, aggregator, step, defaults, grant, admits, close };
}

test("node agent group - a grant applies only at its partition's newest owner epoch", async () => {
  const s = setUp();
  s.defaults("a", [{ partition: 0, epoch: 5 }]);
  s.defaults("b", [{ partition: 1, epoch: 7 }]);
  await s.step(10);
  s.grant("b", [{ partition: 1, epoch: 7 }], KEYS[1]!, 3);
  await s.step(10);
  assert.equal(s.admits(KEYS[1]!, 10), 3, "the owner's grant applies");
  // A member that lost partition 1 long ago (epoch 3) still sends: dropped for that partition.
  s.grant(
    "a",
    [
      { partition: 0, epoch: 5 },
      { partition: 1, epoch: 3 },
    ],
    KEYS[1]!,
    50,
  );
  await s.step(10);
  assert.equal(s.admits(KEYS[1]!, 10), 0, "the old owner's larger grant is not taken");
  assert.equal(s.agent.stats().invalidMessages["older-owner"], 1);
  // A grant for partition 1 from a message that does not list it: not that sender's to give.
  s.grant("a", [{ partition: 0, epoch: 5 }], KEYS[1]!, 60);
  await s.step(10);
  assert.equal(s.admits(KEYS[1]!, 10), 0);
  assert.equal(s.agent.stats().invalidEntries["older-owner"], 2);
  // A new owner of partition 1 (a takeover, epoch 9) is followed at once.
  s.grant("a", [{ partition: 1, epoch: 9 }], KEYS[1]!, 8);
  await s.step(10);
  assert.equal(s.admits(KEYS[1]!, 10), 5, "the new owner's grant (8, 3 used) applies");
  await s.close();
});

test("node agent group - a partition whose owner is silent follows the loss policy alone", async () => {
  const s = setUp();
  s.defaults("a", [{ partition: 0, epoch: 5 }]);
  s.defaults("b", [{ partition: 1, epoch: 7 }]);
  await s.step(10);
  s.grant("a", [{ partition: 0, epoch: 5 }], KEYS[0]!, 2);
  s.grant("b", [{ partition: 1, epoch: 7 }], KEYS[1]!, 2);
  await s.step(10);
  assert.equal(s.admits(KEYS[0]!, 5), 2);
  assert.equal(s.admits(KEYS[1]!, 5), 2);
  // b falls silent; a keeps announcing partition 0.
  for (let t = 0; t < 800; t += 25) {
    s.defaults("a", [{ partition: 0, epoch: 5 }]);
    await s.step(25);
  }
  assert.equal(s.admits(KEYS[0]!, 5), 0, "partition 0 keeps its owner's grant");
  assert.equal(s.admits(KEYS[1]!, 5), 5, "partition 1 follows its loss policy (open)");
  assert.equal(s.agent.stats().aggregatorLost, false, "the node as a whole is not lost");
  // b (or its successor) speaks again: partition 1 follows its grants again.
  s.defaults("b", [{ partition: 1, epoch: 7 }]);
  await s.step(30);
  assert.equal(s.admits(KEYS[1]!, 5), 0);
  await s.close();
});

test("node agent group - a new owner epoch gets a batch for its partition carrying it, even with nothing to report", async () => {
  const s = setUp();
  const seen: { partition: string; ownerEpoch: number; entries: number }[] = [];
  s.aggregator.subscribe(`${subjects.prefix}.v1.decisions.*.*`, (bytes, subject) => {
    const r = decode(bytes);
    if (r.ok && r.message.type === "decision-batch") {
      const entries = r.message.groups.reduce((n, g) => n + g.entries.length, 0);
      seen.push({ partition: subject.split(".")[3]!, ownerEpoch: r.message.ownerEpoch, entries });
    }
  });
  s.defaults("a", [
    { partition: 0, epoch: 5 },
    { partition: 1, epoch: 6 },
  ]);
  await s.step(100);
  assert.ok(seen.some((b) => b.partition === "0" && b.ownerEpoch === 5 && b.entries === 0));
  assert.ok(seen.some((b) => b.partition === "1" && b.ownerEpoch === 6 && b.entries === 0));
  seen.length = 0;
  s.admits(KEYS[1]!, 1);
  s.defaults("b", [{ partition: 1, epoch: 11 }]);
  await s.step(100);
  assert.ok(
    seen.some((b) => b.partition === "1" && b.ownerEpoch === 11),
    JSON.stringify(seen),
  );
  assert.ok(!seen.some((b) => b.partition === "0" && b.ownerEpoch !== 5));
  await s.close();
});

test("node agent group - with the group's keys, unsigned and wrongly signed updates are dropped and counted", async () => {
  const group = generateKeyPair();
  const other = generateKeyPair();
  const s = setUp([group.publicKey]);
  const signer = createSigner(group.seed);
  s.defaults("a", [{ partition: 1, epoch: 7 }], signer);
  await s.step(10);
  s.grant("a", [{ partition: 1, epoch: 7 }], KEYS[1]!, 100);
  s.grant("a", [{ partition: 1, epoch: 7 }], KEYS[1]!, 200, createSigner(other.seed));
  await s.step(10);
  const invalid = s.agent.stats().invalidMessages;
  assert.equal(invalid.unsigned, 1);
  assert.equal(invalid["bad-signature"], 1);
  assert.equal(s.agent.stats().updatesReceived, 0, "neither applied");
  s.grant("a", [{ partition: 1, epoch: 7 }], KEYS[1]!, 4, signer);
  await s.step(10);
  assert.equal(s.admits(KEYS[1]!, 10), 4, "the signed one applies");
  await s.close();
});
