/**
 * The byte-keyed key index: against a Map, over random adds and removes (growth, probe runs and
 * backward-shift deletion), found by a key's string and by its UTF-8 bytes alike; hash
 * collisions are told apart by the key itself.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  hashBytes,
  type IndexedKey,
  KeyIndex,
  keyHash,
} from "../../../src/aggregator/key-index.js";

const utf8 = new TextEncoder();

function indexed(key: string): IndexedKey {
  return { key, keyHash: keyHash(key) };
}

/** Finds `key` in `ix` by its bytes, placed at an offset inside a larger buffer. */
function findByBytes(ix: KeyIndex<IndexedKey>, key: string): IndexedKey | undefined {
  const k = utf8.encode(key);
  const frame = new Uint8Array(k.length + 7);
  frame.set(k, 3);
  return ix.findBytes(frame, 3, k.length, hashBytes(frame, 3, k.length));
}

test("key index - a key's hash is the hash of its UTF-8 bytes", () => {
  for (const key of ["k", "user:1", "é", "ключ", "😀x", "a\u0080b"]) {
    const b = utf8.encode(key);
    assert.equal(keyHash(key), hashBytes(b, 0, b.length), key);
  }
});

test("key index - holds what a Map holds through random adds and removes", () => {
  const keyArb = fc.oneof(
    fc.integer({ min: 0, max: 300 }).map((i) => `user:${i}`),
    fc.constantFrom("é", "ключ", "😀", "Ã©", "k"),
  );
  const op = fc.tuple(fc.boolean(), keyArb);
  fc.assert(
    fc.property(fc.array(op, { maxLength: 600 }), (ops) => {
      const ix = new KeyIndex<IndexedKey>();
      const model = new Map<string, IndexedKey>();
      for (const [add, key] of ops) {
        const held = model.get(key);
        if (add && held === undefined) {
          const k = indexed(key);
          model.set(key, k);
          ix.add(k);
        } else if (!add && held !== undefined) {
          model.delete(key);
          ix.remove(held);
        }
      }
      assert.equal(ix.size, model.size);
      for (const [, key] of ops) {
        assert.equal(ix.find(key), model.get(key), key);
        assert.equal(findByBytes(ix, key), model.get(key), key);
      }
    }),
    { numRuns: 60 },
  );
});

test("key index - keys with the same hash are told apart, and removing one keeps the others", () => {
  const ix = new KeyIndex<IndexedKey>();
  const same = ["a", "b", "c", "d", "e"].map((key) => ({ key, keyHash: 5 }));
  for (const k of same) ix.add(k);
  const find = (key: string) => ix.findBytes(utf8.encode(key), 0, key.length, 5);
  for (const k of same) assert.equal(find(k.key), k);
  ix.remove(same[1]!);
  ix.remove(same[3]!);
  assert.equal(find("b"), undefined);
  assert.equal(find("d"), undefined);
  for (const k of [same[0]!, same[2]!, same[4]!]) assert.equal(find(k.key), k);
  assert.equal(ix.size, 3);
});

test("key index - a non-ASCII key does not match the Latin-1 reading of its bytes", () => {
  const ix = new KeyIndex<IndexedKey>();
  const latin = indexed("Ã©"); // U+00C3 U+00A9: the char codes of é's UTF-8 bytes
  ix.add(latin);
  const b = utf8.encode("é");
  assert.equal(ix.findBytes(b, 0, b.length, latin.keyHash), undefined);
  assert.equal(findByBytes(ix, "Ã©"), latin);
});
