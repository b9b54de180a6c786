/**
 * Garbage and hostile messages on every subject of a running cluster (an aggregator and two node
 * processes over the real nats-server): random bytes, truncated and bit-flipped frames, frames
 * damaged in one field with the CRC recomputed (wrong version or type, cut body, trailing bytes,
 * negative and NaN counts, ill-formed keys), messages of the wrong type for the subject, a rate
 * update addressed to another node or another run, a huge grant and a lone-node default share
 * from a forged aggregator with an older epoch, batches and heartbeats of an older run of a real
 * node, and a made-up node reporting extreme (but valid) numbers.
 *
 * Nothing may crash, every invalid message must be counted by reason on the side that received
 * it, and the hot key's global limit must hold throughout. (A forged message from a *current*
 * aggregator epoch is a valid grant: keeping it off the wire is the server's job, see
 * cluster-trust.test.ts and docs/operations.md.)
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { wallClockMs } from "../../src/clock/clock.js";
import { decode } from "../../src/protocol/decode.js";
import { encode } from "../../src/protocol/encode.js";
import type { Message } from "../../src/protocol/messages.js";
import { createSubjects } from "../../src/protocol/subjects.js";
import { connectNats } from "../../src/transport/nats/nats-transport.js";
import type { Transport } from "../../src/transport/transport.js";
import { decisionEntry } from "../support/decision-entry.js";
import {
  bitFlipped,
  randomBytes,
  seededRandom,
  truncated,
  withBodyCut,
  withF64,
  withHeaderByte,
  withIllFormedString,
  withTrailingByte,
} from "./helpers/cluster-frames.js";
import {
  aggregatorArgs,
  assertCleanExit,
  Cluster,
  describeSeconds,
  loadgenArgs,
  mean,
  perSecond,
  SHARED_NATS,
  secondsWithin,
  sleep,
  started,
  terminate,
  uniquePrefix,
} from "./helpers/cluster-procs.js";

const LIMIT = 500;
const NODE_IDS = ["hostile-0", "hostile-1"] as const;
// Marker values: each occurs once in the frame it is put in, and nowhere else.
const M_ADMITTED = 4242.125;
const M_REJECTED = 4343.375;
const M_ALLOWANCE = 4444.625;
const BAD_KEY = "bad-key-marker";

/** One frame of `m` (the messages here are small: never split). */
function frame(m: Message): Uint8Array {
  const frames = encode(m);
  assert.equal(frames.length, 1);
  return frames[0]!;
}

test("cluster hostile - garbage and forged messages on every subject: counted by reason, nothing crashes, the limit holds", {
  timeout: 60_000,
}, async (t) => {
  const c = new Cluster();
  let attacker: Transport | undefined;
  try {
    const prefix = uniquePrefix("hostile");
    const subjects = createSubjects({ prefix });
    const rules = c.writeRules([
      { name: "api", mode: "global", algorithm: "sliding-window", limit: LIMIT, windowMs: 1000 },
    ]);
    const agg = c.sluice(
      "aggregator",
      aggregatorArgs({
        nats: SHARED_NATS,
        prefix,
        rules,
        durationMs: 40_000,
        reportMs: 200,
        extra: ["--node-ttl-ms", "1500"],
      }),
    );
    await started(agg);

    // The attacker learns the real runs' epochs as any subscriber of an open server can.
    attacker = await connectNats({ servers: SHARED_NATS, name: "hostile-attacker" });
    const nodeEpochs = new Map<string, number>();
    let aggregatorEpoch = 0;
    attacker.subscribe(subjects.heartbeats, (bytes) => {
      const r = decode(bytes);
      if (r.ok && r.message.type === "heartbeat" && r.message.role === 1) {
        nodeEpochs.set(r.message.nodeId, r.message.nodeEpoch);
      }
    });
    attacker.subscribe(subjects.defaults, (bytes) => {
      const r = decode(bytes);
      if (r.ok && r.message.type === "rule-defaults") aggregatorEpoch = r.message.aggregatorEpoch;
    });
    await attacker.flush();

    const nodes = NODE_IDS.map((nodeId) =>
      c.sluice(
        nodeId,
        loadgenArgs({
          nats: SHARED_NATS,
          prefix,
          rules,
          nodeId,
          ratePerSec: 700,
          durationMs: 40_000, // a safety cap: ended by SIGTERM below
        }),
      ),
    );
    await Promise.all(nodes.map((n) => started(n)));
    const deadline = performance.now() + 5000;
    while (nodeEpochs.size < NODE_IDS.length || aggregatorEpoch === 0) {
      assert.ok(performance.now() < deadline, "the attacker learns the epochs");
      await sleep(20);
    }
    await sleep(1500);

    const seed = wallClockMs() % 2 ** 31;
    t.diagnostic(`attack seed ${seed}`);
    const random = seededRandom(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const now = wallClockMs();
    const olderAggregator = aggregatorEpoch - 1000;
    const validBatch = (nodeId: string, nodeEpoch: number) =>
      frame({
        type: "decision-batch",
        ownerEpoch: 0,
        nodeId,
        nodeEpoch,
        seq: 7,
        sentAtWallMs: now,
        groups: [
          {
            rule: "api",
            entries: [
              decisionEntry({ key: "k0", admitted: M_ADMITTED, rejected: M_REJECTED }),
              decisionEntry({ key: BAD_KEY, admitted: 1, isNew: true, admittedSinceLast: 1 }),
            ],
          },
        ],
      });
    const update = (target: string, targetEpoch: number, epoch: number, allowance: number) =>
      frame({
        type: "rate-update",
        owners: [],
        aggregatorId: "forged-aggregator",
        aggregatorEpoch: epoch,
        seq: 2 ** 32 - 1,
        targetNodeId: target,
        targetNodeEpoch: targetEpoch,
        sentAtWallMs: now,
        groups: [
          {
            rule: "api",
            entries: [0, 1, 2, 3].map((generation) => ({
              key: "k0",
              generation,
              version: 2 ** 32 - 1,
              allowance,
              rampFrom: 0,
              rampMs: 0,
              retryAfterMs: 0,
            })),
          },
        ],
      });
    const heartbeat = (nodeId: string, nodeEpoch: number) =>
      frame({ type: "heartbeat", nodeId, nodeEpoch, seq: 1, sentAtWallMs: now, role: 1 });
    const defaults = frame({
      type: "rule-defaults",
      partitions: 0,
      owners: [],
      aggregatorId: "forged-aggregator",
      aggregatorEpoch: olderAggregator,
      seq: 1,
      sentAtWallMs: now,
      liveNodes: 1,
      rules: [{ rule: "api", defaultShare: LIMIT }],
    });
    // A made-up node with extreme but valid numbers, on keys of its own.
    const ghostBatch = () =>
      frame({
        type: "decision-batch",
        ownerEpoch: 0,
        nodeId: "ghost",
        nodeEpoch: Number.MAX_VALUE,
        seq: 2 ** 32 - 1,
        sentAtWallMs: Number.MAX_VALUE,
        groups: [
          {
            rule: pick(["api", "no-such-rule"]),
            entries: ["ghost-a", "ghost-b", "g".repeat(1024)].map((key) => ({
              key,
              generation: pick([0, 1, 2 ** 32 - 1]),
              admitted: pick([0, 5e-324, 1e15, Number.MAX_VALUE]),
              rejected: pick([0, 5e-324, 1e15, Number.MAX_VALUE]),
              isNew: random() < 0.5,
              grantEpoch: pick([0, Number.MAX_VALUE]),
              grantVersion: pick([0, 2 ** 32 - 1]),
              allowance: pick([0, Number.MAX_VALUE]),
              admittedSinceLast: pick([0, 1e15, Number.MAX_VALUE]),
              ageMs: pick([0, 1e15, Number.MAX_VALUE]),
            })),
          },
        ],
      });

    const [n0, n1] = NODE_IDS;
    const e0 = nodeEpochs.get(n0)!;
    const e1 = nodeEpochs.get(n1)!;
    const updates0 = subjects.updates(n0);
    /** Valid frames of the type each subject carries, to damage. */
    const bySubject: [string, () => Uint8Array][] = [
      [subjects.decisions(0, n0), () => validBatch(n0, e0 - 1)],
      [subjects.decisions(pick([1, 2, 3]), n1), () => validBatch(n1, e1 - 1)],
      [subjects.heartbeat(n0), () => heartbeat(n0, e0 - 1)],
      [updates0, () => update(n0, e0, olderAggregator, 1e15)],
      [subjects.updates(n1), () => update(n1, e1, olderAggregator, 1e15)],
      [subjects.defaults, () => defaults],
    ];
    let sent = 0;
    const publish = (subject: string, bytes: Uint8Array) => {
      attacker!.publish(subject, bytes);
      sent++;
    };
    const attackStartMs = wallClockMs();
    const attackEndMs = attackStartMs + 4000;
    while (wallClockMs() < attackEndMs) {
      for (const [subject, valid] of bySubject) {
        publish(subject, randomBytes(random, 300));
        publish(subject, truncated(valid(), random));
        publish(subject, bitFlipped(valid(), random));
        publish(subject, withHeaderByte(valid(), 0, 0x00)); // bad magic
        publish(subject, withHeaderByte(valid(), 2, pick([0, 2, 255]))); // version
        publish(subject, withHeaderByte(valid(), 3, pick([0, 5, 255]))); // type
        publish(subject, withBodyCut(valid(), 1 + Math.floor(random() * 8)));
        publish(subject, withTrailingByte(valid()));
      }
      const batch = validBatch(n0, e0 - 1);
      for (const subject of [subjects.decisions(0, n0), subjects.decisions(5, n0)]) {
        publish(subject, withF64(batch, M_ADMITTED, -1)); // negative count
        publish(subject, withF64(batch, M_REJECTED, Number.NaN)); // NaN count
        publish(subject, withIllFormedString(batch, BAD_KEY)); // key not UTF-8
        publish(subject, batch); // an older run of a real node: ignored whole
        publish(subject, update(n0, e0, aggregatorEpoch, 1e15)); // wrong type here
      }
      publish(subjects.decisions(0, "ghost"), ghostBatch()); // a made-up node under its own id
      // Impersonation: node 0 reports in node 1's name (current run, inflated counts) on its own
      // subject, the only one its credentials may use. Dropped as sender-mismatch.
      publish(subjects.decisions(0, n0), validBatch(n1, e1));
      publish(subjects.heartbeat(n0), heartbeat(n0, e0 - 1)); // older run: changes nothing
      publish(subjects.heartbeat("ghost"), heartbeat("ghost", Number.MAX_VALUE));
      publish(subjects.heartbeat(n0), defaults); // wrong type here
      // At the nodes: a forged, older aggregator's huge grant for every generation of the hot
      // key; the same with a NaN allowance; grants for the other node or another run; a
      // lone-node default share from the older aggregator; wrong types.
      publish(updates0, update(n0, e0, olderAggregator, 1e15));
      publish(updates0, withF64(update(n0, e0, olderAggregator, M_ALLOWANCE), M_ALLOWANCE, NaN));
      publish(updates0, update(n1, e1, aggregatorEpoch, 1e15));
      publish(updates0, update(n0, e0 - 1, aggregatorEpoch, 1e15));
      publish(subjects.updates(n1), update(n1, e1, olderAggregator, 1e15));
      publish(
        subjects.updates(n1),
        withF64(update(n1, e1, olderAggregator, M_ALLOWANCE), M_ALLOWANCE, -1),
      );
      publish(subjects.defaults, defaults);
      publish(updates0, heartbeat(n0, e0));
      publish(subjects.defaults, batch);
      await sleep(50);
    }
    await attacker.flush();
    t.diagnostic(`published ${sent} hostile messages in ${wallClockMs() - attackStartMs} ms`);
    const aggReportsAtEnd = agg.aggregatorReports.length;
    const nodeReportsAtEnd = nodes.map((n) => n.reports.length);

    await sleep(4000);
    const beforeStop = agg.aggregatorReports.at(-1)!;
    await terminate(nodes);
    await terminate([agg]);
    for (const p of [...nodes, agg]) assertCleanExit(p);

    // Everyone kept working through the attack and after it.
    assert.ok(agg.aggregatorReports.length > aggReportsAtEnd + 5, "the aggregator kept reporting");
    for (const [i, n] of nodes.entries()) {
      assert.ok(n.reports.length > nodeReportsAtEnd[i]! + 20, `${n.name} kept reporting`);
    }
    const final = agg.aggregatorReports.at(-1)!;
    t.diagnostic(
      `aggregator: invalid messages ${JSON.stringify(final.invalidMessages)}, entries ${JSON.stringify(final.invalidEntries)}, stale batches ${final.staleBatches}, unknown-rule entries ${final.unknownRuleEntries}`,
    );
    for (const reason of [
      "too-short",
      "bad-magic",
      "unknown-version",
      "unknown-type",
      "bad-crc",
      "truncated",
      "bad-field",
      "wrong-type",
      "sender-mismatch",
    ]) {
      assert.ok((final.invalidMessages[reason] ?? 0) > 0, `aggregator counted ${reason}`);
    }
    for (const reason of ["bad-number", "bad-key"]) {
      assert.ok((final.invalidEntries[reason] ?? 0) > 0, `aggregator counted entries ${reason}`);
    }
    assert.ok(final.staleBatches > 0, "batches of an older node run are ignored and counted");
    assert.equal(beforeStop.liveNodes, 2, "the made-up node expired");
    assert.equal(final.liveNodes, 0, "the real nodes said they were leaving");
    assert.equal(final.nodesLeft, 2);

    for (const n of nodes) {
      const s = n.summary!.agent;
      t.diagnostic(
        `${n.name}: invalid messages ${JSON.stringify(s.invalidMessages)}, entries ${JSON.stringify(s.invalidEntries)}`,
      );
      for (const reason of [
        "too-short",
        "bad-magic",
        "unknown-version",
        "unknown-type",
        "bad-crc",
        "truncated",
        "bad-field",
        "older-aggregator",
      ]) {
        assert.ok((s.invalidMessages[reason] ?? 0) > 0, `${n.name} counted ${reason}`);
      }
      assert.ok((s.invalidEntries["bad-number"] ?? 0) > 0, `${n.name} counted bad-number entries`);
      assert.equal(s.aggregatorLost, false);
      const grantsAfter = n.reports.at(-1)!.grantsReceived;
      const grantsAtAttackEnd = n.reports.find((r) => r.atWallMs >= attackEndMs)!.grantsReceived;
      assert.ok(grantsAfter > grantsAtAttackEnd, `${n.name} still receives real grants`);
    }
    const s0 = nodes[0]!.summary!.agent;
    for (const reason of ["other-node-run", "wrong-type"]) {
      assert.ok((s0.invalidMessages[reason] ?? 0) > 0, `${n0} counted ${reason}`);
    }

    // The limit held before, during and after the attack.
    const firstMs = Math.max(...nodes.map((n) => n.reports[0]!.atWallMs));
    const lastMs = Math.min(...nodes.map((n) => n.reports.at(-1)!.atWallMs)) - 100;
    const all = perSecond(nodes, "k0");
    t.diagnostic(`hot key per second (0s = attack): ${describeSeconds(all, attackStartMs)}`);
    const seconds = secondsWithin(all, firstMs + 1000, lastMs);
    assert.ok(seconds.length >= 6, `full seconds: ${seconds.length}`);
    for (const s of seconds) {
      assert.ok(s.admitted <= 1.1 * LIMIT, `${s.admitted} admitted in a second > 110% of ${LIMIT}`);
    }
    const after = secondsWithin(all, attackEndMs + 1000, lastMs);
    assert.ok(after.length >= 2, `seconds after the attack: ${after.length}`);
    const m = mean(after.map((s) => s.admitted));
    assert.ok(m >= 0.85 * LIMIT, `mean after the attack ${m.toFixed(0)} >= 85% of ${LIMIT}`);
  } finally {
    await attacker?.close();
    await c.stop();
  }
});
