/**
 * Starts the real `prometheus` server (Debian package; `npm test` installs it when root) on
 * loopback with the scrape jobs and rules of collector-config/, points it at a running Sluice
 * node and aggregator under load, and evaluates through its HTTP API every PromQL expression of
 * every dashboard panel and variable and every recording and alert rule: each must parse and
 * return data. Also runs `promtool check config`, `promtool check rules` and `promtool test
 * rules`.
 *
 * Alert expressions are conditions, empty while nothing is wrong; each is evaluated as written
 * (it must parse) and with every comparison turned into its `bool` form, which keeps the whole
 * expression (selectors, aggregations, matching) but returns 0/1 instead of filtering, so it must
 * return data.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parse, stringify } from "yaml";
import { systemBinary } from "./helpers/system-binary.js";
import { httpGet, type Sluice, startSluice, waitFor } from "./telemetry-fixtures.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const CONFIG_DIR = join(ROOT, "collector-config");
const DASHBOARD_DIR = join(ROOT, "dashboards", "generated");
const run = promisify(execFile);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

interface QueryResult {
  status: string;
  error?: string;
  data?: { resultType: string; result: unknown[] };
}

let prometheus: ChildProcess | undefined;
let sluice: Sluice | undefined;
let load: ReturnType<typeof setInterval> | undefined;
let workDir: string | undefined;
after(async () => {
  if (load !== undefined) clearInterval(load);
  if (prometheus !== undefined && prometheus.exitCode === null) {
    const exited = new Promise((resolve) => prometheus!.once("exit", resolve));
    prometheus.kill("SIGTERM");
    const timer = setTimeout(() => prometheus?.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
  await sluice?.close();
  if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
});

/** Turns each comparison outside label matchers into its `bool` form. */
function boolForm(expr: string): string {
  let out = "";
  let depth = 0;
  let quote: string | undefined;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i]!;
    if (quote !== undefined) {
      out += c;
      if (c === "\\") out += expr[++i] ?? "";
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === '"' || c === "'" || c === "`") quote = c;
    else if (c === "{") depth++;
    else if (c === "}") depth--;
    if (depth === 0 && quote === undefined) {
      const op = /^(==|!=|>=|<=|>|<)/.exec(expr.slice(i))?.[1];
      if (op !== undefined) {
        const rest = expr.slice(i + op.length);
        out += /^\s*bool\b/.test(rest) ? op : `${op} bool`;
        i += op.length - 1;
        continue;
      }
    }
    out += c;
  }
  return out;
}

/** Dashboard variables as a test sees them: every rule, every node, a 1-minute rate window. */
function substitute(expr: string): string {
  return expr
    .replaceAll("$__rate_interval", "1m")
    .replaceAll("$__interval", "15s")
    .replaceAll("$__range", "5m")
    .replaceAll("$rule", ".*")
    .replaceAll("$node", ".*");
}

interface DashboardJson {
  title: string;
  panels: { title: string; targets?: { expr: string }[] }[];
  templating: { list: { name: string; type: string; definition?: string }[] };
}

test("telemetry promql - prometheus evaluates every dashboard and alert expression against a running Sluice", async () => {
  const prometheusBin = systemBinary("prometheus");
  systemBinary("promtool");
  sluice = await startSluice({
    nodeTelemetry: { serviceName: "sluice-node", prometheus: { port: 0 } },
    aggregatorTelemetry: { serviceName: "sluice-aggregator", prometheus: { port: 0 } },
    latencySampleEvery: 4,
  });
  // Steady load: every 20 ms a new key takes 8 hits on each rule (5, 3 and 2 admitted), so
  // hits are admitted and rejected all along and every batch brings grants back.
  const { limiter } = sluice;
  let tick = 0;
  load = setInterval(() => {
    tick++;
    for (let i = 0; i < 8; i++) limiter.check("api-global", `g${tick}`);
    for (let i = 0; i < 8; i++) limiter.check("api-local", `l${tick}`);
    for (let i = 0; i < 8; i++) limiter.checkAsync("api-strict", `s${tick}`).catch(() => {});
  }, 20);

  // The shipped scrape config, with the Sluice jobs pointed at this test's ports, scraped every
  // second, and the shipped rules evaluated every second. The collector jobs are left out:
  // nothing listens for them here.
  workDir = mkdtempSync(join(tmpdir(), "sluice-promql-"));
  const shipped = parse(readFileSync(join(CONFIG_DIR, "prometheus.yml"), "utf8")) as {
    scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
  };
  const targetOf: Record<string, string> = {
    "sluice-nodes": new URL(sluice.nodeTelemetry.prometheusUrl!).host,
    "sluice-aggregator": new URL(sluice.aggregatorTelemetry.prometheusUrl!).host,
  };
  const config = {
    ...shipped,
    global: { scrape_interval: "1s", evaluation_interval: "1s", scrape_timeout: "1s" },
    rule_files: [join(CONFIG_DIR, "alerts.yml")],
    scrape_configs: shipped.scrape_configs
      .filter((j) => targetOf[j.job_name] !== undefined)
      .map((j) => ({ ...j, static_configs: [{ targets: [targetOf[j.job_name]!] }] })),
  };
  assert.equal(config.scrape_configs.length, 2, "the shipped config has both Sluice jobs");
  const configPath = join(workDir, "prometheus.yml");
  writeFileSync(configPath, stringify(config));
  const port = await freePort();
  const api = `http://127.0.0.1:${port}`;
  let stderr = "";
  prometheus = spawn(
    prometheusBin,
    [
      `--config.file=${configPath}`,
      `--storage.tsdb.path=${join(workDir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  prometheus.stderr!.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const query = async (expr: string): Promise<QueryResult> => {
    const reply = await httpGet(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return JSON.parse(reply.body) as QueryResult;
  };
  const hasData = async (expr: string) => ((await query(expr)).data?.result.length ?? 0) > 0;
  const within = async (what: string, ms: number, probe: () => Promise<boolean>) => {
    const deadline = performance.now() + ms;
    for (;;) {
      if (prometheus!.exitCode !== null)
        throw new Error(`prometheus exited (${prometheus!.exitCode}): ${stderr}`);
      if (await probe().catch(() => false)) return;
      if (performance.now() > deadline)
        throw new Error(`timed out after ${ms} ms waiting for ${what}; prometheus said: ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };
  await within("prometheus to be ready", 20_000, async () => {
    return (await httpGet(`${api}/-/ready`, 1000)).status === 200;
  });
  // A few scrapes of both targets, a grant round trip, and the recording rules evaluated.
  await waitFor(
    "a grant back at the node",
    10_000,
    () => sluice!.agent.stats().propagation.count > 0,
  );
  await within("both targets up with several scrapes and rules evaluated", 30_000, async () => {
    const up = await query('sum(up{job=~"sluice-.*"})');
    const upCount = Number(
      (up.data?.result[0] as { value: [number, string] } | undefined)?.value[1],
    );
    return (
      upCount === 2 &&
      (await hasData("count_over_time(ratelimit_decisions_total[1m]) >= 4")) &&
      (await hasData("count_over_time(ratelimit_propagation_duration_count[1m]) >= 4")) &&
      (await hasData("rule:ratelimit_rejected_ratio:rate30m")) &&
      (await hasData("rate(ratelimit_propagation_duration_count[1m]) > 0"))
    );
  });

  const failures: string[] = [];
  const expect = async (where: string, expr: string, mustHaveData: boolean) => {
    const r = await query(expr);
    if (r.status !== "success") failures.push(`${where}: ${r.error}\n    ${expr}`);
    else if (mustHaveData && (r.data?.result.length ?? 0) === 0)
      failures.push(`${where}: no data\n    ${expr}`);
  };

  // Dashboards: every panel target and every variable query.
  const files = readdirSync(DASHBOARD_DIR).filter((f) => f.endsWith(".json"));
  assert.deepEqual(files.sort(), [
    "sluice-cluster.json",
    "sluice-latency.json",
    "sluice-overview.json",
  ]);
  let panelExprs = 0;
  for (const file of files) {
    const d = JSON.parse(readFileSync(join(DASHBOARD_DIR, file), "utf8")) as DashboardJson;
    for (const panel of d.panels) {
      assert.ok((panel.targets?.length ?? 0) > 0, `${d.title} / ${panel.title} has queries`);
      for (const t of panel.targets ?? []) {
        panelExprs++;
        await expect(`${d.title} / ${panel.title}`, substitute(t.expr), true);
      }
    }
    for (const v of d.templating.list.filter((x) => x.type === "query")) {
      const m = /^label_values\((\w+),\s*(\w+)\)$/.exec(v.definition ?? "");
      if (m === null) {
        failures.push(`${d.title} variable ${v.name}: unexpected query ${v.definition}`);
        continue;
      }
      const reply = await httpGet(
        `${api}/api/v1/label/${m[2]}/values?match[]=${encodeURIComponent(m[1]!)}`,
      );
      const values = (JSON.parse(reply.body) as { data: string[] }).data;
      if (values.length === 0) failures.push(`${d.title} variable ${v.name}: no values`);
    }
  }

  // Rules: recording rules return data as written; alerts parse as written and return data in
  // their bool form.
  const rules = parse(readFileSync(join(CONFIG_DIR, "alerts.yml"), "utf8")) as {
    groups: { rules: { record?: string; alert?: string; expr: string }[] }[];
  };
  let alertCount = 0;
  for (const rule of rules.groups.flatMap((g) => g.rules)) {
    if (rule.record !== undefined) {
      await expect(`record ${rule.record}`, rule.expr, true);
    } else {
      alertCount++;
      await expect(`alert ${rule.alert}`, rule.expr, false);
      await expect(`alert ${rule.alert} (bool form)`, boolForm(rule.expr), true);
    }
  }
  // Prometheus itself evaluated every rule without error.
  const loaded = JSON.parse((await httpGet(`${api}/api/v1/rules`)).body) as {
    data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] };
  };
  const loadedRules = loaded.data.groups.flatMap((g) => g.rules);
  assert.equal(loadedRules.length, 11, "rules loaded from alerts.yml");
  for (const r of loadedRules) {
    if (r.health !== "ok") failures.push(`rule ${r.name}: health ${r.health} ${r.lastError ?? ""}`);
  }

  assert.deepEqual(failures, [], `expressions that failed:\n${failures.join("\n")}`);
  assert.ok(panelExprs >= 30, `evaluated ${panelExprs} panel expressions`);
  assert.equal(alertCount, 7);
});

test("telemetry promql - promtool checks the config and rules and passes the alert unit tests", async () => {
  const promtool = systemBinary("promtool");
  const opts = { cwd: CONFIG_DIR, timeout: 60_000 };
  const config = await run(promtool, ["check", "config", "prometheus.yml"], opts);
  assert.match(config.stdout, /SUCCESS: prometheus\.yml is valid/);
  const rules = await run(promtool, ["check", "rules", "alerts.yml"], opts);
  assert.match(rules.stdout, /SUCCESS: 11 rules found/);
  const unit = await run(promtool, ["test", "rules", "alerts.test.yml"], opts);
  assert.match(unit.stdout, /SUCCESS/);
  // Every alert of alerts.yml has a unit test that expects it to fire, and one that expects
  // nothing from it.
  const tests = readFileSync(join(CONFIG_DIR, "alerts.test.yml"), "utf8");
  const alerts = [
    ...readFileSync(join(CONFIG_DIR, "alerts.yml"), "utf8").matchAll(/- alert: (\w+)/g),
  ];
  assert.equal(alerts.length, 7);
  const cases = (
    parse(tests) as {
      tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
    }
  ).tests.flatMap((t) => t.alert_rule_test ?? []);
  for (const [, name] of alerts) {
    assert.ok(
      cases.some((c) => c.alertname === name && c.exp_alerts.length > 0),
      `${name} has a firing case`,
    );
    assert.ok(
      cases.some((c) => c.alertname === name && c.exp_alerts.length === 0),
      `${name} has a quiet case`,
    );
  }
});

test("telemetry promql - the committed dashboards are what dashboards/build-dashboards.mjs builds", async () => {
  const script = new URL("../../../dashboards/build-dashboards.mjs", import.meta.url).href;
  const { buildDashboards, dashboardText } = (await import(script)) as {
    buildDashboards(): Record<string, unknown>;
    dashboardText(d: unknown): string;
  };
  for (const [file, d] of Object.entries(buildDashboards())) {
    assert.equal(
      readFileSync(join(DASHBOARD_DIR, file), "utf8"),
      dashboardText(d),
      `${file} is stale: run node dashboards/build-dashboards.mjs`,
    );
  }
});
