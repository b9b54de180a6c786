/**
 * Options of the NATS adapter: what a user may pass, checked with messages that name the field,
 * and turned into the client's `ConnectionOptions`. Also the cancellable reachability probe
 * `connectNats` runs before handing the dial to the client.
 */
import { readFile } from "node:fs/promises";
import { connect as dial } from "node:net";
import {
  type Authenticator,
  credsAuthenticator,
  type NodeConnectionOptions,
  nkeyAuthenticator,
} from "@nats-io/transport-node";
import { InvalidArgumentError } from "../../errors.js";
import { expectKnownKeys, expectObject, optionalNumber } from "../../validate.js";

/** TLS settings, passed to the client as they are. File paths are read by the client. */
export interface NatsTlsOptions {
  /** CA certificate(s) to trust, as a PEM file path. */
  readonly caFile?: string;
  /** CA certificate(s) to trust, as PEM text. */
  readonly ca?: string;
  /** Client certificate for mutual TLS, as a PEM file path. */
  readonly certFile?: string;
  /** Client certificate as PEM text. */
  readonly cert?: string;
  /** Client private key, as a PEM file path. */
  readonly keyFile?: string;
  /** Client private key as PEM text. */
  readonly key?: string;
  /** Start with a TLS handshake (the server needs `handshake_first`). @default false */
  readonly handshakeFirst?: boolean;
  /** Verify the server certificate. Turn off only for local testing. @default true */
  readonly rejectUnauthorized?: boolean;
}

export interface NatsTransportOptions {
  /**
   * Server URL(s); the client tries them all and fails over among them.
   * @default "nats://127.0.0.1:4222"
   * @example ["nats://nats-1:4222", "nats://nats-2:4222"]
   */
  readonly servers?: string | readonly string[];
  /** Client name shown by the server's monitoring. @default "sluice" */
  readonly name?: string;
  /**
   * How long the first connection may take before `connectNats` fails, in ms.
   * @default 2000; bounds 1 to 600_000
   */
  readonly connectTimeoutMs?: number;
  /**
   * Wait between reconnect attempts after the link drops, in ms (plus up to 100 ms of jitter).
   * Reconnects never stop until `close()`.
   * @default 1000; bounds 10 to 600_000
   */
  readonly reconnectWaitMs?: number;
  /**
   * Interval of client pings that detect a dead link, in ms; after 2 unanswered the client
   * reconnects.
   * @default 20_000; bounds 100 to 600_000
   */
  readonly pingIntervalMs?: number;
  /** User for user/password authentication. */
  readonly user?: string;
  /** Password for user/password authentication. */
  readonly pass?: string;
  /** Token authentication. */
  readonly token?: string;
  /** NKey seed (the `SU...` string) for nkey authentication. */
  readonly nkeySeed?: string;
  /** Path of a `.creds` file (user JWT and nkey seed) for decentralized JWT authentication. */
  readonly credsFile?: string;
  /** Any other authentication, built with the client's authenticator factories. */
  readonly authenticator?: Authenticator | readonly Authenticator[];
  /** Require TLS, with these settings (`{}` for system CAs and no client certificate). */
  readonly tls?: NatsTlsOptions;
}

const KNOWN = [
  "servers",
  "name",
  "connectTimeoutMs",
  "reconnectWaitMs",
  "pingIntervalMs",
  "user",
  "pass",
  "token",
  "nkeySeed",
  "credsFile",
  "authenticator",
  "tls",
];
const KNOWN_TLS = [
  "caFile",
  "ca",
  "certFile",
  "cert",
  "keyFile",
  "key",
  "handshakeFirst",
  "rejectUnauthorized",
];

export interface ResolvedNatsOptions {
  readonly servers: readonly string[];
  readonly connectTimeoutMs: number;
  readonly client: NodeConnectionOptions;
}

function optionalString(field: string, value: unknown): string | undefined {
  if (value !== undefined && (typeof value !== "string" || value.length === 0)) {
    throw new InvalidArgumentError(field, "a non-empty string", value);
  }
  return value;
}

/** Checks `options` and builds the client's options; reads `credsFile`. */
export async function resolveNatsOptions(
  options: NatsTransportOptions,
): Promise<ResolvedNatsOptions> {
  expectKnownKeys("options", expectObject("options", options), KNOWN);
  const raw = options.servers ?? "nats://127.0.0.1:4222";
  const servers = typeof raw === "string" ? [raw] : [...raw];
  if (servers.length === 0 || servers.some((s) => typeof s !== "string" || s.length === 0)) {
    throw new InvalidArgumentError("servers", "a server URL or a non-empty list of them", raw);
  }
  for (const s of servers) hostPort(s);
  const connectTimeoutMs = optionalNumber("connectTimeoutMs", options.connectTimeoutMs, 2000, {
    min: 1,
    max: 600_000,
  });
  const reconnectWaitMs = optionalNumber("reconnectWaitMs", options.reconnectWaitMs, 1000, {
    min: 10,
    max: 600_000,
  });
  const pingIntervalMs = optionalNumber("pingIntervalMs", options.pingIntervalMs, 20_000, {
    min: 100,
    max: 600_000,
  });
  const client: NodeConnectionOptions = {
    servers,
    name: optionalString("name", options.name) ?? "sluice",
    maxReconnectAttempts: -1,
    reconnectTimeWait: reconnectWaitMs,
    pingInterval: pingIntervalMs,
    maxPingOut: 2,
  };
  const user = optionalString("user", options.user);
  const pass = optionalString("pass", options.pass);
  const token = optionalString("token", options.token);
  if (user !== undefined) client.user = user;
  if (pass !== undefined) client.pass = pass;
  if (token !== undefined) client.token = token;

  const authenticators: Authenticator[] = [];
  const seed = optionalString("nkeySeed", options.nkeySeed);
  if (seed !== undefined) authenticators.push(nkeyAuthenticator(new TextEncoder().encode(seed)));
  const credsFile = optionalString("credsFile", options.credsFile);
  if (credsFile !== undefined) {
    let creds: Uint8Array;
    try {
      creds = await readFile(credsFile);
    } catch (err) {
      throw new InvalidArgumentError("credsFile", "a readable NATS .creds file", credsFile, {
        cause: err,
      });
    }
    authenticators.push(credsAuthenticator(creds));
  }
  if (options.authenticator !== undefined) {
    const more = Array.isArray(options.authenticator)
      ? options.authenticator
      : [options.authenticator];
    for (const a of more) {
      if (typeof a !== "function") {
        throw new InvalidArgumentError("authenticator", "an authenticator function", a);
      }
      authenticators.push(a as Authenticator);
    }
  }
  if (authenticators.length > 0) client.authenticator = authenticators;

  if (options.tls !== undefined) {
    const tls = expectObject("tls", options.tls);
    expectKnownKeys("tls", tls, KNOWN_TLS);
    client.tls = { ...(tls as NatsTlsOptions) };
  }
  return { servers, connectTimeoutMs, client };
}

/** Host and port of a server URL in any form the client takes: `host:port`, `nats://...`. */
function hostPort(server: string): { host: string; port: number } {
  try {
    const url = new URL(server.includes("://") ? server : `nats://${server}`);
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    if (host.length === 0) throw new Error("no host");
    return { host, port: url.port === "" ? 4222 : Number(url.port) };
  } catch (err) {
    throw new InvalidArgumentError("servers", "URLs such as nats://host:4222", server, {
      cause: err,
    });
  }
}

/**
 * Resolves once a TCP connection to any of `servers` opens within `timeoutMs`; rejects with
 * the first server's error otherwise. Every socket it opens is destroyed before it settles.
 */
export function probeServers(servers: readonly string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let pending = servers.length;
    let firstError: unknown;
    let settled = false;
    const sockets = servers.map((server) => {
      const { host, port } = hostPort(server);
      const socket = dial({ host, port });
      socket.once("connect", () => finish(undefined));
      socket.once("error", (err) => {
        firstError ??= err;
        socket.destroy();
        if (--pending === 0) finish(firstError);
      });
      return socket;
    });
    const timer = setTimeout(
      () => finish(firstError ?? new Error(`no TCP connection within ${timeoutMs} ms`)),
      timeoutMs,
    );
    function finish(err: unknown) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const s of sockets) s.destroy();
      if (err === undefined) resolve();
      else reject(err);
    }
  });
}
