/**
 * The aggregator group on a cluster of three NATS servers (the ownership bucket replicated on
 * all three), two members and three nodes as separate processes, each connected to all three
 * servers. The server leading the bucket's stream is killed (SIGKILL) while load runs: clients
 * on it reconnect to the others, JetStream elects a new leader (the members cannot renew their
 * leases meanwhile, so they stop granting; the nodes keep their grants and then follow their
 * loss policy), and the group carries on. Nothing admitted goes uncounted, and with no partition
 * moved nothing is counted twice.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { wallClockMs } from "../../src/clock/clock.js";
import { connectNats, natsConnectionOf } from "../../src/transport/nats/nats-transport.js";
import {
  type AggregatorReport,
  assertCleanExit,
  Cluster,
  groupMemberArgs,
  loadgenArgs,
  type SluiceProcess,
  sleep,
  started,
  terminate,
  uniquePrefix,
  worstSlidingSecond,
} from "./helpers/cluster-procs.js";
import { NatsCluster } from "./helpers/nats-cluster.js";

const LIMIT = 600;
const PARTITIONS = 8;

type MemberReport = AggregatorReport & { group: { granting: number; takeovers: number } };
const lastOf = (p: SluiceProcess) => p.aggregatorReports.at(-1) as MemberReport;

async function streamLeader(urls: readonly string[], stream: string): Promise<string> {
  const t = await connectNats({ servers: [...urls], name: "leader-probe" });
  try {
    const jsm = await jetstreamManager(natsConnectionOf(t)!, { timeout: 2000 });
    const leader = (await jsm.streams.info(stream)).cluster?.leader;
    assert.ok(leader !== undefined, `${stream} has a leader`);
    return leader;
  } finally {
    await t.close();
  }
}

test("group on a 3-server NATS cluster under load - the bucket's leader is killed: nothing lost", {
  timeout: 120_000,
}, async (t) => {
  const nats = await NatsCluster.start({ name: "groupload" });
  const c = new Cluster();
  try {
    const servers = nats.urls.join(",");
    const prefix = uniquePrefix("groupnatscluster");
    const bucket = prefix.replace(/[^A-Za-z0-9_-]/g, "_");
    const rules = c.writeRules([
      { name: "api", mode: "global", algorithm: "sliding-window", limit: LIMIT, windowMs: 1000 },
    ]);
    const member = (id: string) =>
      c.sluice(
        id,
        groupMemberArgs({
          nats: servers,
          prefix,
          rules,
          id,
          bucket,
          partitions: PARTITIONS,
          leaseMs: 800,
          durationMs: 90_000,
          replicas: 3,
        }),
      );
    const members = [member("a1"), member("a2")];
    await Promise.all(members.map((m) => started(m, 20_000)));
    const nodes = [0, 1, 2].map((i) =>
      c.sluice(
        `node-${i}`,
        loadgenArgs({
          nats: servers,
          prefix,
          rules,
          nodeId: `natscluster-${i}`,
          ratePerSec: 400,
          durationMs: 90_000,
        }),
      ),
    );
    await Promise.all(nodes.map((n) => started(n, 20_000)));
    await sleep(4000);
    const leader = await streamLeader(nats.urls, `KV_${bucket}`);
    const killMs = wallClockMs();
    await nats.kill(nats.indexOf(leader));
    // The members stop granting while JetStream has no leader for the bucket, then grant for
    // every partition again (a new leader, leases renewed).
    const granting = () => members.reduce((n, m) => n + lastOf(m).group.granting, 0);
    const deadline = performance.now() + 40_000;
    let stoppedMs = Number.NaN;
    let backMs = Number.NaN;
    while (performance.now() < deadline) {
      if (Number.isNaN(stoppedMs) && granting() < PARTITIONS) stoppedMs = wallClockMs() - killMs;
      if (!Number.isNaN(stoppedMs) && granting() === PARTITIONS) {
        backMs = wallClockMs() - killMs;
        break;
      }
      await sleep(50);
    }
    await sleep(3000);
    await terminate(nodes);
    await sleep(1000); // the nodes' last batches reach their owners
    await terminate(members, 20_000);
    for (const m of members) assertCleanExit(m);
    const takeovers = members.reduce((n, m) => n + lastOf(m).group.takeovers, 0);
    const counted = members.reduce((n, m) => n + lastOf(m).admittedCounted, 0);
    const admitted = nodes.reduce((n, x) => n + (x.summary?.admitted ?? 0), 0);
    const worst = worstSlidingSecond(nodes, "k0", killMs - 3000, wallClockMs());
    t.diagnostic(
      `killed ${leader}; the group stopped granting ${stoppedMs} ms after and granted for every partition again ${backMs} ms after; takeovers ${takeovers}; counted ${counted}, nodes admitted ${admitted}; worst sliding second of k0 from 3 s before the kill: ${worst.admitted} of ${LIMIT}`,
    );
    assert.ok(Number.isFinite(backMs), "the group granted for every partition again");
    for (const n of nodes)
      assert.equal(n.summary?.agent.aggregatorLost, false, `${n.name} follows`);
    assert.ok(counted >= admitted, "nothing the nodes admitted went uncounted");
    if (takeovers === 0) assert.equal(counted, admitted, "no partition moved: nothing doubled");
  } finally {
    await c.stop();
    await nats.stop();
  }
});
