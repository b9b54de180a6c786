/**
 * DecisionBatch (type 1), node → aggregator on `<prefix>.v1.decisions.<partition>.<nodeId>`.
 *
 * Body: nodeId str, nodeEpoch f64, seq u32, sentAtWallMs f64, ownerEpoch f64, groupCount u16, then per group:
 * rule str, entryCount u32, then per entry: key str, generation u32, admitted f64, rejected f64,
 * flags u8 (bit 0: isNew; other bits must be 0), grantEpoch f64, grantVersion u32, allowance f64,
 * admittedSinceLast f64, ageMs f64.
 * (str = u16 byte length + UTF-8; all little-endian.)
 */

import { InvalidArgumentError } from "../errors.js";
import type { ByteReader } from "./byte-reader.js";
import type { ByteWriter } from "./byte-writer.js";
import type { DecodeFailure, DroppedEntries } from "./decode-result.js";
import {
  badString,
  EXPECTED_NON_NEGATIVE,
  EXPECTED_U32,
  expectId,
  expectNonNegative,
  expectU32,
  isId,
  isNonNegative,
  isU32,
} from "./fields.js";
import { type EncodeOptions, encodeGroups } from "./frame.js";
import { MAX_ID_BYTES, MAX_KEY_BYTES, MAX_RULE_BYTES, MessageTypeCode } from "./limits.js";
import type { DecisionBatch, DecisionBatchFields, DecisionEntry } from "./messages.js";

/**
 * Encodes a decision batch as one frame, or several when it exceeds `maxMessageBytes`.
 * Throws {@link InvalidArgumentError} naming the field when a value cannot be sent.
 */
export function encodeDecisionBatch(
  batch: DecisionBatchFields,
  options?: EncodeOptions,
): Uint8Array[] {
  expectId("nodeId", batch.nodeId);
  expectNonNegative("nodeEpoch", batch.nodeEpoch);
  expectU32("seq", batch.seq);
  expectNonNegative("sentAtWallMs", batch.sentAtWallMs);
  const ownerEpoch = batch.ownerEpoch ?? 0;
  expectNonNegative("ownerEpoch", ownerEpoch);
  return encodeGroups(
    MessageTypeCode.decisionBatch,
    options,
    (w) => {
      w.str(batch.nodeId, MAX_ID_BYTES);
      w.f64(batch.nodeEpoch);
      w.u32(batch.seq);
      w.f64(batch.sentAtWallMs);
      w.f64(ownerEpoch);
    },
    batch.groups,
    writeEntry,
  );
}

function writeEntry(w: ByteWriter, e: DecisionEntry, g: number, i: number): void {
  // One branch on the hot path; the field-by-field search (and its strings) only on failure.
  if (
    !isU32(e.generation) ||
    !isU32(e.grantVersion) ||
    !isNonNegative(e.admitted) ||
    !isNonNegative(e.rejected) ||
    !isNonNegative(e.grantEpoch) ||
    !isNonNegative(e.allowance) ||
    !isNonNegative(e.admittedSinceLast) ||
    !isNonNegative(e.ageMs)
  ) {
    throwBadEntry(e, `groups[${g}].entries[${i}]`);
  }
  if (w.str(e.key, MAX_KEY_BYTES) < 0) {
    badString(`groups[${g}].entries[${i}].key`, e.key, MAX_KEY_BYTES);
  }
  w.ensure(4 + 8 + 8 + 1 + 8 + 4 + 8 + 8 + 8);
  const v = w.view;
  let p = w.pos;
  v.setUint32(p, e.generation, true);
  v.setFloat64(p + 4, e.admitted, true);
  v.setFloat64(p + 12, e.rejected, true);
  v.setUint8(p + 20, e.isNew ? 1 : 0);
  v.setFloat64(p + 21, e.grantEpoch, true);
  v.setUint32(p + 29, e.grantVersion, true);
  v.setFloat64(p + 33, e.allowance, true);
  v.setFloat64(p + 41, e.admittedSinceLast, true);
  v.setFloat64(p + 49, e.ageMs, true);
  p += 57;
  w.pos = p;
}

function throwBadEntry(e: DecisionEntry, at: string): never {
  for (const f of ["generation", "grantVersion"] as const) {
    if (!isU32(e[f])) throw new InvalidArgumentError(`${at}.${f}`, EXPECTED_U32, e[f]);
  }
  for (const f of [
    "admitted",
    "rejected",
    "grantEpoch",
    "allowance",
    "admittedSinceLast",
    "ageMs",
  ] as const) {
    if (!isNonNegative(e[f])) {
      throw new InvalidArgumentError(`${at}.${f}`, EXPECTED_NON_NEGATIVE, e[f]);
    }
  }
  throw new Error("unreachable: entry reported bad but every field is valid");
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type MutableEntry = Mutable<DecisionEntry>;
type MutableGroup = { rule: string; entries: DecisionEntry[] };

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The string of the ASCII bytes `b[at, at + length)`. */
function asciiString(b: Uint8Array, at: number, length: number): string {
  return String.fromCharCode.apply(null, b.subarray(at, at + length) as unknown as number[]);
}

/**
 * An entry read by a `DecisionBatchReader`: its key's UTF-8 bytes stay in the frame
 * (`frame[keyAt, keyAt + keyLength)`), and the key's string is made on the first read of `key`.
 * Valid as long as the batch it came with (until the reader's next read), and only while the
 * frame's bytes are not changed.
 */
export class FrameEntry implements DecisionEntry {
  frame: Uint8Array = new Uint8Array(0);
  keyAt = 0;
  keyLength = 0;
  /** The key's string once made (at read time for a key that is not all ASCII). */
  #key: string | undefined = undefined;
  generation = 0;
  admitted = 0;
  rejected = 0;
  isNew = false;
  grantEpoch = 0;
  grantVersion = 0;
  allowance = 0;
  admittedSinceLast = 0;
  ageMs = 0;

  get key(): string {
    this.#key ??= asciiString(this.frame, this.keyAt, this.keyLength);
    return this.#key;
  }

  setKey(frame: Uint8Array, at: number, length: number, key: string | undefined): void {
    this.frame = frame;
    this.keyAt = at;
    this.keyLength = length;
    this.#key = key;
  }

  /** A plain entry with the same fields, independent of the frame. */
  toJSON(): DecisionEntry {
    return {
      key: this.key,
      generation: this.generation,
      admitted: this.admitted,
      rejected: this.rejected,
      isNew: this.isNew,
      grantEpoch: this.grantEpoch,
      grantVersion: this.grantVersion,
      allowance: this.allowance,
      admittedSinceLast: this.admittedSinceLast,
      ageMs: this.ageMs,
    };
  }
}

/**
 * A copy of `batch` made of plain objects, for keeping a batch read by a reader past its next
 * read.
 */
export function copyDecisionBatch(batch: DecisionBatch): DecisionBatch {
  return {
    ...batch,
    groups: batch.groups.map((g) => ({
      rule: g.rule,
      entries: g.entries.map((e) => (e instanceof FrameEntry ? e.toJSON() : { ...e })),
    })),
  };
}

/**
 * Where {@link readDecisionBatchInto} writes: a batch whose groups and entries are reused from
 * one read to the next (their arrays keep their length high-water mark in `pool`). With
 * `frameKeys`, the entries are {@link FrameEntry} objects; otherwise plain ones.
 */
export interface DecisionBatchTarget {
  readonly batch: Mutable<DecisionBatch> & { groups: MutableGroup[] };
  /** Per group slot, every entry object made for it so far. */
  readonly pool: (MutableEntry | FrameEntry)[][];
  readonly frameKeys: boolean;
}

export function newDecisionBatchTarget(frameKeys = false): DecisionBatchTarget {
  return {
    batch: {
      type: "decision-batch",
      nodeId: "",
      nodeEpoch: 0,
      seq: 0,
      sentAtWallMs: 0,
      ownerEpoch: 0,
      groups: [],
    },
    pool: [],
    frameKeys,
  };
}

function newEntry(): MutableEntry {
  return {
    key: "",
    generation: 0,
    admitted: 0,
    rejected: 0,
    isNew: false,
    grantEpoch: 0,
    grantVersion: 0,
    allowance: 0,
    admittedSinceLast: 0,
    ageMs: 0,
  };
}

/** Reads the body after the 4-byte header; the caller reads the signature trailer after it. */
export function readDecisionBatch(
  r: ByteReader,
  dropped: DroppedEntries,
): DecisionBatch | DecodeFailure {
  return readDecisionBatchInto(r, dropped, newDecisionBatchTarget());
}

/** Bytes of an entry after its key. */
const ENTRY_FIXED_BYTES = 57;

/**
 * As {@link readDecisionBatch}, into `t`: the batch returned is `t.batch`, valid until the next
 * read into `t` (its entry objects are overwritten then).
 */
export function readDecisionBatchInto(
  r: ByteReader,
  dropped: DroppedEntries,
  t: DecisionBatchTarget,
): DecisionBatch | DecodeFailure {
  const nodeId = r.str(MAX_ID_BYTES);
  const nodeEpoch = r.f64();
  const seq = r.u32();
  const sentAtWallMs = r.f64();
  const ownerEpoch = r.f64();
  const groupCount = r.u16();
  if (r.truncated) return "truncated";
  if (
    !isId(nodeId) ||
    !isNonNegative(nodeEpoch) ||
    !isNonNegative(sentAtWallMs) ||
    !isNonNegative(ownerEpoch)
  ) {
    return "bad-field";
  }
  const b = t.batch;
  b.nodeId = nodeId;
  b.nodeEpoch = nodeEpoch;
  b.seq = seq;
  b.sentAtWallMs = sentAtWallMs;
  b.ownerEpoch = ownerEpoch;
  let kept = 0;
  for (let g = 0; g < groupCount; g++) {
    const rule = r.str(MAX_RULE_BYTES);
    const entryCount = r.u32();
    if (r.truncated) return "truncated";
    let pool = t.pool[kept];
    if (pool === undefined) {
      pool = [];
      t.pool[kept] = pool;
    }
    const n = readEntries(r, dropped, rule, entryCount, pool, t.frameKeys);
    if (n < 0) return "truncated";
    if (rule === undefined) continue;
    let group = b.groups[kept];
    if (group === undefined) {
      group = { rule, entries: [] };
      b.groups[kept] = group;
    }
    group.rule = rule;
    const entries = group.entries;
    for (let i = 0; i < n; i++) entries[i] = pool[i]!;
    entries.length = n;
    kept++;
  }
  b.groups.length = kept;
  return b;
}

/** Where the last {@link readKey} found the key: its bytes, and its string when not ASCII. */
let keyAt = 0;
let keyLength = 0;
let keyString: string | undefined;

/**
 * Reads a key (u16 byte length + UTF-8) without making its string when it is all ASCII; sets
 * `keyAt`, `keyLength` and `keyString`. Returns false when it is truncated, empty, too long or
 * not valid UTF-8 (as `ByteReader.str` would return undefined).
 */
function readKey(r: ByteReader): boolean {
  const len = r.u16();
  const at = r.skip(len);
  if (at < 0 || len === 0 || len > MAX_KEY_BYTES) return false;
  keyAt = at;
  keyLength = len;
  keyString = undefined;
  const b = r.bytes;
  for (let i = at; i < at + len; i++) {
    if (b[i]! >= 0x80) {
      try {
        keyString = utf8.decode(b.subarray(at, at + len));
      } catch {
        return false;
      }
      break;
    }
  }
  return true;
}

/**
 * Reads `count` entries into `pool`'s first objects (making more as needed), the valid ones
 * first; returns how many are valid, or -1 when the message is truncated.
 */
function readEntries(
  r: ByteReader,
  dropped: DroppedEntries,
  rule: string | undefined,
  count: number,
  pool: (MutableEntry | FrameEntry)[],
  frameKeys: boolean,
): number {
  const v = r.view;
  const bytes = r.bytes;
  let n = 0;
  for (let i = 0; i < count; i++) {
    const keyOk = readKey(r);
    const p = r.skip(ENTRY_FIXED_BYTES);
    if (p < 0) return -1;
    const admitted = v.getFloat64(p + 4, true);
    const rejected = v.getFloat64(p + 12, true);
    const flags = v.getUint8(p + 20);
    const grantEpoch = v.getFloat64(p + 21, true);
    const allowance = v.getFloat64(p + 33, true);
    const admittedSinceLast = v.getFloat64(p + 41, true);
    const ageMs = v.getFloat64(p + 49, true);
    if (rule === undefined) dropped["bad-rule"]++;
    else if (!keyOk) dropped["bad-key"]++;
    else if (
      !isNonNegative(admitted) ||
      !isNonNegative(rejected) ||
      !isNonNegative(grantEpoch) ||
      !isNonNegative(allowance) ||
      !isNonNegative(admittedSinceLast) ||
      !isNonNegative(ageMs) ||
      flags > 1
    ) {
      dropped["bad-number"]++;
    } else {
      let e = pool[n];
      if (e === undefined) {
        e = frameKeys ? new FrameEntry() : newEntry();
        pool[n] = e;
      }
      if (e instanceof FrameEntry) e.setKey(bytes, keyAt, keyLength, keyString);
      else e.key = keyString ?? asciiString(bytes, keyAt, keyLength);
      e.generation = v.getUint32(p, true);
      e.admitted = admitted;
      e.rejected = rejected;
      e.isNew = flags === 1;
      e.grantEpoch = grantEpoch;
      e.grantVersion = v.getUint32(p + 29, true);
      e.allowance = allowance;
      e.admittedSinceLast = admittedSinceLast;
      e.ageMs = ageMs;
      n++;
    }
  }
  return n;
}
