import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { crc32 } from "../../../src/protocol/crc32.js";
import { decode } from "../../../src/protocol/decode.js";
import { DECODE_FAILURES } from "../../../src/protocol/decode-result.js";
import { encode } from "../../../src/protocol/encode.js";
import { FORMAT_VERSION } from "../../../src/protocol/limits.js";
import type { Message, RuleGroup } from "../../../src/protocol/messages.js";
import { createSigner, createVerifier, generateKeyPair } from "../../../src/protocol/signing.js";

const RUNS = 200;
const utf8 = new TextEncoder();

/** `fc.record` builds null-prototype objects; decode builds plain ones. */
function rec<T extends Record<string, unknown>>(shape: { [K in keyof T]: fc.Arbitrary<T[K]> }) {
  return fc.record(shape).map((o) => ({ ...o }) as T);
}

const id = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
const u32 = fc.oneof(
  fc.constantFrom(0, 1, 0xffff_ffff),
  fc.tuple(fc.nat(0xffff), fc.nat(0xffff)).map(([hi, lo]) => hi * 65536 + lo),
);
const count = fc.oneof(
  fc.constantFrom(0, 1, Number.MAX_VALUE, Number.MIN_VALUE),
  fc.nat(1_000_000),
  fc.double({ min: 0, max: Number.MAX_VALUE, noNaN: true }),
);
const wallMs = fc.oneof(fc.constant(0), fc.double({ min: 0, max: 4e12, noNaN: true }));
const text = (maxBytes: number) =>
  fc
    .oneof(
      fc.string({ minLength: 1, maxLength: 40 }),
      fc.string({ unit: "binary", minLength: 1, maxLength: 20 }),
    )
    .filter((s) => utf8.encode(s).length <= maxBytes);
const key = text(1024);
const owner = fc.double({ min: Number.MIN_VALUE, max: 1e15, noNaN: true });
const rule = text(64);
function groups<E>(entry: fc.Arbitrary<E>): fc.Arbitrary<RuleGroup<E>[]> {
  return fc.array(rec({ rule, entries: fc.array(entry, { maxLength: 12 }) }), {
    maxLength: 4,
  });
}

const message: fc.Arbitrary<Message> = fc.oneof(
  rec({
    type: fc.constant("decision-batch" as const),
    nodeId: id,
    nodeEpoch: wallMs,
    seq: u32,
    sentAtWallMs: wallMs,
    ownerEpoch: wallMs,
    groups: groups(
      rec({
        key,
        generation: u32,
        admitted: count,
        rejected: count,
        isNew: fc.boolean(),
        grantEpoch: wallMs,
        grantVersion: u32,
        allowance: count,
        admittedSinceLast: count,
        ageMs: count,
      }),
    ),
  }),
  rec({
    type: fc.constant("rate-update" as const),
    aggregatorId: id,
    aggregatorEpoch: wallMs,
    seq: u32,
    targetNodeId: id,
    targetNodeEpoch: wallMs,
    sentAtWallMs: wallMs,
    owners: fc.array(rec({ partition: fc.nat(0xffff), epoch: owner }), { maxLength: 6 }),
    groups: groups(
      rec({
        key,
        generation: u32,
        version: u32,
        allowance: count,
        rampFrom: count,
        rampMs: count,
        retryAfterMs: count,
      }),
    ),
  }),
  rec({
    type: fc.constant("heartbeat" as const),
    nodeId: id,
    nodeEpoch: wallMs,
    seq: u32,
    sentAtWallMs: wallMs,
    role: fc.constantFrom(1 as const, 2 as const, 3 as const),
  }),
  rec({
    type: fc.constant("rule-defaults" as const),
    aggregatorId: id,
    aggregatorEpoch: wallMs,
    seq: u32,
    sentAtWallMs: wallMs,
    liveNodes: fc.nat(0xffff),
    partitions: fc.constant(256),
    owners: fc.array(rec({ partition: fc.nat(255), epoch: owner }), { maxLength: 6 }),
    rules: fc.array(rec({ rule, defaultShare: count }), { maxLength: 8 }),
  }),
  fc
    .tuple(
      rec({ nodeId: id, nodeEpoch: wallMs, seq: u32, sentAtWallMs: wallMs, rule, key }),
      fc.constantFrom("reset" as const, "penalty" as const, "reward" as const, "block" as const),
      fc.double({ min: 1e-6, max: 1e12, noNaN: true }),
    )
    .map(([base, op, amount]) => ({
      ...base,
      type: "key-command" as const,
      op,
      cost: op === "penalty" || op === "reward" ? amount : 0,
      durationMs: op === "block" ? amount : 0,
    })),
);

/** The failure `decode` must report for bytes whose CRC does not match, by the check order. */
function expectedFrameFailure(b: Uint8Array): string {
  if (b.length < 9) return "too-short";
  if (b[0] !== 0x53 || b[1] !== 0x4c) return "bad-magic";
  if (b[2] !== FORMAT_VERSION) return "unknown-version";
  if (b[3]! < 1 || b[3]! > 5) return "unknown-type";
  return "bad-crc";
}

/** Rewrites the trailing CRC so the frame passes the CRC check and reaches the body parser. */
function withCrc(bodyAndHeader: Uint8Array): Uint8Array {
  const out = new Uint8Array(bodyAndHeader.length + 4);
  out.set(bodyAndHeader);
  new DataView(out.buffer).setUint32(
    bodyAndHeader.length,
    crc32(out, 0, bodyAndHeader.length),
    true,
  );
  return out;
}

test("protocol - decode(encode(m)) equals m for every message type", () => {
  fc.assert(
    fc.property(message, (m) => {
      const frames = encode(m);
      assert.equal(frames.length, 1);
      const r = decode(frames[0]!);
      assert.ok(r.ok);
      assert.deepStrictEqual(r.message, m);
    }),
    { numRuns: RUNS * 2 },
  );
});

const signer = createSigner(generateKeyPair().seed);
const verify = createVerifier([signer.publicKey]);

test("protocol - signed, decode(encode(m), verify) equals m and is verified, for every type", () => {
  fc.assert(
    fc.property(message, (m) => {
      const frames = encode(m, { signer });
      assert.equal(frames.length, 1);
      const r = decode(frames[0]!, { verify });
      assert.ok(r.ok, r.ok ? "" : r.reason);
      assert.equal(r.signature, "verified");
      assert.deepStrictEqual(r.message, m);
    }),
    { numRuns: RUNS },
  );
});

test("protocol - random bytes never throw and fail with the reason of the first failed check", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 64 }),
        fc.uint8Array({ minLength: 4, maxLength: 300 }).map((b) => {
          b.set([0x53, 0x4c, FORMAT_VERSION], 0); // valid magic and version: reaches the type and CRC checks
          return b;
        }),
      ),
      (bytes) => {
        const r = decode(bytes);
        assert.equal(r.ok, false);
        if (!r.ok) assert.equal(r.reason, expectedFrameFailure(bytes));
      },
    ),
    { numRuns: RUNS * 5 },
  );
});

test("protocol - random bodies with a valid frame never throw and fail only as truncated or bad-field", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 4 }),
      fc.uint8Array({ minLength: 1, maxLength: 400 }),
      (type, body) => {
        const frame = new Uint8Array(4 + body.length);
        frame.set([0x53, 0x4c, FORMAT_VERSION, type]);
        frame.set(body, 4);
        const r = decode(withCrc(frame));
        if (!r.ok) assert.ok(r.reason === "truncated" || r.reason === "bad-field", r.reason);
      },
    ),
    { numRuns: RUNS * 10 },
  );
});

test("protocol - corrupted bodies with a redone CRC never throw; a kept message is well-formed", () => {
  fc.assert(
    fc.property(
      message,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), {
        minLength: 1,
        maxLength: 4,
      }),
      (m, flips) => {
        const frame = encode(m)[0]!;
        const body = frame.slice(0, frame.length - 4);
        for (const [at, mask] of flips) {
          if (body.length > 4) body[4 + (at % (body.length - 4))]! ^= mask;
        }
        const r = decode(withCrc(body));
        if (!r.ok) {
          assert.ok(r.reason === "truncated" || r.reason === "bad-field", r.reason);
          return;
        }
        // Whatever survived re-encodes and decodes to itself.
        const again = encode(r.message);
        assert.deepStrictEqual(decode(again[0]!), {
          ok: true,
          message: r.message,
          droppedEntries: { "bad-key": 0, "bad-rule": 0, "bad-number": 0 },
          signature: "none",
        });
      },
    ),
    { numRuns: RUNS * 5 },
  );
});

test("protocol - every truncation fails: too-short, bad-crc, or truncated once the CRC is redone", () => {
  fc.assert(
    fc.property(message, (m) => {
      const full = encode(m)[0]!;
      for (let cut = 0; cut < full.length; cut++) {
        const prefix = full.subarray(0, cut);
        const r = decode(prefix);
        assert.deepEqual(r, { ok: false, reason: cut < 9 ? "too-short" : "bad-crc" });
        if (cut > 4 && cut < full.length - 4) {
          // The body cut short, with a CRC that matches what is left.
          assert.deepEqual(decode(withCrc(full.subarray(0, cut))), {
            ok: false,
            reason: "truncated",
          });
        }
      }
    }),
    { numRuns: RUNS / 2 },
  );
});

test("protocol - any flipped byte is caught, with the reason of its position", () => {
  fc.assert(
    fc.property(message, fc.nat(), fc.integer({ min: 1, max: 255 }), (m, at, mask) => {
      const frame = encode(m)[0]!.slice();
      const i = at % frame.length;
      frame[i]! ^= mask;
      const r = decode(frame);
      assert.equal(r.ok, false);
      if (!r.ok) {
        assert.equal(r.reason, expectedFrameFailure(frame));
        assert.ok(DECODE_FAILURES.includes(r.reason));
      }
    }),
    { numRuns: RUNS * 5 },
  );
});

test("protocol - split frames each fit and carry every entry once, in order", () => {
  fc.assert(
    fc.property(
      message.filter((m) => m.type !== "heartbeat"),
      fc.integer({ min: 4096, max: 8192 }),
      fc.integer({ min: 0, max: 300 }),
      (m, maxMessageBytes, extra) => {
        // Grow the message so it needs several frames.
        const big =
          m.type === "rule-defaults"
            ? {
                ...m,
                rules: [
                  ...m.rules,
                  ...Array.from({ length: extra }, (_, i) => ({ rule: `r${i}`, defaultShare: i })),
                ],
              }
            : m.type === "decision-batch"
              ? {
                  ...m,
                  groups: [
                    ...m.groups,
                    {
                      rule: "x",
                      entries: Array.from({ length: extra }, (_, i) => ({
                        key: `k${i}`,
                        generation: i,
                        admitted: i,
                        rejected: 0,
                        isNew: false,
                        grantEpoch: 0,
                        grantVersion: 0,
                        allowance: 0,
                        admittedSinceLast: 0,
                        ageMs: 0,
                      })),
                    },
                  ],
                }
              : m;
        const frames = encode(big as Message, { maxMessageBytes });
        const flat = (x: Message): unknown[] =>
          x.type === "rule-defaults"
            ? [...x.rules]
            : x.type === "heartbeat" || x.type === "key-command"
              ? []
              : x.groups.flatMap((g) => (g.entries as unknown[]).map((e) => [g.rule, e]));
        const got: unknown[] = [];
        for (const f of frames) {
          assert.ok(f.length <= maxMessageBytes);
          const r = decode(f);
          assert.ok(r.ok);
          assert.equal(r.message.type, big.type);
          assert.equal(r.message.seq, big.seq);
          got.push(...flat(r.message));
        }
        assert.deepStrictEqual(got, flat(big as Message));
      },
    ),
    { numRuns: RUNS / 2 },
  );
});
