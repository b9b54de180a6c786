/**
 * Runs the OTLP gRPC exporter against a real gRPC receiver on loopback, built here from the OTLP
 * protos (telemetry-otlp-metrics.proto, loaded with @grpc/proto-loader and served by
 * @grpc/grpc-js), and checks the decoded metrics: names, units, kinds, temporality, attributes,
 * histogram bounds and the values of a known set of decisions.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { EXPONENTIAL_SCALE, INSTRUMENTS, type InstrumentSpec } from "../../src/index.js";
import { activeHandles, type Sluice, startSluice, waitFor } from "./telemetry-fixtures.js";

// The .proto file is read from the source tree: from dist/test/integration/ up to the repo root.
const PROTO = fileURLToPath(
  new URL("../../../test/integration/telemetry-otlp-metrics.proto", import.meta.url),
);

interface KeyValue {
  key: string;
  value: { stringValue?: string; value?: string };
}
interface NumberPoint {
  attributes: KeyValue[];
  asDouble?: number;
  asInt?: number;
  value?: string;
  startTimeUnixNano: number;
  timeUnixNano: number;
}
interface HistogramPoint {
  attributes: KeyValue[];
  count: number;
  sum: number;
  bucketCounts: number[];
  explicitBounds: number[];
  min?: number;
  max?: number;
}
interface ExponentialPoint {
  attributes: KeyValue[];
  count: number;
  sum: number;
  scale: number;
  zeroCount: number;
  positive: { offset: number; bucketCounts: number[] };
  min?: number;
  max?: number;
}
interface Metric {
  name: string;
  description: string;
  unit: string;
  data: "gauge" | "sum" | "histogram" | "exponentialHistogram";
  gauge?: { dataPoints: NumberPoint[] };
  sum?: { dataPoints: NumberPoint[]; aggregationTemporality: string; isMonotonic: boolean };
  histogram?: { dataPoints: HistogramPoint[]; aggregationTemporality: string };
  exponentialHistogram?: { dataPoints: ExponentialPoint[]; aggregationTemporality: string };
}
interface ExportRequest {
  resourceMetrics: {
    resource: { attributes: KeyValue[] };
    scopeMetrics: { scope: { name: string }; metrics: Metric[] }[];
  }[];
}

/** A gRPC server implementing opentelemetry.proto.collector.metrics.v1.MetricsService. */
async function startReceiver(): Promise<{
  port: number;
  requests: ExportRequest[];
  close(): Promise<void>;
}> {
  const definition = protoLoader.loadSync(PROTO, {
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  // biome-ignore lint/suspicious/noExplicitAny: the package object is built at run time from the proto.
  const root = grpc.loadPackageDefinition(definition) as any;
  const service = root.opentelemetry.proto.collector.metrics.v1.MetricsService
    .service as grpc.ServiceDefinition;
  const requests: ExportRequest[] = [];
  const server = new grpc.Server();
  server.addService(service, {
    Export: (
      call: grpc.ServerUnaryCall<ExportRequest, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      requests.push(call.request);
      callback(null, {});
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
      }),
  };
}

function attrs(kvs: KeyValue[]): Record<string, string> {
  return Object.fromEntries(kvs.map((kv) => [kv.key, kv.value.stringValue ?? ""]));
}

function latestFrom(requests: ExportRequest[], serviceName: string): Map<string, Metric> {
  for (let i = requests.length - 1; i >= 0; i--) {
    for (const rm of requests[i]!.resourceMetrics) {
      if (attrs(rm.resource.attributes)["service.name"] !== serviceName) continue;
      const out = new Map<string, Metric>();
      for (const sm of rm.scopeMetrics) {
        assert.equal(sm.scope.name, "sluice", "instrumentation scope");
        for (const m of sm.metrics) out.set(m.name, m);
      }
      return out;
    }
  }
  throw new Error(`no export from ${serviceName}`);
}

function pointValue(p: NumberPoint): number {
  return p.value === "asInt" ? Number(p.asInt) : Number(p.asDouble);
}

/** Checks the kind, unit, temporality and attribute keys of every instrument in `specs`. */
function checkShapes(metrics: Map<string, Metric>, specs: InstrumentSpec[]): void {
  assert.deepEqual([...metrics.keys()].sort(), specs.map((s) => s.name).sort(), "metric names");
  for (const spec of specs) {
    const m = metrics.get(spec.name)!;
    assert.equal(m.unit, spec.unit, `unit of ${spec.name}`);
    assert.equal(m.description, spec.description, `description of ${spec.name}`);
    let points: { attributes: KeyValue[] }[];
    if (spec.kind === "counter" || spec.kind === "updowncounter") {
      assert.equal(m.data, "sum", `${spec.name} is a sum`);
      assert.equal(m.sum!.isMonotonic, spec.kind === "counter", `monotonicity of ${spec.name}`);
      assert.equal(m.sum!.aggregationTemporality, "AGGREGATION_TEMPORALITY_CUMULATIVE");
      points = m.sum!.dataPoints;
    } else if (spec.kind === "gauge") {
      assert.equal(m.data, "gauge", `${spec.name} is a gauge`);
      points = m.gauge!.dataPoints;
    } else {
      // OTLP gets the exponential form (Prometheus the explicit buckets).
      assert.equal(m.data, "exponentialHistogram", `${spec.name} is an exponential histogram`);
      assert.equal(
        m.exponentialHistogram!.aggregationTemporality,
        "AGGREGATION_TEMPORALITY_CUMULATIVE",
      );
      points = m.exponentialHistogram!.dataPoints;
    }
    assert.ok(points.length > 0, `${spec.name} has points`);
    for (const p of points) {
      const keys = Object.keys(attrs(p.attributes));
      assert.ok(
        keys.every((k) => spec.attributes.includes(k)),
        `attributes of ${spec.name}: ${keys.join(", ")}`,
      );
    }
  }
}

let sluice: Sluice | undefined;
let receiver: Awaited<ReturnType<typeof startReceiver>> | undefined;
after(async () => {
  await sluice?.close();
  await receiver?.close();
});

test("telemetry otlp - a real gRPC receiver decodes every instrument, cumulative, with exact values", async () => {
  const baseline = activeHandles();
  receiver = await startReceiver();
  const otlp = { url: `http://127.0.0.1:${receiver.port}`, exportIntervalMs: 60_000 };
  sluice = await startSluice({
    nodeTelemetry: { serviceName: "sluice-node", otlp },
    aggregatorTelemetry: { serviceName: "sluice-aggregator", otlp },
  });
  const { limiter, agent, service, nodeId } = sluice;
  for (let i = 0; i < 8; i++) limiter.check("api-global", "user-1");
  for (let i = 0; i < 4; i++) limiter.check("api-local", "user-1");
  for (let i = 0; i < 3; i++) await limiter.checkAsync("api-strict", "user-1");
  await waitFor("a grant back at the node and the node's clock at the aggregator", 10_000, () => {
    const s = service.stats();
    return agent.stats().propagation.count >= 1 && s.nodes.length === 1 && s.heartbeats >= 2;
  });
  await agent.close();
  await waitFor(
    "the last batch",
    5000,
    () => service.stats().batches === agent.stats().batchesSent,
  );
  await service.close();

  const before = receiver.requests.length;
  await sluice.nodeTelemetry.forceFlush();
  await sluice.aggregatorTelemetry.forceFlush();
  assert.ok(
    receiver.requests.length >= before + 2,
    "one export from each side reached the receiver",
  );

  const node = latestFrom(receiver.requests, "sluice-node");
  const agg = latestFrom(receiver.requests, "sluice-aggregator");
  const all = Object.values(INSTRUMENTS) as InstrumentSpec[];
  const nodeSide = all.filter((s) => s.attributes.includes("node"));
  const aggSide = all.filter((s) => s.attributes.includes("aggregator"));
  checkShapes(node, nodeSide);
  checkShapes(agg, aggSide);

  const decisions = new Map(
    node.get("ratelimit.decisions")!.sum!.dataPoints.map((p) => {
      const a = attrs(p.attributes);
      assert.equal(a["node"], nodeId);
      return [`${a["rule"]}/${a["outcome"]}`, pointValue(p)] as const;
    }),
  );
  assert.deepEqual(Object.fromEntries([...decisions].sort()), {
    "api-global/admitted": 5,
    "api-global/rejected": 3,
    "api-local/admitted": 3,
    "api-local/rejected": 1,
    "api-strict/admitted": 2,
    "api-strict/rejected": 1,
  });
  const [latency] = node.get("ratelimit.decision.duration")!.exponentialHistogram!.dataPoints;
  const expected = limiter.decisionLatency();
  assert.equal(latency!.count, 12);
  assert.equal(latency!.scale, EXPONENTIAL_SCALE);
  assert.equal(latency!.zeroCount, expected.exponential.zeroCount);
  assert.equal(latency!.positive.offset, expected.exponential.offset);
  assert.deepEqual(latency!.positive.bucketCounts ?? [], [...expected.exponential.bucketCounts]);
  const inBuckets = (latency!.positive.bucketCounts ?? []).reduce((a, b) => a + b, 0);
  assert.equal(latency!.zeroCount + inBuckets, 12, "every sample in a bucket");
  // Each sample lies in its bucket: (2^(i/8), 2^((i+1)/8)] seconds.
  if (latency!.count > latency!.zeroCount) {
    const lowest = 2 ** (latency!.positive.offset / 8);
    assert.ok(expected.minS > 0 ? expected.minS > lowest * 0.999999 : true, "min within range");
  }
  assert.equal(latency!.sum, expected.sumS);
  assert.equal(latency!.min, expected.minS);
  assert.equal(latency!.max, expected.maxS);
  const [propagation] = node.get("ratelimit.propagation.duration")!.exponentialHistogram!
    .dataPoints;
  assert.equal(propagation!.count, agent.stats().propagation.count);
  assert.equal(propagation!.scale, EXPONENTIAL_SCALE);

  const ratio = agg.get("ratelimit.usage.ratio")!.gauge!.dataPoints;
  assert.deepEqual(
    ratio.map((p) => [attrs(p.attributes)["rule"], pointValue(p)]),
    [["api-global", 1]],
  );
  // One point per aggregator (per-node series would outlive their nodes): the largest offset
  // among the nodes still live when the service stopped (none, once the leave notice is in).
  const offsets = agg.get("ratelimit.clock.offset.max")!.gauge!.dataPoints;
  assert.deepEqual(
    offsets.map((p) => attrs(p.attributes)),
    [{ aggregator: service.stats().aggregatorId }],
  );
  const worst = Math.max(0, ...service.stats().nodes.map((n) => Math.abs(n.clockOffsetMs)));
  assert.equal(pointValue(offsets[0]!), worst / 1000);

  await sluice.close();
  sluice = undefined;
  await receiver.close();
  receiver = undefined;
  await waitFor("handles to be released", 3000, () => {
    const now = activeHandles();
    return ["TCPServerWrap", "TCPSocketWrap", "Timeout"].every(
      (h) => now.filter((x) => x === h).length <= baseline.filter((x) => x === h).length,
    );
  });
});
