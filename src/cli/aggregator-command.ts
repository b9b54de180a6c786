/** `sluice aggregator`: runs the aggregator against NATS until stopped. */
import { createAggregatorService, furthestClock } from "../aggregator/aggregator-service.js";
import { compileRules, loadRules } from "../config/rules-file.js";
import { DEFAULT_SYNC_INTERVAL_MS, SYNC_INTERVAL_BOUNDS } from "../protocol/limits.js";
import { createRedisCheckpointStore } from "../store/redis/checkpoint-store.js";
import { flag, num, parse, str, untilSignal } from "./args.js";
import {
  connect,
  emit,
  NATS_HELP,
  NATS_OPTIONS,
  natsUrl,
  startTelemetry,
  subjectPrefix,
  TELEMETRY_OPTIONS,
  telemetryHelp,
  telemetrySpec,
} from "./common.js";
import type { Command } from "./main.js";

/** A node clock further off than this is named in the progress line (as the alert's 0.5 s). */
const CLOCK_NOTE_MS = 500;

const OPTIONS = {
  ...NATS_OPTIONS,
  rules: { type: "string" },
  id: { type: "string" },
  "sync-interval-ms": { type: "string" },
  "node-ttl-ms": { type: "string" },
  "warmup-ms": { type: "string" },
  "lag-compensation-ms": { type: "string" },
  pacing: { type: "string" },
  "no-hit-wait": { type: "boolean" },
  "echo-damping": { type: "boolean" },
  "grant-ramp-ms": { type: "string" },
  "checkpoint-redis": { type: "string" },
  "checkpoint-name": { type: "string" },
  "report-ms": { type: "string" },
  "duration-ms": { type: "string" },
  json: { type: "boolean" },
  ...TELEMETRY_OPTIONS,
} as const;

export const aggregatorCommand: Command = {
  summary: "run the aggregator: global windows, membership, grants back to the nodes",
  usage: [
    "Usage: sluice aggregator [options]",
    "",
    "Receives decision batches and heartbeats from the nodes, keeps the global sliding windows",
    "and sends each node its grants every sync interval. Stops on SIGINT/SIGTERM.",
    "",
    "  --rules FILE            rules (YAML or JSON, top-level `rules:`), or builtin:demo (default)",
    "  --id ID                 aggregator id (default: agg-<host>-<pid>)",
    `  --sync-interval-ms N    grant period, 10..10000 (default ${DEFAULT_SYNC_INTERVAL_MS}); match the nodes`,
    "  --node-ttl-ms N         a node silent this long is dropped (default 3000)",
    "  --checkpoint-redis URL  save the global windows to Redis every second and restore them",
    "                          at start, so a restart needs no warm-up (e.g. redis://127.0.0.1:6379)",
    "  --checkpoint-name NAME  checkpoint key, stable across restarts (default sluice-aggregator)",
    "  --warmup-ms N           withhold grants this long after start while windows fill",
    "                          (default: the longest global window, at most 5000)",
    "  --grant-ramp-ms N       hand out with each grant the budget the window frees over the",
    "                          next N ms, usable on the node as it frees (opt-in; try the sync",
    "                          interval; default 0: grants usable at once)",
    "  --lag-compensation-ms N budget freed within N ms is granted now, usable at once",
    "                          (default: half the sync interval; 0.3 of it with a ramp)",
    "  --no-hit-wait           do not add to each key's lag the mean gap between its nodes'",
    "                          hits (added by default, at most half the sync interval)",
    "  --echo-damping          pace a newly overloaded key at 1.1x its steady rate for its",
    "                          first 2.5 windows, so admissions come out even (opt-in; see",
    '                          docs/architecture.md, "Echo damping", for its cost)',
    "  --pacing X              most new allowance per key per tick, in multiples of the rule's",
    "                          steady rate per tick; 0 = unpaced (default 1.5)",
    "  --report-ms N           progress period (default 1000)",
    "  --duration-ms N         stop by itself after N ms (default: run until stopped)",
    "  --json                  progress as JSON lines",
    ...telemetryHelp(26),
    "",
    NATS_HELP,
  ].join("\n"),
  async run(args) {
    const p = parse(args, OPTIONS);
    const rules = compileRules(loadRules(str(p, "rules", "builtin:demo")));
    const reportMs = num(p, "report-ms", 1000, { min: 50 });
    const durationMs =
      p.values["duration-ms"] === undefined ? undefined : num(p, "duration-ms", 0, { min: 1 });
    const json = flag(p, "json");
    const telemetryOptions = telemetrySpec(p);
    // Every option is read before connecting, so a bad one fails with nothing left open.
    const id = p.values["id"];
    const tuning = {
      ...(typeof id === "string" ? { aggregatorId: id } : {}),
      ...subjectPrefix(p),
      syncIntervalMs: num(p, "sync-interval-ms", DEFAULT_SYNC_INTERVAL_MS, SYNC_INTERVAL_BOUNDS),
      nodeTtlMs: num(p, "node-ttl-ms", 3000, { min: 10 }),
      ...(p.values["warmup-ms"] === undefined
        ? {}
        : { warmupMs: num(p, "warmup-ms", 0, { min: 0 }) }),
      ...(p.values["lag-compensation-ms"] === undefined
        ? {}
        : { lagCompensationMs: num(p, "lag-compensation-ms", 0, { min: 0 }) }),
      ...(p.values["grant-ramp-ms"] === undefined
        ? {}
        : { grantRampMs: num(p, "grant-ramp-ms", 0, { min: 0, max: 60_000 }) }),
      ...(p.values["pacing"] === undefined
        ? {}
        : { pacing: num(p, "pacing", 0, { min: 0, max: 1000 }) }),
      ...(flag(p, "no-hit-wait") ? { hitWaitCompensation: false } : {}),
      ...(flag(p, "echo-damping") ? { echoDamping: true } : {}),
    };
    const checkpointName = str(p, "checkpoint-name", "sluice-aggregator");
    const transport = await connect(p, "sluice-aggregator");
    const checkpointUrl = p.values["checkpoint-redis"];
    const checkpoints =
      typeof checkpointUrl === "string"
        ? createRedisCheckpointStore({ url: checkpointUrl })
        : undefined;
    const service = createAggregatorService({
      rules,
      transport,
      ...tuning,
      ...(checkpoints === undefined
        ? {}
        : { checkpoint: { store: checkpoints, name: checkpointName } }),
    });
    if (checkpoints !== undefined) {
      const keys = await service.restoreCheckpoint();
      if (!json) console.log(`sluice aggregator: restored ${keys} keys from the checkpoint`);
    }
    const telemetry = await startTelemetry(telemetryOptions, "sluice-aggregator").catch(
      async (err: unknown) => {
        await service.close();
        await checkpoints?.close();
        await transport.close();
        throw err;
      },
    );
    telemetry?.observeAggregator(service);
    if (telemetry?.prometheusUrl !== undefined) {
      if (json) emit({ type: "metrics", url: telemetry.prometheusUrl });
      else console.log(`sluice aggregator metrics on ${telemetry.prometheusUrl}`);
    }
    const started = performance.now();
    const report = () => {
      const s = service.stats();
      const usage = service.core.usage();
      if (json)
        emit({ type: "aggregator", tMs: Math.round(performance.now() - started), ...s, usage });
      else {
        const rules = usage
          .map((u) => `${u.rule}: ${u.keys} keys, hottest at ${(u.maxRatio * 100).toFixed(1)}%`)
          .join("; ");
        // The metric has the largest offset only (per-node series would outlive their nodes):
        // name the node here, as the alert's description says.
        const far = furthestClock(s.nodes);
        const skewed =
          far !== undefined && Math.abs(far.clockOffsetMs) > CLOCK_NOTE_MS
            ? `, clock of ${far.id} off by ${Math.round(far.clockOffsetMs)} ms`
            : "";
        console.log(
          `[aggregator ${s.aggregatorId}] nodes ${s.liveNodes}${skewed}, batches ${s.batches}, grants sent ${s.grantsSent}, invalid ${JSON.stringify(s.invalidMessages)} | ${rules}`,
        );
      }
    };
    const timer = setInterval(report, reportMs);
    if (!json)
      console.log(
        `sluice aggregator listening on ${natsUrl(p)} for rules ${rules.map((r) => r.name).join(", ")}`,
      );
    await untilSignal(durationMs);
    clearInterval(timer);
    report();
    await service.close();
    await checkpoints?.close();
    await telemetry?.close();
    await transport.close();
    return 0;
  },
};
