import assert from "node:assert/strict";
import { test } from "node:test";
import * as zlib from "node:zlib";
import fc from "fast-check";
import { InvalidArgumentError } from "../../../src/errors.js";
import { crc32 } from "../../../src/protocol/crc32.js";
import { fnv1a64 } from "../../../src/protocol/fnv1a-64.js";
import { jumpConsistentHash } from "../../../src/protocol/jump-hash.js";
import { decisionPartition } from "../../../src/protocol/partition.js";
import { createSubjects, isValidNodeId, senderOf } from "../../../src/protocol/subjects.js";

const utf8 = new TextEncoder();
const M64 = (1n << 64n) - 1n;

/** FNV-1a 64 straight from the definition, in BigInt. */
function fnvReference(bytes: Uint8Array): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = ((h ^ BigInt(b)) * 0x100000001b3n) & M64;
  return h;
}

/** Jump consistent hash as printed in Lamping and Veach (2014), in BigInt. */
function jumpReference(key: bigint, buckets: number): number {
  let b = -1n;
  let j = 0n;
  let k = key;
  while (j < BigInt(buckets)) {
    b = j;
    k = (k * 2862933555777941757n + 1n) & M64;
    j = BigInt(Math.floor(Number(b + 1n) * (Number(1n << 31n) / Number((k >> 33n) + 1n))));
  }
  return Number(b);
}

const toBig = (h: { hi: number; lo: number }) => (BigInt(h.hi) << 32n) | BigInt(h.lo);

test("crc32 - matches the IEEE check value and zlib on random input", () => {
  assert.equal(crc32(utf8.encode("123456789")), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(7), (bytes, skip) => {
      const start = Math.min(skip, bytes.length);
      assert.equal(crc32(bytes, start), zlib.crc32(bytes.subarray(start)));
    }),
    { numRuns: 500 },
  );
});

test("fnv1a64 - matches the published vectors and a BigInt reference over UTF-8", () => {
  assert.equal(toBig(fnv1a64("")), 0xcbf29ce484222325n);
  assert.equal(toBig(fnv1a64("a")), 0xaf63dc4c8601ec8cn);
  assert.equal(toBig(fnv1a64("foobar")), 0x85944171f73967e8n);
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 30 }), (s) => {
      assert.equal(toBig(fnv1a64(s)), fnvReference(utf8.encode(s)));
    }),
    { numRuns: 500 },
  );
  assert.equal(
    toBig(fnv1a64("a\ud800b")),
    fnvReference(utf8.encode("a\ud800b")),
    "lone surrogate as U+FFFD",
  );
});

test("jump hash - agrees with the BigInt reference", () => {
  fc.assert(
    fc.property(
      fc.bigInt({ min: 0n, max: M64 }),
      fc.integer({ min: 1, max: 100_000 }),
      (key, n) => {
        const hi = Number(key >> 32n);
        const lo = Number(key & 0xffff_ffffn);
        assert.equal(jumpConsistentHash({ hi, lo }, n), jumpReference(key, n));
      },
    ),
    { numRuns: 500 },
  );
});

test("jump hash - growing n to n + 1 moves about 1/(n + 1) of keys, all to the new bucket", () => {
  const keys = Array.from({ length: 20_000 }, (_, i) => fnv1a64(`key-${i}`));
  for (const n of [1, 4, 9, 31]) {
    let moved = 0;
    for (const k of keys) {
      const before = jumpConsistentHash(k, n);
      const after = jumpConsistentHash(k, n + 1);
      if (before !== after) {
        moved++;
        assert.equal(after, n, "a moved key lands in the new bucket");
      }
    }
    const expected = keys.length / (n + 1);
    assert.ok(
      Math.abs(moved - expected) < expected * 0.1,
      `n=${n}: moved ${moved}, expected ~${expected}`,
    );
  }
});

test("partition - in range, deterministic, balanced, and rule and key do not run together", () => {
  const counts = new Array<number>(8).fill(0);
  for (let i = 0; i < 16_000; i++) {
    const p = decisionPartition("api", `user:${i}`, 8);
    assert.equal(p, decisionPartition("api", `user:${i}`, 8));
    counts[p]!++;
  }
  for (const c of counts) assert.ok(c > 1600 && c < 2400, `partition sizes ${counts}`);
  let same = 0;
  for (let i = 0; i < 100; i++) {
    if (decisionPartition(`ab${i}`, "c", 1 << 16) === decisionPartition("a", `b${i}c`, 1 << 16))
      same++;
  }
  assert.ok(same < 3, `("ab", "c") and ("a", "bc") hash apart; ${same} of 100 collided`);
  assert.equal(decisionPartition("r", "k", 1), 0);
  assert.throws(() => decisionPartition("r", "k", 0), InvalidArgumentError);
  assert.throws(() => decisionPartition("r", "k", 1.5), InvalidArgumentError);
});

test("subjects - versioned, prefixed, and node ids must be subject tokens", () => {
  const s = createSubjects();
  assert.equal(s.decisions(3, "node-1"), "ratelimit.v1.decisions.3.node-1");
  assert.equal(s.partitionDecisions(3), "ratelimit.v1.decisions.3.*");
  assert.equal(s.allDecisions, "ratelimit.v1.decisions.*.*");
  assert.equal(s.updates("node-1_a"), "ratelimit.v1.updates.node-1_a");
  assert.equal(s.heartbeats, "ratelimit.v1.heartbeats.*");
  assert.equal(s.heartbeat("node-1"), "ratelimit.v1.heartbeats.node-1");
  assert.equal(senderOf(s.decisions(0, "n-7")), "n-7");
  assert.equal(s.defaults, "ratelimit.v1.defaults");
  assert.equal(createSubjects({ prefix: "t.x-1" }).defaults, "t.x-1.v1.defaults");
  for (const bad of ["a.b", "a*", ">", "", "x".repeat(65), "é"]) {
    assert.equal(isValidNodeId(bad), false);
    assert.throws(
      () => s.updates(bad),
      (e: unknown) => e instanceof InvalidArgumentError && e.field === "nodeId",
    );
  }
  for (const prefix of ["", "a..b", "a.*", "a b", ".a"]) {
    assert.throws(() => createSubjects({ prefix }), InvalidArgumentError);
  }
  assert.throws(() => s.decisions(-1, "n"), InvalidArgumentError);
  assert.throws(() => s.decisions(0, "a.b"), InvalidArgumentError);
  assert.throws(() => s.heartbeat("*"), InvalidArgumentError);
});
