import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { InvalidArgumentError } from "../../../src/errors.js";
import { crc32 } from "../../../src/protocol/crc32.js";
import { encodeDecisionBatch } from "../../../src/protocol/decision-batch.js";
import { decode } from "../../../src/protocol/decode.js";
import { encode } from "../../../src/protocol/encode.js";
import { encodeHeartbeat } from "../../../src/protocol/heartbeat.js";
import type { Heartbeat, RateUpdate, RuleDefaults } from "../../../src/protocol/messages.js";
import { encodePublicKey, encodeSeed } from "../../../src/protocol/nkeys.js";
import { encodeRateUpdate } from "../../../src/protocol/rate-update.js";
import { encodeRuleDefaults } from "../../../src/protocol/rule-defaults.js";
import {
  createSigner,
  createVerifier,
  generateKeyPair,
  SIGNATURE_BYTES,
} from "../../../src/protocol/signing.js";

const keys = generateKeyPair();
const signer = createSigner(keys.seed);
const verify = createVerifier([keys.publicKey]);
const other = generateKeyPair();

function update(entries: number): RateUpdate {
  return {
    type: "rate-update",
    aggregatorId: "agg-1",
    aggregatorEpoch: 1_764_000_000_000.5,
    seq: 42,
    targetNodeId: "node-7",
    targetNodeEpoch: 1_764_000_000_001.25,
    sentAtWallMs: 1_764_000_000_100,
    owners: [{ partition: 3, epoch: 11 }],
    groups: [
      {
        rule: "api",
        entries: Array.from({ length: entries }, (_, i) => ({
          key: `user:${10_000 + i}`,
          generation: i,
          version: i + 1,
          allowance: i * 2.5,
          rampFrom: i * 2.5,
          rampMs: 0,
          retryAfterMs: 0,
        })),
      },
    ],
  };
}

const defaults: RuleDefaults = {
  type: "rule-defaults",
  aggregatorId: "agg-1",
  aggregatorEpoch: 5,
  seq: 9,
  sentAtWallMs: 6,
  liveNodes: 3,
  partitions: 16,
  owners: [{ partition: 15, epoch: 2 }],
  rules: Array.from({ length: 600 }, (_, i) => ({ rule: `rule-${i}`, defaultShare: i / 3 })),
};

const heartbeat: Heartbeat = {
  type: "heartbeat",
  nodeId: "node-7",
  nodeEpoch: 1,
  seq: 2,
  sentAtWallMs: 3,
  role: 1,
};

/** A copy with the CRC rewritten over everything before it, so the CRC check passes. */
function fixCrc(frame: Uint8Array): Uint8Array {
  const out = frame.slice();
  new DataView(out.buffer).setUint32(out.length - 4, crc32(out, 0, out.length - 4), true);
  return out;
}

/** The frame with its signature trailer replaced by an unsigned one (sigLen 0). */
function stripSignature(frame: Uint8Array): Uint8Array {
  const sigLenAt = frame.length - 4 - SIGNATURE_BYTES - 1;
  assert.equal(frame[sigLenAt], SIGNATURE_BYTES);
  const out = new Uint8Array(sigLenAt + 1 + 4);
  out.set(frame.subarray(0, sigLenAt));
  out[sigLenAt] = 0;
  return fixCrc(out);
}

test("signing - a signed RateUpdate split into frames: each frame signed, each verifies, entries all there", () => {
  const m = update(300);
  const frames = encodeRateUpdate(m, { signer, maxMessageBytes: 4096 });
  assert.ok(frames.length > 1, `${frames.length} frames`);
  const keys: string[] = [];
  for (const f of frames) {
    assert.ok(f.length <= 4096);
    assert.equal(f[f.length - 4 - SIGNATURE_BYTES - 1], SIGNATURE_BYTES, "sigLen 64");
    const r = decode(f, { verify });
    assert.ok(r.ok, r.ok ? "" : r.reason);
    assert.equal(r.signature, "verified");
    assert.equal(r.message.type, "rate-update");
    if (r.message.type !== "rate-update") return;
    assert.equal(r.message.seq, m.seq);
    assert.deepEqual(r.message.owners, m.owners);
    for (const g of r.message.groups) keys.push(...g.entries.map((e) => e.key));
  }
  assert.deepEqual(
    keys,
    m.groups[0]!.entries.map((e) => e.key),
  );
});

test("signing - signed RuleDefaults split into frames each verify and round-trip", () => {
  const frames = encodeRuleDefaults(defaults, { signer, maxMessageBytes: 4096 });
  assert.ok(frames.length > 1);
  const rules = [];
  for (const f of frames) {
    const r = decode(f, { verify });
    assert.ok(r.ok && r.signature === "verified");
    assert.equal(r.message.type, "rule-defaults");
    if (r.message.type === "rule-defaults") rules.push(...r.message.rules);
  }
  assert.deepEqual(rules, defaults.rules);
});

test("signing - one message changed after signing fails as bad-signature, wherever the change", () => {
  const frame = encode(update(40), { signer })[0]!;
  // A changed allowance (body), the target node (header), and a changed signature byte.
  for (const at of [frame.length - 4 - 65 - 20, 30, frame.length - 4 - 10]) {
    const bad = frame.slice();
    bad[at]! ^= 0x01;
    assert.deepEqual(decode(fixCrc(bad), { verify }), { ok: false, reason: "bad-signature" });
  }
  // Not fixing the CRC: it is caught as corruption first.
  const bad = frame.slice();
  bad[40]! ^= 0x01;
  assert.deepEqual(decode(bad, { verify }), { ok: false, reason: "bad-crc" });
});

test("signing - a stripped signature is unsigned; another group's key is bad-signature", () => {
  const frame = encode(update(5), { signer })[0]!;
  const stripped = stripSignature(frame);
  assert.deepEqual(decode(stripped, { verify }), { ok: false, reason: "unsigned" });
  // Without a verifier the stripped frame is an ordinary unsigned one.
  const r = decode(stripped);
  assert.ok(r.ok && r.signature === "none");
  assert.deepEqual(r.message, update(5));

  const forged = encode(update(5), { signer: createSigner(other.seed) })[0]!;
  assert.deepEqual(decode(forged, { verify }), { ok: false, reason: "bad-signature" });
  // Unsigned frames from an encoder without a signer.
  for (const f of [...encode(update(5)), ...encode(defaults)]) {
    assert.deepEqual(decode(f, { verify }), { ok: false, reason: "unsigned" });
  }
});

test("signing - a verifier of two keys (rotation) accepts frames signed by either, not a third", () => {
  const both = createVerifier([keys.publicKey, other.publicKey]);
  assert.deepEqual(both.publicKeys, [keys.publicKey, other.publicKey]);
  for (const seed of [keys.seed, other.seed]) {
    const r = decode(encode(defaults, { signer: createSigner(seed) })[0]!, { verify: both });
    assert.ok(r.ok && r.signature === "verified");
  }
  const third = createSigner(generateKeyPair().seed);
  assert.deepEqual(decode(encode(defaults, { signer: third })[0]!, { verify: both }), {
    ok: false,
    reason: "bad-signature",
  });
});

test("signing - without a verifier: unsigned frames decode as 'none', signed ones as 'unchecked'", () => {
  const plain = decode(encode(update(3))[0]!);
  assert.ok(plain.ok);
  assert.equal(plain.signature, "none");
  assert.deepEqual(plain.message, update(3));
  const signed = decode(encode(update(3), { signer })[0]!);
  assert.ok(signed.ok);
  assert.equal(signed.signature, "unchecked");
  assert.deepEqual(signed.message, update(3));
});

test("signing - heartbeats and decision batches may be signed too; unsigned they carry sigLen 0", () => {
  const hb = encodeHeartbeat(heartbeat);
  assert.equal(hb[hb.length - 5], 0);
  const signedHb = encodeHeartbeat(heartbeat, { signer });
  assert.equal(signedHb.length, hb.length + SIGNATURE_BYTES);
  const r = decode(signedHb, { verify });
  assert.ok(r.ok && r.signature === "verified");
  assert.deepEqual(r.message, heartbeat);
  const batch = {
    nodeId: "n",
    nodeEpoch: 1,
    seq: 1,
    sentAtWallMs: 1,
    groups: [{ rule: "r", entries: [] }],
  };
  const b = decode(encodeDecisionBatch(batch, { signer })[0]!, { verify });
  assert.ok(b.ok && b.signature === "verified");
});

test("signing - any byte of a signed frame changed, CRC redone, never decodes under the verifier", () => {
  const frame = encode(update(8), { signer })[0]!;
  fc.assert(
    fc.property(fc.nat(frame.length - 5), fc.integer({ min: 1, max: 255 }), (at, mask) => {
      const bad = frame.slice();
      bad[at]! ^= mask;
      const r = decode(fixCrc(bad), { verify });
      assert.equal(r.ok, false);
    }),
    { numRuns: 300 },
  );
});

test("signing - a signer's signature is deterministic and its public key matches generateKeyPair", () => {
  assert.equal(signer.publicKey, keys.publicKey);
  assert.match(keys.publicKey, /^A[A-Z2-7]{55}$/);
  assert.match(keys.seed, /^SA[A-Z2-7]{56}$/);
  assert.notEqual(generateKeyPair().seed, keys.seed);
  const bytes = new TextEncoder().encode("sluice");
  assert.deepEqual(signer.sign(bytes), createSigner(`  ${keys.seed}\n`).sign(bytes));
  assert.equal(signer.sign(bytes).length, SIGNATURE_BYTES);
  assert.ok(verify.verify(bytes, signer.sign(bytes)));
  assert.ok(!verify.verify(bytes, new Uint8Array(63)));
  assert.ok(!("seed" in signer));
});

test("signing - malformed keys throw InvalidArgumentError, and the error never shows the seed", () => {
  const raw = new Uint8Array(32).fill(5);
  const userSeed = encodeSeed("user", raw);
  const changed = `${keys.seed.slice(0, 10)}${keys.seed[10] === "B" ? "C" : "B"}${keys.seed.slice(11)}`;
  for (const bad of [changed, userSeed, keys.publicKey, "", "not a seed"]) {
    assert.throws(
      () => createSigner(bad),
      (e: unknown) =>
        e instanceof InvalidArgumentError &&
        e.field === "seed" &&
        /sluice keygen/.test(e.message) &&
        !e.message.includes(changed) &&
        !e.message.includes(userSeed.slice(2, 20)),
      bad,
    );
  }
  assert.throws(() => createSigner(changed), /checksum/);
  assert.throws(() => createSigner(userSeed), /another kind/);

  assert.throws(() => createVerifier([]), InvalidArgumentError);
  for (const bad of [keys.seed, encodePublicKey("user", raw), `${keys.publicKey}A`]) {
    assert.throws(
      () => createVerifier([keys.publicKey, bad]),
      (e: unknown) => e instanceof InvalidArgumentError && e.field === "publicKeys[1]",
    );
  }
  // The same key twice counts once.
  assert.deepEqual(createVerifier([keys.publicKey, ` ${keys.publicKey} `]).publicKeys, [
    keys.publicKey,
  ]);
  // A signer whose signature is not 64 bytes is a bug, not a frame.
  assert.throws(
    () => encode(update(1), { signer: { sign: () => new Uint8Array(10) } }),
    InvalidArgumentError,
  );
});
