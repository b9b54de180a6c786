/**
 * `npm run bench:scale`, throughput section: what one `sluice aggregator` process ingests
 * against a group of two (`--group`, P partitions, each member subscribed to its own), under the
 * same replayed load (bench/scale-replay.ts), on the shared NATS server of this machine.
 *
 * Each run starts fresh aggregators under a fresh subject prefix (a group run, a fresh KV
 * bucket, removed afterwards), waits until they own every partition and none is learning, then
 * replays the workload for `warmupMs + measureMs`. Between two samples `measureMs` apart (after
 * the warm-up) it takes:
 * - entries/s ingested: per aggregator the difference of `entries` between its latest report
 *   lines at the two samples, over the difference of their `tMs`, summed over the aggregators;
 * - CPU, as shares of one core: each aggregator process, the NATS server, the publisher (this
 *   process: the replay and the parsing of the aggregators' reports), and the whole machine
 *   (/proc/stat), whose rest is what other processes took meanwhile;
 * - the backlog: entries published and not yet ingested at the second sample (the load offered
 *   ran ahead of what was taken, so the aggregators were never starved while it is near the
 *   window), and the 1-minute load average.
 * Runs alternate lone / group, `rounds` times each; the figure is the median over rounds of
 * group / lone, each round pairing the group run with the lone run before it.
 *
 * Every child is killed when its run ends (SIGKILL: a member's graceful handoff is no part of the
 * figures), whatever happens; the section ends within its runs' bounded times.
 */
import { readdirSync, readFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { jetstreamManager } from "@nats-io/jetstream";
import { assignPartitions } from "../src/aggregator/assignment.js";
import { connectNats, natsConnectionOf } from "../src/transport/nats/nats-transport.js";
import type { Transport } from "../src/transport/transport.js";
import {
  type AggregatorReport,
  aggregatorArgs,
  Cluster,
  SHARED_NATS,
  type SluiceProcess,
  sleep,
  started,
  uniquePrefix,
} from "../test/integration/helpers/cluster-procs.js";
import { median, type Spread, spread, table } from "./harness.js";
import {
  ENTRIES_PER_ROUND,
  encodeWorkload,
  NODES,
  Replay,
  RULE,
  type Workload,
} from "./scale-replay.js";

export interface ThroughputOptions {
  readonly partitions: number;
  readonly rounds: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  /** Most entries published and not yet ingested. */
  readonly windowEntries: number;
  /** Rounds of the workload encoded (each ENTRIES_PER_ROUND entries). */
  readonly workloadRounds: number;
  readonly reportMs: number;
}

export const DEFAULT_THROUGHPUT: ThroughputOptions = {
  partitions: 16,
  rounds: 6,
  warmupMs: 1200,
  measureMs: 4000,
  windowEntries: 300_000,
  workloadRounds: Number(process.env["BENCH_REPLAY_ROUNDS"] ?? 1200),
  reportMs: 100,
};

type Kind = "lone" | "group";

export interface ThroughputRun {
  readonly kind: Kind;
  readonly round: number;
  readonly entriesPerSec: number;
  /** Per aggregator: entries/s ingested and CPU (share of one core). */
  readonly members: readonly {
    readonly entriesPerSec: number;
    readonly cpu: number;
    readonly owned: number | null;
  }[];
  readonly aggregatorCpu: number;
  /** Entries ingested per second of aggregator CPU (all members). */
  readonly entriesPerCpuSec: number;
  readonly natsCpu: number | null;
  readonly publisherCpu: number;
  readonly machineCpu: number;
  readonly otherCpu: number;
  /** Time the hypervisor ran something else while this machine had work (/proc/stat steal). */
  readonly stealCpu: number;
  readonly backlogEntries: number;
  readonly staleEntries: number;
  readonly unownedEntries: number;
  readonly ticksPerSec: number;
  readonly exhausted: boolean;
  readonly loadAverage1m: number;
}

export interface ThroughputFigures {
  readonly options: ThroughputOptions;
  readonly cores: number;
  readonly workload: {
    readonly nodes: number;
    readonly entriesPerRound: number;
    readonly rounds: number;
    readonly frames: number;
    readonly bytesPerEntry: number;
    readonly encodeMs: number;
  };
  readonly split: GroupSplit;
  readonly runs: readonly ThroughputRun[];
  /** group / lone per round, and their spread. */
  readonly ratios: readonly number[];
  readonly ratio: Spread;
  /** The ratios of the rounds where neither run had more than QUIET_OTHER_CPU of other load. */
  readonly quietRatios: readonly number[];
  /** Per round, group / lone of the entries per aggregator CPU second, and their median. */
  readonly efficiencyRatios: readonly number[];
  readonly efficiencyRatio: number;
  readonly loneEntriesPerSec: number;
  readonly groupEntriesPerSec: number;
}

const TICKS_PER_SEC = 100;
/** Other processes' CPU (cores) under which a run counts as quiet. */
export const QUIET_OTHER_CPU = 0.25;
const LONE_ID = "tput-lone";
const GROUP_IDS = ["tput-g1", "tput-g2"];

export interface GroupSplit {
  readonly members: readonly string[];
  /** Partitions each member owns (rendezvous hashing, as the group assigns them). */
  readonly partitions: readonly number[];
  /** Each member's share of the workload's entries. */
  readonly entryShares: readonly number[];
  /**
   * 1 / the largest share: the most the group can take over one member's rate when every
   * member ingests as fast as the lone one (the busiest member's backlog gates the load).
   */
  readonly ceiling: number;
}

/** How the workload spreads over the group's members. */
function groupSplit(w: Workload): GroupSplit {
  const owners = assignPartitions(w.partitions, GROUP_IDS);
  const total = w.entriesByPartition.reduce((a, b) => a + b, 0);
  const partitions = GROUP_IDS.map((id) => owners.filter((o) => o === id).length);
  const entryShares = GROUP_IDS.map(
    (id) => w.entriesByPartition.reduce((n, e, p) => n + (owners[p] === id ? e : 0), 0) / total,
  );
  return {
    members: GROUP_IDS,
    partitions,
    entryShares: entryShares.map(round3),
    ceiling: round3(1 / Math.max(...entryShares)),
  };
}

/** utime + stime of a process, in clock ticks; undefined once it is gone. */
function processTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After the command: state is field 3, utime field 14 and stime field 15.
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

interface MachineTicks {
  readonly busy: number;
  readonly steal: number;
  readonly total: number;
}

/** Clock ticks of the whole machine (all cores): busy (steal included), steal, and all. */
function machineTicks(): MachineTicks {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  // user nice system idle iowait irq softirq steal; guest time is already within user.
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - v[3]! - v[4]!, steal: v[7] ?? 0, total };
}

/** The pid of the nats-server process listening on the shared server's port, if one is seen. */
function natsServerPid(): number | undefined {
  const port = new URL(SHARED_NATS).port;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/comm`, "utf8").trim() !== "nats-server") continue;
      const args = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      const i = args.indexOf("-p");
      if ((i >= 0 && args[i + 1] === port) || args.some((a) => a.endsWith(`:${port}`))) {
        return Number(name);
      }
    } catch {
      // a process that ended while being read
    }
  }
  return undefined;
}

type Report = AggregatorReport & {
  ticks: number;
  unownedEntries: number;
  group?: { owned: number; learning: number };
};

/** The latest report line of `m` (read from the end: called on every replayed round). */
function latest(m: SluiceProcess): Report | undefined {
  for (let i = m.lines.length - 1; i >= 0; i--) {
    const l = m.lines[i]!;
    if (l.type === "aggregator") return l as Report;
  }
  return undefined;
}

interface Sample {
  readonly atMs: number;
  readonly reports: readonly (Report | undefined)[];
  readonly ticks: readonly (number | undefined)[];
  readonly natsTicks: number | undefined;
  readonly selfUs: number;
  readonly machine: MachineTicks;
}

function sample(members: readonly SluiceProcess[], natsPid: number | undefined): Sample {
  const u = process.cpuUsage();
  return {
    atMs: performance.now(),
    reports: members.map(latest),
    ticks: members.map((m) => (m.child.pid === undefined ? undefined : processTicks(m.child.pid))),
    natsTicks: natsPid === undefined ? undefined : processTicks(natsPid),
    selfUs: u.user + u.system,
    machine: machineTicks(),
  };
}

/** Waits until the members' latest reports own every partition with none learning. */
async function owningAll(members: readonly SluiceProcess[], partitions: number): Promise<void> {
  const deadline = performance.now() + 20_000;
  while (performance.now() < deadline) {
    let owned = 0;
    let learning = 0;
    for (const m of members) {
      owned += latest(m)?.group?.owned ?? 0;
      learning += latest(m)?.group?.learning ?? 0;
    }
    if (owned === partitions && learning === 0) return;
    await sleep(20);
  }
  throw new Error(`the group did not come to own all ${partitions} partitions within 20 s`);
}

async function runOnce(
  kind: Kind,
  round: number,
  o: ThroughputOptions,
  workload: Workload,
  transport: Transport,
  natsPid: number | undefined,
): Promise<ThroughputRun> {
  const c = new Cluster();
  const prefix = uniquePrefix("benchtput");
  const bucket = prefix.replace(/[^A-Za-z0-9_-]/g, "_");
  try {
    const rules = c.writeRules([
      { name: RULE, mode: "global", algorithm: "sliding-window", limit: 1000, windowMs: 1000 },
    ]);
    const ids = kind === "lone" ? [LONE_ID] : GROUP_IDS;
    const group = ["--group", bucket, "--partitions", String(o.partitions)];
    const members = ids.map((id) =>
      c.sluice(
        id,
        aggregatorArgs({
          nats: SHARED_NATS,
          prefix,
          rules,
          durationMs: 60_000,
          reportMs: o.reportMs,
          extra: ["--id", id, ...(kind === "group" ? group : [])],
        }),
      ),
    );
    await Promise.all(members.map((m) => started(m, 15_000)));
    if (kind === "group") await owningAll(members, o.partitions);
    const ingested = () => members.reduce((n, m) => n + (latest(m)?.entries ?? 0), 0);
    const replay = new Replay({
      transport,
      prefix,
      workload,
      ingested,
      windowEntries: o.windowEntries,
      durationMs: o.warmupMs + o.measureMs + 200,
    });
    await sleep(o.warmupMs);
    const s0 = sample(members, natsPid);
    await sleep(o.measureMs);
    const s1 = sample(members, natsPid);
    const backlog = replay.sent - ingested();
    const result = await replay.done;
    return figuresOf(kind, round, members, s0, s1, backlog, result.exhausted);
  } finally {
    await c.stop();
    await removeBucket(transport, bucket);
  }
}

function figuresOf(
  kind: Kind,
  round: number,
  members: readonly SluiceProcess[],
  s0: Sample,
  s1: Sample,
  backlog: number,
  exhausted: boolean,
): ThroughputRun {
  const seconds = (s1.atMs - s0.atMs) / 1000;
  const share = (t0: number | undefined, t1: number | undefined) =>
    t0 === undefined || t1 === undefined ? Number.NaN : (t1 - t0) / TICKS_PER_SEC / seconds;
  const per = members.map((m, i) => {
    const r0 = s0.reports[i];
    const r1 = s1.reports[i];
    if (r0 === undefined || r1 === undefined || r1.tMs <= r0.tMs) {
      throw new Error(`${m.name} printed no report during the measurement`);
    }
    const dt = (r1.tMs - r0.tMs) / 1000;
    return {
      entriesPerSec: Math.round((r1.entries - r0.entries) / dt),
      cpu: round3(share(s0.ticks[i], s1.ticks[i])),
      owned: r1.group?.owned ?? null,
      stale: r1.staleEntries - r0.staleEntries,
      unowned: r1.unownedEntries - r0.unownedEntries,
      ticksPerSec: (r1.ticks - r0.ticks) / dt,
    };
  });
  const aggregatorCpu = per.reduce((n, p) => n + p.cpu, 0);
  const natsCpu = s0.natsTicks === undefined ? null : share(s0.natsTicks, s1.natsTicks);
  const publisherCpu = (s1.selfUs - s0.selfUs) / 1e6 / seconds;
  const cores = availableParallelism();
  const machineShare = (f: (m: MachineTicks) => number) =>
    ((f(s1.machine) - f(s0.machine)) / (s1.machine.total - s0.machine.total)) * cores;
  const machineCpu = machineShare((m) => m.busy);
  const steal = machineShare((m) => m.steal);
  return {
    kind,
    round,
    entriesPerSec: per.reduce((n, p) => n + p.entriesPerSec, 0),
    members: per.map((p) => ({ entriesPerSec: p.entriesPerSec, cpu: p.cpu, owned: p.owned })),
    aggregatorCpu: round3(aggregatorCpu),
    entriesPerCpuSec: Math.round(per.reduce((n, p) => n + p.entriesPerSec, 0) / aggregatorCpu),
    natsCpu: natsCpu === null ? null : round3(natsCpu),
    publisherCpu: round3(publisherCpu),
    machineCpu: round3(machineCpu),
    otherCpu: round3(machineCpu - steal - aggregatorCpu - (natsCpu ?? 0) - publisherCpu),
    stealCpu: round3(steal),
    backlogEntries: backlog,
    staleEntries: per.reduce((n, p) => n + p.stale, 0),
    unownedEntries: per.reduce((n, p) => n + p.unowned, 0),
    ticksPerSec: Math.round(per.reduce((n, p) => n + p.ticksPerSec, 0) / per.length),
    exhausted,
    loadAverage1m: loadavg()[0]!,
  };
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** Deletes a group's KV bucket (its stream); a bucket never made is no error. */
async function removeBucket(transport: Transport, bucket: string): Promise<void> {
  const nc = natsConnectionOf(transport);
  if (nc === undefined) return;
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(`KV_${bucket}`);
  } catch {
    // not created (a lone run) or already gone
  }
}

/** The throughput section's figures (see the file's comment). */
export async function throughput(
  o: ThroughputOptions = DEFAULT_THROUGHPUT,
): Promise<ThroughputFigures> {
  process.stderr.write(`[throughput] encoding ${o.workloadRounds} rounds...\n`);
  const workload = encodeWorkload(o.workloadRounds, o.partitions);
  const natsPid = natsServerPid();
  const transport = await connectNats({ servers: SHARED_NATS, name: "bench-scale-replay" });
  const runs: ThroughputRun[] = [];
  try {
    for (let round = 1; round <= o.rounds; round++) {
      for (const kind of ["lone", "group"] as const) {
        process.stderr.write(`[throughput] round ${round}/${o.rounds}: ${kind}\n`);
        runs.push(await runOnce(kind, round, o, workload, transport, natsPid));
        await sleep(500);
      }
    }
  } finally {
    await transport.close();
  }
  const of = (kind: Kind) => runs.filter((r) => r.kind === kind).map((r) => r.entriesPerSec);
  const lone = of("lone");
  const grouped = of("group");
  const ratios = grouped.map((g, i) => round3(g / lone[i]!));
  const pairs = runs
    .filter((r) => r.kind === "lone")
    .map((l) => [l, runs.find((g) => g.kind === "group" && g.round === l.round)!] as const);
  const quietRatios = pairs
    .filter(([l, g]) => Math.max(l.otherCpu, g.otherCpu) <= QUIET_OTHER_CPU)
    .map(([l, g]) => round3(g.entriesPerSec / l.entriesPerSec));
  const efficiencyRatios = pairs.map(([l, g]) => round3(g.entriesPerCpuSec / l.entriesPerCpuSec));
  return {
    options: o,
    cores: availableParallelism(),
    workload: {
      nodes: NODES,
      entriesPerRound: ENTRIES_PER_ROUND,
      rounds: workload.rounds.length,
      frames: workload.frames,
      bytesPerEntry: round3(workload.bytes / workload.entries),
      encodeMs: Math.round(workload.encodeMs),
    },
    split: groupSplit(workload),
    runs,
    ratios,
    ratio: spread(ratios),
    quietRatios,
    efficiencyRatios,
    efficiencyRatio: round3(median(efficiencyRatios)),
    loneEntriesPerSec: Math.round(median(lone)),
    groupEntriesPerSec: Math.round(median(grouped)),
  };
}

export function printThroughput(f: ThroughputFigures): void {
  const o = f.options;
  const w = f.workload;
  const k = (x: number) => `${(x / 1000).toFixed(0)} k/s`;
  const cpu = (x: number | null) => (x === null || Number.isNaN(x) ? "-" : x.toFixed(2));
  console.log(
    `${w.nodes} replayed nodes, ${w.entriesPerRound.toLocaleString("en-US")} entries per round ` +
      `(${w.rounds} rounds encoded first in ${w.encodeMs} ms, ${w.bytesPerEntry} B per entry), ` +
      `P = ${o.partitions}, at most ${o.windowEntries.toLocaleString("en-US")} entries in flight; ` +
      `${o.warmupMs} ms warm-up, ${o.measureMs} ms measured; ${f.cores} cores. CPU in cores; ` +
      "other: the rest of the machine; backlog: published, not yet ingested, at the end.",
  );
  console.log(
    table(
      [
        "run",
        "entries/s",
        "per member",
        "agg CPU",
        "per member",
        "per CPU s",
        "NATS",
        "publisher",
        "other",
        "steal",
        "machine",
        "backlog",
        "ticks/s",
        "load",
      ],
      f.runs.map((r) => [
        `${r.round} ${r.kind}`,
        k(r.entriesPerSec),
        r.members
          .map((m) => `${k(m.entriesPerSec)}${m.owned === null ? "" : ` (${m.owned} p)`}`)
          .join(" + "),
        cpu(r.aggregatorCpu),
        r.members.map((m) => cpu(m.cpu)).join(" + "),
        k(r.entriesPerCpuSec).replace("/s", ""),
        cpu(r.natsCpu),
        cpu(r.publisherCpu),
        cpu(r.otherCpu),
        cpu(r.stealCpu),
        cpu(r.machineCpu),
        `${Math.round(r.backlogEntries / 1000)}k${r.exhausted ? " (ran out)" : ""}`,
        String(r.ticksPerSec),
        r.loadAverage1m.toFixed(2),
      ]),
    ),
  );
  const sp = f.split;
  console.log(
    `\nThe group's split: ${sp.members.map((m, i) => `${m} ${sp.partitions[i]} partitions, ${(100 * sp.entryShares[i]!).toFixed(1)}% of the entries`).join("; ")}: at most ${sp.ceiling.toFixed(2)}x if each member ingests as fast as the lone one.`,
  );
  const s = f.ratio;
  console.log(
    `\ngroup of 2 / lone: median ${s.median.toFixed(2)}x (min ${s.min.toFixed(2)}, max ` +
      `${s.max.toFixed(2)}; per round ${f.ratios.map((r) => r.toFixed(2)).join(", ")}); ` +
      `lone ${k(f.loneEntriesPerSec)}, group ${k(f.groupEntriesPerSec)} (medians). Goal >= 1.7x.`,
  );
  const list = (xs: readonly number[]) => xs.map((r) => r.toFixed(2)).join(", ");
  console.log(
    `Rounds with at most ${QUIET_OTHER_CPU} cores of other load in both runs: ` +
      `${f.quietRatios.length === 0 ? "none" : list(f.quietRatios)}. ` +
      `Entries per aggregator CPU second, group / lone: median ${f.efficiencyRatio.toFixed(2)} ` +
      `(per round ${list(f.efficiencyRatios)}).`,
  );
}
