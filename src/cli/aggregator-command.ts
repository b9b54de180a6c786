/** `sluice aggregator`: runs the aggregator against NATS until stopped. */
import { readFileSync } from "node:fs";
import {
  type AggregatorGroupOptions,
  createAggregatorService,
  furthestClock,
} from "../aggregator/aggregator-service.js";
import { type AggregatorTuning, resolveTuning, TUNING_FIELDS } from "../aggregator/tuning.js";
import { compileRules, loadRules } from "../config/rules-file.js";
import { InvalidArgumentError } from "../errors.js";
import { MAX_OWNERS } from "../protocol/messages.js";
import { createSigner } from "../protocol/signing.js";
import { createRedisCheckpointStore } from "../store/redis/checkpoint-store.js";
import { type KvGroupStore, openKvGroupStore } from "../transport/nats/kv-group-store.js";
import type { Transport } from "../transport/transport.js";
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
  group: { type: "string" },
  partitions: { type: "string" },
  "lease-ms": { type: "string" },
  "group-replicas": { type: "string" },
  "signing-key-file": { type: "string" },
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
    "  --group BUCKET          run as one member of an aggregator group whose ownership and",
    "                          checkpoints live in this JetStream KV bucket (created if missing);",
    "                          start as many members as you like, with the same flags",
    "  --partitions N          the group's partition count, 1..256 (default 16); nodes take it",
    "                          from the group",
    "  --lease-ms N            a member's lease: how soon a silent member's partitions are taken",
    "                          over (default 1500)",
    "  --group-replicas N      copies of the bucket on a NATS cluster, when created (default 1)",
    "  --signing-key-file F    sign every update and defaults frame with this nkey seed",
    "                          (`sluice keygen --out F`); nodes check it with --verify-key",
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
    const groupSpec = groupSpecOf(p);
    const signingFile = p.values["signing-key-file"];
    const signer =
      typeof signingFile === "string" ? createSigner(readSeed(signingFile)) : undefined;
    const transport = await connect(p, "sluice-aggregator");
    const group =
      groupSpec === undefined
        ? undefined
        : await openGroup(transport, groupSpec).catch(async (err: unknown) => {
            await transport.close();
            throw err;
          });
    const checkpointUrl = p.values["checkpoint-redis"];
    const checkpoints =
      typeof checkpointUrl === "string"
        ? createRedisCheckpointStore({ url: checkpointUrl })
        : undefined;
    const service = createAggregatorService({
      rules,
      transport,
      ...tuning,
      ...(group === undefined ? {} : { group }),
      ...(signer === undefined ? {} : { signer }),
      ...(checkpoints === undefined
        ? {}
        : { checkpoint: { store: checkpoints, name: checkpointName } }),
    });
    await service.started.catch(async (err: unknown) => {
      await service.close();
      await transport.close();
      throw err;
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
        const g = s.group;
        const owned =
          g === undefined
            ? ""
            : `, partitions ${g.owned}${g.learning > 0 ? ` (${g.learning} learning)` : ""}, takeovers ${g.takeovers}, handoffs in/out ${g.handoffsIn}/${g.handoffsOut}`;
        console.log(
          `[aggregator ${s.aggregatorId}] nodes ${s.liveNodes}${skewed}${owned}, batches ${s.batches}, grants sent ${s.grantsSent}, invalid ${JSON.stringify(s.invalidMessages)} | ${rules}`,
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
    await service.close(); // a group member hands its partitions over first
    report();
    await checkpoints?.close();
    await (group?.store as KvGroupStore | undefined)?.close();
    await telemetry?.close();
    await transport.close();
    return 0;
  },
};

interface GroupSpec {
  readonly bucket: string;
  readonly partitions: number;
  readonly leaseMs: number;
  readonly replicas: number;
}

/** The group flags, checked before anything is opened; undefined without --group. */
function groupSpecOf(p: Parsed): GroupSpec | undefined {
  const bucket = p.values["group"];
  const partitions = num(p, "partitions", 16, { min: 1, max: MAX_OWNERS, integer: true });
  const leaseMs = num(p, "lease-ms", 1500, { min: 100, max: 60_000 });
  const replicas = num(p, "group-replicas", 1, { min: 1, max: 5, integer: true });
  if (typeof bucket !== "string") {
    for (const f of ["partitions", "lease-ms", "group-replicas"]) {
      if (p.values[f] !== undefined) {
        throw new InvalidArgumentError(`--${f}`, "to come with --group BUCKET", p.values[f]);
      }
    }
    return undefined;
  }
  return { bucket, partitions, leaseMs, replicas };
}

async function openGroup(transport: Transport, spec: GroupSpec): Promise<AggregatorGroupOptions> {
  const store = await openKvGroupStore(transport, {
    bucket: spec.bucket,
    replicas: spec.replicas,
  });
  return { store, partitions: spec.partitions, leaseMs: spec.leaseMs };
}

/** The seed in a key file (`sluice keygen --out`), or a usage error naming the file. */
function readSeed(file: string): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new InvalidArgumentError("--signing-key-file", "a readable seed file", file, {
      cause: err,
    });
  }
}
