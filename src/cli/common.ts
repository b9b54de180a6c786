/** Options and helpers shared by the commands that talk to NATS. */
import { connectNats } from "../transport/nats/nats-transport.js";
import type { Transport } from "../transport/transport.js";
import { type OptionSpec, type Parsed, str } from "./args.js";

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

/** Writes one JSON line to stdout (the machine-readable progress of every command). */
export function emit(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}
