/**
 * The owners list of RateUpdate and RuleDefaults (format 3): u16 count, then per owner the
 * partition (u16) and its owner epoch (f64).
 */
import { InvalidArgumentError } from "../errors.js";
import type { ByteReader } from "./byte-reader.js";
import type { ByteWriter } from "./byte-writer.js";
import { MAX_OWNERS, type PartitionOwner } from "./messages.js";

const EXPECTED_OWNERS = `at most ${MAX_OWNERS} owners, each a partition in [0, 65535] with an epoch > 0`;

function isOwner(o: PartitionOwner): boolean {
  return (
    Number.isInteger(o.partition) &&
    o.partition >= 0 &&
    o.partition <= 0xffff &&
    typeof o.epoch === "number" &&
    o.epoch > 0 &&
    o.epoch <= Number.MAX_VALUE
  );
}

/** Throws {@link InvalidArgumentError} for a list the wire cannot carry. */
export function expectOwners(field: string, owners: readonly PartitionOwner[]): void {
  if (owners.length > MAX_OWNERS) throw new InvalidArgumentError(field, EXPECTED_OWNERS, owners);
  for (let i = 0; i < owners.length; i++) {
    if (!isOwner(owners[i]!)) {
      throw new InvalidArgumentError(`${field}[${i}]`, EXPECTED_OWNERS, owners[i]);
    }
  }
}

export function writeOwners(w: ByteWriter, owners: readonly PartitionOwner[]): void {
  w.u16(owners.length);
  for (const o of owners) {
    w.u16(o.partition);
    w.f64(o.epoch);
  }
}

/** The list, or why the message is dropped. */
export function readOwners(r: ByteReader): PartitionOwner[] | "truncated" | "bad-field" {
  const count = r.u16();
  if (r.truncated) return "truncated";
  if (count > MAX_OWNERS) return "bad-field";
  const owners: PartitionOwner[] = [];
  for (let i = 0; i < count; i++) {
    const owner = { partition: r.u16(), epoch: r.f64() };
    if (r.truncated) return "truncated";
    if (!isOwner(owner)) return "bad-field";
    owners.push(owner);
  }
  return owners;
}
