/**
 * Protocol throughput: encode and decode of one DecisionBatch of 1,000 entries (4 rules, keys
 * like `user:12345`), in entries per second, plus the CRC-32 alone in MB/s.
 * Run: `npm run build && node dist/bench/protocol.js`.
 */

import { wallClockMs } from "../src/clock/clock.js";
import { crc32 } from "../src/protocol/crc32.js";
import { encodeDecisionBatch } from "../src/protocol/decision-batch.js";
import { decode } from "../src/protocol/decode.js";
import type { DecisionEntry } from "../src/protocol/messages.js";
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
