/**
 * A MetricProducer for histograms that are bucketed before OpenTelemetry sees them.
 *
 * The limiter and the node agent record latencies into fixed-bucket typed arrays (an array
 * increment, cheap enough for the hot path). At collection time this producer copies each
 * snapshot into an explicit-bucket histogram point with the same bounds, cumulative since the
 * source started: no value is re-recorded, so nothing is estimated. Readers merge these points
 * with the SDK's own (the reader's `metricProducers` option).
 */
import type { Attributes, HrTime } from "@opentelemetry/api";
import { ValueType } from "@opentelemetry/api";
import type { Resource } from "@opentelemetry/resources";
import {
  AggregationTemporality,
  type CollectionResult,
  DataPointType,
  type ExponentialHistogramMetricData,
  type HistogramMetricData,
  type MetricProducer,
} from "@opentelemetry/sdk-metrics";
import type { HistogramSnapshot } from "../limiter/latency-histogram.js";
import type { InstrumentSpec } from "./instruments.js";

export interface HistogramSource {
  readonly attributes: Attributes;
  /** When the source started counting (wall clock, ms). */
  readonly startWallMs: number;
  snapshot(): HistogramSnapshot;
}

/** Wall-clock ms as OpenTelemetry's [seconds, nanoseconds]. */
export function toHrTime(wallMs: number): HrTime {
  const seconds = Math.floor(wallMs / 1000);
  return [seconds, Math.round((wallMs - seconds * 1000) * 1e6)];
}

export class HistogramProducer implements MetricProducer {
  readonly #resource: Resource;
  readonly #scope: { name: string };
  readonly #metrics = new Map<InstrumentSpec, Set<HistogramSource>>();
  readonly #nowWallMs: () => number;
  readonly #exponential: boolean;

  /**
   * `exponential`: emit base-2 exponential histograms (OTLP's native form, from the samples'
   * exponential buckets) instead of the explicit buckets (Prometheus, which drops exponential).
   */
  constructor(resource: Resource, scopeName: string, nowWallMs: () => number, exponential = false) {
    this.#resource = resource;
    this.#scope = { name: scopeName };
    this.#nowWallMs = nowWallMs;
    this.#exponential = exponential;
  }

  /** Adds a source of points for `instrument`; returns the function that removes it. */
  add(instrument: InstrumentSpec, source: HistogramSource): () => void {
    let sources = this.#metrics.get(instrument);
    if (sources === undefined) {
      sources = new Set();
      this.#metrics.set(instrument, sources);
    }
    sources.add(source);
    return () => {
      sources.delete(source);
    };
  }

  async collect(): Promise<CollectionResult> {
    const endTime = toHrTime(this.#nowWallMs());
    const metrics: (HistogramMetricData | ExponentialHistogramMetricData)[] = [];
    const errors: unknown[] = [];
    for (const [instrument, sources] of this.#metrics) {
      if (sources.size === 0) continue;
      const explicit: HistogramMetricData["dataPoints"] = [];
      const exponential: ExponentialHistogramMetricData["dataPoints"] = [];
      for (const source of sources) {
        try {
          const s = source.snapshot();
          const common = {
            startTime: toHrTime(source.startWallMs),
            endTime,
            attributes: source.attributes,
          };
          const minMax = s.count > 0 ? { min: s.minS, max: s.maxS } : {};
          if (this.#exponential) {
            const e = s.exponential;
            exponential.push({
              ...common,
              value: {
                count: s.count,
                sum: s.sumS,
                scale: e.scale,
                zeroCount: e.zeroCount,
                positive: { offset: e.offset, bucketCounts: [...e.bucketCounts] },
                negative: { offset: 0, bucketCounts: [] },
                ...minMax,
              },
            });
          } else {
            explicit.push({
              ...common,
              value: {
                buckets: { boundaries: [...s.boundsS], counts: [...s.counts] },
                sum: s.sumS,
                count: s.count,
                ...minMax,
              },
            });
          }
        } catch (err) {
          errors.push(err);
        }
      }
      const descriptor = {
        name: instrument.name,
        description: instrument.description,
        unit: instrument.unit,
        valueType: ValueType.DOUBLE,
      };
      const aggregationTemporality = AggregationTemporality.CUMULATIVE;
      metrics.push(
        this.#exponential
          ? {
              descriptor,
              aggregationTemporality,
              dataPointType: DataPointType.EXPONENTIAL_HISTOGRAM,
              dataPoints: exponential,
            }
          : {
              descriptor,
              aggregationTemporality,
              dataPointType: DataPointType.HISTOGRAM,
              dataPoints: explicit,
            },
      );
    }
    return {
      resourceMetrics: {
        resource: this.#resource,
        scopeMetrics: metrics.length === 0 ? [] : [{ scope: this.#scope, metrics }],
      },
      errors,
    };
  }
}
