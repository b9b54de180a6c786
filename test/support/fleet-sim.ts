/**
 * The steady scenario of `bench/accuracy.ts` without the machine: 8 node agents and an
 * aggregator in one process, on the in-memory bus and a manual clock, so what it shows is the
 * algorithm's own behaviour, free of scheduling noise, and the same on every run.
 *
 * Every message is delivered `latencyMs` after it is published; agents assume all `nodes` live
 * until the aggregator says (`initialLiveNodes`; the load starts after they have heard it anyway);
 * timers are started 7 ms apart so their sync ticks are not aligned with each other or with the
 * aggregator's. Each node offers one key (the hot key) `hitsPerMsPerNode` hits per ms from t = 0
 * (a step start, as in the process bench), decided by a global sliding-window rule of `limit`
 * per 1000 ms. Admitted hits are counted per ms; windows of 1000 ms are measured at every 25 ms
 * from 2 s on (and apart, in the first 2 s). Used by the tests and, as the reference row, by
 * `bench/accuracy.ts`; `bench/accuracy-sim.ts` runs a sweep of cases.
 */
import { createNodeAgent, type NodeAgent } from "../../src/agent/node-agent.js";
import { createAggregatorService } from "../../src/aggregator/aggregator-service.js";
import type { AggregatorTuning } from "../../src/aggregator/tuning.js";
import { seededRandom } from "../../src/cli/load.js";
import { ManualClock } from "../../src/clock/clock.js";
import { createLimiter, type Limiter } from "../../src/limiter/limiter.js";
import type { RuleConfig } from "../../src/limiter/rule.js";
import { DEFAULT_SYNC_INTERVAL_MS } from "../../src/protocol/limits.js";
import { createMemoryBus } from "../../src/transport/memory.js";
import type { Transport } from "../../src/transport/transport.js";
import { convergence, windowSums } from "./window-analysis.js";

export interface SimOptions {
  readonly nodes?: number;
  readonly limit?: number;
  /** The nodes' sync interval, and the aggregator's unless `aggregator.syncIntervalMs` says. */
  readonly syncIntervalMs?: number;
  readonly latencyMs?: number;
  /**
   * Each message is delayed by a further 0..jitterMs (uniform, seeded; order per sender kept, as
   * NATS keeps it), as a busy machine delays them. @default 0
   */
  readonly jitterMs?: number;
  /** Seed of the jitter's generator. @default 1 */
  readonly seed?: number;
  /** The aggregator's tuning (its defaults otherwise; `warmupMs` is always 0). */
  readonly aggregator?: Partial<AggregatorTuning>;
  readonly hitsPerMsPerNode?: number;
  /**
   * Node i offers its rate times 4 / 2^i (the process bench's skewed load: 6000, 3000, ... hits/s
   * of 1500 on average), so the total is about the same as with equal nodes. @default false
   */
  readonly skewed?: boolean;
  /**
   * Hits arrive at random (Poisson, seeded), as `sluice loadgen` sends them, instead of evenly.
   * @default false
   */
  readonly randomArrivals?: boolean;
  readonly durationMs?: number;
  /**
   * Where the load's start falls against the aggregator's window bins (which are aligned on its
   * clock): the manual clock starts this many ms later. @default 0
   */
  readonly clockPhaseMs?: number;
  /**
   * An event at `eventAtMs` (default 6000): `shift` (nodes 0..n/2-1 offer twice the rate until
   * then, the others twice the rate after), `join` (the last node starts then), `leave` (the
   * last node closes then).
   */
  readonly event?: "shift" | "join" | "leave";
  readonly eventAtMs?: number;
}

export interface SimResult {
  readonly meanRatio: number;
  readonly lowestWindowRatio: number;
  readonly worstWindowRatio: number;
  /** Per node (in start order), hits offered and admitted per second from 2 s on. */
  readonly perNode: readonly { readonly offeredPerSec: number; readonly admittedPerSec: number }[];
  /** Highest window ratio among the windows ending in the first 2 s (the cold start). */
  readonly coldWorstWindowRatio: number;
  /** Admitted per 25 ms bucket from the load's start, for tracing (the whole run). */
  readonly admittedPerBucket: readonly number[];
  /** The same over the second half of the run only (after the start's after-effects). */
  readonly lateMeanRatio: number;
  readonly lateLowestWindowRatio: number;
  readonly lateWorstWindowRatio: number;
  /** With an event: settling as `bench/accuracy.ts` measures it, and the ratio around it. */
  readonly event?: {
    readonly convergeMs: number | null;
    readonly firstBackInBandMs: number | null;
    readonly minRatioAfter: number;
    readonly maxRatioAfter: number;
    readonly around: Record<string, number>;
  };
}

/** Offsets from the event (ms) at which the window ratio is reported. */
export const SIM_AROUND_MS = [-500, 0, 50, 100, 150, 200, 300, 500, 1000, 1500];

const WINDOW_MS = 1000;

/** A Poisson-distributed count of mean `mean`, by inversion of its distribution. */
function poisson(mean: number, random: () => number): number {
  let p = Math.exp(-mean);
  let cdf = p;
  const u = random();
  let k = 0;
  while (u > cdf && k < 1000) {
    k++;
    p *= mean / k;
    cdf += p;
  }
  return k;
}

function withLatency(
  inner: Transport,
  clock: ManualClock,
  latencyMs: number,
  jitter: { ms: number; random: () => number },
): Transport {
  let lastDeliveryMs = Number.NEGATIVE_INFINITY;
  return {
    publish: (subject, bytes) => {
      const now = clock.nowMs();
      const at = Math.max(
        lastDeliveryMs,
        now + latencyMs + Math.round(jitter.random() * jitter.ms),
      );
      lastDeliveryMs = at;
      clock.setTimer(() => inner.publish(subject, bytes), at - now);
    },
    subscribe: (subject, handler) => inner.subscribe(subject, handler),
    flush: () => inner.flush(),
    onStatus: (listener) => inner.onStatus(listener),
    close: () => inner.close(),
  };
}

export async function runSim(o: SimOptions = {}): Promise<SimResult> {
  const nodeCount = o.nodes ?? 8;
  const syncIntervalMs = o.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS;
  const latencyMs = o.latencyMs ?? 3;
  const durationMs = o.durationMs ?? 12_000;
  const rate = o.hitsPerMsPerNode ?? 0.35;
  const rule: RuleConfig = {
    name: "api",
    mode: "global",
    algorithm: "sliding-window",
    limit: o.limit ?? 300,
    windowMs: WINDOW_MS,
  };
  const clock = new ManualClock(1_000_000 + (o.clockPhaseMs ?? 0));
  const bus = createMemoryBus();
  const jitter = { ms: o.jitterMs ?? 0, random: seededRandom(o.seed ?? 1) };
  const compiled = createLimiter({ rules: [rule], clock, sweepIntervalMs: 0 }).rules;
  const aggregator = createAggregatorService({
    rules: compiled,
    transport: withLatency(bus.connect(), clock, latencyMs, jitter),
    clock,
    aggregatorId: "agg",
    syncIntervalMs,
    ...o.aggregator,
    warmupMs: 0,
  });
  const eventAtMs = o.eventAtMs ?? 6000;
  const nodes: { limiter: Limiter; agent: NodeAgent; owed: number; closed: boolean }[] = [];
  const addNode = (i: number) => {
    const limiter = createLimiter({ rules: [rule], clock, sweepIntervalMs: 0 });
    const agent = createNodeAgent({
      limiter,
      transport: withLatency(bus.connect(), clock, latencyMs, jitter),
      clock,
      nodeId: `n${i}`,
      syncIntervalMs,
      heartbeatIntervalMs: 200,
      initialLiveNodes: nodeCount,
    });
    nodes.push({ limiter, agent, owed: 0, closed: false });
  };
  const initial = o.event === "join" ? nodeCount - 1 : nodeCount;
  for (let i = 0; i < initial; i++) {
    clock.advance(7);
    await bus.settle();
    addNode(i);
  }
  for (let i = 0; i < 20; i++) {
    clock.advance(50);
    await bus.settle();
  }
  const half = Math.floor(nodeCount / 2);
  const arrivals = seededRandom((o.seed ?? 1) + 1000);
  const rateOf = (i: number, t: number): number => {
    if (o.skewed === true) return (rate * 4) / 2 ** i;
    if (o.event !== "shift") return rate;
    return i < half === t < eventAtMs ? 2 * rate : 0;
  };
  const admitted = new Float64Array(durationMs);
  const perNode = Array.from({ length: nodeCount }, () => ({ offered: 0, admitted: 0 }));
  for (let t = 0; t < durationMs; t++) {
    if (t === eventAtMs && o.event === "join") addNode(nodeCount - 1);
    if (t === eventAtMs && o.event === "leave") {
      const last = nodes[nodes.length - 1]!;
      last.closed = true;
      await last.agent.close();
    }
    for (const [i, n] of nodes.entries()) {
      if (n.closed) continue;
      let hits: number;
      if (o.randomArrivals === true) hits = poisson(rateOf(i, t), arrivals);
      else {
        n.owed += rateOf(i, t);
        hits = Math.floor(n.owed);
        n.owed -= hits;
      }
      for (let h = 0; h < hits; h++) {
        const ok = n.limiter.check("api", "hot").allowed;
        if (ok) admitted[t]!++;
        if (t >= 2000) {
          perNode[i]!.offered++;
          if (ok) perNode[i]!.admitted++;
        }
      }
    }
    clock.advance(1);
    await bus.settle();
  }
  for (const n of nodes) {
    await n.agent.close();
    await n.limiter.close();
  }
  await aggregator.close();

  // Per 25 ms bucket, as the process bench measures: bucket b ends at (b + 1) * 25 ms.
  const bucketMs = 25;
  const buckets = new Float64Array(Math.ceil(durationMs / bucketMs));
  for (let t = 0; t < durationMs; t++) buckets[Math.floor(t / bucketMs)]! += admitted[t]!;
  const ratioSeries = windowSums(buckets, WINDOW_MS / bucketMs).map((x) => x / rule.limit);
  const from = 2000 / bucketMs - 1;
  const last = buckets.length - 1;
  const ratios = [...ratioSeries.subarray(from, last + 1)];
  const late = ratios.slice(Math.floor(ratios.length / 2));
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  const r4 = (x: number) => Math.round(x * 10_000) / 10_000;
  const seconds = (durationMs - 2000) / 1000;
  const result: SimResult = {
    perNode: perNode.map((x) => ({
      offeredPerSec: Math.round((x.offered / seconds) * 10) / 10,
      admittedPerSec: Math.round((x.admitted / seconds) * 10) / 10,
    })),
    meanRatio: r4(mean(ratios)),
    lowestWindowRatio: r4(Math.min(...ratios)),
    worstWindowRatio: r4(Math.max(...ratios)),
    coldWorstWindowRatio: r4(Math.max(...ratioSeries.subarray(0, from))),
    admittedPerBucket: [...buckets],
    lateMeanRatio: r4(mean(late)),
    lateLowestWindowRatio: r4(Math.min(...late)),
    lateWorstWindowRatio: r4(Math.max(...late)),
  };
  if (o.event === undefined) return result;
  const endOf = (b: number) => (b + 1) * bucketMs;
  const c = convergence([ratioSeries], endOf, eventAtMs, last, {
    tolerance: 0.05,
    holdMs: WINDOW_MS,
    lookMs: 2000,
  });
  return {
    ...result,
    event: {
      convergeMs: c.convergeMs,
      firstBackInBandMs: c.firstBackInBandMs,
      minRatioAfter: r4(c.minRatio),
      maxRatioAfter: r4(c.maxRatio),
      around: Object.fromEntries(
        SIM_AROUND_MS.map((off) => [
          String(off),
          r4(ratioSeries[Math.ceil((eventAtMs + off) / bucketMs) - 1] ?? Number.NaN),
        ]),
      ),
    },
  };
}
