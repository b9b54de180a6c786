/**
 * `sluice demo`: an aggregator and several service nodes, each a separate process, sharing one
 * global limit over NATS under generated load, with live progress and a closing summary.
 * `--in-memory` runs the same in one process on the in-memory bus (no NATS needed).
 *
 * The script: every node offers Zipf-distributed hits; the hottest key (k0) is offered above its
 * global limit, so the aggregator has to split it. The last node joins a third of the way in and
 * the first node leaves at two thirds, so shares move while you watch.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createNodeAgent } from "../agent/node-agent.js";
import { createAggregatorService } from "../aggregator/aggregator-service.js";
import { wallClockMs } from "../clock/clock.js";
import { compileRules, loadRules } from "../config/rules-file.js";
import { InvalidArgumentError } from "../errors.js";
import { createLimiter, type Limiter } from "../limiter/limiter.js";
import { createMemoryBus } from "../transport/memory.js";
import { TransportUnavailableError } from "../transport/transport.js";
import { flag, num, parse, str } from "./args.js";
import type { Command } from "./command.js";
import { connect, NATS_HELP, NATS_OPTIONS, natsUrl } from "./common.js";
import { type LoadReport, runLoad } from "./load.js";

/** How long after a second ends its per-second line waits for that second's last reports. */
const REPORT_GRACE_MS = 300;

const OPTIONS = {
  ...NATS_OPTIONS,
  rules: { type: "string" },
  rule: { type: "string" },
  nodes: { type: "string" },
  rate: { type: "string" },
  keys: { type: "string" },
  zipf: { type: "string" },
  "duration-ms": { type: "string" },
  "in-memory": { type: "boolean" },
  json: { type: "boolean" },
} as const;

interface Plan {
  readonly rulesSource: string;
  readonly rule: string;
  readonly limit: number;
  readonly windowMs: number;
  readonly nodes: number;
  readonly rate: number;
  readonly keys: number;
  readonly zipf: number;
  readonly durationMs: number;
  readonly json: boolean;
}

/** [joinMs, leaveMs] of node i: the last joins at D/3, the first leaves at 2D/3. */
function lifetime(i: number, plan: Plan): [number, number] {
  const join = plan.nodes > 2 && i === plan.nodes - 1 ? Math.round(plan.durationMs / 3) : 0;
  const leave = plan.nodes > 1 && i === 0 ? Math.round((plan.durationMs * 2) / 3) : plan.durationMs;
  return [join, leave];
}

export const demoCommand: Command = {
  summary: "run an aggregator and several nodes (processes) sharing one limit, with live progress",
  usage: [
    "Usage: sluice demo [options]",
    "",
    "Starts an aggregator and --nodes service nodes as separate processes talking over NATS,",
    "loads them with Zipf-distributed hits whose hottest key is offered above its global limit,",
    "and shows each second how much of the limit was admitted and how it was shared. One node",
    "joins a third of the way in and one leaves at two thirds. Ends with a summary.",
    "",
    "  --nodes N          service nodes (default 4)",
    "  --rate N           hits per second offered by each node (default 3000)",
    "  --keys N           distinct keys (default 100)    --zipf S   Zipf exponent (default 1.1)",
    "  --duration-ms N    how long to run (default 15000)",
    "  --rules FILE       rules file (default builtin:demo)   --rule NAME (default: first global)",
    "  --in-memory        everything in this process on an in-memory bus (no NATS needed)",
    "  --json             progress and summary as JSON lines",
    "",
    NATS_HELP,
  ].join("\n"),
  async run(args) {
    const p = parse(args, OPTIONS);
    const rulesSource = str(p, "rules", "builtin:demo");
    const rules = compileRules(loadRules(rulesSource));
    const ruleName = str(p, "rule", rules.find((r) => r.mode === "global")?.name ?? "");
    const rule = rules.find((r) => r.name === ruleName && r.mode === "global");
    if (rule === undefined) {
      throw new InvalidArgumentError(
        "--rule",
        `a global rule of ${rulesSource} (${
          rules
            .filter((r) => r.mode === "global")
            .map((r) => r.name)
            .join(", ") || "none"
        })`,
        ruleName,
      );
    }
    const plan: Plan = {
      rulesSource,
      rule: rule.name,
      limit: rule.limit,
      windowMs: rule.windowMs,
      nodes: num(p, "nodes", 4, { integer: true, min: 1, max: 32 }),
      rate: num(p, "rate", 3000, { min: 1, max: 200_000 }),
      keys: num(p, "keys", 100, { integer: true, min: 1, max: 1_000_000 }),
      zipf: num(p, "zipf", 1.1, { min: 0, max: 10 }),
      durationMs: num(p, "duration-ms", 15_000, { min: 1000, max: 3_600_000 }),
      json: flag(p, "json"),
    };
    if (flag(p, "in-memory")) return runInMemory(plan);
    try {
      const probe = await connect(p, "sluice-demo-probe");
      await probe.close();
    } catch (err) {
      if (!(err instanceof TransportUnavailableError)) throw err;
      console.error(`sluice demo: no NATS server answered at ${natsUrl(p)}.`);
      console.error(`  (${err.message})`);
      console.error("  Start one, e.g. `nats-server -js`, and set --nats or NATS_URL to it;");
      console.error("  or run the same demo in one process on an in-memory bus:");
      console.error("    sluice demo --in-memory");
      if (process.stdin.isTTY && (await ask("Run it in memory now? [Y/n] ")))
        return runInMemory(plan);
      return 1;
    }
    return runProcesses(plan, args);
  },
};

function ask(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  return new Promise((resolve) =>
    rl.question(question, (answer) => {
      rl.close();
      resolve(!/^n/i.test(answer.trim()));
    }),
  );
}

/** Per-second tallies of what the nodes reported, and the screen. */
class Board {
  readonly #plan: Plan;
  readonly #started = wallClockMs();
  /** second index -> node -> [hot admitted, hot rejected, all admitted, all rejected] */
  readonly #seconds = new Map<number, Map<string, number[]>>();
  /** Hot key admitted per report bucket (wall-clock aligned end -> count), for sliding windows. */
  readonly #hotByBucket = new Map<number, number>();
  #bucketMs = 0;
  #printed = -1;
  /** Notes (a node joins, leaves) waiting for the line of the second before them. */
  readonly #notes: { sec: number; text: string }[] = [];
  aggregatorNote = "";

  constructor(plan: Plan) {
    this.#plan = plan;
  }

  add(node: string, r: LoadReport): void {
    const sec = Math.floor((r.atWallMs - r.intervalMs - this.#started) / 1000);
    if (sec < 0) return;
    let byNode = this.#seconds.get(sec);
    if (byNode === undefined) {
      byNode = new Map();
      this.#seconds.set(sec, byNode);
    }
    const c = byNode.get(node) ?? [0, 0, 0, 0];
    const hot = r.tracked["k0"] ?? [0, 0];
    this.#bucketMs = r.intervalMs;
    this.#hotByBucket.set(r.atWallMs, (this.#hotByBucket.get(r.atWallMs) ?? 0) + hot[0]);
    c[0]! += hot[0];
    c[1]! += hot[1];
    c[2]! += r.admitted;
    c[3]! += r.rejected;
    byNode.set(node, c);
  }

  /**
   * Prints every full second not printed yet. A second is full once its last reports are in:
   * reports come every 100 ms and take a few ms to arrive, so a second is printed
   * REPORT_GRACE_MS after it ends (printed at once, its last reports would be missing and the
   * live lines would read below the summary).
   */
  render(final = false): void {
    const sinceStart = wallClockMs() - this.#started;
    const full = Math.floor((sinceStart - REPORT_GRACE_MS) / 1000); // seconds before it are full
    const last = final ? Math.floor(sinceStart / 1000) : full - 1;
    for (let sec = this.#printed + 1; sec <= last; sec++) {
      this.#printed = sec;
      // A note made during second s goes just before that second's line, after the line of
      // the second before it (which prints later than the note was made).
      while (this.#notes.length > 0 && this.#notes[0]!.sec <= sec) {
        console.log(this.#notes.shift()!.text);
      }
      const byNode = this.#seconds.get(sec);
      if (byNode === undefined) continue;
      const perSec = this.#perSecond(byNode);
      if (this.#plan.json) {
        process.stdout.write(
          `${JSON.stringify({ type: "demo-second", second: sec, ...perSec })}\n`,
        );
        continue;
      }
      const shares = Object.entries(perSec.hotByNode)
        .map(
          ([n, a]) =>
            `${n} ${perSec.hotAdmitted > 0 ? Math.round((a / perSec.hotAdmitted) * 100) : 0}%`,
        )
        .join("  ");
      const pct = ((perSec.hotAdmitted / perSec.limitPerSec) * 100).toFixed(1);
      console.log(
        `t=${String(sec + 1).padStart(3)}s  ${this.#plan.rule}/k0 ${String(perSec.hotAdmitted).padStart(5)}/s of ${perSec.limitPerSec}/s (${pct.padStart(5)}%)  rejected ${String(perSec.hotRejected).padStart(5)}/s  | shares: ${shares}${this.aggregatorNote ? `  | ${this.aggregatorNote}` : ""}`,
      );
    }
    if (final) for (const n of this.#notes.splice(0)) console.log(n.text);
  }

  /** Prints `text` between the per-second lines, where it happened. */
  note(text: string): void {
    this.#notes.push({ sec: Math.floor((wallClockMs() - this.#started) / 1000), text });
  }

  #perSecond(byNode: Map<string, number[]>) {
    const hotByNode: Record<string, number> = {};
    let hotAdmitted = 0;
    let hotRejected = 0;
    let admitted = 0;
    let rejected = 0;
    for (const [n, c] of [...byNode].sort((a, b) => a[0].localeCompare(b[0]))) {
      hotByNode[n] = c[0]!;
      hotAdmitted += c[0]!;
      hotRejected += c[1]!;
      admitted += c[2]!;
      rejected += c[3]!;
    }
    const limitPerSec = Math.round((this.#plan.limit * 1000) / this.#plan.windowMs);
    return { hotAdmitted, hotRejected, admitted, rejected, hotByNode, limitPerSec };
  }

  summary(): Record<string, unknown> {
    const secs = [...this.#seconds.keys()].sort((a, b) => a - b).slice(1, -1); // full seconds only
    const rows = secs.map((s) => this.#perSecond(this.#seconds.get(s)!));
    const limitPerSec = Math.round((this.#plan.limit * 1000) / this.#plan.windowMs);
    const ratios = rows.map((r) => r.hotAdmitted / limitPerSec);
    const mean = ratios.reduce((a, b) => a + b, 0) / Math.max(1, ratios.length);
    return {
      type: "demo-summary",
      rule: this.#plan.rule,
      limitPerSec,
      seconds: rows.length,
      hotKeyMeanRatio: Math.round(mean * 1000) / 1000,
      hotKeyWorstSecondRatio: Math.round(Math.max(0, ...ratios) * 1000) / 1000,
      hotKeyWorstWindowRatio: Math.round(this.#worstWindow() * 1000) / 1000,
      hotKeyLowestSecondRatio: Math.round(Math.min(Infinity, ...ratios) * 1000) / 1000,
      admitted: rows.reduce((a, r) => a + r.admitted, 0),
      rejected: rows.reduce((a, r) => a + r.rejected, 0),
    };
  }

  /**
   * The hot key's most admitted in any window of the rule's length, over the limit, from the
   * very first window (the cold start included), read at every report bucket's end.
   */
  #worstWindow(): number {
    const ends = [...this.#hotByBucket.keys()].sort((a, b) => a - b);
    if (ends.length === 0 || this.#bucketMs <= 0) return 0;
    let worst = 0;
    let sum = 0;
    let first = 0;
    for (const end of ends) {
      sum += this.#hotByBucket.get(end)!;
      while (ends[first]! <= end - this.#plan.windowMs)
        sum -= this.#hotByBucket.get(ends[first++]!)!;
      if (sum > worst) worst = sum;
    }
    return worst / this.#plan.limit;
  }

  printSummary(extra: Record<string, unknown>): void {
    const s = { ...this.summary(), ...extra };
    if (this.#plan.json) {
      process.stdout.write(`${JSON.stringify(s)}\n`);
      return;
    }
    console.log("");
    console.log("Summary");
    console.log(
      `  rule ${s["rule"]}, hottest key k0, global limit ${s["limitPerSec"]}/s, ${s["seconds"]} full seconds`,
    );
    console.log(
      `  k0 admitted per second / limit: mean ${s["hotKeyMeanRatio"]}, highest ${s["hotKeyWorstSecondRatio"]}, lowest ${s["hotKeyLowestSecondRatio"]}`,
    );
    console.log(
      `  k0 in any ${this.#plan.windowMs} ms window from the first one / limit: at most ${s["hotKeyWorstWindowRatio"]}`,
    );
    console.log(`  all keys: admitted ${s["admitted"]}, rejected ${s["rejected"]}`);
    for (const [k, v] of Object.entries(extra))
      console.log(`  ${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
}

async function runProcesses(plan: Plan, args: string[]): Promise<number> {
  const bin = fileURLToPath(new URL("../../../bin/sluice.js", import.meta.url));
  const prefix = `demo-${randomBytes(3).toString("hex")}`;
  const passThrough = passNatsArgs(args);
  const board = new Board(plan);
  const children: ChildProcess[] = [];
  const timers: NodeJS.Timeout[] = [];
  let aggregatorFinal: Record<string, unknown> = {};
  const start = (name: string, argv: string[], onLine: (obj: Record<string, unknown>) => void) => {
    const child = spawn(
      process.execPath,
      [bin, ...argv, ...passThrough, "--prefix", prefix, "--json"],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    children.push(child);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        onLine(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a JSON line: ignore
      }
    });
    child.on("exit", (code, signal) => {
      if (code !== 0 && signal !== "SIGTERM" && !plan.json)
        console.error(`${name} exited with ${code ?? signal}`);
    });
    return child;
  };
  if (!plan.json) {
    console.log(
      `sluice demo: 1 aggregator + ${plan.nodes} nodes over NATS (subjects ${prefix}.v1.*), rule ${plan.rule} = ${plan.limit} per ${plan.windowMs} ms per key, each node offering ${plan.rate} hits/s for ${plan.durationMs / 1000} s`,
    );
  }
  const aggregator = start(
    "aggregator",
    [
      "aggregator",
      "--rules",
      plan.rulesSource,
      "--report-ms",
      "1000",
      "--duration-ms",
      String(plan.durationMs + 3000),
    ],
    (o) => {
      if (o["type"] === "aggregator") {
        aggregatorFinal = o;
        board.aggregatorNote = `aggregator: ${o["liveNodes"]} nodes, ${o["grantsSent"]} grants sent`;
      }
    },
  );
  await new Promise((r) => setTimeout(r, 500));
  for (let i = 0; i < plan.nodes; i++) {
    const [join, leave] = lifetime(i, plan);
    const node = `node-${i}`;
    timers.push(
      setTimeout(() => {
        if (!plan.json && join > 0) board.note(`-- ${node} joins`);
        start(
          node,
          [
            "loadgen",
            "--rules",
            plan.rulesSource,
            "--rule",
            plan.rule,
            "--node-id",
            node,
            "--rate",
            String(plan.rate),
            "--keys",
            String(plan.keys),
            "--zipf",
            String(plan.zipf),
            "--duration-ms",
            String(leave - join),
            "--expected-nodes",
            String(plan.nodes),
          ],
          (o) => {
            if (o["type"] === "loadgen") board.add(node, o as unknown as LoadReport);
            if (o["type"] === "loadgen-summary" && leave < plan.durationMs && !plan.json)
              board.note(`-- ${node} leaves`);
          },
        );
      }, join),
    );
  }
  const ticker = setInterval(() => board.render(), 250);
  await new Promise((r) => setTimeout(r, plan.durationMs + 1500));
  clearInterval(ticker);
  board.render(true);
  for (const t of timers) clearTimeout(t);
  aggregator.kill("SIGTERM");
  await Promise.all(
    children.map((c) =>
      c.exitCode !== null ? Promise.resolve() : new Promise((r) => c.once("exit", r)),
    ),
  );
  board.printSummary({
    mode: "processes over NATS",
    invalidMessages: aggregatorFinal["invalidMessages"] ?? {},
    grantsSent: aggregatorFinal["grantsSent"] ?? 0,
  });
  return 0;
}

/** The NATS options of the demo's own command line, for its children. */
function passNatsArgs(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const name = a.replace(/^--/, "").split("=")[0]!;
    if (name !== "prefix" && name in NATS_OPTIONS) {
      out.push(a);
      if (!a.includes("=") && i + 1 < args.length) out.push(args[++i]!);
    }
  }
  return out;
}

async function runInMemory(plan: Plan): Promise<number> {
  const rules = loadRules(plan.rulesSource);
  const bus = createMemoryBus();
  const aggTransport = bus.connect();
  const aggregator = createAggregatorService({
    rules: compileRules(rules),
    transport: aggTransport,
    aggregatorId: "agg",
  });
  const board = new Board(plan);
  if (!plan.json) {
    console.log(
      `sluice demo (in memory): 1 aggregator + ${plan.nodes} nodes in this process, rule ${plan.rule} = ${plan.limit} per ${plan.windowMs} ms per key, each node offering ${plan.rate} hits/s for ${plan.durationMs / 1000} s`,
    );
  }
  const runs: Promise<void>[] = [];
  const timers: NodeJS.Timeout[] = [];
  const limiters: Limiter[] = [];
  for (let i = 0; i < plan.nodes; i++) {
    const [join, leave] = lifetime(i, plan);
    const node = `node-${i}`;
    runs.push(
      new Promise<void>((resolve) => {
        timers.push(
          setTimeout(async () => {
            if (!plan.json && join > 0) board.note(`-- ${node} joins`);
            const limiter = createLimiter({ rules });
            limiters.push(limiter);
            const transport = bus.connect();
            const agent = createNodeAgent({
              limiter,
              transport,
              nodeId: node,
              initialLiveNodes: plan.nodes,
            });
            const load = runLoad({
              limiter,
              rule: plan.rule,
              schedule: [[0, plan.rate]],
              keys: plan.keys,
              zipf: plan.zipf,
              durationMs: leave - join,
              onReport: (r) => board.add(node, r),
            });
            await load.done;
            await agent.close();
            await transport.close();
            await limiter.close();
            if (leave < plan.durationMs && !plan.json) board.note(`-- ${node} leaves`);
            resolve();
          }, join),
        );
      }),
    );
  }
  const ticker = setInterval(() => {
    const s = aggregator.stats();
    board.aggregatorNote = `aggregator: ${s.liveNodes} nodes, ${s.grantsSent} grants sent`;
    board.render();
  }, 250);
  await Promise.all(runs);
  await new Promise((r) => setTimeout(r, 1100));
  clearInterval(ticker);
  board.render(true);
  const s = aggregator.stats();
  await aggregator.close();
  await aggTransport.close();
  board.printSummary({
    mode: "in memory",
    invalidMessages: s.invalidMessages,
    grantsSent: s.grantsSent,
  });
  return 0;
}
