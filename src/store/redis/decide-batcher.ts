/**
 * Gathers the strict decisions made in one tick into one script call per rule.
 *
 * A service under load issues many `decide` calls between two turns of the event loop (every
 * request resumed by the previous batch of replies asks again). Sent one by one, each costs an
 * EVALSHA: a command object, its encoding and parsing on the client, a script invocation and a
 * TIME on the server. Queued here and flushed on `process.nextTick` (after the current chain of
 * promise continuations, before any I/O), they go as one call of the rule's n-key script, which
 * decides them in order at one instant: the same decisions as separate calls, at a fraction of
 * the cost. Batches are capped at {@link MAX_BATCH} hits so one script never holds Redis long.
 *
 * On a Redis Cluster every key of a script call must live in one slot, so hits are only batched
 * with hits on the same key there.
 */
import type { Decision } from "../../algorithms/types.js";
import type { CallSink, RedisClient } from "./connection.js";
import { runScript } from "./scripts.js";

/**
 * Most hits per script call. Small enough that one call holds Redis for well under a
 * millisecond, and that 64 calls in flight make a few batches, so Redis runs one while the
 * client handles the replies of the previous (one batch of 64 would leave each side idle while
 * the other works); large enough to amortise the per-call cost, which one hit per call pays
 * alone (docs/strict-mode.md gives the script time per hit measured by batch size).
 */
export const MAX_BATCH = 32;

/** What the batcher needs to know about a rule. */
export interface BatchPlan {
  readonly command: string;
  /** ARGV after the op, before the time override. */
  readonly params: readonly string[];
  /** Reads hit `index` of a script reply into a Decision. */
  readonly parse: (reply: unknown, index: number) => Decision;
}

class Batch {
  readonly keys: string[] = [];
  readonly costs: string[] = [];
  readonly sinks: CallSink[] = [];

  constructor(readonly plan: BatchPlan) {}
}

export class DecideBatcher {
  readonly #client: RedisClient;
  readonly #isCluster: boolean;
  readonly #nowText: () => string;
  /** Script calls sent (each carrying one or more hits). */
  scriptCalls = 0;
  #pending = new Map<unknown, Batch>();
  #scheduled = false;
  readonly #flush = () => this.flush();

  /** `nowText` gives the scripts' time override ("" for Redis TIME). */
  constructor(client: RedisClient, isCluster: boolean, nowText: () => string) {
    this.#client = client;
    this.#isCluster = isCluster;
    this.#nowText = nowText;
  }

  /** Queues a "consume" of `cost` on `redisKey`; its decision goes to `sink`. */
  consume(plan: BatchPlan, redisKey: string, cost: number, sink: CallSink): undefined {
    const batchKey = this.#isCluster ? redisKey : plan;
    let batch = this.#pending.get(batchKey);
    if (batch === undefined || batch.keys.length >= MAX_BATCH) {
      if (batch !== undefined) this.#send(batch); // full: goes now, a new one starts
      batch = new Batch(plan);
      this.#pending.set(batchKey, batch);
    }
    if (!this.#scheduled) {
      this.#scheduled = true;
      process.nextTick(this.#flush);
    }
    batch.keys.push(redisKey);
    batch.costs.push(String(cost));
    batch.sinks.push(sink);
    return undefined;
  }

  /**
   * Sends what is queued now. Called on the next tick, and before any other command of the store
   * so that commands reach Redis in the order they were made.
   */
  flush(): void {
    if (this.#pending.size === 0) return;
    this.#scheduled = false;
    const pending = this.#pending;
    this.#pending = new Map();
    for (const batch of pending.values()) this.#send(batch);
  }

  #send(batch: Batch): void {
    const { plan, keys, costs, sinks } = batch;
    const n = keys.length;
    const args = [String(n), ...keys, "consume", ...plan.params, this.#nowText(), ...costs];
    this.scriptCalls++;
    let sent: Promise<unknown>;
    try {
      sent = runScript(this.#client, plan.command, args);
    } catch (err) {
      sent = Promise.reject(err);
    }
    sent.then(
      (reply) => {
        for (let i = 0; i < n; i++) {
          let decision: Decision;
          try {
            decision = plan.parse(reply, i);
          } catch (err) {
            sinks[i]!.fail(err);
            continue;
          }
          sinks[i]!.deliver(decision);
        }
      },
      (err: unknown) => {
        for (const sink of sinks) sink.fail(err);
      },
    );
  }
}
