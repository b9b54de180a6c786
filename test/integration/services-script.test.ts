/**
 * scripts/services.mjs, which `npm test` and `npm run demo` use to provide NATS, Redis and the
 * Prometheus binaries: the command on free loopback ports (so the machine's shared servers on
 * 4222 and 6379 are never involved), and its binary policy with fake binaries in temp dirs.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { freePort } from "./helpers/cluster-procs.js";
import { SERVICES_SCRIPT, services } from "./helpers/system-binary.js";

const SCRIPT = fileURLToPath(SERVICES_SCRIPT);

/** A run of `node scripts/services.mjs <args>`, its output collected. */
class ScriptRun {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(args: readonly string[]) {
    this.child = spawn(process.execPath, [SCRIPT, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    this.child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      this.stdout += d;
    });
    this.child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => resolve({ code, signal }));
    });
  }

  /** Resolves once `pattern` matches stdout + stderr; rejects after `ms` or at exit. */
  async waitFor(pattern: RegExp, ms: number): Promise<void> {
    const deadline = performance.now() + ms;
    while (!pattern.test(this.stdout + this.stderr)) {
      if (this.child.exitCode !== null || performance.now() > deadline) {
        throw new Error(`no ${pattern} in the output: ${this.stdout}\n${this.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** The temp dirs of the servers it started, from its `started ...` lines. */
  get serverDirs(): string[] {
    return [...this.stderr.matchAll(/^services: started \S+ .*, in (\S+)$/gm)].map((m) => m[1]!);
  }
}

/** Connects to NATS on `port` and Redis on `port2`: prints {jetstream, pong} and exits 7. */
const PROBE = `
const net = require("node:net");
const first = (port, send) => new Promise((resolve, reject) => {
  const s = net.connect(port, "127.0.0.1");
  let got = "";
  s.on("connect", () => send && s.write(send));
  s.on("data", (d) => { got += d; if (got.includes("\\r\\n")) { s.destroy(); resolve(got); } });
  s.on("error", reject);
});
(async () => {
  const info = await first(Number(process.argv[1]));
  const pong = await first(Number(process.argv[2]), "PING\\r\\n");
  const json = JSON.parse(info.slice(info.indexOf("{"), info.lastIndexOf("}") + 1));
  console.log(JSON.stringify({ jetstream: json.jetstream === true, pong: pong.trim() }));
  process.exit(7);
})().catch((err) => { console.error(err); process.exit(1); });
`;

test("services script - starts NATS with JetStream and Redis when their ports are silent, runs the command, exits with its code, then stops both and removes their temp dirs", {
  timeout: 30_000,
}, async () => {
  const natsPort = await freePort();
  const redisPort = await freePort();
  const run = new ScriptRun([
    "--nats",
    "--redis",
    "--nats-port",
    String(natsPort),
    "--redis-port",
    String(redisPort),
    "--",
    process.execPath,
    "-e",
    PROBE,
    String(natsPort),
    String(redisPort),
  ]);
  const exit = await run.exited;
  assert.deepEqual(exit, { code: 7, signal: null }, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), { jetstream: true, pong: "+PONG" }, run.stderr);
  assert.match(
    run.stderr,
    new RegExp(`started nats-server \\(JetStream\\) on 127.0.0.1:${natsPort}`),
  );
  assert.match(run.stderr, new RegExp(`started redis-server on 127.0.0.1:${redisPort}`));
  const dirs = run.serverDirs;
  assert.equal(dirs.length, 2, run.stderr);
  for (const dir of dirs) assert.equal(existsSync(dir), false, `${dir} removed`);
  assert.equal(await services.answers("127.0.0.1", natsPort, 500), false, "NATS stopped");
  assert.equal(await services.answers("127.0.0.1", redisPort, 500), false, "Redis stopped");
});

test("services script - on SIGINT it stops the command, then the servers it started, and exits 130", {
  timeout: 30_000,
}, async () => {
  const natsPort = await freePort();
  const redisPort = await freePort();
  const run = new ScriptRun([
    "--nats",
    "--redis",
    "--nats-port",
    String(natsPort),
    "--redis-port",
    String(redisPort),
    "--",
    process.execPath,
    "-e",
    "console.log('pid ' + process.pid); setInterval(() => {}, 1000);",
  ]);
  await run.waitFor(/^pid \d+$/m, 20_000);
  const pid = Number(/^pid (\d+)$/m.exec(run.stdout)![1]);
  assert.equal(await services.answers("127.0.0.1", natsPort, 500), true, "NATS up");
  assert.equal(await services.answers("127.0.0.1", redisPort, 500), true, "Redis up");
  run.child.kill("SIGINT");
  const exit = await run.exited;
  assert.deepEqual(exit, { code: 130, signal: null }, run.stderr);
  assert.throws(() => process.kill(pid, 0), { code: "ESRCH" }, "the command has ended");
  const dirs = run.serverDirs;
  assert.equal(dirs.length, 2, run.stderr);
  for (const dir of dirs) assert.equal(existsSync(dir), false, `${dir} removed`);
  assert.equal(await services.answers("127.0.0.1", natsPort, 500), false, "NATS stopped");
  assert.equal(await services.answers("127.0.0.1", redisPort, 500), false, "Redis stopped");
});

test("services script - a port that already answers is used as it is and left running", {
  timeout: 30_000,
}, async () => {
  let connections = 0;
  const listener = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  const port = await new Promise<number>((resolve) => {
    listener.listen(0, "127.0.0.1", () => resolve((listener.address() as { port: number }).port));
  });
  try {
    const run = new ScriptRun([
      "--nats",
      "--nats-port",
      String(port),
      "--",
      process.execPath,
      "-e",
      "",
    ]);
    assert.deepEqual(await run.exited, { code: 0, signal: null }, run.stderr);
    assert.match(run.stderr, new RegExp(`NATS answers on 127.0.0.1:${port}: using it as it is`));
    assert.doesNotMatch(run.stderr, /started|stopped/);
    assert.ok(connections >= 1, "the script probed the port");
    assert.equal(listener.listening, true);
    assert.equal(await services.answers("127.0.0.1", port, 500), true, "still answering");
  } finally {
    await new Promise((resolve) => listener.close(resolve));
  }
});

/** A temp dir holding executable shell scripts `name` -> body. */
function fakeBin(scripts: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "sluice-fake-bin-"));
  for (const [name, body] of Object.entries(scripts)) {
    writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  }
  return dir;
}

test("services script - a missing binary: without root, one line naming the Debian package and how to install it, nothing run", {
  timeout: 10_000,
}, async () => {
  const empty = fakeBin({ "apt-get": "exit 0" });
  const calls: string[][] = [];
  const run = async (_file: string, args: string[]) => {
    calls.push(args);
    return 0;
  };
  try {
    for (const options of [
      { root: false, path: empty, dirs: [], run },
      { root: true, path: "", dirs: [], run, say: () => {} }, // root, but no apt-get
    ]) {
      const err = await services.requireBinaries(["prometheus", "promtool"], options).then(
        () => assert.fail("should reject"),
        (e: unknown) => e as Error,
      );
      assert.ok(err instanceof services.ServiceError, String(err));
      assert.equal(
        err.message,
        "`prometheus` and `promtool` are not installed: install the Debian package prometheus " +
          "(as root: apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y " +
          "--no-install-recommends " +
          "prometheus), or put them on PATH",
      );
    }
    assert.deepEqual(calls, [], "nothing installed");
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});

test("services script - a missing binary as root: apt-get update, then apt-get install -y --no-install-recommends of its package, noninteractive", {
  timeout: 10_000,
}, async () => {
  const dir = fakeBin({ "apt-get": "exit 0", "nats-server": "exit 0" });
  const calls: { args: string[]; frontend: string | undefined }[] = [];
  const run = async (file: string, args: string[], env?: NodeJS.ProcessEnv) => {
    assert.equal(file, join(dir, "apt-get"));
    calls.push({ args, frontend: env?.["DEBIAN_FRONTEND"] });
    if (args[0] === "install") {
      for (const name of ["prometheus", "promtool", "redis-server"]) {
        writeFileSync(join(dir, name), "#!/bin/sh\n");
        chmodSync(join(dir, name), 0o755);
      }
    }
    return 0;
  };
  try {
    const said: string[] = [];
    const found = await services.requireBinaries(
      ["nats-server", "redis-server", "prometheus", "promtool"],
      { root: true, path: dir, dirs: [], run, say: (line) => said.push(line) },
    );
    assert.deepEqual(calls, [
      { args: ["update"], frontend: undefined },
      {
        args: ["install", "-y", "--no-install-recommends", "redis-server", "prometheus"],
        frontend: "noninteractive",
      },
    ]);
    assert.deepEqual(said, [
      "redis-server, prometheus, promtool missing: installing Debian package(s) redis-server prometheus",
      `installed redis-server prometheus: ${["redis-server", "prometheus", "promtool"].map((n) => join(dir, n)).join(", ")}`,
    ]);
    assert.deepEqual(found, {
      "nats-server": join(dir, "nats-server"),
      "redis-server": join(dir, "redis-server"),
      prometheus: join(dir, "prometheus"),
      promtool: join(dir, "promtool"),
    });
    // Found on PATH before Debian's directories; a file that is not executable is not a binary.
    writeFileSync(join(dir, "plain"), "");
    assert.equal(services.findBinary("plain", { path: dir, dirs: [] }), undefined);
    assert.equal(services.findBinary("sh", { path: dir, dirs: ["/bin"] }), "/bin/sh");
    assert.equal(services.findBinary("apt-get", { path: dir }), join(dir, "apt-get"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("services script - a server that exits at start: the error carries its output, its temp dir is removed", {
  timeout: 20_000,
}, async () => {
  const dir = fakeBin({ "nats-server": "echo 'cannot listen: boom' >&2; exit 3" });
  const leftovers = () => readdirSync(tmpdir()).filter((n) => n.startsWith("sluice-nats-server-"));
  const before = new Set(leftovers());
  try {
    const port = await freePort();
    const err = await services
      .ensureServices({ nats: true, natsPort: port, path: dir, dirs: [], say: () => {} })
      .then(
        () => assert.fail("should reject"),
        (e: unknown) => e as Error,
      );
    assert.ok(err instanceof services.ServiceError, String(err));
    assert.match(err.message, new RegExp(`nats-server did not answer on 127.0.0.1:${port}`));
    assert.match(err.message, /exit code 3/);
    assert.match(err.message, /cannot listen: boom/);
    assert.deepEqual(
      leftovers().filter((n) => !before.has(n)),
      [],
      "temp dir removed",
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
