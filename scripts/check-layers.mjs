// Layer check: keeps the arrows of src/ pointing one way. Each rule names a folder and the
// packages or folders it may not import. Run by `npm run lint`; exits 1 on a violation.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const src = join(root, "src");

/** [path prefix under src/, forbidden import pattern, why] */
const RULES = [
  [
    "algorithms/",
    /^(\.\.\/)+(limiter|transport|store|telemetry|aggregator|agent|cli)\b|^node:|^[a-z@]/,
    "algorithms are pure: no I/O, no other layer",
  ],
  [
    "clock/",
    /^(\.\.\/)+(limiter|transport|store|telemetry|aggregator|agent|cli)\b|^[a-z@]/,
    "the clock depends on nothing",
  ],
  [
    "limiter/",
    /^(\.\.\/)+(transport|store|telemetry|aggregator|agent|cli)\b|^[a-z@]/,
    "the limiter core knows no adapter",
  ],
  [
    "protocol/",
    /^(\.\.\/)+(transport|store|telemetry|aggregator|agent|cli)\b|^(?!node:crypto$)[a-z@]/,
    "the protocol is pure encode/decode (node:crypto only, for signatures)",
  ],
  [
    "agent/",
    /^(\.\.\/)+(aggregator|store|telemetry|cli)\b|^(\.\.\/)+transport\/(?!transport\.js$)|^(?!node:)[a-z@]/,
    "the node agent drives the limiter over the transport port; it knows no aggregator, adapter or package",
  ],
  [
    "aggregator/",
    /^(\.\.\/)+(agent|store|telemetry|cli)\b|^(\.\.\/)+transport\/(?!transport\.js$)|^(\.\.\/)+limiter\/(?!(rule|latency-histogram)\.js$)|^(?!node:)[a-z@]/,
    "the aggregator talks to nodes over the transport port and to checkpoints through its port; of the limiter it reads only rules (and histograms)",
  ],
  [
    "http/",
    /^(\.\.\/)+(transport|store|telemetry|aggregator|agent|cli)\b|^(?!node:|structured-headers$)[a-z@]/,
    "the HTTP edge drives the limiter's public API; frameworks are the user's (structural types only)",
  ],
  [
    "nats-service/",
    /^(\.\.\/)+(store|telemetry|aggregator|agent|cli)\b|^(?!node:|@nats-io\/transport-node$)[a-z@]/,
    "the NATS service edge drives the limiter's public API over a user's NATS connection",
  ],
];
/** Packages only the named folders may import. */
const OWNERS = [
  [/^@nats-io\//, "transport/nats/", "nats-service/"],
  [/^ioredis$/, "store/redis/"],
  [/^structured-headers$/, "http/"],
  [/^@opentelemetry\/(sdk-|exporter-)/, "telemetry/"],
];

const violations = [];
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith(".ts")) check(path);
  }
}
function check(path) {
  const rel = relative(src, path);
  const text = readFileSync(path, "utf8");
  for (const m of text.matchAll(
    /(?:import|export)[^'"]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g,
  )) {
    const spec = m[1] ?? m[2];
    for (const [prefix, pattern, why] of RULES) {
      if (rel.startsWith(prefix) && pattern.test(spec))
        violations.push(`${rel}: imports ${spec} (${why})`);
    }
    for (const [pattern, ...owners] of OWNERS) {
      if (pattern.test(spec) && !owners.some((o) => rel.startsWith(o)))
        violations.push(
          `${rel}: imports ${spec}, which only src/${owners.join(" or src/")} may import`,
        );
    }
  }
}
walk(src);
if (violations.length > 0) {
  console.error(`Layer check failed:\n  ${violations.join("\n  ")}`);
  process.exit(1);
}
console.log("layer check: ok");
