/**
 * The aggregator's tuning: every option that shapes how it counts and grants, declared once,
 * each with its unit, default, bounds and the reason for it, and validated here. The service
 * resolves its options through {@link resolveTuning}; the CLI builds its flags and help from
 * {@link TUNING_FIELDS}; the benches name the same fields.
 */
import { InvalidArgumentError } from "../errors.js";
import { DEFAULT_SYNC_INTERVAL_MS, SYNC_INTERVAL_BOUNDS } from "../protocol/limits.js";
import { expectBoolean, expectNumber } from "../validate.js";

export interface AggregatorTuning {
  /**
   * Tick period: grants are recomputed and sent this often, ms (10..10000). Nodes should use
   * the same interval. Also the unit of the lag compensation, pacing and demand smoothing.
   * @default DEFAULT_SYNC_INTERVAL_MS (25)
   */
  readonly syncIntervalMs: number;
  /** A node silent for this long is dropped and its share goes to the others, ms (>= 10). @default 3000 */
  readonly nodeTtlMs: number;
  /**
   * After start, grants are withheld this long while the windows fill from reports, ms (>= 0).
   * A restarted aggregator knows nothing of the hits admitted before it started; granting at
   * once could let a key admit its limit twice within one window. Nodes keep the grants they hold
   * meanwhile. A restored checkpoint ends it. Undefined: the longest global window, at most 5000
   * (the service computes it from the rules).
   */
  readonly warmupMs: number | undefined;
  /**
   * A grant is re-sent only when it moves by more than this fraction of the limit (0..1): small
   * changes are not worth a message, except to a node out of room. @default 0.002
   */
  readonly materialChange: number;
  /** A key unreported this long with an empty window is reclaimed, ms (>= 0). @default 30000 */
  readonly keyIdleMs: number;
  /**
   * Scheduled grants, ms (0..60000): each grant also hands out the budget the window will free
   * over the next this-many ms, usable on the node linearly over that time from receipt, so freed
   * budget reaches nodes as it frees rather than at the next tick. 0 (off): every grant is usable
   * at once. Capped at half the window. Opt-in: light nodes that spend their whole allowance
   * find their next increase ramped too (docs/architecture.md, "The budget").
   * @default 0
   */
  readonly grantRampMs: number;
  /**
   * Early release, ms (>= 0): budget the window will free within this long is handed out now,
   * since freed budget otherwise reaches the nodes only at the next tick plus transit. Released
   * early it can be spent before it frees, so the release is capped at 1.5 x the steady rate
   * over the lag. Capped at half the window. Undefined: half the sync interval without a ramp,
   * 0.3 of it with one (the ramp already hands out budget as it frees).
   */
  readonly lagCompensationMs: number | undefined;
  /**
   * Most new allowance handed out per key per tick beyond what nodes hold, in multiples of the
   * rule's steady rate per tick (0..1000; 0: unpaced). Without it, a burst that fills the window
   * at once frees at once a window later and is re-admitted in echoing bursts. @default 1.5
   */
  readonly pacing: number;
  /**
   * Whether each key's lag also covers the wait of granted units for a hit to spend them: the
   * mean gap between its nodes' hits, up to half a sync interval, so a key with sparse hits per
   * node is not held further under its limit than a dense one. @default true
   */
  readonly hitWaitCompensation: boolean;
  /**
   * Whether a newly overloaded key is paced at 1.1 x its steady rate (not `pacing`) for its
   * first 2.5 windows, so the overload's first burst does not echo window after window. Opt-in:
   * the light nodes' idle reserves then show all the time (docs/architecture.md, "The budget").
   * @default false
   */
  readonly echoDamping: boolean;
}

/** One tuning field: how the CLI and the benches name it, and how it is checked. */
export interface TuningField {
  readonly name: keyof AggregatorTuning;
  /** The `sluice aggregator` flag (a boolean field's flag sets the non-default value). */
  readonly flag: string;
  /** The `bench:accuracy` environment variable (a boolean one takes the flag's value word). */
  readonly env: string;
  readonly kind: "number" | "boolean";
  readonly min?: number;
  readonly max?: number;
  readonly integer?: boolean;
  /** The value a boolean field's flag sets ("on" / "off" for the bench variable). */
  readonly flagValue?: boolean;
  /** One line for `--help`, with the default. */
  readonly help: string;
}

export const TUNING_FIELDS: readonly TuningField[] = [
  {
    name: "syncIntervalMs",
    flag: "--sync-interval-ms",
    env: "ACC_SYNC_MS",
    kind: "number",
    ...SYNC_INTERVAL_BOUNDS,
    help: `grant period, ms, ${SYNC_INTERVAL_BOUNDS.min}..${SYNC_INTERVAL_BOUNDS.max} (default ${DEFAULT_SYNC_INTERVAL_MS}); match the nodes`,
  },
  {
    name: "nodeTtlMs",
    flag: "--node-ttl-ms",
    env: "ACC_NODE_TTL_MS",
    kind: "number",
    min: 10,
    help: "a node silent this long is dropped, ms (default 3000)",
  },
  {
    name: "warmupMs",
    flag: "--warmup-ms",
    env: "ACC_WARMUP_MS",
    kind: "number",
    min: 0,
    help: "withhold grants this long after start while windows fill, ms (default: the longest global window, at most 5000)",
  },
  {
    name: "materialChange",
    flag: "--material-change",
    env: "ACC_MATERIAL_CHANGE",
    kind: "number",
    min: 0,
    max: 1,
    help: "re-send a grant when it moves by more than this fraction of the limit (default 0.002)",
  },
  {
    name: "keyIdleMs",
    flag: "--key-idle-ms",
    env: "ACC_KEY_IDLE_MS",
    kind: "number",
    min: 0,
    help: "reclaim a key unreported this long with an empty window, ms (default 30000)",
  },
  {
    name: "grantRampMs",
    flag: "--grant-ramp-ms",
    env: "ACC_GRANT_RAMP_MS",
    kind: "number",
    min: 0,
    max: 60_000,
    help: "hand out with each grant what the window frees over the next N ms, usable as it frees (opt-in; default 0)",
  },
  {
    name: "lagCompensationMs",
    flag: "--lag-compensation-ms",
    env: "ACC_LAG_MS",
    kind: "number",
    min: 0,
    help: "grant now the budget freed within N ms (default: half the sync interval; 0.3 of it with a ramp)",
  },
  {
    name: "pacing",
    flag: "--pacing",
    env: "ACC_PACING",
    kind: "number",
    min: 0,
    max: 1000,
    help: "most new allowance per key per tick, in steady-rate ticks; 0 = unpaced (default 1.5)",
  },
  {
    name: "hitWaitCompensation",
    flag: "--no-hit-wait",
    env: "ACC_HIT_WAIT",
    kind: "boolean",
    flagValue: false,
    help: "do not add to each key's lag the mean gap between its nodes' hits (added by default)",
  },
  {
    name: "echoDamping",
    flag: "--echo-damping",
    env: "ACC_ECHO_DAMPING",
    kind: "boolean",
    flagValue: true,
    help: "pace a newly overloaded key at 1.1x its steady rate for 2.5 windows (opt-in)",
  },
];

const DEFAULTS: AggregatorTuning = {
  syncIntervalMs: DEFAULT_SYNC_INTERVAL_MS,
  nodeTtlMs: 3000,
  warmupMs: undefined,
  materialChange: 0.002,
  keyIdleMs: 30_000,
  grantRampMs: 0,
  lagCompensationMs: undefined,
  pacing: 1.5,
  hitWaitCompensation: true,
  echoDamping: false,
};

/**
 * The tuning in `input` (any subset of the fields; others of `input` are ignored) checked and
 * completed with the defaults. Throws {@link InvalidArgumentError} naming the field (prefixed
 * with `at.` when given).
 */
export function resolveTuning(input: Partial<AggregatorTuning> = {}, at = ""): AggregatorTuning {
  const out: Record<string, unknown> = { ...DEFAULTS };
  for (const f of TUNING_FIELDS) {
    const v = input[f.name];
    if (v === undefined) continue;
    const field = at === "" ? f.name : `${at}.${f.name}`;
    if (f.kind === "boolean") out[f.name] = expectBoolean(field, v);
    else {
      out[f.name] = expectNumber(field, v, {
        ...(f.min === undefined ? {} : { min: f.min }),
        ...(f.max === undefined ? {} : { max: f.max }),
        ...(f.integer ? { integer: true } : {}),
      });
    }
  }
  return out as unknown as AggregatorTuning;
}

/** The lag compensation in force: the given one, or the default for the interval and ramp. */
export function lagCompensationOf(t: AggregatorTuning): number {
  if (t.lagCompensationMs !== undefined) return t.lagCompensationMs;
  return t.syncIntervalMs * (t.grantRampMs > 0 ? 0.3 : 0.5);
}

/**
 * Tuning fields set by `env` (the bench's variables), as `sluice aggregator` flags; the fields
 * in `skip` are left to the caller.
 */
export function tuningFlagsFromEnv(
  env: Record<string, string | undefined>,
  skip: readonly (keyof AggregatorTuning)[] = [],
): string[] {
  const flags: string[] = [];
  for (const f of TUNING_FIELDS) {
    if (skip.includes(f.name)) continue;
    const v = env[f.env]?.trim();
    if (v === undefined || v === "") continue;
    if (f.kind === "boolean") {
      const word = f.flagValue ? "on" : "off";
      if (v !== word) throw new InvalidArgumentError(f.env, `"${word}" or unset`, v);
      flags.push(f.flag);
    } else {
      const n = Number(v);
      if (!(Number.isFinite(n) && n >= (f.min ?? Number.NEGATIVE_INFINITY))) {
        throw new InvalidArgumentError(f.env, `a number >= ${f.min ?? "-Infinity"}`, v);
      }
      flags.push(f.flag, v);
    }
  }
  return flags;
}
