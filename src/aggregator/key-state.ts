/**
 * What the aggregator holds per global rule and per key: the key's window, the streams of the
 * nodes that reported it, its grant version and pacing state; and, per rule, the window's shape
 * and the timings derived from the tuning.
 */
import type { CompiledRule } from "../limiter/rule.js";
import { FrameEntry } from "../protocol/decision-batch.js";
import type { DecisionEntry } from "../protocol/messages.js";
import { demandHorizonMs } from "./demand.js";
import * as gw from "./global-window.js";
import { hashBytes, KeyIndex, keyHash } from "./key-index.js";
import type { NodeStream } from "./node-stream.js";
import { type AggregatorTuning, lagCompensationOf } from "./tuning.js";

export class KeyState {
  readonly key: string;
  /** `keyHash(key)`, the key's place in its rule's index. */
  readonly keyHash: number;
  readonly window: Float64Array;
  streams: NodeStream[] = [];
  /** The last grant version sent for the key, to any node. */
  version = 0;
  lastReportMs: number;
  /** When grants were last computed for this key (pacing counts from there). */
  lastAllocMs: number;
  /** Pacing credit the last allocation could not hand out in whole units (< one unit). */
  paceCarry = 0;
  /** When a node first reported refusing this key's hits (-1: never); see echo damping. */
  overloadSinceMs = -1;
  /** In the list of keys to allocate at the next tick. */
  dirty = false;
  /** Refused outright until then (a block from a node): no new allowance. */
  blockedUntilMs = Number.NEGATIVE_INFINITY;
  /** The key's decisions partition (0 under a lone aggregator). */
  readonly partition: number;

  constructor(key: string, shape: gw.WindowShape, nowMs: number, partition = 0) {
    this.key = key;
    this.keyHash = keyHash(key);
    this.partition = partition;
    this.window = gw.createGlobalWindow(shape, nowMs);
    this.lastReportMs = nowMs;
    this.lastAllocMs = nowMs;
  }
}

/** How many bins a rule's window has: its own segments; 10 for the bucket algorithms. */
function windowBins(rule: CompiledRule): number {
  return rule.algorithm.name === "sliding-window" ? rule.params.segments : 10;
}

export class RuleState {
  readonly rule: CompiledRule;
  readonly shape: gw.WindowShape;
  /**
   * The rule's keys, in the order they were first seen (which sets the order of grants); add
   * and delete only through `addKey` and `deleteKey`, which keep `index` in step.
   */
  readonly keys = new Map<string, KeyState>();
  /** The same key states as `keys`, found by their keys' UTF-8 bytes. */
  readonly index = new KeyIndex<KeyState>();
  /** Cost counted as admitted and as rejected for the rule since start (all keys, all nodes). */
  admittedCounted = 0;
  rejectedCounted = 0;
  /** The lag compensation, capped at half the window. */
  readonly lagMs: number;
  /** The ramp of scheduled grants, capped at half the window; 0 without. */
  readonly rampMs: number;
  /** How much of each node's demand its allowance is sized for, ms. */
  readonly horizonMs: number;
  /** Most early release added for the wait of granted units for hits, ms; 0: none. */
  readonly hitWaitCapMs: number;

  constructor(rule: CompiledRule, t: AggregatorTuning) {
    this.rule = rule;
    this.shape = gw.windowShape(rule.windowMs, windowBins(rule));
    this.lagMs = Math.min(lagCompensationOf(t), rule.windowMs / 2);
    this.rampMs = Math.min(t.grantRampMs, rule.windowMs / 2);
    this.horizonMs = demandHorizonMs(t.syncIntervalMs, rule.windowMs);
    const hitWait = t.hitWaitCompensation ? t.syncIntervalMs / 2 : 0;
    this.hitWaitCapMs = Math.min(hitWait, rule.windowMs / 2 - this.lagMs);
  }

  /** Adds `ks`, whose key the rule must not hold yet. */
  addKey(ks: KeyState): void {
    this.keys.set(ks.key, ks);
    this.index.add(ks);
  }

  /**
   * Into `out[i]`, the key state of `entries[i]` when it is a reader's entry whose key the rule
   * holds; undefined otherwise. All the lookups of a batch in one loop, apart from the work on
   * each entry, so that their memory reads overlap.
   */
  lookUp(entries: readonly DecisionEntry[], out: (KeyState | undefined)[]): void {
    const n = entries.length;
    for (let i = 0; i < n; i++) {
      const e = entries[i]!;
      out[i] =
        e instanceof FrameEntry
          ? this.index.findBytes(
              e.frame,
              e.keyAt,
              e.keyLength,
              hashBytes(e.frame, e.keyAt, e.keyLength),
            )
          : undefined;
    }
    out.length = n;
  }

  /** Deletes `ks`, the key state the rule holds for its key. */
  deleteKey(ks: KeyState): void {
    this.keys.delete(ks.key);
    this.index.remove(ks);
  }
}
