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
import { compileRules, loadRules } from "../config/rules-file.js";
import { InvalidArgumentError } from "../errors.js";
import { createLimiter, type Limiter } from "../limiter/limiter.js";
import { createMemoryBus } from "../transport/memory.js";
import { TransportUnavailableError } from "../transport/transport.js";
import { flag, num, parse, str } from "./args.js";
import type { Command } from "./command.js";
import { connect, NATS_HELP, NATS_OPTIONS, natsUrl } from "./common.js";
import { Board, lifetime, type Plan } from "./demo-board.js";
import { type LoadReport, runLoad } from "./load.js";

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
  aggregators: { type: "string" },
  json: { type: "boolean" },
} as const;

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
    "  --aggregators N    aggregators, 1..4 (default 1); with 2 or more they run as a group",
    "                     (JetStream KV, so the server needs -js) and the first is killed",
    "                     (SIGKILL) at half time: watch the others take its partitions over",
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
      aggregators: num(p, "aggregators", 1, { integer: true, min: 1, max: 4 }),
    };
    if (plan.aggregators > 1 && flag(p, "in-memory")) {
      throw new InvalidArgumentError("--aggregators", "1 with --in-memory", plan.aggregators);
    }
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

async function runProcesses(plan: Plan, args: string[]): Promise<number> {
  const bin = fileURLToPath(new URL("../../../bin/sluice.js", import.meta.url));
  const prefix = `demo-${randomBytes(3).toString("hex")}`;
  const passThrough = passNatsArgs(args);
  const board = new Board(plan);
  const children: ChildProcess[] = [];
  const timers: NodeJS.Timeout[] = [];
  const finals = new Map<string, Record<string, unknown>>();
  const killed = new Set<string>();
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
      if (code !== 0 && signal !== "SIGTERM" && !killed.has(name) && !plan.json)
        console.error(`${name} exited with ${code ?? signal}`);
    });
    return child;
  };
  const group = plan.aggregators > 1;
  if (!plan.json) {
    const aggregators = group ? `${plan.aggregators} aggregators (a group)` : "1 aggregator";
    console.log(
      `sluice demo: ${aggregators} + ${plan.nodes} nodes over NATS (subjects ${prefix}.v1.*), rule ${plan.rule} = ${plan.limit} per ${plan.windowMs} ms per key, each node offering ${plan.rate} hits/s for ${plan.durationMs / 1000} s`,
    );
  }
  const aggregators = Array.from({ length: plan.aggregators }, (_, i) => {
    const id = `agg-${i + 1}`;
    const groupArgs = group
      ? [
          "--id",
          id,
          "--group",
          prefix.replace(/-/g, "_"),
          "--partitions",
          "16",
          "--lease-ms",
          "1000",
        ]
      : [];
    return start(
      id,
      [
        "aggregator",
        "--rules",
        plan.rulesSource,
        "--report-ms",
        "1000",
        "--duration-ms",
        String(plan.durationMs + 3000),
        ...groupArgs,
      ],
      (o) => {
        if (o["type"] !== "aggregator") return;
        finals.set(id, o);
        board.aggregatorNote = [...finals.values()].map(aggregatorNote).join("; ");
      },
    );
  });
  if (group) {
    timers.push(
      setTimeout(() => {
        if (!plan.json)
          board.note("-- agg-1 killed (SIGKILL): the others take its partitions over");
        finals.delete("agg-1");
        killed.add("agg-1");
        aggregators[0]!.kill("SIGKILL");
      }, plan.durationMs / 2),
    );
  }
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
  for (const a of aggregators) a.kill("SIGTERM");
  await Promise.all(
    children.map((c) =>
      c.exitCode !== null || c.signalCode !== null
        ? Promise.resolve()
        : new Promise((r) => c.once("exit", r)),
    ),
  );
  const last = [...finals.values()];
  board.printSummary({
    mode: group ? `processes over NATS, ${plan.aggregators} aggregators` : "processes over NATS",
    invalidMessages: Object.assign({}, ...last.map((o) => o["invalidMessages"] ?? {})),
    grantsSent: last.reduce((n, o) => n + ((o["grantsSent"] as number | undefined) ?? 0), 0),
    ...(group ? { aggregators: last.map(memberSummary) } : {}),
  });
  return 0;
}

/** A group member at the end: its id, partitions held and taken over. */
function memberSummary(o: Record<string, unknown>): Record<string, unknown> {
  const g = o["group"] as { owned: number; takeovers: number } | undefined;
  return { id: o["aggregatorId"], partitions: g?.owned, takeovers: g?.takeovers };
}

/** One aggregator's part of the progress line: nodes and grants, and its partitions in a group. */
function aggregatorNote(o: Record<string, unknown>): string {
  const g = o["group"] as { owned: number; takeovers: number } | undefined;
  const owned = g === undefined ? "" : `${g.owned} partitions (${g.takeovers} taken over), `;
  return `${o["aggregatorId"]}: ${owned}${o["liveNodes"]} nodes, ${o["grantsSent"]} grants`;
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
