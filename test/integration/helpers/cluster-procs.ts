/**
 * Process plumbing for the cluster tests: `sluice aggregator` and `sluice loadgen` as separate
 * child processes (their JSON lines parsed as they come), throwaway nats-servers on free loopback
 * ports, and rules files in a temp dir. Everything started here is owned by a {@link Cluster},
 * whose `stop()` (call it in `finally`) kills whatever is still running and removes the temp dir.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { NodeAgentStats } from "../../../src/agent/node-agent-stats.js";
import { systemBinary } from "./system-binary.js";

/** `bin/sluice.js` of this checkout (this file runs from `dist/test/integration/helpers/`). */
export const SLUICE_BIN = fileURLToPath(new URL("../../../../bin/sluice.js", import.meta.url));
/** The machine's shared nats-server; never stopped by these tests. */
export const SHARED_NATS = "nats://127.0.0.1:4222";

/** A subject prefix nobody else uses: `cl-<file>-<pid>-<random>`. */
export function uniquePrefix(file: string): string {
  return `cl-${file}-${process.pid}-${randomBytes(4).toString("hex")}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One report line of `sluice loadgen --json`. */
export interface LoadgenReport {
  type: "loadgen";
  node: string;
  rule: string;
  /** Wall-clock end of the report bucket; the bucket is (atWallMs - intervalMs, atWallMs]. */
  atWallMs: number;
  intervalMs: number;
  admitted: number;
  rejected: number;
  tracked: Record<string, [number, number]>;
  liveNodes: number;
  aggregatorLost: boolean;
  grantsReceived: number;
}

/** The last line of `sluice loadgen --json`. */
export interface LoadgenSummary {
  type: "loadgen-summary";
  node: string;
  rule: string;
  admitted: number;
  rejected: number;
  why: string;
  /** The agent's stats as JSON (the propagation histogram and Infinity do not survive it). */
  agent: Omit<NodeAgentStats, "propagation" | "aggregatorSilentMs">;
}

/** The line `sluice loadgen --json` prints when its load starts. */
export interface LoadgenStart {
  type: "loadgen-start";
  node: string;
  atWallMs: number;
}

/** One line of `sluice aggregator --json`. */
export interface AggregatorReport {
  type: "aggregator";
  tMs: number;
  aggregatorId: string;
  epoch: number;
  liveNodes: number;
  batches: number;
  entries: number;
  staleEntries: number;
  staleBatches: number;
  unknownRuleEntries: number;
  heartbeats: number;
  grantsSent: number;
  nodesJoined: number;
  nodesDropped: number;
  nodesLeft: number;
  admittedCounted: number;
  invalidMessages: Record<string, number>;
  invalidEntries: Record<string, number>;
  usage: { rule: string; keys: number; maxRatio: number; admittedInWindow: number }[];
}

export type SluiceLine = LoadgenReport | LoadgenSummary | LoadgenStart | AggregatorReport;

/** A running `sluice` command, its JSON lines collected as they arrive. */
export class SluiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Every JSON line printed so far, in order. */
  readonly lines: SluiceLine[] = [];
  /** Lines that were not JSON (there should be none with --json). */
  readonly otherLines: string[] = [];
  #stderr = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly #waiters = new Set<() => void>();

  constructor(name: string, args: readonly string[]) {
    this.name = name;
    this.child = spawn(process.execPath, [SLUICE_BIN, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let partial = "";
    this.child.stdout!.setEncoding("utf8");
    this.child.stdout!.on("data", (chunk: string) => {
      partial += chunk;
      let nl = partial.indexOf("\n");
      while (nl >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        if (line.trim() !== "") {
          try {
            this.lines.push(JSON.parse(line) as SluiceLine);
          } catch {
            this.otherLines.push(line);
          }
        }
        nl = partial.indexOf("\n");
      }
      this.#wake();
    });
    this.child.stderr!.setEncoding("utf8");
    this.child.stderr!.on("data", (chunk: string) => {
      if (this.#stderr.length < 20_000) this.#stderr += chunk;
    });
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.#exit = { code, signal };
        resolve(this.#exit);
        this.#wake();
      });
    });
  }

  get stderr(): string {
    return this.#stderr;
  }

  get isRunning(): boolean {
    return this.#exit === undefined;
  }

  get exit(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.#exit;
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** The loadgen report lines so far. */
  get reports(): LoadgenReport[] {
    return this.lines.filter((l): l is LoadgenReport => l.type === "loadgen");
  }

  /** The aggregator report lines so far. */
  get aggregatorReports(): AggregatorReport[] {
    return this.lines.filter((l): l is AggregatorReport => l.type === "aggregator");
  }

  get summary(): LoadgenSummary | undefined {
    return this.lines.find((l): l is LoadgenSummary => l.type === "loadgen-summary");
  }

  /**
   * Resolves with the first line from index `from` on that satisfies `predicate`; rejects after
   * `timeoutMs`, or when the process exits without printing one.
   */
  waitForLine<T extends SluiceLine>(
    what: string,
    predicate: (line: SluiceLine) => line is T,
    timeoutMs: number,
    from?: number,
  ): Promise<T>;
  waitForLine(
    what: string,
    predicate: (line: SluiceLine) => boolean,
    timeoutMs: number,
    from?: number,
  ): Promise<SluiceLine>;
  waitForLine(
    what: string,
    predicate: (line: SluiceLine) => boolean,
    timeoutMs: number,
    from = 0,
  ): Promise<SluiceLine> {
    return new Promise((resolve, reject) => {
      let i = from;
      const check = () => {
        for (; i < this.lines.length; i++) {
          const line = this.lines[i]!;
          if (predicate(line)) {
            done();
            resolve(line);
            return;
          }
        }
        if (this.#exit !== undefined) {
          done();
          reject(
            new Error(
              `${this.name} exited (${JSON.stringify(this.#exit)}) before ${what}; stderr: ${this.#stderr.slice(-2000)}`,
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** Sends `signal` if still running. */
  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.#exit === undefined) this.child.kill(signal);
  }

  /** Waits for the exit; SIGKILLs after `timeoutMs`. Returns the exit. */
  async waitExit(
    timeoutMs: number,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const r = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (r === "timeout") {
      this.kill("SIGKILL");
      return this.exited;
    }
    return r;
  }
}

/** A throwaway nats-server on its own loopback port; `stop()` is a crash (SIGKILL). */
export class ThrowawayNats {
  readonly port: number;
  readonly url: string;
  readonly #args: string[];
  #child: ChildProcess | undefined;
  #log = "";

  constructor(port: number, args: string[]) {
    this.port = port;
    this.url = `nats://127.0.0.1:${port}`;
    this.#args = args;
  }

  /** What the server logged (both streams), across restarts. */
  get log(): string {
    return this.#log;
  }

  /** Starts the server and waits until it accepts TCP connections (at most 5 s). */
  async start(): Promise<void> {
    if (this.#child !== undefined) throw new Error("this nats-server is already running");
    const child = spawn(systemBinary("nats-server"), this.#args, {
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.#child = child;
    for (const stream of [child.stdout!, child.stderr!]) {
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        if (this.#log.length < 200_000) this.#log += chunk;
      });
    }
    const deadline = performance.now() + 5000;
    while (!(await accepts(this.port))) {
      if (child.exitCode !== null || performance.now() > deadline) {
        await this.stop();
        throw new Error(`nats-server on port ${this.port} did not start: ${this.#log}`);
      }
      await sleep(25);
    }
  }

  /** Kills the server (SIGKILL: nothing flushed, clients see the link drop) and waits for it. */
  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Everything one test starts: child processes, servers, a temp dir. */
export class Cluster {
  readonly dir: string;
  readonly #procs: SluiceProcess[] = [];
  readonly #servers: ThrowawayNats[] = [];

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "sluice-cluster-"));
  }

  /** Writes `text` to a file in the temp dir and returns its path. */
  writeFile(name: string, text: string): string {
    const path = join(this.dir, name);
    writeFileSync(path, text);
    return path;
  }

  /** Writes a rules file (JSON is YAML) and returns its path. */
  writeRules(rules: readonly Record<string, unknown>[]): string {
    return this.writeFile(
      `rules-${randomBytes(3).toString("hex")}.json`,
      JSON.stringify({ rules }),
    );
  }

  /** Starts `sluice <args>` as a child process. */
  sluice(name: string, args: readonly string[]): SluiceProcess {
    const p = new SluiceProcess(name, args);
    this.#procs.push(p);
    return p;
  }

  /** Starts a throwaway nats-server on a free port, with a config file if given. */
  async natsServer(config?: (port: number) => string): Promise<ThrowawayNats> {
    const port = await freePort();
    const args =
      config === undefined
        ? ["-a", "127.0.0.1", "-p", String(port)]
        : ["-c", this.writeFile(`nats-${port}.conf`, config(port))];
    const server = new ThrowawayNats(port, args);
    this.#servers.push(server);
    await server.start();
    return server;
  }

  /** Kills every process still running (SIGKILL), stops the servers, removes the temp dir. */
  async stop(): Promise<void> {
    for (const p of this.#procs) p.kill("SIGKILL");
    await Promise.all(this.#procs.map((p) => p.exited));
    for (const s of this.#servers) await s.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Arguments of `sluice loadgen` for one node of a test cluster. */
export function loadgenArgs(o: {
  nats: string;
  prefix: string;
  rules: string;
  nodeId: string;
  ratePerSec: number;
  durationMs: number;
  keys?: number;
  zipf?: number;
  extra?: readonly string[];
}): string[] {
  return [
    "loadgen",
    "--json",
    "--nats",
    o.nats,
    "--prefix",
    o.prefix,
    "--rules",
    o.rules,
    "--node-id",
    o.nodeId,
    "--rate",
    String(o.ratePerSec),
    "--keys",
    String(o.keys ?? 10),
    "--zipf",
    String(o.zipf ?? 2),
    "--duration-ms",
    String(o.durationMs),
    "--report-ms",
    "100",
    "--heartbeat-ms",
    "200",
    ...(o.extra ?? []),
  ];
}

/** Arguments of `sluice aggregator`. */
export function aggregatorArgs(o: {
  nats: string;
  prefix: string;
  rules: string;
  durationMs: number;
  reportMs?: number;
  extra?: readonly string[];
}): string[] {
  return [
    "aggregator",
    "--json",
    "--nats",
    o.nats,
    "--prefix",
    o.prefix,
    "--rules",
    o.rules,
    "--duration-ms",
    String(o.durationMs),
    "--report-ms",
    String(o.reportMs ?? 100),
    ...(o.extra ?? []),
  ];
}

/** Arguments of `sluice aggregator` as member `id` of an aggregator group on KV `bucket`. */
export function groupMemberArgs(o: {
  nats: string;
  prefix: string;
  rules: string;
  id: string;
  bucket: string;
  partitions: number;
  leaseMs: number;
  durationMs: number;
  reportMs?: number;
  replicas?: number;
}): string[] {
  return aggregatorArgs({
    ...o,
    extra: [
      ["--id", o.id, "--group", o.bucket, "--partitions", String(o.partitions)],
      ["--lease-ms", String(o.leaseMs), "--warmup-ms", "1000"],
      o.replicas === undefined ? [] : ["--group-replicas", String(o.replicas)],
    ].flat(),
  });
}

/** Resolves once `p` printed its first loadgen report (it is connected and deciding). */
export function started(p: SluiceProcess, timeoutMs = 10_000): Promise<SluiceLine> {
  return p.waitForLine(
    "its first report",
    (l) => l.type === "loadgen" || l.type === "aggregator",
    timeoutMs,
  );
}

/** Asserts the process ended by itself with exit code 0. */
export function assertCleanExit(p: SluiceProcess): void {
  assert.deepEqual(
    p.exit,
    { code: 0, signal: null },
    `${p.name} should exit 0 by itself; stderr: ${p.stderr.slice(-2000)}`,
  );
}

/** Per wall-clock second: a key's admitted and rejected summed over every node's reports. */
export interface SecondTotal {
  /** Start of the second, wall ms (a multiple of 1000). */
  readonly startMs: number;
  admitted: number;
  rejected: number;
  /** Report buckets that fell in this second, over all nodes (10 per node for a full one). */
  buckets: number;
  /** Nodes that reported in this second. */
  readonly nodes: Set<string>;
}

/**
 * Sums `key`'s counts (or every key's, for `key` undefined) per wall-clock second, over the
 * reports of all `nodes`. A 100 ms bucket (atWallMs - 100, atWallMs] belongs to the second it
 * lies in. Returned in time order.
 */
export function perSecond(nodes: readonly SluiceProcess[], key?: string): SecondTotal[] {
  const seconds = new Map<number, SecondTotal>();
  for (const n of nodes) {
    for (const r of n.reports) {
      const startMs = Math.floor((r.atWallMs - r.intervalMs) / 1000) * 1000;
      let s = seconds.get(startMs);
      if (s === undefined) {
        s = { startMs, admitted: 0, rejected: 0, buckets: 0, nodes: new Set() };
        seconds.set(startMs, s);
      }
      const counts = key === undefined ? [r.admitted, r.rejected] : r.tracked[key];
      assert.ok(counts !== undefined, `${n.name} reports no counts for ${key}`);
      s.admitted += counts[0]!;
      s.rejected += counts[1]!;
      s.buckets++;
      s.nodes.add(r.node);
    }
  }
  return [...seconds.values()].sort((a, b) => a.startMs - b.startMs);
}

/** The seconds that lie wholly inside [fromWallMs, toWallMs). */
export function secondsWithin(
  seconds: readonly SecondTotal[],
  fromWallMs: number,
  toWallMs: number,
): SecondTotal[] {
  return seconds.filter((s) => s.startMs >= fromWallMs && s.startMs + 1000 <= toWallMs);
}

/** `[startMs offset: admitted/rejected (buckets)]` for diagnostics. */
export function describeSeconds(seconds: readonly SecondTotal[], originMs: number): string {
  return seconds
    .map(
      (s) =>
        `${((s.startMs - originMs) / 1000).toFixed(0)}s:${s.admitted}/${s.rejected}(${s.buckets})`,
    )
    .join(" ");
}

export function mean(xs: readonly number[]): number {
  return xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/**
 * The largest sum of `key`'s admitted over 10 consecutive 100 ms buckets (any 1 s window on the
 * 100 ms grid, not only wall-clock seconds), over all nodes, within [fromWallMs, toWallMs).
 */
export function worstSlidingSecond(
  nodes: readonly SluiceProcess[],
  key: string,
  fromWallMs: number,
  toWallMs: number,
): { admitted: number; endMs: number } {
  const byBucket = new Map<number, number>();
  for (const n of nodes) {
    for (const r of n.reports) {
      if (r.atWallMs - r.intervalMs < fromWallMs || r.atWallMs > toWallMs) continue;
      byBucket.set(r.atWallMs, (byBucket.get(r.atWallMs) ?? 0) + r.tracked[key]![0]);
    }
  }
  let worst = { admitted: 0, endMs: fromWallMs };
  for (const endMs of byBucket.keys()) {
    let sum = 0;
    for (let b = 0; b < 10; b++) sum += byBucket.get(endMs - 100 * b) ?? 0;
    if (sum > worst.admitted) worst = { admitted: sum, endMs };
  }
  return worst;
}

/**
 * Ends `procs` the way an operator does (SIGTERM: a loadgen flushes its last batch and prints its
 * summary) and waits for them; SIGKILL after `timeoutMs`. The tests run nodes with a long
 * `--duration-ms` as a safety cap and end them this way once they have seen what they need, so
 * slow process starts on a busy machine do not eat into the time measured.
 */
export async function terminate(
  procs: readonly SluiceProcess[],
  timeoutMs = 10_000,
): Promise<void> {
  for (const p of procs) p.kill("SIGTERM");
  await Promise.all(procs.map((p) => p.waitExit(timeoutMs)));
}
