/** The types of an aggregator group's member (group.ts): its options, its listener, its stats. */
import type { Clock } from "../clock/clock.js";
import type { PartitionValue } from "./group-records.js";
import type { GroupStore } from "./group-store.js";

/** How a partition came to this run. */
export type AcquireKind = "fresh" | "takeover" | "handoff";

export interface GroupListener {
  /** `p` should come to this run: start receiving its reports (they are needed from now on). */
  wanted(p: number): void;
  /**
   * `p` is this run's from now, with owner `epoch`: for a handoff, restore `checkpoint` (the one
   * its previous owner saved for this run); for a takeover, the last one its previous owner
   * saved, if any. Grants for it may start once this resolves; a rejection lets it go.
   */
  acquired(
    p: number,
    epoch: number,
    how: AcquireKind,
    checkpoint: string | undefined,
  ): Promise<void>;
  /** `p` keeps owner epoch `epoch` instead of the one it had (claimed again after a lapse). */
  renewed(p: number, epoch: number): void;
  /** Stop granting `p` and save it for member `to`; resolves with the checkpoint's name. */
  handOff(p: number, to: string): Promise<string>;
  /** `p` is not this run's (any more): drop what was kept for it. */
  released(p: number, why: "handed-off" | "taken" | "unwanted" | "failed"): void;
  /**
   * Resolves once the partitions wanted so far receive their reports (their subscriptions have
   * reached the server); awaited at start, before this run registers.
   */
  ready?(): Promise<void>;
  /** Something failed that the group retries by itself (for logs and counters). */
  error?(error: unknown): void;
}

export interface GroupOptions {
  readonly store: GroupStore;
  /** This aggregator's id (`[A-Za-z0-9_-]{1,64}`), unique in the group. */
  readonly memberId: string;
  /** This run's epoch (its start on the wall clock plus a random fraction). */
  readonly run: number;
  readonly partitions: number;
  readonly clock: Clock;
  /** Lease of a member, ms. @default 1500 */
  readonly leaseMs?: number;
  readonly listener: GroupListener;
}

export interface GroupStats {
  readonly claims: number;
  readonly handoffsOut: number;
  readonly handoffsIn: number;
  readonly takeovers: number;
  readonly taken: number;
  readonly renewFailures: number;
  readonly casConflicts: number;
}

export function newGroupStats(): { -readonly [K in keyof GroupStats]: GroupStats[K] } {
  return {
    claims: 0,
    handoffsOut: 0,
    handoffsIn: 0,
    takeovers: 0,
    taken: 0,
    renewFailures: 0,
    casConflicts: 0,
  };
}

/** Another member as this run sees it. */
export interface Member {
  run: number;
  draining: boolean;
  deleted: boolean;
  /** This run's clock when a write of the key was last seen. */
  seenAtMs: number;
  revision: number;
}

/** A partition record as this run last read it. */
export interface PartitionRecord {
  value: PartitionValue | undefined;
  revision: number;
  deleted: boolean;
}

/** A partition this run holds. */
export interface Held {
  epoch: number;
  /** The revision of this run's last write of the partition record. */
  revision: number;
  phase: "importing" | "active" | "handing-off" | "suspect";
}
