/**
 * `npm run bench:scale`: how an aggregator group scales with its member count.
 *
 * The file is a list of sections. Each section is a function that returns its figures (plain
 * data, JSON-safe) and a printer for them; `main` runs the sections in order, prints each one's
 * table under its title, and ends with one JSON line holding every section's figures under its
 * name: `{"bench":"scale","balance":{...}, ...}`. A new section is one more entry in SECTIONS;
 * BENCH_SCALE_SECTIONS=name,name runs only those named.
 *
 * Sections:
 * - balance: for P partitions and n = 1..maxMembers members named agg-1..agg-n, partitions
 *   assigned by rendezvous hashing (src/aggregator/assignment.ts) and keys placed by
 *   decisionPartition (src/protocol/partition.ts). The load is a Zipf distribution over the keys
 *   `user:<i>` of one rule, key i weighing 1 / (i + 1)^s; a member's load is the weight of the
 *   keys in its partitions. Figures per n: the largest member load over the mean, the most
 *   partitions of a member over the mean (P / n), the least, and the share of the load no
 *   assignment can spread (the heaviest partition's load over the mean: a floor for the first
 *   ratio). Moves: the fraction of partitions whose owner changes when agg-(n+1) joins n
 *   members (ideal 1 / (n + 1)) and when a member from the middle of the list leaves
 *   (n -> n - 1, never the last one; ideal 1 / n). Pure computation: no randomness, the same
 *   figures on every run.
 * - failover: a group of three member processes under load on NATS, one killed and one paused
 *   (bench/scale-failover.ts).
 * - throughput: one aggregator process against a group of two under the same replayed load
 *   (bench/scale-throughput.ts, bench/scale-replay.ts).
 */

import { pathToFileURL } from "node:url";
import { assignPartitions, movedFraction } from "../src/aggregator/assignment.js";
import { decisionPartition } from "../src/protocol/partition.js";
import { table } from "./harness.js";
import { type FailoverFigures, failover } from "./scale-failover.js";
import { printThroughput, type ThroughputFigures, throughput } from "./scale-throughput.js";

export interface BalanceOptions {
  /** Partition counts, each its own table. */
  readonly partitions: readonly number[];
  /** Member counts from 1 to this. */
  readonly maxMembers: number;
  readonly keys: number;
  /** Zipf exponent s: key i weighs 1 / (i + 1)^s. */
  readonly zipf: number;
  readonly rule: string;
}

export const DEFAULT_BALANCE: BalanceOptions = {
  partitions: [64, 256],
  maxMembers: 16,
  keys: 100_000,
  zipf: 1.0,
  rule: "api",
};

export interface BalanceRow {
  readonly members: number;
  /** Largest member load / mean member load. */
  readonly loadMaxOverMean: number;
  /** Heaviest partition's load / mean member load, at least 1: what no assignment goes under. */
  readonly loadFloor: number;
  /** Most partitions of one member / (P / n). */
  readonly partitionsMaxOverMean: number;
  readonly partitionsMin: number;
  readonly partitionsMax: number;
  /** Fraction of partitions moved when agg-(n+1) joins these n members, and the ideal. */
  readonly joinMoved: number;
  readonly joinIdeal: number;
  /** Which member leaves (n -> n - 1), the fraction moved and the ideal; null for n = 1. */
  readonly leaver: string | null;
  readonly leaveMoved: number | null;
  readonly leaveIdeal: number | null;
}

export interface BalanceTable {
  readonly partitions: number;
  /** Share of the whole load on the heaviest key and on the heaviest partition. */
  readonly heaviestKeyShare: number;
  readonly heaviestPartitionShare: number;
  readonly rows: readonly BalanceRow[];
}

export interface BalanceFigures {
  readonly options: BalanceOptions;
  readonly tables: readonly BalanceTable[];
}

const memberIds = (n: number) => Array.from({ length: n }, (_, i) => `agg-${i + 1}`);

const round = (x: number, digits = 4) => Math.round(x * 10 ** digits) / 10 ** digits;

/** The load of each partition: the summed weight of the keys placed in it. */
function partitionLoads(o: BalanceOptions, partitions: number): Float64Array {
  const loads = new Float64Array(partitions);
  for (let i = 0; i < o.keys; i++) {
    loads[decisionPartition(o.rule, `user:${i}`, partitions)]! += 1 / (i + 1) ** o.zipf;
  }
  return loads;
}

function balanceRow(loads: Float64Array, n: number): BalanceRow {
  const partitions = loads.length;
  const members = memberIds(n);
  const owners = assignPartitions(partitions, members);
  const load = new Map<string, number>(members.map((m) => [m, 0]));
  const count = new Map<string, number>(members.map((m) => [m, 0]));
  let total = 0;
  let heaviest = 0;
  for (let p = 0; p < partitions; p++) {
    const owner = owners[p]!;
    load.set(owner, load.get(owner)! + loads[p]!);
    count.set(owner, count.get(owner)! + 1);
    total += loads[p]!;
    heaviest = Math.max(heaviest, loads[p]!);
  }
  const meanLoad = total / n;
  const counts = [...count.values()];
  const joined = assignPartitions(partitions, memberIds(n + 1));
  const leaver = n >= 2 ? members[Math.floor((n - 1) / 2)]! : null;
  const left = leaver === null ? null : members.filter((m) => m !== leaver);
  return {
    members: n,
    loadMaxOverMean: round(Math.max(...load.values()) / meanLoad),
    loadFloor: round(Math.max(1, heaviest / meanLoad)),
    partitionsMaxOverMean: round(Math.max(...counts) / (partitions / n)),
    partitionsMin: Math.min(...counts),
    partitionsMax: Math.max(...counts),
    joinMoved: round(movedFraction(owners, joined)),
    joinIdeal: round(1 / (n + 1)),
    leaver,
    leaveMoved:
      left === null ? null : round(movedFraction(owners, assignPartitions(partitions, left))),
    leaveIdeal: left === null ? null : round(1 / n),
  };
}

/** The balance section's figures (see the file's comment). */
export function balance(o: BalanceOptions = DEFAULT_BALANCE): BalanceFigures {
  const tables = o.partitions.map((partitions): BalanceTable => {
    const loads = partitionLoads(o, partitions);
    let total = 0;
    for (const l of loads) total += l;
    const rows: BalanceRow[] = [];
    for (let n = 1; n <= o.maxMembers; n++) rows.push(balanceRow(loads, n));
    return {
      partitions,
      heaviestKeyShare: round(1 / total),
      heaviestPartitionShare: round(Math.max(...loads) / total),
      rows,
    };
  });
  return { options: o, tables };
}

const fixed = (x: number | null, digits: number) => (x === null ? "-" : x.toFixed(digits));

function printBalance(f: BalanceFigures): void {
  const o = f.options;
  console.log(
    `${o.keys.toLocaleString("en-US")} keys user:<i> of rule "${o.rule}", key i weighing ` +
      `1/(i+1)^${o.zipf}; members agg-1..agg-n; partitions by rendezvous hashing.`,
  );
  for (const t of f.tables) {
    console.log(
      `\nP = ${t.partitions}: the heaviest key is ${(100 * t.heaviestKeyShare).toFixed(1)}% of ` +
        `the load, the heaviest partition ${(100 * t.heaviestPartitionShare).toFixed(1)}%.`,
    );
    console.log(
      table(
        [
          "n",
          "load max/mean",
          "floor",
          "partitions max/mean",
          "min-max",
          "join moved",
          "ideal",
          "leaver",
          "leave moved",
          "ideal",
        ],
        t.rows.map((r) => [
          String(r.members),
          fixed(r.loadMaxOverMean, 3),
          fixed(r.loadFloor, 3),
          fixed(r.partitionsMaxOverMean, 3),
          `${r.partitionsMin}-${r.partitionsMax}`,
          fixed(r.joinMoved, 3),
          fixed(r.joinIdeal, 3),
          r.leaver ?? "-",
          fixed(r.leaveMoved, 3),
          fixed(r.leaveIdeal, 3),
        ]),
      ),
    );
  }
}

interface Section<T> {
  readonly name: string;
  readonly title: string;
  readonly run: () => T | Promise<T>;
  readonly print: (figures: T) => void;
}

const section = <T>(s: Section<T>): Section<unknown> => s as Section<unknown>;

export const SECTIONS: readonly Section<unknown>[] = [
  section({
    name: "balance",
    title: "Balance: load and partitions per member, partitions moved on a join and a leave",
    run: () => balance(),
    print: printBalance,
  }),
  section({
    name: "failover",
    title:
      "Failover under load on NATS: 3 members, one killed at 4 s, one paused 3 s at 9 s (hot key k0)",
    run: () => failover(),
    print: printFailover,
  }),
  section<ThroughputFigures>({
    name: "throughput",
    title:
      "Throughput on NATS: one aggregator process against a group of two, the same replayed load",
    run: () => throughput(),
    print: printThroughput,
  }),
];

function printFailover(f: FailoverFigures): void {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  console.log(
    table(
      ["figure", "value", "goal"],
      [
        ["worst sliding second of k0 / limit", pct(f.worstWindowRatio), "<= 105%"],
        ["lowest sliding second of k0 / limit, whole run", pct(f.lowestWindowRatio), ">= 80%"],
        [
          "crash: live members grant for every partition after",
          `${Math.round(f.crash.grantsAgainMs)} ms`,
          `<= ${2 * f.leaseMs} ms`,
        ],
        ["crash: lowest sliding second within 3 s", pct(f.crash.lowestWindowRatio), ">= 80%"],
        [
          "pause: the other grants for every partition after",
          `${Math.round(f.pause.grantsAgainMs)} ms`,
          `<= ${2 * f.leaseMs} ms`,
        ],
        ["pause: lowest sliding second within 3 s", pct(f.pause.lowestWindowRatio), ">= 80%"],
        [
          "admitted by the nodes / counted by the members",
          `${f.admitted} / ${f.counted}`,
          "counted >= admitted",
        ],
      ],
    ),
  );
}

export async function main(sections: readonly Section<unknown>[] = SECTIONS): Promise<void> {
  const figures: Record<string, unknown> = { bench: "scale" };
  for (const s of sections) {
    console.log(`\n## ${s.title}\n`);
    const f = await s.run();
    s.print(f);
    figures[s.name] = f;
  }
  figures["node"] = process.version;
  console.log(`\n${JSON.stringify(figures)}`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // BENCH_SCALE_SECTIONS=throughput,balance runs only the sections named.
  const only = process.env["BENCH_SCALE_SECTIONS"]?.split(",");
  await main(only === undefined ? SECTIONS : SECTIONS.filter((s) => only.includes(s.name)));
}
