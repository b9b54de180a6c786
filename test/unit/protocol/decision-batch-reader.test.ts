/**
 * DecisionBatchReader: what it reads equals what `decode` reads (keys ASCII or not, bad keys
 * dropped and counted alike), its batch is reused at the next read, and a copy is not.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { crc32 } from "../../../src/protocol/crc32.js";
import { copyDecisionBatch, FrameEntry } from "../../../src/protocol/decision-batch.js";
import { DecisionBatchReader, decode } from "../../../src/protocol/decode.js";
import { encode } from "../../../src/protocol/encode.js";
import type { DecisionBatch, DecisionEntry } from "../../../src/protocol/messages.js";

function entry(key: string, n: number): DecisionEntry {
  return {
    key,
    generation: n + 1,
    admitted: n,
    rejected: n / 2,
    isNew: n % 2 === 0,
    grantEpoch: 0,
    grantVersion: n,
    allowance: n * 3,
    admittedSinceLast: 1,
    ageMs: 2,
  };
}

function frame(keys: string[][]): Uint8Array {
  const frames = encode({
    type: "decision-batch",
    nodeId: "n1",
    nodeEpoch: 1,
    seq: 1,
    sentAtWallMs: 0,
    groups: keys.map((ks, g) => ({ rule: `r${g}`, entries: ks.map((k, i) => entry(k, i)) })),
  });
  assert.equal(frames.length, 1);
  return frames[0]!;
}

/** The batch as plain data (a reader's entries through `toJSON`). */
function plain(b: DecisionBatch): unknown {
  return JSON.parse(JSON.stringify(b));
}

test("decision batch reader - reads what decode reads", () => {
  const key = fc.oneof(
    fc.string({ minLength: 1, maxLength: 12 }),
    fc.constantFrom("é", "ключ", "😀"),
  );
  fc.assert(
    fc.property(fc.array(fc.array(key, { maxLength: 8 }), { maxLength: 3 }), (keys) => {
      const bytes = frame(keys);
      const a = decode(bytes);
      const b = new DecisionBatchReader().read(bytes);
      assert.ok(a.ok && b.ok);
      assert.deepEqual(plain(b.message as DecisionBatch), plain(a.message as DecisionBatch));
      assert.deepEqual(b.droppedEntries, a.droppedEntries);
      const m = b.message as DecisionBatch;
      for (const g of m.groups) for (const e of g.entries) assert.ok(e instanceof FrameEntry);
    }),
    { numRuns: 100 },
  );
});

test("decision batch reader - a key that is not valid UTF-8 is dropped as decode drops it", () => {
  const bytes = frame([["kX", "ok", "é"]]);
  const at = bytes.indexOf(0x58); // the X of "kX"
  bytes[at] = 0xff;
  const crcAt = bytes.length - 4;
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(crcAt, crc32(bytes, 0, crcAt), true);
  const a = decode(bytes);
  const b = new DecisionBatchReader().read(bytes);
  assert.ok(a.ok && b.ok);
  assert.equal(a.droppedEntries["bad-key"], 1);
  assert.deepEqual(b.droppedEntries, a.droppedEntries);
  const keys = (b.message as DecisionBatch).groups[0]!.entries.map((e) => e.key);
  assert.deepEqual(keys, ["ok", "é"]);
});

test("decision batch reader - the batch is reused at the next read; a copy stays", () => {
  const reader = new DecisionBatchReader();
  const first = reader.read(frame([["a", "b"]]));
  assert.ok(first.ok);
  const batch = first.message as DecisionBatch;
  const copy = copyDecisionBatch(batch);
  const second = reader.read(frame([["c"]]));
  assert.ok(second.ok);
  assert.equal(second.message, batch);
  assert.deepEqual(
    batch.groups[0]!.entries.map((e) => e.key),
    ["c"],
  );
  assert.deepEqual(
    copy.groups[0]!.entries.map((e) => e.key),
    ["a", "b"],
  );
  assert.ok(!(copy.groups[0]!.entries[0] instanceof FrameEntry));
});
