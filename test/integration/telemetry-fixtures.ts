/**
 * Shared pieces of the telemetry integration tests: a real Sluice node (limiter + node agent)
 * and a real aggregator service over the machine's NATS (127.0.0.1:4222) under a unique subject
 * prefix, each with its own Telemetry as two processes would have; a strict rule on the
 * machine's Redis under a unique key prefix; an HTTP GET that leaves no connection behind; and a
 * parser of the Prometheus text format.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { request } from "node:http";
import {
  type AggregatorService,
  connectNats,
  createAggregatorService,
  createLimiter,
  createNodeAgent,
  createRedisStrictStore,
  createSubjects,
  createTelemetry,
  type Limiter,
  type NodeAgent,
  type RuleConfig,
  type Subjects,
  type Telemetry,
  type TelemetryOptions,
  type Transport,
} from "../../src/index.js";

export const NATS_URL = "nats://127.0.0.1:4222";
export const REDIS_URL = "redis://127.0.0.1:6379";

/**
 * One rule per mode. Limits are per 60 s windows so that nothing refills or slides out of a
 * window while a test runs: the counts a test does are the counts it expects.
 */
export const RULES: readonly RuleConfig[] = [
  { name: "api-global", mode: "global", limit: 5, windowMs: 60_000 },
  { name: "api-local", limit: 3, windowMs: 60_000 },
  { name: "api-strict", mode: "strict", limit: 2, windowMs: 60_000, storeTimeoutMs: 2000 },
];

export function uniqueId(what: string): string {
  return `${what}-${process.pid}-${randomBytes(4).toString("hex")}`;
}

export interface Sluice {
  readonly prefix: string;
  readonly subjects: Subjects;
  readonly nodeId: string;
  readonly limiter: Limiter;
  readonly agent: NodeAgent;
  readonly service: AggregatorService;
  readonly nodeTelemetry: Telemetry;
  readonly aggregatorTelemetry: Telemetry;
  /** A third connection, for publishing garbage at the node and the aggregator. */
  readonly outsider: Transport;
  /** Closes agent, aggregator, limiter, telemetry and transports, in that order. Idempotent. */
  close(): Promise<void>;
}

export interface SluiceOptions {
  readonly nodeTelemetry: TelemetryOptions;
  readonly aggregatorTelemetry: TelemetryOptions;
  /** One check() in this many is timed. @default 1 (every one, so counts are exact) */
  readonly latencySampleEvery?: number;
}

export async function startSluice(o: SluiceOptions): Promise<Sluice> {
  const prefix = uniqueId("tel").replace(/-/g, "_");
  const subjects = createSubjects({ prefix });
  const nodeId = uniqueId("node");
  const opened: { close(): Promise<void> }[] = [];
  const closeAll = async () => {
    for (const c of opened.splice(0).reverse()) await c.close();
  };
  try {
    const nodeTransport = await connectNats({ servers: NATS_URL, name: "telemetry-test-node" });
    opened.push(nodeTransport);
    const aggregatorTransport = await connectNats({
      servers: NATS_URL,
      name: "telemetry-test-agg",
    });
    opened.push(aggregatorTransport);
    const outsider = await connectNats({ servers: NATS_URL, name: "telemetry-test-outsider" });
    opened.push(outsider);
    const strictStore = createRedisStrictStore({
      url: REDIS_URL,
      keyPrefix: `sluice-test:${uniqueId("telemetry")}:`,
    });
    let limiter: Limiter | undefined;
    // Until the limiter owns the store (its close() closes the store), close it here on failure.
    opened.push({ close: async () => (limiter === undefined ? strictStore.close() : undefined) });
    await strictStore.ready(5000);
    limiter = createLimiter({
      rules: RULES,
      strictStore,
      sweepIntervalMs: 0,
      latencySampleEvery: o.latencySampleEvery ?? 1,
    });
    opened.push(limiter); // closes the strict store too
    const nodeTelemetry = await createTelemetry(o.nodeTelemetry);
    opened.push(nodeTelemetry);
    const aggregatorTelemetry = await createTelemetry(o.aggregatorTelemetry);
    opened.push(aggregatorTelemetry);
    const service = createAggregatorService({
      rules: limiter.rules,
      transport: aggregatorTransport,
      aggregatorId: uniqueId("agg"),
      subjectPrefix: prefix,
      syncIntervalMs: 50,
      warmupMs: 0,
    });
    opened.push(service);
    // The aggregator's subscriptions must reach the server before the node's first heartbeat,
    // or that heartbeat is lost and the exact counts below never match.
    await aggregatorTransport.flush();
    const agent = createNodeAgent({
      limiter,
      transport: nodeTransport,
      nodeId,
      subjectPrefix: prefix,
      syncIntervalMs: 50,
      heartbeatIntervalMs: 100,
    });
    opened.push(agent);
    assert.equal(await agent.ready(), true, "the node heard the aggregator");
    nodeTelemetry.observeLimiter(limiter, { node: nodeId });
    nodeTelemetry.observeAgent(agent);
    aggregatorTelemetry.observeAggregator(service);
    return {
      prefix,
      subjects,
      nodeId,
      limiter,
      agent,
      service,
      nodeTelemetry,
      aggregatorTelemetry,
      outsider,
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** Polls `probe` every 10 ms until true; throws naming `what` after `ms`. */
export async function waitFor(what: string, ms: number, probe: () => boolean): Promise<void> {
  const deadline = performance.now() + ms;
  while (!probe()) {
    if (performance.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export interface HttpReply {
  readonly status: number;
  readonly contentType: string | undefined;
  readonly body: string;
}

/** GET without keep-alive (no socket is left open afterwards), bounded by `timeoutMs`. */
export function httpGet(url: string, timeoutMs = 5000): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, contentType: res.headers["content-type"], body }),
      );
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: no reply in ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  help?: string;
  type?: string;
  unit?: string;
  readonly samples: Sample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;

/**
 * Parses the Prometheus text exposition format (0.0.4) into families by name. A sample joins the
 * family whose name it is, or whose name plus `_bucket`/`_sum`/`_count` it is. Throws on a line it
 * cannot read, so malformed output fails the test that scraped it.
 */
export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) {
      f = { name, samples: [] };
      families.set(name, f);
    }
    return f;
  };
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const meta = /^# (HELP|TYPE|UNIT) (\S+) ?(.*)$/.exec(line);
    if (meta !== null) {
      const f = family(meta[2]!);
      const v = meta[3]!;
      if (meta[1] === "HELP") f.help = v.replace(/\\n/g, "\n").replace(/\\\\/g, "\\");
      else if (meta[1] === "TYPE") f.type = v;
      else f.unit = v;
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (m === null) throw new Error(`unreadable exposition line: ${line}`);
    const name = m[1]!;
    const labels: Record<string, string> = {};
    const body = m[3] ?? "";
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < body.length) {
      const start = LABEL.lastIndex;
      const l = LABEL.exec(body);
      if (l === null) throw new Error(`unreadable labels at ${start} in: ${line}`);
      labels[l[1]!] = l[2]!.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    const raw = m[4]!;
    const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw);
    if (Number.isNaN(value) && raw !== "NaN") throw new Error(`unreadable value in: ${line}`);
    const base = /^(.*)_(bucket|sum|count)$/.exec(name)?.[1];
    const owner =
      base !== undefined && families.get(base)?.type === "histogram" ? base : (name as string);
    family(owner).samples.push({ name, labels, value });
  }
  return families;
}

/** The one sample of `family` whose labels include `match`; throws if none or several. */
export function sampleOf(
  families: Map<string, Family>,
  family: string,
  match: Readonly<Record<string, string>>,
  sampleName: string = family,
): Sample {
  const f = families.get(family);
  if (f === undefined) throw new Error(`no metric family ${family}`);
  const found = f.samples.filter(
    (s) => s.name === sampleName && Object.entries(match).every(([k, v]) => s.labels[k] === v),
  );
  if (found.length !== 1) {
    throw new Error(
      `expected one ${sampleName} sample with ${JSON.stringify(match)}, found ${found.length}`,
    );
  }
  return found[0]!;
}

/** Handles of ours that keep a process alive, by type (the test runner's own pipes left out). */
export function activeHandles(): string[] {
  return process
    .getActiveResourcesInfo()
    .filter((r) => r !== "TTYWrap" && r !== "PipeWrap" && r !== "FSReqCallback");
}
