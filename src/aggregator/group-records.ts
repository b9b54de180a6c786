/**
 * What the aggregators of a group keep in their shared store, and how it is read back.
 *
 *     members.<aggregatorId>   {"run": <epoch of the run>, "draining": false}
 *         Written again by the run every lease / 3; a run is alive for a reader while it has
 *         seen such a write within the lease (by its own monotonic clock), and gone at once
 *         when the key is deleted (a clean shutdown).
 *     partitions.<p>           {"owner": <id>, "run": <run>, "state": "owned" | "transfer",
 *                               "from": <id>, "checkpoint": <name>}
 *         Written by compare-and-set only: a claim (of a partition nobody holds, or whose owner
 *         is gone), or a transfer by the owner to the member that should own it next (with the
 *         checkpoint it saved for it). The revision of that write is the partition's owner
 *         epoch, which nodes use to fence off older owners.
 *     checkpoints.<name>...    windows saved by an owner (kv-checkpoint-store.ts).
 *
 * Values are JSON, so an operator can read the bucket with `nats kv` tools.
 */

export const MEMBER_PREFIX = "members.";
export const PARTITION_PREFIX = "partitions.";

export interface MemberValue {
  readonly run: number;
  readonly draining: boolean;
}

export interface PartitionValue {
  readonly owner: string;
  readonly run: number;
  readonly state: "owned" | "transfer";
  /** The member that transferred it (state "transfer"). */
  readonly from?: string;
  /** The checkpoint the transferring owner saved for the new one. */
  readonly checkpoint?: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeRecord(value: MemberValue | PartitionValue): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

function parse(bytes: Uint8Array): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(decoder.decode(bytes)) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** A member record, or undefined when the bytes are not one (a foreign or corrupt value). */
export function decodeMember(bytes: Uint8Array): MemberValue | undefined {
  const v = parse(bytes);
  if (v === undefined || typeof v["run"] !== "number" || !Number.isFinite(v["run"]))
    return undefined;
  return { run: v["run"], draining: v["draining"] === true };
}

/** A partition record, or undefined when the bytes are not one. */
export function decodePartition(bytes: Uint8Array): PartitionValue | undefined {
  const v = parse(bytes);
  if (v === undefined || typeof v["owner"] !== "string" || typeof v["run"] !== "number") {
    return undefined;
  }
  const state = v["state"] === "transfer" ? "transfer" : "owned";
  return {
    owner: v["owner"],
    run: v["run"],
    state,
    ...(typeof v["from"] === "string" ? { from: v["from"] } : {}),
    ...(typeof v["checkpoint"] === "string" ? { checkpoint: v["checkpoint"] } : {}),
  };
}

/** `members.<id>` → id; `partitions.<p>` → p; undefined for other keys. */
export function memberIdOf(key: string): string | undefined {
  return key.startsWith(MEMBER_PREFIX) ? key.slice(MEMBER_PREFIX.length) : undefined;
}

export function partitionOf(key: string): number | undefined {
  if (!key.startsWith(PARTITION_PREFIX)) return undefined;
  const p = Number(key.slice(PARTITION_PREFIX.length));
  return Number.isInteger(p) && p >= 0 ? p : undefined;
}
