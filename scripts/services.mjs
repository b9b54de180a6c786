#!/usr/bin/env node
// The local servers a clone's tests and demo talk to: NATS with JetStream on 127.0.0.1:4222,
// Redis on 127.0.0.1:6379, and the `prometheus` and `promtool` binaries.
//
// Rules:
// - A port that already answers is used as it is; that server is never stopped or touched.
// - A binary is looked up on PATH, then in Debian's directories (SYSTEM_DIRS). When one is
//   missing and this process is root, its Debian package is installed (`apt-get update`, then
//   `apt-get install -y --no-install-recommends`); otherwise nothing is installed and the run
//   stops with one line that names the package and how to install it.
// - A server started here listens on 127.0.0.1 only, keeps its files in a temp dir of its own,
//   and is stopped, its temp dir removed, when the run ends: the command's exit, an error, or a
//   signal (SIGINT, SIGTERM, SIGHUP). It runs in its own process group, so a Ctrl-C reaches the
//   command first and the server goes only after the command has ended.
// - Progress goes to stderr, one `services:` line per step; stdout is the command's alone.
//
// Used by scripts/test.mjs (`npm test`), scripts/demo.mjs (`npm run demo`) and the test helpers.
// As a command: node scripts/services.mjs --help
import { spawn } from "node:child_process";
import {
  accessSync,
  closeSync,
  constants,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
} from "node:fs";
import { connect } from "node:net";
import { constants as osConstants, tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

export const HOST = "127.0.0.1";
export const NATS_PORT = 4222;
export const REDIS_PORT = 6379;
/** Where Debian installs the binaries, searched after PATH. */
export const SYSTEM_DIRS = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];
/** The Debian package that provides each binary. */
export const PACKAGE_OF = {
  "nats-server": "nats-server",
  "redis-server": "redis-server",
  prometheus: "prometheus",
  promtool: "prometheus",
};

const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

/** A failure to report as its message alone (one line), without a stack. */
export class ServiceError extends Error {}

export function log(line) {
  process.stderr.write(`services: ${line}\n`);
}

/**
 * The path of executable `name` on `path` (a PATH string) or in `dirs`, or undefined.
 * Empty PATH entries are skipped: a binary is never taken from the working directory.
 */
export function findBinary(name, { path = process.env["PATH"] ?? "", dirs = SYSTEM_DIRS } = {}) {
  for (const dir of [...path.split(delimiter), ...dirs]) {
    if (dir === "") continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return file;
    } catch {}
  }
  return undefined;
}

/** One line: which binaries are missing, which Debian packages provide them, how to install. */
export function installHint(names) {
  const packages = [...new Set(names.map((n) => PACKAGE_OF[n] ?? n))];
  const what = names.map((n) => `\`${n}\``).join(" and ");
  const pkgs = packages.join(" ");
  return (
    `${what} ${names.length === 1 ? "is" : "are"} not installed: install the Debian ` +
    `package${packages.length === 1 ? "" : "s"} ${pkgs} (as root: apt-get update && ` +
    `DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${pkgs}), or put ` +
    `${names.length === 1 ? "it" : "them"} on PATH`
  );
}

function isRoot() {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/** Runs a command with its output on our stderr; resolves to its exit code. */
function runToStderr(command, args, env = process.env) {
  return new Promise((done) => {
    const child = spawn(command, args, { stdio: ["ignore", 2, 2], env });
    child.once("error", () => done(127));
    child.once("exit", (code, signal) => done(exitCode(code, signal)));
  });
}

/**
 * The paths of `names`, by name. Missing ones are installed from their Debian packages when
 * `root` (and apt-get is there); otherwise, or when that fails, rejects with a ServiceError whose
 * message is installHint's line. `run(file, args, env)` runs apt-get and resolves to its exit code;
 * `say(line)` prints a progress line.
 */
export async function requireBinaries(names, { root = isRoot(), path, dirs, run, say = log } = {}) {
  const lookup = {
    ...(path === undefined ? {} : { path }),
    ...(dirs === undefined ? {} : { dirs }),
  };
  const found = {};
  const missing = [];
  for (const name of names) {
    const file = findBinary(name, lookup);
    if (file === undefined) missing.push(name);
    else found[name] = file;
  }
  if (missing.length === 0) return found;
  const aptGet = findBinary("apt-get", lookup);
  if (!root || aptGet === undefined) throw new ServiceError(installHint(missing));
  const packages = [...new Set(missing.map((n) => PACKAGE_OF[n] ?? n))];
  const exec = run ?? runToStderr;
  say(`${missing.join(", ")} missing: installing Debian package(s) ${packages.join(" ")}`);
  const updated = await exec(aptGet, ["update"]);
  if (updated !== 0) {
    throw new ServiceError(`apt-get update failed (exit code ${updated}); ${installHint(missing)}`);
  }
  // Only what the binaries need: the recommended extras (an exporter, disk tools) are not ours to add.
  const installed = await exec(aptGet, ["install", "-y", "--no-install-recommends", ...packages], {
    ...process.env,
    DEBIAN_FRONTEND: "noninteractive",
  });
  const still = [];
  for (const name of missing) {
    const file = findBinary(name, lookup);
    if (file === undefined) still.push(name);
    else found[name] = file;
  }
  if (installed !== 0 || still.length > 0) {
    throw new ServiceError(
      `apt-get install -y --no-install-recommends ${packages.join(" ")} failed (exit code ${installed}); ${installHint(
        still.length > 0 ? still : missing,
      )}`,
    );
  }
  say(`installed ${packages.join(" ")}: ${missing.map((n) => found[n]).join(", ")}`);
  return found;
}

/** Whether something accepts TCP connections on host:port within `timeoutMs`. */
export function answers(host, port, timeoutMs = 1000) {
  return new Promise((done) => {
    const socket = connect({ host, port });
    const finish = (ok) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once("connect", () => finish(true));
    socket.once("error", () => finish(false));
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function exitCode(code, signal) {
  if (code !== null) return code;
  return 128 + (osConstants.signals[signal] ?? 0);
}

function describeExit(exit) {
  if (exit === undefined) return "still running";
  return exit.signal === null ? `exit code ${exit.code}` : `killed by ${exit.signal}`;
}

/** The last `max` characters of a file, or "" when it cannot be read. */
function tail(file, max = 4000) {
  try {
    const text = readFileSync(file, "utf8").trim();
    return text.length > max ? `...${text.slice(-max)}` : text;
  } catch {
    return "";
  }
}

/** The servers one run started, stopped together. */
export class Services {
  /** @type {{ name: string, port: number, dir: string, child: import("node:child_process").ChildProcess, exit: undefined | { code: number | null, signal: string | null }, exited: Promise<void> }[]} */
  started = [];
  #say;
  #onExit = () => {
    // Last resort when the process exits without stop(): no waiting is possible here.
    for (const s of this.started) {
      if (s.exit === undefined) s.child.kill("SIGKILL");
      rmSync(s.dir, { recursive: true, force: true });
    }
  };

  constructor(say = log) {
    this.#say = say;
  }

  /** Starts `bin` with `args(dir)` and waits until 127.0.0.1:`port` answers. */
  async start(name, bin, port, args) {
    const dir = mkdtempSync(join(tmpdir(), `sluice-${name}-`));
    const output = join(dir, "output.log");
    const fd = openSync(output, "a");
    let child;
    try {
      child = spawn(bin, args(dir), { stdio: ["ignore", fd, fd], detached: true });
    } finally {
      closeSync(fd);
    }
    const server = { name, port, dir, child, exit: undefined, exited: undefined };
    server.exited = new Promise((done) => {
      child.once("exit", (code, signal) => {
        server.exit ??= { code, signal };
        done();
      });
      child.once("error", (err) => {
        server.exit ??= { code: 127, signal: null, error: err.message };
        done();
      });
    });
    if (this.started.length === 0) process.on("exit", this.#onExit);
    this.started.push(server);
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await answers(HOST, port, 500))) {
      if (server.exit !== undefined || Date.now() > deadline) {
        const how = server.exit?.error ?? describeExit(server.exit);
        const said = tail(output);
        await this.#stopOne(server, false);
        throw new ServiceError(
          `${name} did not answer on ${HOST}:${port} within ${START_TIMEOUT_MS / 1000} s ` +
            `(${how})${said === "" ? "" : `; it said: ${said.replaceAll("\n", " | ")}`}`,
        );
      }
      await sleep(50);
    }
    return server;
  }

  /** Stops every server started here (SIGTERM, SIGKILL after a grace period), newest first. */
  async stop() {
    for (const server of [...this.started].reverse()) await this.#stopOne(server, true);
  }

  async #stopOne(server, report) {
    if (server.exit === undefined) {
      server.child.kill("SIGTERM");
      const timer = setTimeout(() => server.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await server.exited;
      clearTimeout(timer);
    }
    rmSync(server.dir, { recursive: true, force: true });
    this.started = this.started.filter((s) => s !== server);
    if (this.started.length === 0) process.off("exit", this.#onExit);
    if (report) {
      this.#say(`stopped ${server.name} on ${HOST}:${server.port}; removed ${server.dir}`);
    }
  }
}

/**
 * Makes sure what `wanted` names is there: NATS and Redis answering on 127.0.0.1 (started when
 * not), the prometheus and promtool binaries. Resolves to the Services started, to stop() when
 * done; rejects with a ServiceError, having stopped whatever it started.
 * `path` and `dirs` replace where binaries are looked up, `say` where progress lines go (for
 * tests).
 */
export async function ensureServices({
  nats = false,
  redis = false,
  prometheus = false,
  natsPort = NATS_PORT,
  redisPort = REDIS_PORT,
  root,
  path,
  dirs,
  say = log,
} = {}) {
  const startNats = nats && !(await answers(HOST, natsPort));
  const startRedis = redis && !(await answers(HOST, redisPort));
  const names = [
    ...(startNats ? ["nats-server"] : []),
    ...(startRedis ? ["redis-server"] : []),
    ...(prometheus ? ["prometheus", "promtool"] : []),
  ];
  const bins = await requireBinaries(names, {
    ...(root === undefined ? {} : { root }),
    ...(path === undefined ? {} : { path }),
    ...(dirs === undefined ? {} : { dirs }),
    say,
  });
  if (nats && !startNats) say(`NATS answers on ${HOST}:${natsPort}: using it as it is`);
  if (redis && !startRedis) say(`Redis answers on ${HOST}:${redisPort}: using it as it is`);
  if (prometheus) say(`prometheus: ${bins["prometheus"]}, promtool: ${bins["promtool"]}`);
  const services = new Services(say);
  try {
    if (startNats) {
      const s = await services.start("nats-server", bins["nats-server"], natsPort, (dir) => [
        "-a",
        HOST,
        "-p",
        String(natsPort),
        "-js",
        "-sd",
        join(dir, "jetstream"),
      ]);
      say(
        `started nats-server (JetStream) on ${HOST}:${natsPort}, pid ${s.child.pid}, in ${s.dir}`,
      );
    }
    if (startRedis) {
      const s = await services.start("redis-server", bins["redis-server"], redisPort, (dir) => [
        "--bind",
        HOST,
        "--port",
        String(redisPort),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        dir,
      ]);
      say(`started redis-server on ${HOST}:${redisPort}, pid ${s.child.pid}, in ${s.dir}`);
    }
  } catch (err) {
    await services.stop();
    throw err;
  }
  return services;
}

/**
 * Ensures `wanted` (see ensureServices), runs `commands` one after another until one fails, then
 * stops what it started. A command is [file, args] or a function returning one (called when its
 * turn comes). With no commands, waits for a signal. Resolves to the exit code of the last
 * command run; 1 when the services could not be provided; 128 + the signal's number when a
 * signal ended the run (0 for a run without commands).
 */
export async function runWithServices(wanted, commands) {
  let signal;
  let child;
  let wake = () => {};
  const onSignal = (s) => {
    if (child !== undefined) child.kill(signal === undefined ? s : "SIGKILL");
    signal ??= s;
    wake();
  };
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of signals) process.on(s, onSignal);
  let services;
  try {
    services = await ensureServices(wanted);
    if (commands.length === 0 && signal === undefined) {
      log("running until interrupted (Ctrl-C)");
      await new Promise((r) => {
        wake = r;
      });
      return 0;
    }
    let code = 0;
    for (const command of commands) {
      if (signal !== undefined) break;
      const [file, args] = typeof command === "function" ? command() : command;
      child = spawn(file, args, { stdio: "inherit" });
      code = await new Promise((done) => {
        child.once("error", (err) => {
          log(`could not run ${file}: ${err.message}`);
          done(127);
        });
        child.once("exit", (c, s) => done(exitCode(c, s)));
      });
      child = undefined;
      if (code !== 0) break;
    }
    return signal === undefined ? code : 128 + (osConstants.signals[signal] ?? 0);
  } catch (err) {
    if (!(err instanceof ServiceError)) throw err;
    log(err.message);
    return signal === undefined ? 1 : 128 + (osConstants.signals[signal] ?? 0);
  } finally {
    await services?.stop();
    for (const s of signals) process.off(s, onSignal);
  }
}

const USAGE = `Usage: node scripts/services.mjs [--nats] [--redis] [--prometheus]
                                [--nats-port N] [--redis-port N] [-- command [args...]]

Makes sure NATS (JetStream) and Redis answer on 127.0.0.1 (default ports 4222 and 6379),
starting each that does not, and that prometheus and promtool are installed; a missing binary is
installed from its Debian package when run as root. Then runs the command and exits with its exit
code, or without a command waits for Ctrl-C. Servers started here are stopped at the end and
their temp dirs removed; servers that already answered are left alone.`;

function port(value, option) {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65_535) {
    throw new ServiceError(`${option} must be a port number (1..65535), got ${value}`);
  }
  return n;
}

async function main(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        nats: { type: "boolean" },
        redis: { type: "boolean" },
        prometheus: { type: "boolean" },
        "nats-port": { type: "string" },
        "redis-port": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    log(`${err.message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let wanted;
  try {
    wanted = {
      nats: values.nats === true,
      redis: values.redis === true,
      prometheus: values.prometheus === true,
      natsPort: port(values["nats-port"], "--nats-port") ?? NATS_PORT,
      redisPort: port(values["redis-port"], "--redis-port") ?? REDIS_PORT,
    };
  } catch (err) {
    log(err.message);
    return 2;
  }
  const [file, ...args] = positionals;
  return runWithServices(wanted, file === undefined ? [] : [[file, args]]);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
