/**
 * `npm run bench:scale`, failover section: a group of three aggregators (separate `sluice
 * aggregator --group` processes) on the shared NATS server, three nodes (`sluice loadgen`)
 * offering 2x the limit of one global rule, most of it on the hottest key k0. One member is
 * killed (SIGKILL) at 4 s; another is paused (SIGSTOP) for 3 s at 9 s; the run ends at 16 s.
 *
 * Figures, from the nodes' own 100 ms reports (wall-clock aligned) and the members' reports:
 * - the worst and the lowest sliding second of k0 over the limit, after the warm-up, and the
 *   lowest within 3 s after each event (how much the hot key starves while an owner is gone);
 * - the time from each event until the live members grant for every partition again (they own
 *   all of them and none is learning);
 * - admitted by the nodes against counted by the members (the killed one as of its last report,
 *   so hits it counted after its last save are counted twice: counted >= admitted means none was
 *   lost).
 */
import { wallClockMs } from "../src/clock/clock.js";
import {
  type AggregatorReport,
  Cluster,
  groupMemberArgs,
  loadgenArgs,
  SHARED_NATS,
  type SluiceProcess,
  sleep,
  started,
  terminate,
  uniquePrefix,
} from "../test/integration/helpers/cluster-procs.js";

const LIMIT = 600;
const PARTITIONS = 16;
const LEASE_MS = 1000;
const NODES = 3;
const RATE = 400;

interface GroupStats {
  owned: number;
  learning: number;
  takeovers: number;
}
type MemberReport = AggregatorReport & { group: GroupStats; atWallMs?: number };

export interface FailoverFigures {
  readonly limit: number;
  readonly leaseMs: number;
  readonly partitions: number;
  readonly worstWindowRatio: number;
  readonly lowestWindowRatio: number;
  readonly crash: { readonly grantsAgainMs: number; readonly lowestWindowRatio: number };
  readonly pause: { readonly grantsAgainMs: number; readonly lowestWindowRatio: number };
  readonly admitted: number;
  readonly counted: number;
}

/** k0 admitted per 100 ms bucket end (wall ms), summed over the nodes. */
function buckets(nodes: readonly SluiceProcess[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const n of nodes) {
    for (const r of n.reports)
      out.set(r.atWallMs, (out.get(r.atWallMs) ?? 0) + r.tracked["k0"]![0]);
  }
  return out;
}

/** [worst, lowest] sliding second (10 buckets) ending within [fromMs, toMs], over the limit. */
function sliding(b: Map<number, number>, fromMs: number, toMs: number): [number, number] {
  let worst = 0;
  let lowest = Number.POSITIVE_INFINITY;
  for (const end of b.keys()) {
    if (end - 1000 < fromMs || end > toMs) continue;
    let sum = 0;
    for (let i = 0; i < 10; i++) sum += b.get(end - 100 * i) ?? 0;
    if (sum > worst) worst = sum;
    if (sum < lowest) lowest = sum;
  }
  return [worst / LIMIT, lowest / LIMIT];
}

/** Waits until the live members' last reports own every partition with none learning. */
async function grantingAll(members: readonly SluiceProcess[], sinceMs: number): Promise<number> {
  const deadline = performance.now() + 15_000;
  while (performance.now() < deadline) {
    let owned = 0;
    let learning = 0;
    for (const m of members) {
      const r = (m.aggregatorReports as MemberReport[]).at(-1);
      owned += r?.group.owned ?? 0;
      learning += r?.group.learning ?? 0;
    }
    if (owned === PARTITIONS && learning === 0) return wallClockMs() - sinceMs;
    await sleep(20);
  }
  return Number.NaN;
}

export async function failover(): Promise<FailoverFigures> {
  const c = new Cluster();
  try {
    const prefix = uniquePrefix("benchscale");
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
          reportMs: 50,
        }),
      );
    const members = ["m1", "m2", "m3"].map(member);
    await Promise.all(members.map((m) => started(m, 15_000)));
    const nodes = Array.from({ length: NODES }, (_, i) =>
      c.sluice(
        `node-${i}`,
        loadgenArgs({
          nats: SHARED_NATS,
          prefix,
          rules,
          nodeId: `scale-${i}`,
          ratePerSec: RATE,
          durationMs: 60_000,
          extra: ["--stale-after-ms", "1500"],
        }),
      ),
    );
    await Promise.all(nodes.map((n) => started(n)));
    const startMs = wallClockMs();
    await grantingAll(members, startMs);
    await sleep(Math.max(0, startMs + 4000 - wallClockMs()));
    const [killed, paused, other] = members as [SluiceProcess, SluiceProcess, SluiceProcess];
    const countedByKilled = (killed.aggregatorReports.at(-1) as MemberReport).admittedCounted;
    const crashMs = wallClockMs();
    killed.kill("SIGKILL");
    const crashGrants = await grantingAll([paused, other], crashMs);
    await sleep(Math.max(0, startMs + 9000 - wallClockMs()));
    const pauseMs = wallClockMs();
    paused.kill("SIGSTOP");
    await sleep(50); // the paused member's last report is before this
    const pauseGrants = await grantingAll([other], pauseMs);
    await sleep(Math.max(0, pauseMs + 3000 - wallClockMs()));
    paused.kill("SIGCONT");
    await sleep(Math.max(0, startMs + 16_000 - wallClockMs()));
    const endMs = wallClockMs();
    await terminate(nodes);
    await sleep(500);
    await terminate([paused, other]);
    const b = buckets(nodes);
    const [worst, lowest] = sliding(b, startMs + 1000, endMs);
    const admitted = nodes.reduce((n, x) => n + (x.summary?.admitted ?? 0), 0);
    const counted =
      countedByKilled +
      [paused, other].reduce((n, m) => n + (m.aggregatorReports.at(-1)?.admittedCounted ?? 0), 0);
    return {
      limit: LIMIT,
      leaseMs: LEASE_MS,
      partitions: PARTITIONS,
      worstWindowRatio: worst,
      lowestWindowRatio: lowest,
      crash: {
        grantsAgainMs: crashGrants,
        lowestWindowRatio: sliding(b, crashMs, crashMs + 3000)[1],
      },
      pause: {
        grantsAgainMs: pauseGrants,
        lowestWindowRatio: sliding(b, pauseMs, pauseMs + 3000)[1],
      },
      admitted,
      counted,
    };
  } finally {
    await c.stop();
  }
}
