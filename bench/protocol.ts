/**
 * Protocol throughput: encode and decode of one DecisionBatch of 1,000 entries (4 rules, keys
 * like `user:12345`), in entries per second, plus the CRC-32 alone in MB/s; then the cost of
 * signatures on a RateUpdate frame of about 3 KB: encode and decode with and without signing
 * and verifying, and Ed25519 sign and verify alone, per frame.
 * Run: `npm run build && node dist/bench/protocol.js`.
 */

import { wallClockMs } from "../src/clock/clock.js";
import { crc32 } from "../src/protocol/crc32.js";
import { encodeDecisionBatch } from "../src/protocol/decision-batch.js";
import { decode } from "../src/protocol/decode.js";
import type { DecisionEntry, GrantEntry, RateUpdateFields } from "../src/protocol/messages.js";
import { encodeRateUpdate } from "../src/protocol/rate-update.js";
import { createSigner, createVerifier, generateKeyPair } from "../src/protocol/signing.js";
import { fmtRate, runInterleaved, table } from "./harness.js";

const ENTRIES = 1000;
const RULES = 4;
const groups = Array.from({ length: RULES }, (_, r) => ({
  rule: `rule-${r}`,
  entries: Array.from(
    { length: ENTRIES / RULES },
    (_, i): DecisionEntry => ({
      key: `user:${10_000 + r * 1000 + i}`,
      generation: i,
      admitted: i * 3.5,
      rejected: i % 7,
      isNew: i % 10 === 0,
      grantEpoch: 1_764_000_000_000,
      grantVersion: i,
      allowance: i * 4,
      admittedSinceLast: i % 5,
      ageMs: i % 50,
    }),
  ),
}));
const batch = {
  nodeId: "node-1",
  nodeEpoch: wallClockMs(),
  seq: 1,
  sentAtWallMs: wallClockMs(),
  groups,
};
const frame = encodeDecisionBatch(batch)[0]!;

const results = await runInterleaved(
  [
    {
      name: "encode (entries)",
      opsPerRound: ENTRIES * 200,
      run: (n) => {
        let bytes = 0;
        for (let i = 0; i < n / ENTRIES; i++) bytes += encodeDecisionBatch(batch)[0]!.length;
        return bytes;
      },
    },
    {
      name: "decode (entries)",
      opsPerRound: ENTRIES * 200,
      run: (n) => {
        let kept = 0;
        for (let i = 0; i < n / ENTRIES; i++) {
          const r = decode(frame);
          if (r.ok && r.message.type === "decision-batch") kept += r.message.groups.length;
        }
        return kept;
      },
    },
    {
      name: "crc32 (bytes)",
      opsPerRound: frame.length * 500,
      run: (n) => {
        let x = 0;
        for (let i = 0; i < n / frame.length; i++) x ^= crc32(frame);
        return x;
      },
    },
  ],
  7,
);

console.log(
  `DecisionBatch of ${ENTRIES} entries = ${frame.length} bytes (${(frame.length / ENTRIES).toFixed(1)} B/entry)\n`,
);
console.log(
  table(
    ["case", "rate", "per batch"],
    results.map((r) => [
      r.name,
      fmtRate(r.opsPerSec),
      r.name.startsWith("crc")
        ? `${((frame.length / r.opsPerSec) * 1e6).toFixed(1)} µs`
        : `${((ENTRIES / r.opsPerSec) * 1e6).toFixed(1)} µs`,
    ]),
  ),
);
console.log(
  JSON.stringify({
    bench: "protocol",
    entries: ENTRIES,
    frameBytes: frame.length,
    encodeEntriesPerSec: Math.round(results[0]!.opsPerSec),
    decodeEntriesPerSec: Math.round(results[1]!.opsPerSec),
    crcBytesPerSec: Math.round(results[2]!.opsPerSec),
  }),
);

// Signatures: one RateUpdate frame of about 3 KB (56 grants with keys like `user:12345`).
const GRANTS = 56;
const update: RateUpdateFields = {
  aggregatorId: "agg-1",
  aggregatorEpoch: wallClockMs(),
  seq: 1,
  targetNodeId: "node-1",
  targetNodeEpoch: wallClockMs(),
  sentAtWallMs: wallClockMs(),
  owners: [],
  groups: [
    {
      rule: "api",
      entries: Array.from(
        { length: GRANTS },
        (_, i): GrantEntry => ({
          key: `user:${10_000 + i}`,
          generation: i,
          version: i + 1,
          allowance: i * 4,
          rampFrom: i * 4,
          rampMs: 0,
          retryAfterMs: 0,
        }),
      ),
    },
  ],
};
const signer = createSigner(generateKeyPair().seed);
const verify = createVerifier([signer.publicKey]);
const plainFrame = encodeRateUpdate(update)[0]!;
const signedFrame = encodeRateUpdate(update, { signer })[0]!;
const signedPart = signedFrame.subarray(0, signedFrame.length - 4 - 65);
const signature = signedFrame.subarray(signedFrame.length - 4 - 64, signedFrame.length - 4);
const FRAMES = 2000;
const sig = await runInterleaved(
  [
    { name: "encode", opsPerRound: FRAMES * 10, run: (n) => encodeN(n, false) },
    { name: "encode + sign", opsPerRound: FRAMES, run: (n) => encodeN(n, true) },
    { name: "decode", opsPerRound: FRAMES * 10, run: (n) => decodeN(n, false) },
    { name: "decode + verify", opsPerRound: FRAMES, run: (n) => decodeN(n, true) },
    {
      name: "sign alone",
      opsPerRound: FRAMES,
      run: (n) => {
        let x = 0;
        for (let i = 0; i < n; i++) x ^= signer.sign(signedPart)[0]!;
        return x;
      },
    },
    {
      name: "verify alone",
      opsPerRound: FRAMES,
      run: (n) => {
        let ok = 0;
        for (let i = 0; i < n; i++) if (verify.verify(signedPart, signature)) ok++;
        return ok;
      },
    },
  ],
  7,
);

function encodeN(n: number, signed: boolean): number {
  let bytes = 0;
  const options = signed ? { signer } : undefined;
  for (let i = 0; i < n; i++) bytes += encodeRateUpdate(update, options)[0]!.length;
  return bytes;
}

function decodeN(n: number, verified: boolean): number {
  let kept = 0;
  const frame = verified ? signedFrame : plainFrame;
  const options = verified ? { verify } : undefined;
  for (let i = 0; i < n; i++) if (decode(frame, options).ok) kept++;
  return kept;
}

const us = (name: string) => 1e6 / sig.find((r) => r.name === name)!.opsPerSec;
console.log(
  `\nRateUpdate of ${GRANTS} grants = ${plainFrame.length} bytes unsigned, ${signedFrame.length} signed\n`,
);
console.log(
  table(
    ["case", "frames/s", "per frame"],
    sig.map((r) => [r.name, fmtRate(r.opsPerSec), `${us(r.name).toFixed(1)} µs`]),
  ),
);
console.log(
  JSON.stringify({
    bench: "protocol-signatures",
    frameBytes: plainFrame.length,
    signedFrameBytes: signedFrame.length,
    encodeUs: round1(us("encode")),
    encodeSignUs: round1(us("encode + sign")),
    decodeUs: round1(us("decode")),
    decodeVerifyUs: round1(us("decode + verify")),
    signUs: round1(us("sign alone")),
    verifyUs: round1(us("verify alone")),
  }),
);

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
