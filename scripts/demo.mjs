#!/usr/bin/env node
// `npm run demo`: `sluice demo` with the arguments given. When the demo would connect to the
// default NATS URL (127.0.0.1:4222) and nothing answers there, a nats-server is started for the
// demo's duration (scripts/services.mjs: found, or installed when root, or one line saying what to
// install). Another URL, --in-memory and --help start nothing.
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { NATS_PORT, runWithServices } from "./services.mjs";

const SLUICE_BIN = fileURLToPath(new URL("../bin/sluice.js", import.meta.url));
/** The URL `sluice demo` uses when given neither --nats nor NATS_URL (src/cli/common.ts). */
const DEFAULT_NATS_URL = `nats://127.0.0.1:${NATS_PORT}`;

/** Whether `url` names the one default loopback server, the one started here when silent. */
function isDefaultNatsUrl(url) {
  const m = /^(?:nats:\/\/)?(127\.0\.0\.1|localhost)(?::(\d+))?\/?$/.exec(url.trim());
  return m !== null && Number(m[2] ?? NATS_PORT) === NATS_PORT;
}

const args = process.argv.slice(2);
const { values } = parseArgs({
  args,
  strict: false,
  allowPositionals: true,
  options: {
    nats: { type: "string" },
    "in-memory": { type: "boolean" },
    help: { type: "boolean", short: "h" },
  },
});
const url =
  typeof values.nats === "string" ? values.nats : (process.env["NATS_URL"] ?? DEFAULT_NATS_URL);
const nats = values["in-memory"] !== true && values.help !== true && isDefaultNatsUrl(url);

process.exitCode = await runWithServices({ nats }, [
  [process.execPath, [SLUICE_BIN, "demo", ...args]],
]);
