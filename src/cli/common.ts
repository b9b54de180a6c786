/** Options and helpers shared by the commands that talk to NATS, and their telemetry options. */
import type { Telemetry } from "../telemetry/telemetry.js";
import { connectNats } from "../transport/nats/nats-transport.js";
import type { Transport } from "../transport/transport.js";
import { num, type OptionSpec, type Parsed, str } from "./args.js";

export const NATS_OPTIONS: OptionSpec = {
  nats: { type: "string" },
  user: { type: "string" },
  pass: { type: "string" },
  token: { type: "string" },
  creds: { type: "string" },
  prefix: { type: "string" },
};

export const NATS_HELP = [
  "NATS:",
  "  --nats URL        server(s), comma-separated (default: $NATS_URL or nats://127.0.0.1:4222)",
  "  --user U --pass P | --token T | --creds FILE   authentication",
  "  --prefix P        subject prefix, the same on nodes and aggregator (default: ratelimit)",
].join("\n");

export function natsUrl(p: Parsed): string {
  return str(p, "nats", process.env["NATS_URL"] ?? "nats://127.0.0.1:4222");
}

export function subjectPrefix(p: Parsed): { subjectPrefix?: string } {
  const prefix = p.values["prefix"];
  return typeof prefix === "string" ? { subjectPrefix: prefix } : {};
}

/** Connects with the auth options given; throws TransportUnavailableError when nobody answers. */
export function connect(p: Parsed, name: string): Promise<Transport> {
  const auth: Record<string, string> = {};
  for (const k of ["user", "pass", "token"] as const) {
    const v = p.values[k];
    if (typeof v === "string") auth[k] = v;
  }
  const creds = p.values["creds"];
  if (typeof creds === "string") auth["credsFile"] = creds;
  return connectNats({ servers: natsUrl(p).split(","), name, ...auth });
}

export const TELEMETRY_OPTIONS = {
  "metrics-port": { type: "string" },
  "metrics-host": { type: "string" },
  otlp: { type: "string" },
} as const satisfies OptionSpec;

/** Help lines of TELEMETRY_OPTIONS, descriptions starting at `column` like the command's own. */
export function telemetryHelp(column: number): string[] {
  const line = (option: string, text: string) => `${`  ${option}`.padEnd(column - 1)} ${text}`;
  return [
    line("--metrics-port N", "serve Prometheus metrics on this port, 0 = any free one"),
    line("", "(default: none)"),
    line("--metrics-host H", "address the metrics port listens on (default 127.0.0.1)"),
    line("--otlp URL", "push OTLP gRPC metrics, e.g. http://127.0.0.1:4317"),
  ];
}

/** The telemetry options as given; read before connecting, so a bad one fails at once. */
export interface TelemetrySpec {
  readonly metricsPort?: number;
  readonly metricsHost: string;
  readonly otlp?: string;
}

export function telemetrySpec(p: Parsed): TelemetrySpec {
  const otlp = p.values["otlp"];
  return {
    ...(p.values["metrics-port"] === undefined
      ? {}
      : { metricsPort: num(p, "metrics-port", 0, { integer: true, min: 0, max: 65_535 }) }),
    metricsHost: str(p, "metrics-host", "127.0.0.1"),
    ...(typeof otlp === "string" ? { otlp } : {}),
  };
}

/**
 * Starts telemetry as `spec` asks, or resolves to undefined when it asks for neither a metrics
 * port nor OTLP. The OTel SDK is imported only then, so commands without telemetry (the demo)
 * do not load it.
 */
export async function startTelemetry(
  spec: TelemetrySpec,
  serviceName: string,
): Promise<Telemetry | undefined> {
  if (spec.metricsPort === undefined && spec.otlp === undefined) return undefined;
  const { createTelemetry } = await import("../telemetry/telemetry.js");
  return createTelemetry({
    serviceName,
    ...(spec.metricsPort === undefined
      ? {}
      : { prometheus: { port: spec.metricsPort, host: spec.metricsHost } }),
    ...(spec.otlp === undefined ? {} : { otlp: { url: spec.otlp } }),
  });
}

/** Writes one JSON line to stdout (the machine-readable progress of every command). */
export function emit(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}
