/**
 * Several aggregators as one group over real NATS (JetStream KV for ownership), with three node
 * processes offering twice the limit on a hot key, in separate processes:
 * - joins 1 -> 2 -> 3 and a graceful leave 3 -> 2 (SIGTERM: the leaver hands its partitions
 *   over): what the aggregators counted as admitted equals what the nodes admitted (nothing lost,
 *   nothing doubled by a handoff), and every sliding second of the hot key stays within the limit;
 * - a crash (SIGKILL) of a member: the survivor takes its partitions after the lease and grants
 *   for all of them within two leases (plus the learning of what the nodes hold), the limit holds,
 *   and nothing the nodes admitted goes uncounted;
 * - a member paused past its lease (SIGSTOP, then SIGCONT): it lets go of every partition taken
 *   meanwhile instead of granting for it again, and the limit holds through both.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { wallClockMs } from "../../src/clock/clock.js";
import {
  type AggregatorReport,
  assertCleanExit,
  Cluster,
  groupMemberArgs,
  loadgenArgs,
  SHARED_NATS,
  type SluiceProcess,
  sleep,
  started,
  terminate,
  uniquePrefix,
  worstSlidingSecond,
} from "./helpers/cluster-procs.js";

const LIMIT = 600;
const NODES = 3;
const PARTITIONS = 8;
const LEASE_MS = 600;
/** Per node; three offer 1200/s in all, most of it on the hottest key (k0). */
const RATE = 400;

interface GroupStats {
  owned: number;
  learning: number;
  takeovers: number;
  handoffsIn: number;
  handoffsOut: number;
  taken: number;
}
type MemberReport = AggregatorReport & { group: GroupStats };

function setUp(name: string) {
  const c = new Cluster();
  const prefix = uniquePrefix(name);
  const bucket = prefix.replace(/[^A-Za-z0-9_-]/g, "_");
  const rules = c.writeRules([
    { name: "api", mode: "global", algorithm: "sliding-window", limit: LIMIT, windowMs: 1000 },
  ]);
  const member = (id: string) =>
    c.sluice(
      id,
      groupMemberArgs({
        nats: SHARED_NATS,
        prefix,
        rules,
        id,
        bucket,
        partitions: PARTITIONS,
        leaseMs: LEASE_MS,
        durationMs: 60_000,
      }),
    );
  const nodes = () =>
    Array.from({ length: NODES }, (_, i) =>
      c.sluice(
        `node-${i}`,
        loadgenArgs({
          nats: SHARED_NATS,
          prefix,
          rules,
          nodeId: `${name}-${i}`,
          ratePerSec: RATE,
          durationMs: 60_000, // a safety cap: ended by SIGTERM
          extra: ["--stale-after-ms", "1500"],
        }),
      ),
    );
  return { c, member, nodes };
}

const reportsOf = (p: SluiceProcess) => p.aggregatorReports as MemberReport[];
const last = (p: SluiceProcess) => reportsOf(p).at(-1)!;

function waitFor(p: SluiceProcess, what: string, ok: (r: MemberReport) => boolean, ms: number) {
  return p.waitForLine(
    what,
    (l) => l.type === "aggregator" && ok(l as MemberReport),
    ms,
    p.lines.length,
  ) as Promise<MemberReport>;
}

/** Admitted over the nodes' summaries (each node's own count of what it admitted). */
function nodesAdmitted(nodes: readonly SluiceProcess[]): number {
  let sum = 0;
  for (const n of nodes) {
    assert.ok(n.summary !== undefined, `${n.name} printed its summary`);
    sum += n.summary.admitted;
  }
  return sum;
}

/** Starts a1, then a2 (its share by handoff), then the nodes' load; 3 s into it. */
async function twoUnderLoad(
  member: (id: string) => SluiceProcess,
  startNodes: () => SluiceProcess[],
) {
  const a1 = member("a1");
  await waitFor(a1, "a1 owns every partition", (r) => r.group.owned === PARTITIONS, 10_000);
  const a2 = member("a2");
  await waitFor(a2, "a2 gets its share", (r) => r.group.owned > 0, 8000);
  const nodes = startNodes();
  await Promise.all(nodes.map((n) => started(n)));
  const fromMs = wallClockMs() + 2000; // past the warm-up
  await sleep(3000);
  return { a1, a2, nodes, fromMs };
}

/**
 * Runs 3 s more, ends the nodes and then `members` (each must exit cleanly), and checks every
 * sliding second of the hot key from `fromMs` held the limit.
 */
async function endHoldingTheLimit(
  t: { diagnostic(message: string): void },
  nodes: readonly SluiceProcess[],
  members: readonly SluiceProcess[],
  fromMs: number,
): Promise<void> {
  await sleep(3000);
  const toMs = wallClockMs();
  await terminate(nodes);
  await sleep(500); // the nodes' last batches reach their owners
  await terminate(members);
  for (const a of members) assertCleanExit(a);
  const worst = worstSlidingSecond(nodes, "k0", fromMs, toMs);
  t.diagnostic(`worst sliding second of k0: ${worst.admitted} of ${LIMIT}`);
  assert.ok(worst.admitted <= LIMIT * 1.05, `${worst.admitted} admitted in one second`);
}

test("group - joins 1 -> 2 -> 3 and a graceful leave: nothing lost or doubled, the limit holds", async (t) => {
  const { c, member, nodes: startNodes } = setUp("groupjoin");
  try {
    const a1 = member("a1");
    await waitFor(a1, "a1 owns every partition", (r) => r.group.owned === PARTITIONS, 10_000);
    const nodes = startNodes();
    await Promise.all(nodes.map((n) => started(n)));
    const fromMs = wallClockMs() + 2000; // past the warm-up
    await sleep(3000);
    const a2 = member("a2");
    await waitFor(
      a2,
      "a2 gets its share",
      (r) => r.group.owned > 0 && r.group.learning === 0,
      8000,
    );
    await sleep(2000);
    const a3 = member("a3");
    await waitFor(
      a3,
      "a3 gets its share",
      (r) => r.group.owned > 0 && r.group.learning === 0,
      8000,
    );
    await sleep(2000);
    const a3Owned = last(a3).group.owned;
    a3.kill("SIGTERM");
    await a3.waitExit(10_000);
    assertCleanExit(a3);
    await sleep(2000);
    const toMs = wallClockMs();
    await terminate(nodes);
    await sleep(500); // the nodes' last batches reach their owners
    await terminate([a1, a2]);
    for (const a of [a1, a2]) assertCleanExit(a);

    const ins = [a1, a2, a3].map((a) => last(a).group);
    t.diagnostic(`final group stats: ${JSON.stringify(ins)}`);
    assert.ok(
      ins[1]!.handoffsIn > 0 && ins[2]!.handoffsIn > 0,
      "the joiners got theirs by handoff",
    );
    assert.equal(ins[2]!.handoffsOut, a3Owned, "the leaver handed over everything it held");
    assert.equal(ins[0]!.takeovers + ins[1]!.takeovers + ins[2]!.takeovers, 0, "no takeover");
    const counted = [a1, a2, a3].reduce((sum, a) => sum + last(a).admittedCounted, 0);
    const admitted = nodesAdmitted(nodes);
    t.diagnostic(`aggregators counted ${counted}, nodes admitted ${admitted}`);
    assert.equal(counted, admitted, "every admitted hit counted once, over all the moves");
    const worst = worstSlidingSecond(nodes, "k0", fromMs, toMs);
    t.diagnostic(`worst sliding second of k0: ${worst.admitted} of ${LIMIT}`);
    assert.ok(worst.admitted <= LIMIT * 1.05, `${worst.admitted} admitted in one second`);
  } finally {
    await c.stop();
  }
});

test("group - a crashed member's partitions are taken over within two leases; the limit holds", async (t) => {
  const { c, member, nodes: startNodes } = setUp("groupcrash");
  try {
    const { a1, a2, nodes, fromMs } = await twoUnderLoad(member, startNodes);
    const lost = last(a2).group.owned;
    const countedByA2 = last(a2).admittedCounted;
    const killMs = wallClockMs();
    a2.kill("SIGKILL");
    const back = await waitFor(
      a1,
      "a1 grants for every partition again",
      (r) => r.group.owned === PARTITIONS && r.group.learning === 0,
      4 * LEASE_MS + 3000,
    );
    const tookMs = wallClockMs() - killMs;
    t.diagnostic(`a2 held ${lost} partitions; a1 granted for all ${tookMs} ms after the kill`);
    assert.equal(back.group.takeovers, lost, "a1 took over what a2 held");
    // Two leases, the learning of what the nodes hold (a few sync intervals) and a report period.
    assert.ok(tookMs <= 2 * LEASE_MS + 400, `took ${tookMs} ms`);
    await endHoldingTheLimit(t, nodes, [a1], fromMs);
    // The survivor restored the dead member's windows from its last save and counted what the
    // nodes reported since: what a2 counted after that save is counted twice, nothing is lost.
    const counted = last(a1).admittedCounted + countedByA2;
    const admitted = nodesAdmitted(nodes);
    t.diagnostic(`aggregators counted ${counted} (a2 up to its last report), nodes ${admitted}`);
    assert.ok(counted >= admitted, "nothing the nodes admitted went uncounted");
  } finally {
    await c.stop();
  }
});

test("group - a member paused past its lease lets go of what was taken meanwhile", async (t) => {
  const { c, member, nodes: startNodes } = setUp("grouppause");
  try {
    const { a1, a2, nodes, fromMs } = await twoUnderLoad(member, startNodes);
    const held = last(a2).group.owned;
    a2.kill("SIGSTOP");
    await waitFor(a1, "a1 takes a2's partitions", (r) => r.group.owned === PARTITIONS, 5000);
    await sleep(500);
    a2.kill("SIGCONT");
    const letGo = await waitFor(a2, "a2 lets go", (r) => r.group.taken >= held, 5000);
    t.diagnostic(`a2 let go of ${letGo.group.taken} partitions after waking`);
    await endHoldingTheLimit(t, nodes, [a1, a2], fromMs);
  } finally {
    await c.stop();
  }
});
