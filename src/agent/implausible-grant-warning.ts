/**
 * The warning a node gives about implausible grants: grants no aggregator could have sent (more
 * than the rule allows, or a version jump no tick explains), dropped by the limiter. They mean
 * someone can publish updates to this node (check the server's permissions, docs/operations.md),
 * so they are said, at most once per IMPLAUSIBLE_WARNING_MS, with the count since the last word.
 */
import type { Clock } from "../clock/clock.js";

/** Least time between two warnings about implausible grants, ms. */
const IMPLAUSIBLE_WARNING_MS = 60_000;

export class ImplausibleGrantWarning {
  readonly #nodeId: string;
  readonly #clock: Clock;
  readonly #warn: (message: string) => void;
  #lastWarningMs = Number.NEGATIVE_INFINITY;
  #sinceWarning = 0;

  constructor(nodeId: string, clock: Clock, warn: (message: string) => void) {
    this.#nodeId = nodeId;
    this.#clock = clock;
    this.#warn = warn;
  }

  /** `n` grants of an update naming `aggregatorId` were dropped as implausible. */
  dropped(n: number, aggregatorId: string): void {
    this.#sinceWarning += n;
    const now = this.#clock.nowMs();
    if (now - this.#lastWarningMs < IMPLAUSIBLE_WARNING_MS) return;
    this.#lastWarningMs = now;
    this.#warn(
      `Sluice node ${this.#nodeId} dropped ${this.#sinceWarning} implausible grant(s) ` +
        `(the latest in an update naming aggregator "${aggregatorId}"): it gave more than the rule ` +
        "allows or jumped versions; someone may be publishing forged rate updates. Check that " +
        "only aggregators may publish to the updates subjects.",
    );
    this.#sinceWarning = 0;
  }
}
