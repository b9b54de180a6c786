/**
 * The trust model (docs/operations.md): the example server config `deploy/nats-server.conf`,
 * started on a free loopback port with this file's own subject prefix, enforces subject
 * permissions by role. A node's credentials cannot publish a rate update or the defaults (the
 * server refuses, the client reports a permissions violation, nobody receives the message) nor
 * read another node's grants; the node's counts and heartbeats go through; and a whole cluster
 * (aggregator and nodes as processes, each with its own credentials) works under that config
 * without a single violation.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { wallClockMs } from "../../src/clock/clock.js";
import { decode } from "../../src/protocol/decode.js";
import { encode } from "../../src/protocol/encode.js";
import type { Message } from "../../src/protocol/messages.js";
import { createSubjects } from "../../src/protocol/subjects.js";
import { connectNats } from "../../src/transport/nats/nats-transport.js";
import type { Transport, TransportStatus } from "../../src/transport/transport.js";
import {
  aggregatorArgs,
  assertCleanExit,
  Cluster,
  loadgenArgs,
  perSecond,
  secondsWithin,
  sleep,
  started,
  terminate,
  uniquePrefix,
} from "./helpers/cluster-procs.js";

const CONFIG = fileURLToPath(new URL("../../../deploy/nats-server.conf", import.meta.url));
/** The placeholder passwords of the example config. */
const PASSWORDS = {
  aggregator: "change-me-aggregator",
  monitor: "change-me-monitor",
  "node-1": "change-me-node-1",
  "node-2": "change-me-node-2",
} as const;
type User = keyof typeof PASSWORDS;

/** The example config, listening on `port` and with `prefix` instead of `ratelimit`. */
function adaptedConfig(port: number, prefix: string): string {
  const text = readFileSync(CONFIG, "utf8");
  assert.match(text, /^listen: 127\.0\.0\.1:4222$/m, "the example listens on loopback 4222");
  for (const [user, pass] of Object.entries(PASSWORDS)) {
    assert.ok(text.includes(`user: ${user}, password: "${pass}"`), `the example has ${user}`);
  }
  return text
    .replace(/^listen: .*$/m, `listen: 127.0.0.1:${port}`)
    .replaceAll("ratelimit.v1.", `${prefix}.v1.`);
}

/** Resolves once `predicate` holds; polls every 10 ms; rejects after `ms`. */
async function eventually(ms: number, what: string, predicate: () => boolean): Promise<void> {
  const deadline = performance.now() + ms;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await sleep(10);
  }
}

function frame(m: Message): Uint8Array {
  return encode(m)[0]!;
}

test("cluster trust - node credentials cannot publish grants or defaults, nor read another node's grants; counts and heartbeats go through", {
  timeout: 30_000,
}, async (t) => {
  const c = new Cluster();
  const open: Transport[] = [];
  try {
    const prefix = uniquePrefix("trust");
    const subjects = createSubjects({ prefix });
    const server = await c.natsServer((port) => adaptedConfig(port, prefix));
    const as = async (user: User) => {
      const transport = await connectNats({
        servers: server.url,
        name: `trust-${user}`,
        user,
        pass: PASSWORDS[user],
      });
      open.push(transport);
      const errors: string[] = [];
      transport.onStatus((s: TransportStatus) => {
        if (s.type === "error") errors.push(s.error.message);
      });
      return { transport, errors };
    };
    const monitor = await as("monitor");
    const node1 = await as("node-1");
    const node2 = await as("node-2");
    const aggregator = await as("aggregator");

    const seenByMonitor: { subject: string; bytes: Uint8Array }[] = [];
    monitor.transport.subscribe(`${prefix}.v1.>`, (bytes, subject) =>
      seenByMonitor.push({ subject, bytes }),
    );
    const seenByNode1: Uint8Array[] = [];
    node1.transport.subscribe(subjects.updates("node-1"), (b) => seenByNode1.push(b));
    node1.transport.subscribe(subjects.defaults, (b) => seenByNode1.push(b));
    await Promise.all([monitor.transport.flush(), node1.transport.flush()]);

    const now = wallClockMs();
    const grant = (aggregatorId: string, allowance: number) =>
      frame({
        type: "rate-update",
        owners: [],
        aggregatorId,
        aggregatorEpoch: now,
        seq: 1,
        targetNodeId: "node-1",
        targetNodeEpoch: 1,
        sentAtWallMs: now,
        groups: [
          {
            rule: "api",
            entries: [
              {
                key: "k0",
                generation: 0,
                version: 1,
                allowance,
                rampFrom: allowance,
                rampMs: 0,
                retryAfterMs: 0,
              },
            ],
          },
        ],
      });
    const defaults = (aggregatorId: string) =>
      frame({
        type: "rule-defaults",
        partitions: 0,
        owners: [],
        aggregatorId,
        aggregatorEpoch: now,
        seq: 1,
        sentAtWallMs: now,
        liveNodes: 1,
        rules: [{ rule: "api", defaultShare: 1e9 }],
      });
    const batch = frame({
      type: "decision-batch",
      ownerEpoch: 0,
      nodeId: "node-2",
      nodeEpoch: now,
      seq: 1,
      sentAtWallMs: now,
      groups: [
        {
          rule: "api",
          entries: [
            {
              key: "k0",
              generation: 1,
              admitted: 3,
              rejected: 0,
              isNew: true,
              grantEpoch: 0,
              grantVersion: 0,
              allowance: 0,
              admittedSinceLast: 3,
              ageMs: 0,
            },
          ],
        },
      ],
    });
    const heartbeat = frame({
      type: "heartbeat",
      nodeId: "node-2",
      nodeEpoch: now,
      seq: 1,
      sentAtWallMs: now,
      role: 1,
    });

    // Forgeries with node credentials (another node's and its own grants, the defaults) and
    // with the read-only monitor's, and an attempt to read another node's grants.
    node2.transport.publish(subjects.updates("node-1"), grant("forged-by-node-2", 1e12));
    node2.transport.publish(subjects.defaults, defaults("forged-by-node-2"));
    node1.transport.publish(subjects.updates("node-1"), grant("forged-by-node-1", 1e12));
    monitor.transport.publish(subjects.updates("node-1"), grant("forged-by-monitor", 1e12));
    const readByNode2: Uint8Array[] = [];
    node2.transport.subscribe(subjects.updates("node-1"), (b) => readByNode2.push(b));
    // What nodes are for.
    node2.transport.publish(subjects.decisions(3, "node-2"), batch);
    node2.transport.publish(subjects.heartbeat("node-2"), heartbeat);
    await Promise.all([node1, node2, monitor].map((x) => x.transport.flush()));
    // Every forgery has been processed (refused) by now; the aggregator's real ones come after.
    aggregator.transport.publish(subjects.updates("node-1"), grant("aggregator", 42));
    aggregator.transport.publish(subjects.defaults, defaults("aggregator"));
    await aggregator.transport.flush();

    await eventually(
      5000,
      "node-1 receives the aggregator's grant and defaults",
      () => seenByNode1.length >= 2,
    );
    await eventually(
      5000,
      "the monitor sees the batch, heartbeat, grant and defaults",
      () => seenByMonitor.length >= 4,
    );
    await eventually(
      5000,
      "the refusals are reported",
      () => node2.errors.length >= 3 && node1.errors.length >= 1 && monitor.errors.length >= 1,
    );
    t.diagnostic(`node-2 errors: ${JSON.stringify(node2.errors)}`);

    const senders = (frames: Uint8Array[]) =>
      frames.map((b) => {
        const r = decode(b);
        assert.ok(r.ok);
        const m = r.message;
        return m.type === "rate-update" || m.type === "rule-defaults"
          ? `${m.type} from ${m.aggregatorId}`
          : `${m.type} from ${m.nodeId}`;
      });
    assert.deepEqual(senders(seenByNode1), [
      "rate-update from aggregator",
      "rule-defaults from aggregator",
    ]);
    assert.deepEqual(
      seenByMonitor.map((m) => m.subject),
      [
        subjects.decisions(3, "node-2"),
        subjects.heartbeat("node-2"),
        subjects.updates("node-1"),
        subjects.defaults,
      ],
    );
    assert.deepEqual(senders(seenByMonitor.map((m) => m.bytes)), [
      "decision-batch from node-2",
      "heartbeat from node-2",
      "rate-update from aggregator",
      "rule-defaults from aggregator",
    ]);
    const violation = (kind: string, subject: string) =>
      new RegExp(`Permissions Violation for ${kind} to "${subject.replaceAll(".", "\\.")}"`);
    for (const [who, kind, subject] of [
      [node2, "Publish", subjects.updates("node-1")],
      [node2, "Publish", subjects.defaults],
      [node2, "Subscription", subjects.updates("node-1")],
      [node1, "Publish", subjects.updates("node-1")],
      [monitor, "Publish", subjects.updates("node-1")],
    ] as const) {
      assert.ok(
        who.errors.some((e) => violation(kind, subject).test(e)),
        `a ${kind} violation on ${subject} is reported: ${JSON.stringify(who.errors)}`,
      );
    }
    assert.deepEqual(readByNode2, [], "node-2 read none of node-1's grants");
    assert.deepEqual(aggregator.errors, [], "the aggregator's own publishes are allowed");
    assert.match(server.log, /Publish Violation - User "node-2"/);
  } finally {
    for (const x of open) await x.close();
    await c.stop();
  }
});

test("cluster trust - an aggregator and nodes run with their role credentials on the permissioned server", {
  timeout: 40_000,
}, async () => {
  const c = new Cluster();
  try {
    const prefix = uniquePrefix("trustrun");
    const server = await c.natsServer((port) => adaptedConfig(port, prefix));
    const limit = 400;
    const rules = c.writeRules([
      { name: "api", mode: "global", algorithm: "sliding-window", limit, windowMs: 1000 },
    ]);
    const creds = (user: User) => ["--user", user, "--pass", PASSWORDS[user]];
    const agg = c.sluice(
      "aggregator",
      aggregatorArgs({
        nats: server.url,
        prefix,
        rules,
        durationMs: 30_000,
        reportMs: 200,
        extra: creds("aggregator"),
      }),
    );
    await started(agg);
    const nodes = (["node-1", "node-2"] as const).map((user) =>
      c.sluice(
        user,
        loadgenArgs({
          nats: server.url,
          prefix,
          rules,
          nodeId: user,
          ratePerSec: 600,
          durationMs: 30_000, // a safety cap: ended by SIGTERM below
          extra: creds(user),
        }),
      ),
    );
    await Promise.all(nodes.map((n) => started(n)));
    await sleep(5000);
    const stopAtMs = wallClockMs(); // nodes say they leave: read the live count from before
    await terminate(nodes);
    await terminate([agg]);
    for (const p of [...nodes, agg]) assertCleanExit(p);

    for (const n of nodes) {
      const s = n.summary!.agent;
      assert.ok(s.grantsReceived > 0, `${n.name} received its grants`);
      assert.ok(s.defaultsReceived > 0, `${n.name} received the defaults`);
      assert.equal(n.reports.filter((r) => r.atWallMs < stopAtMs).at(-1)!.liveNodes, 2);
      assert.deepEqual(s.invalidMessages, {});
    }
    const final = agg.aggregatorReports.at(-1)!;
    assert.ok(final.batches > 0 && final.heartbeats > 0, "the aggregator heard the nodes");
    assert.ok(agg.aggregatorReports.some((r) => r.liveNodes === 2));
    assert.deepEqual(final.invalidMessages, {});
    const admitted = nodes.reduce((sum, n) => sum + n.summary!.admitted, 0);
    assert.equal(final.admittedCounted, admitted, "every count reached the aggregator");
    assert.doesNotMatch(server.log, /Violation/, "the roles' permissions suffice for normal work");

    const firstMs = Math.max(...nodes.map((n) => n.reports[0]!.atWallMs));
    const lastMs = Math.min(...nodes.map((n) => n.reports.at(-1)!.atWallMs)) - 100;
    const seconds = secondsWithin(perSecond(nodes, "k0"), firstMs + 1000, lastMs);
    assert.ok(seconds.length >= 3, `full seconds: ${seconds.length}`);
    for (const s of seconds) assert.ok(s.admitted <= 1.1 * limit, `hot key second ${s.admitted}`);
  } finally {
    await c.stop();
  }
});
