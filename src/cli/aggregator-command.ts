/** `sluice aggregator`: runs the aggregator against NATS until stopped. */
import { createAggregatorService, furthestClock } from "../aggregator/aggregator-service.js";
import { type AggregatorTuning, resolveTuning, TUNING_FIELDS } from "../aggregator/tuning.js";
import { compileRules, loadRules } from "../config/rules-file.js";
import { createRedisCheckpointStore } from "../store/redis/checkpoint-store.js";
import { flag, num, type OptionSpec, type Parsed, parse, str, untilSignal } from "./args.js";
import type { Command } from "./command.js";
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

/** `left` padded to a column, then `text` wrapped to fit 98 characters under it. */
function helpLines(left: string, text: string): string[] {
  const lines: string[] = [];
  let line = left.padEnd(26);
  for (const word of text.split(" ")) {
    if (line.length + word.length > 98 && line.trim() !== left.trim()) {
      lines.push(line.trimEnd());
      line = " ".repeat(26);
    }
    line += `${word} `;
  }
  lines.push(line.trimEnd());
  return lines;
}

/** `given` checked now (before anything is opened), keeping only what was given. */
function resolveTuningPartial(given: Partial<AggregatorTuning>): Partial<AggregatorTuning> {
  resolveTuning(given);
  return given;
}

/** A node clock further off than this is named in the progress line (as the alert's 0.5 s). */
const CLOCK_NOTE_MS = 500;

/** The tuning's flags, from its one declaration (tuning.ts). */
const TUNING_OPTIONS: OptionSpec = Object.fromEntries(
  TUNING_FIELDS.map((f) => [
    f.flag.slice(2),
    { type: f.kind === "boolean" ? "boolean" : "string" },
  ]),
);

/** The tuning given on the command line; the service checks the values (naming the field). */
function tuningOf(p: Parsed): Partial<AggregatorTuning> {
  const out: Record<string, number | boolean> = {};
  for (const f of TUNING_FIELDS) {
    const name = f.flag.slice(2);
    if (f.kind === "boolean") {
      if (flag(p, name)) out[f.name] = f.flagValue === true;
    } else if (p.values[name] !== undefined) {
      out[f.name] = num(p, name, 0, {
        ...(f.min === undefined ? {} : { min: f.min }),
        ...(f.max === undefined ? {} : { max: f.max }),
      });
    }
  }
  return out as Partial<AggregatorTuning>;
}

const OPTIONS = {
  ...NATS_OPTIONS,
  ...TUNING_OPTIONS,
  rules: { type: "string" },
  id: { type: "string" },
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
    "  --checkpoint-redis URL  save the global windows to Redis every second and restore them",
    "                          at start, so a restart needs no warm-up (e.g. redis://127.0.0.1:6379)",
    "  --checkpoint-name NAME  checkpoint key, stable across restarts (default sluice-aggregator)",
    "  --report-ms N           progress period (default 1000)",
    "  --duration-ms N         stop by itself after N ms (default: run until stopped)",
    "  --json                  progress as JSON lines",
    "",
    "Tuning (docs/architecture.md says what each does and costs):",
    ...TUNING_FIELDS.flatMap((f) =>
      helpLines(`  ${f.flag}${f.kind === "number" ? " N" : ""}`, f.help),
    ),
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
      ...resolveTuningPartial(tuningOf(p)),
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
      const usage = service.usage();
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
