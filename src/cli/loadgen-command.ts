/** `sluice loadgen`: one service node (limiter + agent) under generated load, for demos and tests. */
import { createNodeAgent } from "../agent/node-agent.js";
import { wallClockMs } from "../clock/clock.js";
import { loadRules } from "../config/rules-file.js";
import { InvalidArgumentError } from "../errors.js";
import { createLimiter } from "../limiter/limiter.js";
import { DEFAULT_SYNC_INTERVAL_MS, SYNC_INTERVAL_BOUNDS } from "../protocol/limits.js";
import { createVerifier } from "../protocol/signing.js";
import { flag, num, type Parsed, parse, str, untilSignal } from "./args.js";
import type { Command } from "./command.js";
import {
  connect,
  emit,
  NATS_HELP,
  NATS_OPTIONS,
  startTelemetry,
  subjectPrefix,
  TELEMETRY_OPTIONS,
  telemetryHelp,
  telemetrySpec,
} from "./common.js";
import { parseSchedule, runLoad } from "./load.js";

/** Longest `--start-at-ms` wait accepted: further ahead is taken for a unit mistake. */
const MAX_START_WAIT_MS = 10 * 60_000;

const OPTIONS = {
  ...NATS_OPTIONS,
  rules: { type: "string" },
  rule: { type: "string" },
  "node-id": { type: "string" },
  rate: { type: "string" },
  schedule: { type: "string" },
  keys: { type: "string" },
  zipf: { type: "string" },
  track: { type: "string" },
  "duration-ms": { type: "string" },
  "report-ms": { type: "string" },
  "sync-interval-ms": { type: "string" },
  "heartbeat-ms": { type: "string" },
  "stale-after-ms": { type: "string" },
  "expected-nodes": { type: "string" },
  "start-at-ms": { type: "string" },
  "verify-key": { type: "string" },
  json: { type: "boolean" },
  ...TELEMETRY_OPTIONS,
} as const;

export const loadgenCommand: Command = {
  summary: "run one service node under generated load (Zipf keys), reporting what it admitted",
  usage: [
    "Usage: sluice loadgen [options]",
    "",
    "Starts a limiter and a node agent, offers hits on keys k0..k<n-1> drawn from a Zipf",
    "distribution, and reports admitted/rejected per interval. Ends after --duration-ms.",
    "",
    "  --rules FILE          rules file, or builtin:demo (default)",
    "  --rule NAME           the rule to load (default: the first global rule)",
    "  --node-id ID          node id, [A-Za-z0-9_-]{1,64} (default: <host>-<pid>)",
    "  --rate N              hits per second (default 500)",
    '  --schedule S          rate over time instead of --rate: "ms:rate,..." e.g. "0:500,5000:0"',
    "  --keys N              distinct keys (default 100)",
    "  --zipf S              Zipf exponent, 0 = uniform (default 1.1)",
    "  --track N             top keys reported one by one (default 3)",
    "  --duration-ms N       how long to run (default 10000)",
    "  --report-ms N         report period, wall-clock aligned (default 100)",
    `  --sync-interval-ms N  batch period (default ${DEFAULT_SYNC_INTERVAL_MS})   --heartbeat-ms N (default 500)`,
    "  --stale-after-ms N    aggregator silence before the loss policy (default 2000)",
    "  --expected-nodes N    live nodes assumed until the aggregator says (default 1)",
    "  --start-at-ms T       connect now, start the load at wall-clock time T (Unix ms), so",
    "                        several processes' schedules line up (default: once connected)",
    "  --verify-key K[,K]    the aggregator group's public key(s) (`sluice keygen`): unsigned or",
    "                        wrongly signed updates are dropped and counted",
    "  --json                reports as JSON lines",
    ...telemetryHelp(24),
    "",
    NATS_HELP,
  ].join("\n"),
  async run(args) {
    const p = parse(args, OPTIONS);
    const rules = loadRules(str(p, "rules", "builtin:demo"));
    const ruleName = str(p, "rule", rules.find((r) => r.mode === "global")?.name ?? rules[0]!.name);
    if (!rules.some((r) => r.name === ruleName)) {
      throw new InvalidArgumentError(
        "--rule",
        `one of ${rules.map((r) => r.name).join(", ")}`,
        ruleName,
      );
    }
    const schedule =
      typeof p.values["schedule"] === "string"
        ? parseSchedule(p.values["schedule"])
        : ([[0, num(p, "rate", 500, { min: 0 })]] as const);
    const durationMs = num(p, "duration-ms", 10_000, { min: 1 });
    const json = flag(p, "json");
    const telemetryOptions = telemetrySpec(p);
    const startAtMs = num(p, "start-at-ms", Number.NaN, { min: 0 });
    // A start instant already past starts at once; one far ahead is taken for a unit mistake.
    if (startAtMs - wallClockMs() > MAX_START_WAIT_MS) {
      throw new InvalidArgumentError(
        "--start-at-ms",
        `a wall-clock time (Unix ms) at most ${MAX_START_WAIT_MS / 60_000} min ahead`,
        p.values["start-at-ms"],
      );
    }
    // Every option is read before connecting, so a bad one fails with nothing left open.
    const nodeId = p.values["node-id"];
    const tuning = {
      ...(typeof nodeId === "string" ? { nodeId } : {}),
      ...subjectPrefix(p),
      syncIntervalMs: num(p, "sync-interval-ms", DEFAULT_SYNC_INTERVAL_MS, SYNC_INTERVAL_BOUNDS),
      heartbeatIntervalMs: num(p, "heartbeat-ms", 500, { min: 50 }),
      staleAfterMs: num(p, "stale-after-ms", 2000, { min: 1 }),
      initialLiveNodes: num(p, "expected-nodes", 1, { integer: true, min: 1, max: 65_535 }),
      ...verifyKeysOf(p),
    };
    const transport = await connect(p, "sluice-loadgen");
    const limiter = createLimiter({ rules });
    const agent = createNodeAgent({ limiter, transport, ...tuning });
    const telemetry = await startTelemetry(telemetryOptions, "sluice-node").catch(
      async (err: unknown) => {
        await agent.close();
        await transport.close();
        await limiter.close();
        throw err;
      },
    );
    telemetry?.observeLimiter(limiter, { node: agent.nodeId });
    telemetry?.observeAgent(agent);
    if (telemetry?.prometheusUrl !== undefined) {
      if (json) emit({ type: "metrics", node: agent.nodeId, url: telemetry.prometheusUrl });
      else console.log(`sluice loadgen ${agent.nodeId}: metrics on ${telemetry.prometheusUrl}`);
    }
    // The agent's last batch and leaving notice are flushed before the connection closes.
    const shutdown = async () => {
      await agent.close();
      await telemetry?.close();
      await transport.flush().catch(() => {});
      await transport.close();
    };
    let admitted = 0;
    let rejected = 0;
    // A timer may fire up to a millisecond before the wall clock reaches its end: wait again
    // until the start instant has really come.
    let waitMs = Number.isNaN(startAtMs) ? 0 : startAtMs - wallClockMs();
    for (; waitMs > 0; waitMs = startAtMs - wallClockMs()) {
      if ((await untilSignal(Math.ceil(waitMs))) !== "duration") {
        // Stopped before the load began: nothing was offered, nothing to report.
        await shutdown();
        await limiter.close();
        return 0;
      }
    }
    if (json) emit({ type: "loadgen-start", node: agent.nodeId, atWallMs: wallClockMs() });
    const load = runLoad({
      limiter,
      rule: ruleName,
      schedule,
      keys: num(p, "keys", 100, { integer: true, min: 1, max: 10_000_000 }),
      zipf: num(p, "zipf", 1.1, { min: 0, max: 10 }),
      trackKeys: num(p, "track", 3, { integer: true, min: 0, max: 1000 }),
      reportMs: num(p, "report-ms", 100, { min: 10 }),
      durationMs,
      onReport: (r) => {
        admitted += r.admitted;
        rejected += r.rejected;
        const s = agent.stats();
        if (json) {
          emit({
            type: "loadgen",
            node: agent.nodeId,
            rule: ruleName,
            ...r,
            liveNodes: s.liveNodes,
            aggregatorLost: s.aggregatorLost,
            grantsReceived: s.grantsReceived,
          });
        }
      },
    });
    if (!json)
      console.log(`sluice loadgen ${agent.nodeId}: loading rule ${ruleName} for ${durationMs} ms`);
    const why = await Promise.race([load.done.then(() => "duration"), untilSignal()]);
    load.stop();
    await shutdown();
    const s = agent.stats();
    if (json)
      emit({
        type: "loadgen-summary",
        node: agent.nodeId,
        rule: ruleName,
        admitted,
        rejected,
        why,
        agent: s,
      });
    else
      console.log(
        `sluice loadgen ${agent.nodeId}: admitted ${admitted}, rejected ${rejected} (${why})`,
      );
    await limiter.close();
    return 0;
  },
};

/** `--verify-key`, checked now (a bad key fails before anything is opened). */
function verifyKeysOf(p: Parsed): { verifyKeys?: string[] } {
  const raw = p.values["verify-key"];
  if (typeof raw !== "string") return {};
  const keys = raw.split(",").map((k) => k.trim());
  createVerifier(keys);
  return { verifyKeys: keys };
}
