import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { afterEach, test } from "node:test";
import { wallClockMs } from "../../src/clock/clock.js";
import { decode } from "../../src/protocol/decode.js";
import { encodeHeartbeat } from "../../src/protocol/heartbeat.js";
import { createSubjects } from "../../src/protocol/subjects.js";
import { connectNats } from "../../src/transport/nats/nats-transport.js";
import {
  type Transport,
  type TransportStatus,
  TransportUnavailableError,
} from "../../src/transport/transport.js";

const NATS = "nats://127.0.0.1:4222";
const subjects = createSubjects({ prefix: `it-${process.pid}-${randomBytes(4).toString("hex")}` });
const open: Transport[] = [];
afterEach(async () => {
  for (const t of open.splice(0)) await t.close();
});

async function connected(options: Parameters<typeof connectNats>[0] = {}): Promise<Transport> {
  const t = await connectNats({ servers: NATS, ...options });
  open.push(t);
  return t;
}

/** Resolves with the first value `register` reports, or rejects after `ms`. */
function within<T>(ms: number, what: string, register: (done: (v: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
    register((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

/** Polls `predicate` every 5 ms until true, or rejects after `ms`. */
async function waitFor(ms: number, what: string, predicate: () => boolean): Promise<void> {
  const deadline = performance.now() + ms;
  while (!predicate()) {
    if (performance.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function nextStatus(
  t: Transport,
  type: TransportStatus["type"],
  ms: number,
): Promise<TransportStatus> {
  return within(ms, `status ${type}`, (done) => {
    const sub = t.onStatus((s) => {
      if (s.type === type) {
        sub.unsubscribe();
        done(s);
      }
    });
  });
}

/** Sockets, servers and timers alive now, counted by type, after pending closes have run. */
async function handles(): Promise<Record<string, number>> {
  await new Promise((r) => setTimeout(r, 20));
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) {
    if (/TCP|Timeout|Immediate/.test(r)) counts[r] = (counts[r] ?? 0) + 1;
  }
  return counts;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  await new Promise<void>((r) => server.close(() => r()));
  assert.ok(address && typeof address === "object");
  return address.port;
}

const heartbeat = {
  nodeId: "node-1",
  nodeEpoch: 1,
  seq: 1,
  sentAtWallMs: wallClockMs(),
  role: 1 as const,
};

test("nats transport - publish and subscribe round-trip a protocol message through the server", async () => {
  const a = await connected({ name: "it-a" });
  const b = await connected({ name: "it-b" });
  const got = within<Uint8Array>(5000, "the heartbeat", (done) =>
    b.subscribe(subjects.heartbeats, (d) => done(d)),
  );
  await b.flush(); // the subscription is registered on the server before anyone publishes
  a.publish(subjects.heartbeat("n1"), encodeHeartbeat(heartbeat));
  await a.flush();
  const r = decode(await got);
  assert.ok(r.ok);
  assert.deepEqual(r.message, { type: "heartbeat", ...heartbeat });
});

test("nats transport - wildcard subscriptions", async () => {
  const t = await connected();
  const star: string[] = [];
  const tail: string[] = [];
  t.subscribe(subjects.allDecisions, (_d, s) => star.push(s));
  t.subscribe(`${subjects.prefix}.>`, (_d, s) => tail.push(s));
  await t.flush();
  const sent = [
    subjects.decisions(0, "n1"),
    subjects.decisions(7, "n2"),
    subjects.updates("n1"),
    subjects.defaults,
  ];
  for (const s of sent) t.publish(s, new Uint8Array([1]));
  await t.flush();
  await waitFor(5000, "4 messages on >", () => tail.length === 4);
  assert.deepEqual(star, [subjects.decisions(0, "n1"), subjects.decisions(7, "n2")]);
  assert.deepEqual(tail, sent);
});

test("nats transport - a throwing handler is reported as an error status, the link stays up", async () => {
  const t = await connected();
  t.subscribe(`${subjects.prefix}.boom`, () => {
    throw new Error("handler bug");
  });
  await t.flush();
  const status = nextStatus(t, "error", 5000);
  t.publish(`${subjects.prefix}.boom`, new Uint8Array(0));
  const s = await status;
  assert.equal(s.type === "error" && s.error.message, "handler bug");
  await t.flush();
});

test("nats transport - close() is idempotent and leaves no active handle", async () => {
  const before = await handles();
  const t = await connectNats({ servers: NATS });
  t.subscribe(subjects.heartbeats, () => {});
  t.publish(subjects.heartbeat("n1"), encodeHeartbeat(heartbeat));
  assert.notDeepEqual(await handles(), before, "the connection holds a socket");
  await t.close();
  await t.close();
  assert.deepEqual(await handles(), before);
  assert.throws(() => t.publish(subjects.heartbeat("n1"), new Uint8Array(0)), {
    name: "ClosedError",
  });
});

test("nats transport - connection refused fails at once with TransportUnavailableError", async () => {
  const port = await freePort();
  const before = await handles();
  const started = performance.now();
  const err = await connectNats({
    servers: `nats://127.0.0.1:${port}`,
    connectTimeoutMs: 10_000,
  }).then(
    () => assert.fail("connected to a closed port"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TransportUnavailableError, String(err));
  assert.deepEqual(err.servers, [`nats://127.0.0.1:${port}`]);
  assert.match(err.message, new RegExp(`nats://127\\.0\\.0\\.1:${port}`));
  assert.ok(err.cause, "carries the cause");
  assert.ok(performance.now() - started < 5000, "does not wait for the timeout");
  assert.deepEqual(await handles(), before);
});

test("nats transport - a server that never answers fails after connectTimeoutMs, leaving no handle", async () => {
  const before = await handles();
  const sockets = new Set<Socket>();
  const silent: Server = createServer((s) => sockets.add(s));
  await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
  const { port } = silent.address() as { port: number };
  try {
    const err = await connectNats({ servers: `127.0.0.1:${port}`, connectTimeoutMs: 300 }).then(
      () => assert.fail("connected to a silent server"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof TransportUnavailableError, String(err));
    assert.match(err.message, /timeout 300 ms/);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
  }
  assert.deepEqual(await handles(), before);
});

test("nats transport - bad options fail with a message naming the field", async () => {
  await assert.rejects(connectNats({ servers: [] }), {
    name: "InvalidArgumentError",
    field: "servers",
  });
  await assert.rejects(connectNats({ connectTimeoutMs: 0 }), { field: "connectTimeoutMs" });
  await assert.rejects(connectNats({ credsFile: "/nonexistent.creds" }), { field: "credsFile" });
  await assert.rejects(connectNats({ tls: { caFle: "x" } as never }), { field: "tls.caFle" });
});

/** Starts a throwaway nats-server on `port` and waits until it accepts connections. */
async function startServer(port: number, extraArgs: string[] = []): Promise<ChildProcess> {
  const args = ["-a", "127.0.0.1", "-p", String(port), ...extraArgs];
  const child = spawn("/usr/sbin/nats-server", args, {
    stdio: "ignore",
  });
  const deadline = performance.now() + 5000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const c = tcpConnect({ host: "127.0.0.1", port });
      c.once("connect", () => {
        c.destroy();
        resolve(true);
      });
      c.once("error", () => {
        c.destroy();
        resolve(false);
      });
    }).catch(() => false);
    if (up) return child;
    if (performance.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`nats-server on port ${port} did not start within 5 s`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}

test("nats transport - survives a server restart: disconnected, reconnected, messages flow again", async () => {
  const port = await freePort();
  let server = await startServer(port);
  try {
    const t = await connected({ servers: `nats://127.0.0.1:${port}`, reconnectWaitMs: 100 });
    const received: number[] = [];
    t.subscribe(subjects.heartbeats, (d) => received.push(d[0]!));
    t.publish(subjects.heartbeat("n1"), new Uint8Array([1]));
    await t.flush();
    await waitFor(5000, "the first message", () => received.length === 1);

    const down = nextStatus(t, "disconnected", 5000);
    await stopServer(server);
    await down;
    const up = nextStatus(t, "reconnected", 10_000);
    server = await startServer(port);
    await up;

    t.publish(subjects.heartbeat("n1"), new Uint8Array([2]));
    await t.flush();
    await waitFor(5000, "a message after reconnect", () => received.includes(2));
    assert.deepEqual(received, [1, 2]);
  } finally {
    await stopServer(server);
  }
});

test("nats transport - passes credentials through; wrong ones fail as TransportUnavailableError", async () => {
  const port = await freePort();
  const server = await startServer(port, ["--user", "node", "--pass", "s3cret"]);
  const servers = `nats://127.0.0.1:${port}`;
  try {
    const err = await connectNats({ servers, user: "node", pass: "wrong" }).then(
      () => assert.fail("connected with a wrong password"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof TransportUnavailableError, String(err));
    assert.match(err.message, /Authorization|authorization/);
    const t = await connected({ servers, user: "node", pass: "s3cret" });
    await t.flush();
  } finally {
    for (const t of open.splice(0)) await t.close();
    await stopServer(server);
  }
});
