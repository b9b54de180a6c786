// Builds Sluice's Grafana dashboards into dashboards/generated/*.json.
//
//   node dashboards/build-dashboards.mjs
//
// The JSON files are committed (Grafana provisions them as they are); this script is their
// source, so panels share one layout and one data source variable. The PromQL of every panel is
// evaluated against a running Sluice by test/integration/telemetry-promql.test.ts, which also
// checks that the committed files are what this script builds. No dependency: plain objects.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

// A Grafana variable reference, not a JS template.
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana interpolates it.
const DS = { type: "prometheus", uid: "${datasource}" };
const RATE = "$__rate_interval";

function target(expr, legendFormat, extra = {}) {
  return { datasource: DS, expr, legendFormat, range: true, ...extra };
}

/** Panels flow left to right in rows of 24 columns. */
function layout(panels) {
  let x = 0;
  let y = 0;
  let rowHeight = 0;
  return panels.map((p, i) => {
    const w = p.w ?? 12;
    const h = p.h ?? 8;
    if (x + w > 24) {
      x = 0;
      y += rowHeight;
      rowHeight = 0;
    }
    const { w: _w, h: _h, ...rest } = p;
    const placed = { id: i + 1, gridPos: { h, w, x, y }, ...rest };
    x += w;
    rowHeight = Math.max(rowHeight, h);
    return placed;
  });
}

function timeseries(title, description, targets, unit, extra = {}) {
  return {
    type: "timeseries",
    title,
    description,
    datasource: DS,
    targets: targets.map((t, i) => ({ refId: String.fromCharCode(65 + i), ...t })),
    fieldConfig: {
      defaults: {
        unit,
        custom: { drawStyle: "line", lineWidth: 1, fillOpacity: 10, showPoints: "never" },
        ...(extra.thresholds === undefined
          ? {}
          : {
              thresholds: { mode: "absolute", steps: extra.thresholds },
              custom: {
                drawStyle: "line",
                lineWidth: 1,
                fillOpacity: 10,
                showPoints: "never",
                thresholdsStyle: { mode: "line" },
              },
            }),
        ...(extra.min === undefined ? {} : { min: extra.min }),
      },
      overrides: [],
    },
    options: {
      legend: { displayMode: "table", placement: "bottom", calcs: ["lastNotNull", "max"] },
      tooltip: { mode: "multi", sort: "desc" },
    },
    ...(extra.w === undefined ? {} : { w: extra.w }),
  };
}

function stat(title, description, expr, unit, extra = {}) {
  return {
    type: "stat",
    title,
    description,
    datasource: DS,
    targets: [{ refId: "A", ...target(expr, "", { instant: true, range: false }) }],
    fieldConfig: {
      defaults: {
        unit,
        thresholds: {
          mode: "absolute",
          steps: extra.thresholds ?? [{ color: "green", value: null }],
        },
      },
      overrides: [],
    },
    options: {
      reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false },
      colorMode: "background",
      graphMode: "area",
      textMode: "auto",
    },
    w: extra.w ?? 6,
    h: 4,
  };
}

function heatmap(title, description, expr) {
  return {
    type: "heatmap",
    title,
    description,
    datasource: DS,
    targets: [{ refId: "A", ...target(expr, "{{le}}", { format: "heatmap" }) }],
    fieldConfig: { defaults: {}, overrides: [] },
    options: {
      calculate: false,
      yAxis: { unit: "s", axisPlacement: "left" },
      cellGap: 1,
      color: { mode: "scheme", scheme: "Oranges", steps: 64, exponent: 0.5, fill: "dark-orange" },
      rowsFrame: { layout: "auto" },
      tooltip: { show: true, yHistogram: true },
      legend: { show: true },
    },
  };
}

function queryVariable(name, label, metric, labelName) {
  const query = `label_values(${metric}, ${labelName})`;
  return {
    name,
    label,
    type: "query",
    datasource: DS,
    definition: query,
    query: { query, refId: `${name}-values` },
    refresh: 2,
    multi: true,
    includeAll: true,
    allValue: ".*",
    current: { selected: true, text: ["All"], value: ["$__all"] },
    sort: 1,
  };
}

const DATASOURCE_VARIABLE = {
  name: "datasource",
  label: "Data source",
  type: "datasource",
  query: "prometheus",
  current: {},
  refresh: 1,
};

function dashboard(uid, title, description, variables, panels) {
  return {
    uid,
    title,
    description,
    tags: ["sluice", "rate-limiting"],
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    time: { from: "now-1h", to: "now" },
    refresh: "30s",
    timezone: "browser",
    annotations: { list: [] },
    links: [{ type: "dashboards", tags: ["sluice"], title: "Sluice", asDropdown: true }],
    templating: { list: [DATASOURCE_VARIABLE, ...variables] },
    panels: layout(panels),
  };
}

const RULE = queryVariable("rule", "Rule", "ratelimit_decisions_total", "rule");
const NODE = queryVariable("node", "Node", "ratelimit_decisions_total", "node");
const R = 'rule=~"$rule"';
const N = 'node=~"$node"';

function rejectedRatio(window) {
  return `sum by (rule) (rate(ratelimit_decisions_total{${R},outcome="rejected"}[${window}])) / sum by (rule) (rate(ratelimit_decisions_total{${R}}[${window}]))`;
}

const overview = dashboard(
  "sluice-overview",
  "Sluice / Overview",
  "Admitted and rejected hits per rule, throttling against its baseline, global usage.",
  [RULE],
  [
    stat(
      "Decisions per second",
      "All nodes, all rules selected.",
      `sum(rate(ratelimit_decisions_total{${R}}[${RATE}]))`,
      "reqps",
    ),
    stat(
      "Rejected",
      "Share of hits rejected, all rules selected.",
      `sum(rate(ratelimit_decisions_total{${R},outcome="rejected"}[${RATE}])) / sum(rate(ratelimit_decisions_total{${R}}[${RATE}]))`,
      "percentunit",
      {
        thresholds: [
          { color: "green", value: null },
          { color: "orange", value: 0.1 },
          { color: "red", value: 0.5 },
        ],
      },
    ),
    stat(
      "Hottest key of a global rule",
      "Highest global window admitted / limit over the selected rules (aggregator).",
      `max(ratelimit_usage_ratio{${R}})`,
      "percentunit",
      {
        thresholds: [
          { color: "green", value: null },
          { color: "orange", value: 0.9 },
          { color: "red", value: 1.05 },
        ],
      },
    ),
    stat(
      "Sluice alerts firing",
      "Alerts of collector-config/alerts.yml firing now.",
      'count(ALERTS{alertname=~"Sluice.*",alertstate="firing"}) or vector(0)',
      "none",
      {
        thresholds: [
          { color: "green", value: null },
          { color: "red", value: 1 },
        ],
      },
    ),
    timeseries(
      "Admitted vs rejected per rule",
      "Hits per second (cost units) by rule and outcome, summed over nodes.",
      [
        target(
          `sum by (rule, outcome) (rate(ratelimit_decisions_total{${R}}[${RATE}]))`,
          "{{rule}} {{outcome}}",
        ),
      ],
      "reqps",
      { w: 24 },
    ),
    timeseries(
      "Rejected ratio: last minute vs 30-minute baseline",
      "The throttle-spike alert compares these two lines.",
      [
        target(rejectedRatio("1m"), "{{rule}} 1m"),
        target(rejectedRatio("30m"), "{{rule}} 30m baseline"),
      ],
      "percentunit",
      { min: 0 },
    ),
    timeseries(
      "Throttle spike score",
      "Rejected ratio (1m) minus twice its 30-minute baseline minus 5 points: above 0 for 2 minutes fires SluiceThrottleSpike (recording rules of alerts.yml).",
      [
        target(
          `rule:ratelimit_rejected_ratio:rate1m{${R}} - (2 * rule:ratelimit_rejected_ratio:rate30m{${R}} + 0.05)`,
          "{{rule}}",
        ),
      ],
      "percentunit",
      {
        thresholds: [
          { color: "green", value: null },
          { color: "red", value: 0 },
        ],
      },
    ),
    timeseries(
      "Global usage ratio (hottest key)",
      "Per global rule, the hottest key's admitted cost in the aggregator's window / limit. Above 1 is overshoot.",
      [target(`max by (rule) (ratelimit_usage_ratio{${R}})`, "{{rule}}")],
      "percentunit",
      {
        min: 0,
        thresholds: [
          { color: "green", value: null },
          { color: "red", value: 1.05 },
        ],
      },
    ),
    timeseries(
      "Admitted in global windows / limit",
      "Per global rule, the admitted cost in all its keys' windows, in units of the per-key limit: how many keys' worth of budget is in use.",
      [
        target(
          `sum by (rule) (ratelimit_window_admitted{${R}}) / max by (rule) (ratelimit_rule_limit{${R}})`,
          "{{rule}}",
        ),
      ],
      "none",
      { min: 0 },
    ),
  ],
);

const latency = dashboard(
  "sluice-latency",
  "Sluice / Latency",
  "Decision latency (sampled check() calls) and propagation latency (counts out, grant back), as heatmaps and quantiles.",
  [NODE],
  [
    heatmap(
      "Decision latency",
      "Sampled check() durations (1 call in latencySampleEvery), buckets from 50 ns to 10 ms.",
      `sum by (le) (rate(ratelimit_decision_duration_bucket{${N}}[${RATE}]))`,
    ),
    timeseries(
      "Decision latency quantiles",
      "Estimated from the buckets (linear within a bucket).",
      [0.5, 0.99, 0.999].map((q) =>
        target(
          `histogram_quantile(${q}, sum by (le) (rate(ratelimit_decision_duration_bucket{${N}}[${RATE}])))`,
          `p${q * 100}`,
        ),
      ),
      "s",
    ),
    heatmap(
      "Propagation latency",
      "From a node publishing counts to the next grant arriving back, buckets from 1 ms to 5 s.",
      `sum by (le) (rate(ratelimit_propagation_duration_bucket{${N}}[${RATE}]))`,
    ),
    timeseries(
      "Propagation latency quantiles per node",
      "p50 and p99 per node.",
      [0.5, 0.99].map((q) =>
        target(
          `histogram_quantile(${q}, sum by (le, node) (rate(ratelimit_propagation_duration_bucket{${N}}[${RATE}])))`,
          `{{node}} p${q * 100}`,
        ),
      ),
      "s",
    ),
    timeseries(
      "Mean decision latency per node",
      "Sum / count of the sampled durations.",
      [
        target(
          `sum by (node) (rate(ratelimit_decision_duration_sum{${N}}[${RATE}])) / sum by (node) (rate(ratelimit_decision_duration_count{${N}}[${RATE}]))`,
          "{{node}}",
        ),
      ],
      "s",
    ),
    timeseries(
      "Timed decisions per second",
      "How many check() calls are timed: decisions / latencySampleEvery.",
      [
        target(
          `sum by (node) (rate(ratelimit_decision_duration_count{${N}}[${RATE}]))`,
          "{{node}}",
        ),
      ],
      "reqps",
    ),
  ],
);

const cluster = dashboard(
  "sluice-cluster",
  "Sluice / Cluster",
  "Nodes, per-node shares, grant staleness, clock offsets, protocol traffic and aggregator load.",
  [RULE, NODE],
  [
    stat("Live nodes", "Nodes the aggregator holds as alive.", "max(ratelimit_nodes_live)", "none"),
    stat(
      "Nodes on their loss policy",
      "Nodes that have not heard from the aggregator within staleAfterMs.",
      `sum(ratelimit_aggregator_lost{${N}})`,
      "none",
      {
        thresholds: [
          { color: "green", value: null },
          { color: "red", value: 1 },
        ],
      },
    ),
    stat(
      "Largest clock offset",
      "Largest absolute node clock offset seen by an aggregator.",
      "max(ratelimit_clock_offset_max)",
      "s",
      {
        thresholds: [
          { color: "green", value: null },
          { color: "red", value: 0.5 },
        ],
      },
    ),
    stat(
      "Invalid messages per second",
      "All reasons, nodes and aggregators.",
      `sum(rate(ratelimit_invalid_messages_total[${RATE}]))`,
      "reqps",
      {
        thresholds: [
          { color: "green", value: null },
          { color: "red", value: 0.05 },
        ],
      },
    ),
    timeseries(
      "Live nodes",
      "The aggregator's membership, and what each node last heard (it divides default shares by it).",
      [
        target("max by (aggregator) (ratelimit_nodes_live)", "aggregator {{aggregator}}"),
        target(`max by (node) (ratelimit_agent_live_nodes{${N}})`, "seen by {{node}}"),
      ],
      "none",
    ),
    timeseries(
      "Admitted: nodes vs aggregator",
      "Per global rule, hits admitted per second as the nodes count them and as the aggregator counted them from their reports. A gap is hits the aggregator never heard of.",
      [
        target(
          `sum by (rule) (rate(ratelimit_decisions_total{${R},outcome="admitted"}[${RATE}])) and on (rule) sum by (rule) (ratelimit_aggregator_decisions_total{${R}})`,
          "{{rule}} nodes",
        ),
        target(
          `sum by (rule) (rate(ratelimit_aggregator_decisions_total{${R},outcome="admitted"}[${RATE}]))`,
          "{{rule}} aggregator",
        ),
      ],
      "reqps",
      { min: 0 },
    ),
    timeseries(
      "Share of admitted hits per node",
      "Per rule, each node's fraction of the hits admitted by all nodes.",
      [
        target(
          `sum by (rule, node) (rate(ratelimit_decisions_total{${R},${N},outcome="admitted"}[${RATE}])) / on (rule) group_left () sum by (rule) (rate(ratelimit_decisions_total{${R},outcome="admitted"}[${RATE}]))`,
          "{{rule}} {{node}}",
        ),
      ],
      "percentunit",
      { min: 0 },
    ),
    timeseries(
      "Grant staleness",
      "Time since the aggregator last spoke to each node.",
      [target(`max by (node) (ratelimit_grant_staleness{${N}})`, "{{node}}")],
      "s",
      {
        thresholds: [
          { color: "green", value: null },
          { color: "red", value: 5 },
        ],
      },
    ),
    timeseries(
      "Largest node clock offset",
      "Largest offset between a live node's wall clock and the aggregator's, per aggregator, estimated from heartbeats (metrics only; the aggregator's stats name the node).",
      [target("max by (aggregator) (ratelimit_clock_offset_max)", "{{aggregator}}")],
      "s",
    ),
    timeseries(
      "Aggregator load: messages",
      "Decision batches and heartbeats received, rate updates sent, per aggregator.",
      [
        target(
          `sum by (aggregator, type, direction) (rate(ratelimit_messages_total{aggregator=~".+"}[${RATE}]))`,
          "{{aggregator}} {{type}} {{direction}}",
        ),
        target(
          `sum by (aggregator) (rate(ratelimit_batch_entries_total{aggregator=~".+"}[${RATE}]))`,
          "{{aggregator}} entries received",
        ),
        target(
          `sum by (aggregator) (rate(ratelimit_grants_sent_total[${RATE}]))`,
          "{{aggregator}} grants sent",
        ),
      ],
      "reqps",
    ),
    timeseries(
      "Aggregator load: tick time",
      "Time of the last allocation round, and rounds per second.",
      [
        target(
          "max by (aggregator) (ratelimit_aggregator_tick_duration)",
          "{{aggregator}} last tick",
        ),
        target(
          `sum by (aggregator) (rate(ratelimit_aggregator_ticks_total[${RATE}]))`,
          "{{aggregator}} ticks/s",
        ),
      ],
      "s",
    ),
    timeseries(
      "Node messages",
      "Batches and heartbeats sent, updates and defaults received, summed over the selected nodes.",
      [
        target(
          `sum by (type, direction) (rate(ratelimit_messages_total{${N}}[${RATE}]))`,
          "{{type}} {{direction}}",
        ),
      ],
      "reqps",
    ),
    timeseries(
      "Invalid messages and entries by reason",
      "Dropped input, nodes and aggregators together.",
      [
        target(
          `sum by (reason) (rate(ratelimit_invalid_messages_total[${RATE}]))`,
          "messages {{reason}}",
        ),
        target(
          `sum by (reason) (rate(ratelimit_invalid_entries_total[${RATE}]))`,
          "entries {{reason}}",
        ),
      ],
      "reqps",
    ),
    timeseries(
      "Keys held",
      "Keys in node memory (summed over nodes) and in the aggregator's windows, per rule.",
      [
        target(`sum by (rule) (ratelimit_keys{${R}})`, "{{rule}} nodes"),
        target(`sum by (rule) (ratelimit_aggregator_keys{${R}})`, "{{rule}} aggregator"),
      ],
      "none",
    ),
    timeseries(
      "Grants received and evictions",
      "Grants applied or ignored by the nodes, and keys evicted at maxKeys, per rule.",
      [
        target(
          `sum by (rule, outcome) (rate(ratelimit_grants_received_total{${R},${N}}[${RATE}]))`,
          "{{rule}} grants {{outcome}}",
        ),
        target(
          `sum by (rule) (rate(ratelimit_keys_evicted_total{${R},${N}}[${RATE}]))`,
          "{{rule}} evicted",
        ),
        target(
          `sum by (rule) (rate(ratelimit_store_failures_total{${R},${N}}[${RATE}]))`,
          "{{rule}} store failures",
        ),
      ],
      "reqps",
    ),
  ],
);

/** Every dashboard by file name. */
export function buildDashboards() {
  return {
    "sluice-overview.json": overview,
    "sluice-latency.json": latency,
    "sluice-cluster.json": cluster,
  };
}

/** The text of a dashboard file, as committed. */
export function dashboardText(dashboardObject) {
  return `${JSON.stringify(dashboardObject, null, 2)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = join(fileURLToPath(new URL(".", import.meta.url)), "generated");
  mkdirSync(out, { recursive: true });
  for (const [name, d] of Object.entries(buildDashboards())) {
    writeFileSync(join(out, name), dashboardText(d));
    console.log(`wrote ${join("dashboards", "generated", name)}`);
  }
}
