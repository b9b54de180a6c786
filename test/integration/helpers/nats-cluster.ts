/**
 * A throwaway three-server NATS cluster with JetStream, for tests that need a quorum to lose a
 * server: three `nats-server` processes on free loopback ports, routed to each other, each with
 * its own store directory under one temp dir.
 *
 * Rules this keeps:
 * - Every wait is bounded and fails with what it waited for and the servers' last log lines.
 * - `kill(i)` is a crash (SIGKILL); `start(i)` starts the same server again on the same ports
 *   and store, so it rejoins with its data.
 * - `stop()` kills every server and removes the temp dir; it is idempotent. A cluster not
 *   stopped is killed when the test process exits or gets SIGINT/SIGTERM, and its processes
 *   never keep the test process alive.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { freePort, sleep } from "./cluster-procs.js";
import { systemBinary } from "./system-binary.js";

/** The most log text kept per server. */
const LOG_LIMIT = 100_000;

interface ServerSlot {
  readonly name: string;
  readonly port: number;
  readonly clusterPort: number;
  readonly httpPort: number;
  readonly args: readonly string[];
  child: ChildProcess | undefined;
  log: string;
}

/** Clusters not stopped yet; killed on the way out of the process. */
const live = new Set<NatsCluster>();
let hooked = false;

function hookProcessExit(): void {
  if (hooked) return;
  hooked = true;
  process.once("exit", () => {
    for (const c of live) c.killNow();
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const onSignal = () => {
      for (const c of live) c.killNow();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

export interface NatsClusterOptions {
  /** Cluster name and the stem of the server names. @default "sluice-test" */
  readonly name?: string;
  /** Bound on the wait for all three servers and a JetStream meta leader, ms. @default 30000 */
  readonly readyTimeoutMs?: number;
}

export class NatsCluster {
  /** Client URLs of the three servers, index i being server i. */
  readonly urls: readonly string[];
  /** Server names (`server_name`), index i being server i. */
  readonly names: readonly string[];
  readonly dir: string;
  readonly #slots: ServerSlot[];
  readonly #binary: string;
  #stopped = false;

  private constructor(dir: string, slots: ServerSlot[], binary: string) {
    this.dir = dir;
    this.#binary = binary;
    this.#slots = slots;
    this.urls = slots.map((s) => `nats://127.0.0.1:${s.port}`);
    this.names = slots.map((s) => s.name);
  }

  /**
   * Starts three clustered servers and resolves once each accepts clients, reports itself
   * healthy, and JetStream places a bucket with three replicas (so there is a meta leader and
   * every server takes part). Rejects, with everything stopped, when that takes longer than
   * `readyTimeoutMs`.
   */
  static async start(options: NatsClusterOptions = {}): Promise<NatsCluster> {
    const name = options.name ?? "sluice-test";
    const readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
    const binary = systemBinary("nats-server");
    const ports = await distinctFreePorts(9);
    const dir = mkdtempSync(join(tmpdir(), "sluice-natscluster-"));
    const at = (i: number, k: number) => ports[3 * i + k]!;
    const slots: ServerSlot[] = [0, 1, 2].map((i) => {
      const storeDir = join(dir, `n${i}`);
      mkdirSync(storeDir);
      const routes = [0, 1, 2]
        .filter((j) => j !== i)
        .map((j) => `nats://127.0.0.1:${at(j, 1)}`)
        .join(",");
      const serverName = `${name}-${i}`;
      return {
        name: serverName,
        port: at(i, 0),
        clusterPort: at(i, 1),
        httpPort: at(i, 2),
        args: [
          ["-a", "127.0.0.1", "-p", String(at(i, 0)), "-m", String(at(i, 2))],
          ["-n", serverName, "-js", "-sd", storeDir],
          ["--cluster_name", name, "--cluster", `nats://127.0.0.1:${at(i, 1)}`],
          ["--routes", routes],
        ].flat(),
        child: undefined,
        log: "",
      };
    });
    const cluster = new NatsCluster(dir, slots, binary);
    live.add(cluster);
    hookProcessExit();
    try {
      const deadline = performance.now() + readyTimeoutMs;
      for (let i = 0; i < 3; i++) cluster.#spawn(i);
      for (let i = 0; i < 3; i++) await cluster.#waitHealthy(i, deadline);
      await cluster.#waitJetStream(deadline);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** Whether server `i` is running. */
  isRunning(i: number): boolean {
    const c = this.#slot(i).child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  /** What server `i` logged so far (across restarts, the first LOG_LIMIT characters). */
  log(i: number): string {
    return this.#slot(i).log;
  }

  /** The index of the server named `name`, or -1. */
  indexOf(name: string): number {
    return this.names.indexOf(name);
  }

  /** Crashes server `i` (SIGKILL) and waits for it to be gone. */
  async kill(i: number): Promise<void> {
    const s = this.#slot(i);
    const child = s.child;
    s.child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    // Held by the exit from here on, so the wait keeps the event loop alive.
    child.ref();
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }

  /**
   * Starts server `i` again (same ports, same store) and resolves once it is healthy (it has
   * rejoined and caught up), within `timeoutMs`.
   */
  async start(i: number, timeoutMs = 20_000): Promise<void> {
    if (this.#stopped) throw new Error("this cluster was stopped");
    if (this.isRunning(i)) throw new Error(`server ${this.names[i]} is already running`);
    this.#spawn(i);
    await this.#waitHealthy(i, performance.now() + timeoutMs);
  }

  /** Kills every server and removes the temp dir; safe to call more than once. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (let i = 0; i < this.#slots.length; i++) await this.kill(i);
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Synchronous last resort on process exit: SIGKILL each server, remove the temp dir. */
  killNow(): void {
    this.#stopped = true;
    for (const s of this.#slots) {
      if (s.child !== undefined && s.child.exitCode === null) s.child.kill("SIGKILL");
      s.child = undefined;
    }
    live.delete(this);
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // The process is exiting; a temp dir left behind is all that can go wrong here.
    }
  }

  #slot(i: number): ServerSlot {
    const s = this.#slots[i];
    if (s === undefined) throw new RangeError(`no server ${i} (there are ${this.#slots.length})`);
    return s;
  }

  #spawn(i: number): void {
    const s = this.#slot(i);
    const child = spawn(this.#binary, s.args, { stdio: ["ignore", "pipe", "pipe"] });
    s.child = child;
    for (const stream of [child.stdout!, child.stderr!]) {
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        if (s.log.length < LOG_LIMIT) s.log += chunk;
      });
      // The pipes and the process must not keep the test process alive.
      (stream as unknown as { unref?: () => void }).unref?.();
    }
    child.unref();
  }

  #failure(what: string): Error {
    const logs = this.#slots
      .map((s) => `--- ${s.name} (last lines) ---\n${s.log.split("\n").slice(-15).join("\n")}`)
      .join("\n");
    return new Error(`nats cluster: ${what}\n${logs}`);
  }

  /** Waits until server `i` accepts TCP and its /healthz answers 200, until `deadline`. */
  async #waitHealthy(i: number, deadline: number): Promise<void> {
    const s = this.#slot(i);
    for (;;) {
      if (!this.isRunning(i)) throw this.#failure(`${s.name} exited while starting`);
      if ((await accepts(s.port)) && (await healthy(s.httpPort))) return;
      if (performance.now() > deadline) throw this.#failure(`${s.name} not healthy in time`);
      await sleep(50);
    }
  }

  /**
   * Waits until a KV bucket with three replicas can be created (and then removes it): the
   * cluster has a JetStream meta leader and all three servers as peers.
   */
  async #waitJetStream(deadline: number): Promise<void> {
    let last: unknown;
    while (performance.now() < deadline) {
      const left = Math.max(200, Math.min(3000, deadline - performance.now()));
      const nc = await connect({ servers: [...this.urls], timeout: left }).catch((e) => {
        last = e;
        return undefined;
      });
      if (nc !== undefined) {
        try {
          const kvm = new Kvm(nc);
          const kv = await kvm.create("cluster_ready_probe", { replicas: 3, timeout: left });
          await kv.destroy();
          return;
        } catch (e) {
          last = e;
        } finally {
          await nc.close().catch(() => {});
        }
      }
      await sleep(200);
    }
    throw this.#failure(`no JetStream quorum in time; last error: ${String(last)}`);
  }
}

async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  for (let tries = 0; ports.size < n; tries++) {
    if (tries > 10 * n) throw new Error(`could not find ${n} distinct free ports`);
    ports.add(await freePort());
  }
  return [...ports];
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

/** Whether the monitoring port's /healthz says ok (JetStream current), within 1 s. */
async function healthy(httpPort: number): Promise<boolean> {
  try {
    const r = await fetch(`http://127.0.0.1:${httpPort}/healthz`, {
      signal: AbortSignal.timeout(1000),
    });
    await r.text();
    return r.ok;
  } catch {
    return false;
  }
}
