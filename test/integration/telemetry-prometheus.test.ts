/**
 * Scrapes the real Prometheus endpoints of a running node (limiter + agent) and aggregator over
 * the real NATS, after a known set of decisions and of bad messages, and checks every instrument:
 * its type, its unit, its labels and its values.
 *
 * What the exporter (@opentelemetry/exporter-prometheus 0.223) actually does, asserted below:
 * names are the OTel names with `.` as `_`, counters get `_total`, no unit suffix is added; the
 * unit is stated on a `# UNIT` line; `target_info` carries the resource.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, test } from "node:test";
import {
  createLimiter,
  createTelemetry,
  INSTRUMENTS,
  TelemetryStartError,
} from "../../src/index.js";
import {
  activeHandles,
  type Family,
  httpGet,
  parsePrometheusText,
  type Sluice,
  sampleOf,
  startSluice,
  waitFor,
} from "./telemetry-fixtures.js";

const KEY = "secret-user-key-1"; // must never show up in metrics

interface Expected {
  readonly type: string;
  readonly unit: string;
  readonly labels: readonly string[];
}

const NODE_FAMILIES: Record<string, Expected> = {
  ratelimit_decisions_total: {
    type: "counter",
    unit: "{hit}",
    labels: ["node", "outcome", "rule"],
  },
  ratelimit_keys: { type: "gauge", unit: "{key}", labels: ["node", "rule"] },
  ratelimit_keys_evicted_total: { type: "counter", unit: "{key}", labels: ["node", "rule"] },
  ratelimit_rule_limit: { type: "gauge", unit: "{hit}", labels: ["node", "rule"] },
  ratelimit_store_failures_total: { type: "counter", unit: "{decision}", labels: ["node", "rule"] },
  ratelimit_grants_received_total: {
    type: "counter",
    unit: "{grant}",
    labels: ["node", "outcome", "rule"],
  },
  ratelimit_messages_total: {
    type: "counter",
    unit: "{message}",
    labels: ["direction", "node", "type"],
  },
  ratelimit_batch_entries_total: {
    type: "counter",
    unit: "{entry}",
    labels: ["direction", "node"],
  },
  ratelimit_invalid_messages_total: {
    type: "counter",
    unit: "{message}",
    labels: ["node", "reason"],
  },
  ratelimit_invalid_entries_total: { type: "counter", unit: "{entry}", labels: ["node", "reason"] },
  ratelimit_grant_staleness: { type: "gauge", unit: "s", labels: ["node"] },
  ratelimit_aggregator_lost: { type: "gauge", unit: "{boolean}", labels: ["node"] },
  ratelimit_agent_live_nodes: { type: "gauge", unit: "{node}", labels: ["node"] },
  ratelimit_decision_duration: { type: "histogram", unit: "s", labels: ["node"] },
  ratelimit_propagation_duration: { type: "histogram", unit: "s", labels: ["node"] },
};

const AGGREGATOR_FAMILIES: Record<string, Expected> = {
  ratelimit_messages_total: {
    type: "counter",
    unit: "{message}",
    labels: ["aggregator", "direction", "type"],
  },
  ratelimit_batch_entries_total: {
    type: "counter",
    unit: "{entry}",
    labels: ["aggregator", "direction"],
  },
  ratelimit_grants_sent_total: { type: "counter", unit: "{grant}", labels: ["aggregator"] },
  ratelimit_invalid_messages_total: {
    type: "counter",
    unit: "{message}",
    labels: ["aggregator", "reason"],
  },
  ratelimit_invalid_entries_total: {
    type: "counter",
    unit: "{entry}",
    labels: ["aggregator", "reason"],
  },
  ratelimit_nodes_live: { type: "gauge", unit: "{node}", labels: ["aggregator"] },
  ratelimit_aggregator_ticks_total: { type: "counter", unit: "{tick}", labels: ["aggregator"] },
  ratelimit_aggregator_tick_duration: { type: "gauge", unit: "s", labels: ["aggregator"] },
  ratelimit_clock_offset_max: { type: "gauge", unit: "s", labels: ["aggregator"] },
  ratelimit_usage_ratio: { type: "gauge", unit: "1", labels: ["aggregator", "rule"] },
  ratelimit_window_admitted: { type: "gauge", unit: "{hit}", labels: ["aggregator", "rule"] },
  ratelimit_aggregator_keys: { type: "gauge", unit: "{key}", labels: ["aggregator", "rule"] },
  ratelimit_aggregator_decisions_total: {
    type: "counter",
    unit: "{hit}",
    labels: ["aggregator", "outcome", "rule"],
  },
};

/** The Prometheus family name this exporter gives an OTel instrument. */
function promName(spec: { name: string; kind: string }): string {
  const base = spec.name.replace(/[^a-zA-Z0-9_]/g, "_");
  return spec.kind === "counter" ? `${base}_total` : base;
}

function checkFamilies(families: Map<string, Family>, expected: Record<string, Expected>): void {
  const shown = [...families.keys()].filter((n) => n !== "target_info").sort();
  assert.deepEqual(shown, Object.keys(expected).sort(), "metric families on the endpoint");
  for (const name of Object.keys(expected)) checkFamily(families, name, expected[name]!);
}

function checkFamily(families: Map<string, Family>, name: string, e: Expected): void {
  const f = families.get(name);
  assert.ok(f !== undefined, `${name} on the endpoint`);
  assert.equal(f.type, e.type, `# TYPE of ${name}`);
  assert.equal(f.unit, e.unit, `# UNIT of ${name}`);
  assert.ok(f.help !== undefined && f.help.length > 10, `# HELP of ${name}`);
  assert.ok(f.samples.length > 0, `${name} has samples`);
  for (const s of f.samples) {
    const want = s.name.endsWith("_bucket") ? [...e.labels, "le"].sort() : e.labels;
    assert.deepEqual(Object.keys(s.labels).sort(), want, `labels of ${s.name}`);
  }
}

let sluice: Sluice | undefined;
after(async () => {
  await sluice?.close();
});

test("telemetry prometheus - every instrument on the node and aggregator endpoints, with exact values", async () => {
  const baseline = activeHandles();
  sluice = await startSluice({
    nodeTelemetry: { serviceName: "sluice-node", prometheus: { port: 0 } },
    aggregatorTelemetry: { serviceName: "sluice-aggregator", prometheus: { port: 0 } },
  });
  const { limiter, agent, service, subjects, nodeId, outsider } = sluice;
  const aggregatorId = service.stats().aggregatorId;

  // Known decisions: 8 on a global rule of 5, 4 on a local rule of 3, 3 strict on a rule of 2.
  for (let i = 0; i < 8; i++) limiter.check("api-global", KEY);
  for (let i = 0; i < 4; i++) limiter.check("api-local", KEY);
  for (let i = 0; i < 3; i++) await limiter.checkAsync("api-strict", KEY);

  // Known bad input: 2 frames with a bad magic and 1 too short at the aggregator, 1 at the node.
  const garbage = new TextEncoder().encode("not a sluice frame");
  outsider.publish(subjects.decisions(0, "outsider"), garbage);
  outsider.publish(subjects.decisions(0, "outsider"), garbage);
  outsider.publish(subjects.decisions(0, "outsider"), new Uint8Array([1, 2, 3]));
  outsider.publish(subjects.updates(nodeId), garbage);
  await outsider.flush();

  await waitFor(
    "the round trip: counts at the aggregator, a grant back, bad input counted",
    10_000,
    () => {
      const a = service.stats();
      const n = agent.stats();
      const usage = service.usage().find((u) => u.rule === "api-global");
      return (
        usage?.admittedInWindow === 5 &&
        a.invalidMessages["bad-magic"] === 2 &&
        a.invalidMessages["too-short"] === 1 &&
        n.invalidMessages["bad-magic"] === 1 &&
        n.propagation.count >= 1 &&
        a.nodes.some((x) => x.id === nodeId) &&
        a.heartbeats >= 2
      );
    },
  );
  // While the node is live: its clock offset, as estimated from its heartbeats, is the largest.
  const aggUrl = sluice.aggregatorTelemetry.prometheusUrl!;
  const live = parsePrometheusText((await httpGet(aggUrl)).body);
  const liveOffset = sampleOf(live, "ratelimit_clock_offset_max", { aggregator: aggregatorId });
  assert.ok(Math.abs(liveOffset.value) < 1, "same host: offset well under a second");
  assert.equal(sampleOf(live, "ratelimit_nodes_live", { aggregator: aggregatorId }).value, 1);

  // Freeze every counter: stop the agent (its last batch and its leaving notice go out), let
  // the aggregator take everything that was sent, then stop it. Telemetry keeps reading the
  // stopped objects. The node said it left, so it is no longer live and no offset is left.
  await agent.close();
  await waitFor("the aggregator to take the node's last messages", 5000, () => {
    const a = service.stats();
    const n = agent.stats();
    return a.batches === n.batchesSent && a.heartbeats === n.heartbeatsSent;
  });
  await service.close();

  const nodeUrl = sluice.nodeTelemetry.prometheusUrl!;
  assert.match(nodeUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  const nodeReply = await httpGet(nodeUrl);
  const aggReply = await httpGet(aggUrl);
  assert.equal(nodeReply.status, 200);
  assert.equal(nodeReply.contentType, "text/plain");
  assert.equal(aggReply.status, 200);
  assert.ok(
    !nodeReply.body.includes(KEY) && !aggReply.body.includes(KEY),
    "no limit key in metrics",
  );

  const node = parsePrometheusText(nodeReply.body);
  const agg = parsePrometheusText(aggReply.body);
  checkFamilies(node, NODE_FAMILIES);
  checkFamilies(agg, AGGREGATOR_FAMILIES);
  // Every instrument of the table is on one of the two endpoints, under the name asserted above.
  for (const spec of Object.values(INSTRUMENTS)) {
    const name = promName(spec);
    assert.ok(node.has(name) || agg.has(name), `instrument ${spec.name} scraped as ${name}`);
  }
  assert.equal(sampleOf(node, "target_info", {}).labels["service_name"], "sluice-node", "resource");

  // --- node values ---
  const n = { node: nodeId };
  const decisions = (rule: string, outcome: string) =>
    sampleOf(node, "ratelimit_decisions_total", { ...n, rule, outcome }).value;
  assert.equal(decisions("api-global", "admitted"), 5);
  assert.equal(decisions("api-global", "rejected"), 3);
  assert.equal(decisions("api-local", "admitted"), 3);
  assert.equal(decisions("api-local", "rejected"), 1);
  assert.equal(decisions("api-strict", "admitted"), 2);
  assert.equal(decisions("api-strict", "rejected"), 1);
  for (const rule of ["api-global", "api-local", "api-strict"]) {
    assert.equal(sampleOf(node, "ratelimit_keys", { ...n, rule }).value, 1);
    assert.equal(sampleOf(node, "ratelimit_keys_evicted_total", { ...n, rule }).value, 0);
  }
  assert.equal(sampleOf(node, "ratelimit_rule_limit", { ...n, rule: "api-global" }).value, 5);
  assert.equal(sampleOf(node, "ratelimit_rule_limit", { ...n, rule: "api-local" }).value, 3);
  assert.equal(sampleOf(node, "ratelimit_rule_limit", { ...n, rule: "api-strict" }).value, 2);
  assert.deepEqual(
    node.get("ratelimit_store_failures_total")!.samples.map((s) => [s.labels["rule"], s.value]),
    [["api-strict", 0]],
    "store failures: strict rules only",
  );
  const ruleStats = limiter.stats().find((s) => s.rule === "api-global")!;
  assert.equal(
    sampleOf(node, "ratelimit_grants_received_total", { ...n, outcome: "applied" }).value,
    ruleStats.grantsApplied,
  );
  assert.ok(ruleStats.grantsApplied >= 1, "a grant was applied");
  assert.equal(
    sampleOf(node, "ratelimit_grants_received_total", { ...n, outcome: "ignored" }).value,
    ruleStats.grantsIgnored,
  );

  const ns = agent.stats();
  const nodeMsg = (type: string, direction: string) =>
    sampleOf(node, "ratelimit_messages_total", { ...n, type, direction }).value;
  assert.equal(nodeMsg("batch", "sent"), ns.batchesSent);
  assert.equal(nodeMsg("heartbeat", "sent"), ns.heartbeatsSent);
  assert.equal(nodeMsg("update", "received"), ns.updatesReceived);
  assert.equal(nodeMsg("defaults", "received"), ns.defaultsReceived);
  assert.ok(ns.batchesSent >= 1 && ns.updatesReceived >= 1 && ns.defaultsReceived >= 1);
  assert.equal(
    sampleOf(node, "ratelimit_batch_entries_total", { ...n, direction: "sent" }).value,
    ns.entriesSent,
  );
  assert.equal(
    sampleOf(node, "ratelimit_invalid_messages_total", { ...n, reason: "bad-magic" }).value,
    1,
  );
  const nodeInvalid = node.get("ratelimit_invalid_messages_total")!.samples;
  assert.equal(
    nodeInvalid.reduce((sum, s) => sum + s.value, 0),
    1,
    "no other invalid message at the node",
  );
  assert.ok(
    ["too-short", "bad-crc", "other-node-run", "older-aggregator", "wrong-type"].every((reason) =>
      nodeInvalid.some((s) => s.labels["reason"] === reason),
    ),
    "known reasons are present at 0",
  );
  assert.deepEqual(
    node
      .get("ratelimit_invalid_entries_total")!
      .samples.map((s) => [s.labels["reason"], s.value])
      .sort(),
    [
      ["bad-key", 0],
      ["bad-number", 0],
      ["bad-rule", 0],
      ["implausible-grant", 0],
    ],
  );
  const staleness = sampleOf(node, "ratelimit_grant_staleness", n).value;
  const silentAfterS = agent.stats().aggregatorSilentMs / 1000;
  assert.ok(staleness > 0 && staleness <= silentAfterS, `staleness ${staleness} s`);
  assert.equal(sampleOf(node, "ratelimit_aggregator_lost", n).value, ns.aggregatorLost ? 1 : 0);
  assert.equal(sampleOf(node, "ratelimit_agent_live_nodes", n).value, 1);

  const latency = limiter.decisionLatency();
  assert.equal(latency.count, 12, "every synchronous check() timed (latencySampleEvery 1)");
  checkHistogram(node, "ratelimit_decision_duration", n, latency);
  checkHistogram(node, "ratelimit_propagation_duration", n, ns.propagation);

  // --- aggregator values ---
  const as = service.stats();
  const a = { aggregator: aggregatorId };
  const aggMsg = (type: string, direction: string) =>
    sampleOf(agg, "ratelimit_messages_total", { ...a, type, direction }).value;
  assert.equal(aggMsg("batch", "received"), as.batches);
  assert.equal(as.batches, ns.batchesSent, "every batch arrived");
  assert.equal(aggMsg("heartbeat", "received"), as.heartbeats);
  assert.equal(aggMsg("update", "sent"), as.updatesSent);
  assert.equal(
    sampleOf(agg, "ratelimit_batch_entries_total", { ...a, direction: "received" }).value,
    as.entries,
  );
  assert.equal(sampleOf(agg, "ratelimit_grants_sent_total", a).value, as.grantsSent);
  assert.equal(
    sampleOf(agg, "ratelimit_invalid_messages_total", { ...a, reason: "bad-magic" }).value,
    2,
  );
  assert.equal(
    sampleOf(agg, "ratelimit_invalid_messages_total", { ...a, reason: "too-short" }).value,
    1,
  );
  assert.equal(
    agg.get("ratelimit_invalid_messages_total")!.samples.reduce((sum, s) => sum + s.value, 0),
    3,
  );
  assert.equal(sampleOf(agg, "ratelimit_nodes_live", a).value, 0, "the node said it left");
  assert.equal(as.nodesLeft, 1);
  assert.equal(sampleOf(agg, "ratelimit_aggregator_ticks_total", a).value, as.ticks);
  assert.equal(sampleOf(agg, "ratelimit_aggregator_tick_duration", a).value, as.lastTickMs / 1000);
  assert.equal(as.nodes.length, 0);
  assert.equal(sampleOf(agg, "ratelimit_clock_offset_max", a).value, 0);
  const g = { ...a, rule: "api-global" };
  assert.equal(sampleOf(agg, "ratelimit_usage_ratio", g).value, 1, "5 admitted of 5");
  assert.equal(sampleOf(agg, "ratelimit_window_admitted", g).value, 5);
  assert.equal(sampleOf(agg, "ratelimit_aggregator_keys", g).value, 1);
  // What the aggregator counted is what the node admitted and rejected on the global rule.
  const nodeGlobal = limiter.stats().find((s) => s.rule === "api-global")!;
  const aggDecided = (outcome: string) =>
    sampleOf(agg, "ratelimit_aggregator_decisions_total", { ...g, outcome }).value;
  assert.equal(aggDecided("admitted"), 5);
  assert.equal(aggDecided("admitted"), nodeGlobal.admittedHits);
  assert.equal(aggDecided("rejected"), nodeGlobal.rejectedHits);
  assert.deepEqual(
    agg.get("ratelimit_usage_ratio")!.samples.map((s) => s.labels["rule"]),
    ["api-global"],
    "only global rules are aggregated",
  );

  // --- close: nothing of ours is left running ---
  await sluice.close();
  sluice = undefined;
  await waitFor("handles to be released", 2000, () => {
    const now = activeHandles();
    return ["TCPServerWrap", "TCPSocketWrap", "Timeout"].every(
      (h) => now.filter((x) => x === h).length <= baseline.filter((x) => x === h).length,
    );
  });
});

function checkHistogram(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string>,
  expected: { boundsS: readonly number[]; counts: readonly number[]; sumS: number; count: number },
): void {
  assert.equal(sampleOf(families, name, labels, `${name}_count`).value, expected.count);
  assert.equal(sampleOf(families, name, labels, `${name}_sum`).value, expected.sumS);
  const buckets = families
    .get(name)!
    .samples.filter((s) => s.name === `${name}_bucket`)
    .map((s) => [Number(s.labels["le"] === "+Inf" ? Infinity : s.labels["le"]), s.value]);
  let cumulative = 0;
  const want = [...expected.boundsS, Infinity].map((bound, i) => {
    cumulative += expected.counts[i]!;
    return [bound, cumulative];
  });
  assert.deepEqual(buckets, want, `${name} buckets (bounds and cumulative counts)`);
}

test("telemetry prometheus - the handler mounts in the user's own server; a taken port fails clearly", async () => {
  const telemetry = await createTelemetry({ prometheus: {} });
  assert.equal(telemetry.prometheusUrl, undefined, "no own port when none is asked for");
  const limiter = createLimiter({ rules: [{ name: "mounted", limit: 2, windowMs: 60_000 }] });
  telemetry.observeLimiter(limiter, { node: "mounted-node" });
  limiter.check("mounted", "k");
  limiter.check("mounted", "k");
  limiter.check("mounted", "k");
  const server = createServer((req, res) => {
    if (req.url === "/internal/metrics") telemetry.prometheusHandler!(req, res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const port = (server.address() as { port: number }).port;
    const reply = await httpGet(`http://127.0.0.1:${port}/internal/metrics`);
    assert.equal(reply.status, 200);
    const families = parsePrometheusText(reply.body);
    const at = { rule: "mounted", node: "mounted-node" };
    assert.equal(
      sampleOf(families, "ratelimit_decisions_total", { ...at, outcome: "admitted" }).value,
      2,
    );
    assert.equal(
      sampleOf(families, "ratelimit_decisions_total", { ...at, outcome: "rejected" }).value,
      1,
    );

    await assert.rejects(
      createTelemetry({ prometheus: { port, host: "127.0.0.1" } }),
      (err: unknown) =>
        err instanceof TelemetryStartError &&
        err.port === port &&
        /Could not serve metrics on 127\.0\.0\.1:\d+/.test(err.message) &&
        (err.cause as NodeJS.ErrnoException).code === "EADDRINUSE",
    );
  } finally {
    await new Promise((resolve) => server.close(resolve));
    await limiter.close();
    await telemetry.close();
  }
});
