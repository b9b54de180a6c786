/**
 * Telemetry: the composition root of Sluice's OpenTelemetry metrics, and the only module that
 * uses the OTel SDK and exporters.
 *
 *   limiter.stats(), agent.stats(), aggregator stats() / usage()
 *       -> observable instruments (read at collection, one batch callback)
 *   limiter.decisionLatency(), agent.stats().propagation
 *       -> HistogramProducer (pre-bucketed, copied at collection)
 *   -> MeterProvider (views: attribute allow-list, cardinality limit)
 *   -> Prometheus reader (own HTTP port, or a request handler to mount) and/or
 *      OTLP gRPC periodic reader (cumulative temporality)
 *
 * Nothing is recorded per decision: the hot path keeps counting in plain numbers and typed
 * arrays, and a scrape or an export reads them. `close()` stops the HTTP server, sends a last
 * OTLP export and shuts the readers down, leaving no handle open.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { BatchObservableResult, Observable } from "@opentelemetry/api";
import { ValueType } from "@opentelemetry/api";
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-grpc";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import {
  createAllowListAttributesProcessor,
  type IMetricReader,
  MeterProvider,
  PeriodicExportingMetricReader,
  type ViewOptions,
} from "@opentelemetry/sdk-metrics";
import type { NodeAgent } from "../agent/node-agent.js";
import { defaultNodeId } from "../agent/node-id.js";
import { type AggregatorService, furthestClock } from "../aggregator/aggregator-service.js";
import { wallClockMs } from "../clock/clock.js";
import { InvalidArgumentError, SluiceError } from "../errors.js";
import type { Limiter } from "../limiter/limiter.js";
import { DECODE_FAILURES, ENTRY_DROP_REASONS } from "../protocol/decode-result.js";
import { isValidNodeId } from "../protocol/subjects.js";
import { expectNumber, optionalNumber } from "../validate.js";
import { HistogramProducer, type HistogramSource } from "./histogram-producer.js";
import {
  ALLOWED_ATTRIBUTES,
  ATTR,
  INSTRUMENTS,
  type InstrumentHandle,
  type InstrumentSpec,
} from "./instruments.js";

export interface PrometheusOptions {
  /**
   * Serve the scrape endpoint on this TCP port (0 picks a free one; see `prometheusUrl`). Leave
   * it out to serve nothing and mount `telemetry.prometheusHandler` in your own HTTP server.
   * @example 9464
   */
  readonly port?: number;
  /**
   * Interface to listen on. Metrics name rules and node ids, so the default keeps them off the
   * network; use `"0.0.0.0"` (or a specific address) when Prometheus scrapes from another host.
   * @default "127.0.0.1"
   */
  readonly host?: string;
  /** Path of the scrape endpoint on the own port. @default "/metrics" */
  readonly path?: string;
}

export interface OtlpOptions {
  /**
   * OTLP gRPC endpoint: `http://host:4317` (plaintext) or `https://host:4317` (TLS). Headers and
   * certificates come from the standard `OTEL_EXPORTER_OTLP_*` environment variables.
   * @example "http://127.0.0.1:4317"
   */
  readonly url: string;
  /** Export period, ms (>= 100). @default 10_000 */
  readonly exportIntervalMs?: number;
  /** Timeout of one export, ms (>= 10, at most `exportIntervalMs`). @default 5_000 */
  readonly exportTimeoutMs?: number;
}

export interface TelemetryOptions {
  /** `service.name` of the OTel resource (Prometheus `target_info`). @default "sluice" */
  readonly serviceName?: string;
  /**
   * More resource attributes, e.g. `{ "deployment.environment": "prod" }`; they win over the
   * defaults (`service.instance.id` is `<hostname>-<pid>`).
   */
  readonly resourceAttributes?: Readonly<Record<string, string>>;
  /** Prometheus scrape endpoint; omit for none. `{}` gives a handler to mount, no port. */
  readonly prometheus?: PrometheusOptions;
  /** OTLP gRPC push, cumulative temporality; omit for none. */
  readonly otlp?: OtlpOptions;
}

export interface ObserveLimiterOptions {
  /**
   * The `node` attribute of this limiter's points: give the node agent's `nodeId` when there is
   * one, so both sets of points name the same node. One limiter per node id.
   * @default defaultNodeId() (`<hostname>-<pid>`)
   */
  readonly node?: string;
}

/** Stops observing one object; its points disappear from later collections. Idempotent. */
export type Unobserve = () => void;

export interface Telemetry {
  /**
   * `http://host:port/path` of the own scrape endpoint, or undefined when none was asked for.
   */
  readonly prometheusUrl: string | undefined;
  /**
   * Serves one scrape (Prometheus text format) on any request: mount it on a path of your own
   * server. Undefined when `prometheus` was not configured.
   */
  readonly prometheusHandler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  /** Reports a limiter: decisions, keys, evictions, store failures, grants, decision latency. */
  observeLimiter(limiter: Limiter, options?: ObserveLimiterOptions): Unobserve;
  /** Reports a node agent: messages, invalid input, propagation latency, grant staleness. */
  observeAgent(agent: NodeAgent): Unobserve;
  /** Reports an aggregator: usage per rule, live nodes, clock offsets, messages, tick load. */
  observeAggregator(service: AggregatorService): Unobserve;
  /** Exports to OTLP now (no-op without `otlp`). */
  forceFlush(): Promise<void>;
  /** Stops the endpoint, sends a last OTLP export, shuts every reader down. Idempotent. */
  close(): Promise<void>;
}

/** The Prometheus endpoint could not start (port taken, address not available...). */
export class TelemetryStartError extends SluiceError {
  override name = "TelemetryStartError";
  readonly host: string;
  readonly port: number;

  constructor(host: string, port: number, options?: ErrorOptions) {
    super(`Could not serve metrics on ${host}:${port}`, options);
    this.host = host;
    this.port = port;
  }
}

const SCOPE = "sluice";
const NODE_MESSAGE_REASONS = [
  ...DECODE_FAILURES,
  "wrong-type",
  "other-node-run",
  "older-aggregator",
  "future-aggregator",
];
const AGGREGATOR_MESSAGE_REASONS = [...DECODE_FAILURES, "wrong-type", "sender-mismatch"];
/** A node also drops grant entries no aggregator could have sent (see `GrantOutcome`). */
const NODE_ENTRY_REASONS = [...ENTRY_DROP_REASONS, "implausible-grant"];

/** Builds the MeterProvider, readers and endpoint described by `options`. */
export async function createTelemetry(options: TelemetryOptions = {}): Promise<Telemetry> {
  const t = new TelemetryImpl(options);
  await t.start(options);
  return t;
}

interface LimiterSource {
  readonly limiter: Limiter;
  readonly node: string;
}

class TelemetryImpl implements Telemetry {
  prometheusUrl: string | undefined;
  prometheusHandler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  readonly #provider: MeterProvider;
  readonly #histograms: HistogramProducer;
  /** The same sources as base-2 exponential histograms, for OTLP. */
  readonly #exponentialHistograms: HistogramProducer;
  readonly #observables = new Map<InstrumentSpec, Observable>();
  readonly #limiters = new Set<LimiterSource>();
  readonly #agents = new Set<NodeAgent>();
  readonly #aggregators = new Set<AggregatorService>();
  readonly #prometheus: PrometheusExporter | undefined;
  readonly #otlp: PeriodicExportingMetricReader | undefined;
  #server: Server | undefined;
  #closed = false;

  constructor(o: TelemetryOptions) {
    const serviceName = o.serviceName ?? "sluice";
    if (typeof serviceName !== "string" || serviceName === "")
      throw new InvalidArgumentError("serviceName", "a non-empty string", serviceName);
    const resource = defaultResource().merge(
      resourceFromAttributes({
        "service.name": serviceName,
        // The collector's Prometheus exporter makes this the `instance` label.
        "service.instance.id": defaultNodeId(),
        ...o.resourceAttributes,
      }),
    );
    this.#histograms = new HistogramProducer(resource, SCOPE, wallClockMs);
    this.#exponentialHistograms = new HistogramProducer(resource, SCOPE, wallClockMs, true);
    const readers: IMetricReader[] = [];
    if (o.prometheus !== undefined) {
      this.#prometheus = new PrometheusExporter({
        preventServerStart: true,
        withoutScopeInfo: true,
        metricProducers: [this.#histograms],
      });
      const exporter = this.#prometheus;
      this.prometheusHandler = (req, res) => exporter.getMetricsRequestHandler(req, res);
      readers.push(exporter);
    }
    if (o.otlp !== undefined) {
      const url = o.otlp.url;
      if (typeof url !== "string" || !/^https?:\/\/[^/]+/.test(url))
        throw new InvalidArgumentError("otlp.url", "an http:// or https:// URL", url);
      const exportIntervalMillis = optionalNumber(
        "otlp.exportIntervalMs",
        o.otlp.exportIntervalMs,
        10_000,
        { min: 100 },
      );
      const exportTimeoutMillis = optionalNumber(
        "otlp.exportTimeoutMs",
        o.otlp.exportTimeoutMs,
        Math.min(5_000, exportIntervalMillis),
        { min: 10, max: exportIntervalMillis },
      );
      this.#otlp = new PeriodicExportingMetricReader({
        // Cumulative: the histogram producer reports cumulative points, and so do counters.
        exporter: new OTLPMetricExporter({ url, timeoutMillis: exportTimeoutMillis }),
        exportIntervalMillis,
        exportTimeoutMillis,
        metricProducers: [this.#exponentialHistograms],
      });
      readers.push(this.#otlp);
    }
    const views: ViewOptions[] = [
      {
        // Only the documented attribute keys survive, whatever a caller passes: a limit key can
        // never reach a metric stream.
        instrumentName: "ratelimit.*",
        attributesProcessors: [createAllowListAttributesProcessor([...ALLOWED_ATTRIBUTES])],
        aggregationCardinalityLimit: 10_000,
      },
    ];
    this.#provider = new MeterProvider({ resource, readers, views });
    this.#createInstruments();
  }

  async start(o: TelemetryOptions): Promise<void> {
    const port = o.prometheus?.port;
    if (o.prometheus === undefined || port === undefined) return;
    expectNumber("prometheus.port", port, { integer: true, min: 0, max: 65_535 });
    const host = o.prometheus.host ?? "127.0.0.1";
    if (typeof host !== "string" || host === "")
      throw new InvalidArgumentError("prometheus.host", "a host name or address", host);
    const path = o.prometheus.path ?? "/metrics";
    if (typeof path !== "string" || !path.startsWith("/"))
      throw new InvalidArgumentError("prometheus.path", "a path starting with /", path);
    const handler = this.prometheusHandler!;
    const server = createServer((req, res) => {
      const pathname = (req.url ?? "/").split("?", 1)[0];
      if (pathname !== path) {
        res.statusCode = 404;
        res.end();
      } else if (req.method !== "GET" && req.method !== "HEAD") {
        res.statusCode = 405;
        res.setHeader("allow", "GET, HEAD");
        res.end();
      } else handler(req, res);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      await this.#provider.shutdown().catch(() => {});
      throw new TelemetryStartError(host, port, { cause: err });
    }
    this.#server = server;
    const address = server.address();
    const actualPort = typeof address === "object" && address !== null ? address.port : port;
    const shownHost = host.includes(":") ? `[${host}]` : host;
    this.prometheusUrl = `http://${shownHost}:${actualPort}${path}`;
  }

  #createInstruments(): void {
    const meter = this.#provider.getMeter(SCOPE);
    for (const spec of Object.values(INSTRUMENTS) as InstrumentSpec[]) {
      const opts = { unit: spec.unit, description: spec.description, valueType: ValueType.DOUBLE };
      if (spec.kind === "counter")
        this.#observables.set(spec, meter.createObservableCounter(spec.name, opts));
      else if (spec.kind === "updowncounter")
        this.#observables.set(spec, meter.createObservableUpDownCounter(spec.name, opts));
      else if (spec.kind === "gauge")
        this.#observables.set(spec, meter.createObservableGauge(spec.name, opts));
    }
    meter.addBatchObservableCallback((r) => this.#observe(r), [...this.#observables.values()]);
  }

  observeLimiter(limiter: Limiter, options: ObserveLimiterOptions = {}): Unobserve {
    this.#assertOpen();
    const node = options.node ?? defaultNodeId();
    if (!isValidNodeId(node))
      throw new InvalidArgumentError(
        "node",
        "a string of 1-64 characters from A-Z a-z 0-9 _ -",
        node,
      );
    const source: LimiterSource = { limiter, node };
    this.#limiters.add(source);
    const removeHistogram = this.#addHistogram(INSTRUMENTS.decisionDuration, {
      attributes: { [ATTR.node]: node },
      startWallMs: wallClockMs(),
      snapshot: () => limiter.decisionLatency(),
    });
    return () => {
      this.#limiters.delete(source);
      removeHistogram();
    };
  }

  /** Registers a pre-bucketed source with both producers (explicit and exponential). */
  #addHistogram(instrument: InstrumentSpec, source: HistogramSource): () => void {
    const a = this.#histograms.add(instrument, source);
    const b = this.#exponentialHistograms.add(instrument, source);
    return () => {
      a();
      b();
    };
  }

  observeAgent(agent: NodeAgent): Unobserve {
    this.#assertOpen();
    this.#agents.add(agent);
    const removeHistogram = this.#addHistogram(INSTRUMENTS.propagationDuration, {
      attributes: { [ATTR.node]: agent.nodeId },
      startWallMs: wallClockMs(),
      snapshot: () => agent.stats().propagation,
    });
    return () => {
      this.#agents.delete(agent);
      removeHistogram();
    };
  }

  observeAggregator(service: AggregatorService): Unobserve {
    this.#assertOpen();
    this.#aggregators.add(service);
    return () => {
      this.#aggregators.delete(service);
    };
  }

  #observe(r: BatchObservableResult): void {
    const obs = (handle: InstrumentHandle, value: number, attrs: Record<string, string>) => {
      const o = this.#observables.get(INSTRUMENTS[handle]);
      if (o !== undefined && Number.isFinite(value)) r.observe(o, value, attrs);
    };
    for (const { limiter, node } of this.#limiters) {
      const modes = new Map(limiter.rules.map((rule) => [rule.name, rule]));
      for (const s of limiter.stats()) {
        const rule = modes.get(s.rule);
        const at = { [ATTR.rule]: s.rule, [ATTR.node]: node };
        obs("decisions", s.admittedHits, { ...at, [ATTR.outcome]: "admitted" });
        obs("decisions", s.rejectedHits, { ...at, [ATTR.outcome]: "rejected" });
        if (rule?.shadow === true || s.shadowedHits > 0) {
          // Would-be rejections of a rule in shadow mode: let through, so neither of the above.
          obs("decisions", s.shadowedHits, { ...at, [ATTR.outcome]: "shadowed" });
        }
        obs("keys", s.keys, at);
        obs("keysEvicted", s.evictedKeys, at);
        if (rule !== undefined) obs("ruleLimit", rule.limit, at);
        if (rule?.mode === "strict") obs("storeFailures", s.storeFailures, at);
        if (rule?.mode === "global") {
          obs("grantsReceived", s.grantsApplied, { ...at, [ATTR.outcome]: "applied" });
          obs("grantsReceived", s.grantsIgnored, { ...at, [ATTR.outcome]: "ignored" });
          obs("grantsReceived", s.grantsImplausible, { ...at, [ATTR.outcome]: "implausible" });
        }
      }
    }
    for (const agent of this.#agents) {
      const s = agent.stats();
      const node = { [ATTR.node]: s.nodeId };
      const msg = (type: string, direction: string, n: number) =>
        obs("messages", n, { ...node, [ATTR.type]: type, [ATTR.direction]: direction });
      msg("batch", "sent", s.batchesSent);
      msg("heartbeat", "sent", s.heartbeatsSent);
      msg("update", "received", s.updatesReceived);
      msg("defaults", "received", s.defaultsReceived);
      obs("entries", s.entriesSent, { ...node, [ATTR.direction]: "sent" });
      for (const reason of union(NODE_MESSAGE_REASONS, s.invalidMessages))
        obs("invalidMessages", s.invalidMessages[reason] ?? 0, { ...node, [ATTR.reason]: reason });
      for (const reason of union(NODE_ENTRY_REASONS, s.invalidEntries))
        obs("invalidEntries", s.invalidEntries[reason] ?? 0, { ...node, [ATTR.reason]: reason });
      obs("grantStaleness", s.aggregatorSilentMs / 1000, node); // skipped while Infinity
      obs("aggregatorLost", s.aggregatorLost ? 1 : 0, node);
      obs("agentLiveNodes", s.liveNodes, node);
    }
    for (const service of this.#aggregators) {
      const s = service.stats();
      const agg = { [ATTR.aggregator]: s.aggregatorId };
      const msg = (type: string, direction: string, n: number) =>
        obs("messages", n, { ...agg, [ATTR.type]: type, [ATTR.direction]: direction });
      msg("batch", "received", s.batches);
      msg("heartbeat", "received", s.heartbeats);
      msg("update", "sent", s.updatesSent);
      obs("entries", s.entries, { ...agg, [ATTR.direction]: "received" });
      obs("grantsSent", s.grantsSent, agg);
      for (const reason of union(AGGREGATOR_MESSAGE_REASONS, s.invalidMessages))
        obs("invalidMessages", s.invalidMessages[reason] ?? 0, { ...agg, [ATTR.reason]: reason });
      for (const reason of union(ENTRY_DROP_REASONS, s.invalidEntries))
        obs("invalidEntries", s.invalidEntries[reason] ?? 0, { ...agg, [ATTR.reason]: reason });
      obs("liveNodes", s.liveNodes, agg);
      obs("ticks", s.ticks, agg);
      obs("tickDuration", s.lastTickMs / 1000, agg);
      // One series per aggregator, not per node: the SDK keeps exporting an observable series
      // after its last observation, so a per-node series would outlive its node, stale value
      // and all, and node churn (restarts, rolling deploys) would grow them without bound.
      // Which node is off: stats().nodes, and the aggregator's progress lines.
      obs("clockOffset", Math.abs(furthestClock(s.nodes)?.clockOffsetMs ?? 0) / 1000, agg);
      for (const u of service.usage()) {
        const at = { ...agg, [ATTR.rule]: u.rule };
        obs("usageRatio", u.maxRatio, at);
        obs("windowAdmitted", u.admittedInWindow, at);
        obs("aggregatorKeys", u.keys, at);
        obs("aggregatorDecisions", u.admittedCounted, { ...at, [ATTR.outcome]: "admitted" });
        obs("aggregatorDecisions", u.rejectedCounted, { ...at, [ATTR.outcome]: "rejected" });
      }
    }
  }

  async forceFlush(): Promise<void> {
    if (this.#closed || this.#otlp === undefined) return;
    await this.#otlp.forceFlush();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const server = this.#server;
    this.#server = undefined;
    if (server !== undefined) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    }
    await this.#provider.shutdown();
    this.#limiters.clear();
    this.#agents.clear();
    this.#aggregators.clear();
    if (server !== undefined) {
      // The listening handle is released in the loop's close phase, after the 'close' event:
      // let one full turn pass so that nothing of ours is left once close() resolves.
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new SluiceError("Telemetry was closed");
  }
}

/** The known reasons first (so their series exist at 0), then any others that were counted. */
function union(known: readonly string[], counted: Record<string, number>): string[] {
  const out = [...known];
  for (const reason of Object.keys(counted)) if (!out.includes(reason)) out.push(reason);
  return out;
}
