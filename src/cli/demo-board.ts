/**
 * `sluice demo`'s plan (what runs, for how long) and its board: per-second tallies of what the
 * nodes reported, the live screen and the closing summary.
 */
import { wallClockMs } from "../clock/clock.js";
import type { LoadReport } from "./load.js";

/** How long after a second ends its per-second line waits for that second's last reports. */
const REPORT_GRACE_MS = 300;

export interface Plan {
  readonly rulesSource: string;
  readonly rule: string;
  readonly limit: number;
  readonly windowMs: number;
  readonly nodes: number;
  readonly rate: number;
  readonly keys: number;
  readonly zipf: number;
  readonly durationMs: number;
  readonly json: boolean;
  /** Aggregators: 1 alone; more form a group, and the first is killed at half time. */
  readonly aggregators: number;
}

/** [joinMs, leaveMs] of node i: the last joins at D/3, the first leaves at 2D/3. */
export function lifetime(i: number, plan: Plan): [number, number] {
  const join = plan.nodes > 2 && i === plan.nodes - 1 ? Math.round(plan.durationMs / 3) : 0;
  const leave = plan.nodes > 1 && i === 0 ? Math.round((plan.durationMs * 2) / 3) : plan.durationMs;
  return [join, leave];
}

/** Per-second tallies of what the nodes reported, and the screen. */
export class Board {
  readonly #plan: Plan;
  readonly #started = wallClockMs();
  /** second index -> node -> [hot admitted, hot rejected, all admitted, all rejected] */
  readonly #seconds = new Map<number, Map<string, number[]>>();
  /** Hot key admitted per report bucket (wall-clock aligned end -> count), for sliding windows. */
  readonly #hotByBucket = new Map<number, number>();
  #bucketMs = 0;
  #printed = -1;
  /** Notes (a node joins, leaves) waiting for the line of the second before them. */
  readonly #notes: { sec: number; text: string }[] = [];
  aggregatorNote = "";

  constructor(plan: Plan) {
    this.#plan = plan;
  }

  add(node: string, r: LoadReport): void {
    const sec = Math.floor((r.atWallMs - r.intervalMs - this.#started) / 1000);
    if (sec < 0) return;
    let byNode = this.#seconds.get(sec);
    if (byNode === undefined) {
      byNode = new Map();
      this.#seconds.set(sec, byNode);
    }
    const c = byNode.get(node) ?? [0, 0, 0, 0];
    const hot = r.tracked["k0"] ?? [0, 0];
    this.#bucketMs = r.intervalMs;
    this.#hotByBucket.set(r.atWallMs, (this.#hotByBucket.get(r.atWallMs) ?? 0) + hot[0]);
    c[0]! += hot[0];
    c[1]! += hot[1];
    c[2]! += r.admitted;
    c[3]! += r.rejected;
    byNode.set(node, c);
  }

  /**
   * Prints every full second not printed yet. A second is full once its last reports are in:
   * reports come every 100 ms and take a few ms to arrive, so a second is printed
   * REPORT_GRACE_MS after it ends (printed at once, its last reports would be missing and the
   * live lines would read below the summary).
   */
  render(final = false): void {
    const sinceStart = wallClockMs() - this.#started;
    const full = Math.floor((sinceStart - REPORT_GRACE_MS) / 1000); // seconds before it are full
    const last = final ? Math.floor(sinceStart / 1000) : full - 1;
    for (let sec = this.#printed + 1; sec <= last; sec++) {
      this.#printed = sec;
      // A note made during second s goes just before that second's line, after the line of
      // the second before it (which prints later than the note was made).
      while (this.#notes.length > 0 && this.#notes[0]!.sec <= sec) {
        console.log(this.#notes.shift()!.text);
      }
      const byNode = this.#seconds.get(sec);
      if (byNode === undefined) continue;
      const perSec = this.#perSecond(byNode);
      if (this.#plan.json) {
        process.stdout.write(
          `${JSON.stringify({ type: "demo-second", second: sec, ...perSec })}\n`,
        );
        continue;
      }
      const shares = Object.entries(perSec.hotByNode)
        .map(
          ([n, a]) =>
            `${n} ${perSec.hotAdmitted > 0 ? Math.round((a / perSec.hotAdmitted) * 100) : 0}%`,
        )
        .join("  ");
      const pct = ((perSec.hotAdmitted / perSec.limitPerSec) * 100).toFixed(1);
      console.log(
        `t=${String(sec + 1).padStart(3)}s  ${this.#plan.rule}/k0 ${String(perSec.hotAdmitted).padStart(5)}/s of ${perSec.limitPerSec}/s (${pct.padStart(5)}%)  rejected ${String(perSec.hotRejected).padStart(5)}/s  | shares: ${shares}${this.aggregatorNote ? `  | ${this.aggregatorNote}` : ""}`,
      );
    }
    if (final) for (const n of this.#notes.splice(0)) console.log(n.text);
  }

  /** Prints `text` between the per-second lines, where it happened. */
  note(text: string): void {
    this.#notes.push({ sec: Math.floor((wallClockMs() - this.#started) / 1000), text });
  }

  #perSecond(byNode: Map<string, number[]>) {
    const hotByNode: Record<string, number> = {};
    let hotAdmitted = 0;
    let hotRejected = 0;
    let admitted = 0;
    let rejected = 0;
    for (const [n, c] of [...byNode].sort((a, b) => a[0].localeCompare(b[0]))) {
      hotByNode[n] = c[0]!;
      hotAdmitted += c[0]!;
      hotRejected += c[1]!;
      admitted += c[2]!;
      rejected += c[3]!;
    }
    const limitPerSec = Math.round((this.#plan.limit * 1000) / this.#plan.windowMs);
    return { hotAdmitted, hotRejected, admitted, rejected, hotByNode, limitPerSec };
  }

  summary(): Record<string, unknown> {
    const secs = [...this.#seconds.keys()].sort((a, b) => a - b).slice(1, -1); // full seconds only
    const rows = secs.map((s) => this.#perSecond(this.#seconds.get(s)!));
    const limitPerSec = Math.round((this.#plan.limit * 1000) / this.#plan.windowMs);
    const ratios = rows.map((r) => r.hotAdmitted / limitPerSec);
    const mean = ratios.reduce((a, b) => a + b, 0) / Math.max(1, ratios.length);
    return {
      type: "demo-summary",
      rule: this.#plan.rule,
      limitPerSec,
      seconds: rows.length,
      hotKeyMeanRatio: Math.round(mean * 1000) / 1000,
      hotKeyWorstSecondRatio: Math.round(Math.max(0, ...ratios) * 1000) / 1000,
      hotKeyWorstWindowRatio: Math.round(this.#worstWindow() * 1000) / 1000,
      hotKeyLowestSecondRatio: Math.round(Math.min(Infinity, ...ratios) * 1000) / 1000,
      admitted: rows.reduce((a, r) => a + r.admitted, 0),
      rejected: rows.reduce((a, r) => a + r.rejected, 0),
    };
  }

  /**
   * The hot key's most admitted in any window of the rule's length, over the limit, from the
   * very first window (the cold start included), read at every report bucket's end.
   */
  #worstWindow(): number {
    const ends = [...this.#hotByBucket.keys()].sort((a, b) => a - b);
    if (ends.length === 0 || this.#bucketMs <= 0) return 0;
    let worst = 0;
    let sum = 0;
    let first = 0;
    for (const end of ends) {
      sum += this.#hotByBucket.get(end)!;
      while (ends[first]! <= end - this.#plan.windowMs)
        sum -= this.#hotByBucket.get(ends[first++]!)!;
      if (sum > worst) worst = sum;
    }
    return worst / this.#plan.limit;
  }

  printSummary(extra: Record<string, unknown>): void {
    const s = { ...this.summary(), ...extra };
    if (this.#plan.json) {
      process.stdout.write(`${JSON.stringify(s)}\n`);
      return;
    }
    console.log("");
    console.log("Summary");
    console.log(
      `  rule ${s["rule"]}, hottest key k0, global limit ${s["limitPerSec"]}/s, ${s["seconds"]} full seconds`,
    );
    console.log(
      `  k0 admitted per second / limit: mean ${s["hotKeyMeanRatio"]}, highest ${s["hotKeyWorstSecondRatio"]}, lowest ${s["hotKeyLowestSecondRatio"]}`,
    );
    console.log(
      `  k0 in any ${this.#plan.windowMs} ms window from the first one / limit: at most ${s["hotKeyWorstWindowRatio"]}`,
    );
    console.log(`  all keys: admitted ${s["admitted"]}, rejected ${s["rejected"]}`);
    for (const [k, v] of Object.entries(extra))
      console.log(`  ${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
}
