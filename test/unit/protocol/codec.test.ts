import assert from "node:assert/strict";
import { test } from "node:test";
import { InvalidArgumentError } from "../../../src/errors.js";
import { crc32 } from "../../../src/protocol/crc32.js";
import { encodeDecisionBatch } from "../../../src/protocol/decision-batch.js";
import { decode } from "../../../src/protocol/decode.js";
import { encode } from "../../../src/protocol/encode.js";
import { encodeHeartbeat } from "../../../src/protocol/heartbeat.js";
import { FORMAT_VERSION, MAX_MESSAGE_BYTES } from "../../../src/protocol/limits.js";
import type {
  DecisionBatch,
  Heartbeat,
  Message,
  RateUpdate,
  RuleDefaults,
} from "../../../src/protocol/messages.js";
import { encodeRateUpdate } from "../../../src/protocol/rate-update.js";
import { decisionEntry } from "../../support/decision-entry.js";

const batch: DecisionBatch = {
  type: "decision-batch",
  ownerEpoch: 0,
  nodeId: "node-1",
  nodeEpoch: 1_764_000_000_000.123,
  seq: 7,
  sentAtWallMs: 1_764_000_000_100,
  groups: [
    {
      rule: "api",
      entries: [
        {
          key: "user:1",
          generation: 1,
          admitted: 10,
          rejected: 0,
          isNew: true,
          grantEpoch: 0,
          grantVersion: 0,
          allowance: 0,
          admittedSinceLast: 0,
          ageMs: 0,
        },
        {
          key: "ключ 🔑",
          generation: 4_294_967_295,
          admitted: 2.5,
          rejected: 1e9,
          isNew: false,
          grantEpoch: 1_764_000_000_000.25,
          grantVersion: 4_294_967_295,
          allowance: 12.5,
          admittedSinceLast: 0,
          ageMs: 0,
        },
      ],
    },
    { rule: "login", entries: [] },
  ],
};
const update: RateUpdate = {
  type: "rate-update",
  aggregatorId: "agg_A",
  aggregatorEpoch: 5,
  seq: 4_294_967_295,
  targetNodeId: "node-1",
  targetNodeEpoch: 1_764_000_000_000.123,
  sentAtWallMs: 0,
  owners: [
    { partition: 0, epoch: 17 },
    { partition: 65535, epoch: 1_764_000_000_000.5 },
  ],
  groups: [
    {
      rule: "api",
      entries: [
        {
          key: "k",
          generation: 3,
          version: 9,
          allowance: 12.75,
          rampFrom: 10.5,
          rampMs: 50,
          retryAfterMs: 412.5,
        },
      ],
    },
  ],
};
const heartbeat: Heartbeat = {
  type: "heartbeat",
  nodeId: "n",
  nodeEpoch: 1,
  seq: 0,
  sentAtWallMs: 2,
  role: 2,
};
const defaults: RuleDefaults = {
  type: "rule-defaults",
  aggregatorId: "agg",
  aggregatorEpoch: 1,
  seq: 1,
  sentAtWallMs: 3,
  liveNodes: 4,
  partitions: 64,
  owners: [{ partition: 63, epoch: 2 }],
  rules: [
    { rule: "api", defaultShare: 25 },
    { rule: "login", defaultShare: 0.5 },
  ],
};

function only(message: Message): Message {
  const frames = encode(message);
  assert.equal(frames.length, 1);
  const r = decode(frames[0]!);
  assert.ok(r.ok, `decoded: ${r.ok ? "" : r.reason}`);
  assert.deepEqual(r.droppedEntries, { "bad-key": 0, "bad-rule": 0, "bad-number": 0 });
  return r.message;
}

test("protocol - every message type round-trips", () => {
  for (const m of [batch, update, heartbeat, defaults]) assert.deepEqual(only(m), m);
});

test("protocol - frame starts with SL, the format version, the type, and ends with its CRC-32 LE", () => {
  const bytes = encodeHeartbeat(heartbeat);
  assert.deepEqual([...bytes.subarray(0, 4)], [0x53, 0x4c, FORMAT_VERSION, 3]);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  assert.equal(view.getUint32(bytes.length - 4, true), crc32(bytes, 0, bytes.length - 4));
  // header 4 + id (2+1) + epoch 8 + seq 4 + sent 8 + role 1 + sigLen 1 + crc 4
  assert.equal(bytes[bytes.length - 5], 0, "unsigned: sigLen 0");
  assert.equal(bytes.length, 33);
});

/**
 * Builds a frame by hand, so tests can send what the encoders refuse to write. `trailer` is
 * written after the fields, before the CRC (by default an unsigned trailer: sigLen 0).
 */
type Field = ["u8" | "u16" | "u32" | "f64", number] | ["str", string] | ["raw", number[]];
function rawFrame(type: number, fields: Field[], trailer: number[] = [0]): Uint8Array {
  const parts: number[] = [0x53, 0x4c, FORMAT_VERSION, type];
  const scratch = new DataView(new ArrayBuffer(8));
  for (const [kind, v] of fields) {
    if (kind === "str") {
      const b = new TextEncoder().encode(v);
      parts.push(b.length & 0xff, b.length >> 8, ...b);
    } else if (kind === "raw") parts.push(...v);
    else if (kind === "u8") parts.push(v);
    else {
      const n = kind === "u16" ? 2 : kind === "u32" ? 4 : 8;
      if (kind === "u16") scratch.setUint16(0, v, true);
      else if (kind === "u32") scratch.setUint32(0, v, true);
      else scratch.setFloat64(0, v, true);
      for (let i = 0; i < n; i++) parts.push(scratch.getUint8(i));
    }
  }
  parts.push(...trailer);
  const out = new Uint8Array(parts.length + 4);
  out.set(parts);
  new DataView(out.buffer).setUint32(parts.length, crc32(out, 0, parts.length), true);
  return out;
}

const batchHeader: Field[] = [
  ["str", "node-1"],
  ["f64", 1],
  ["u32", 1],
  ["f64", 2],
  ["f64", 0],
];
function entry(key: string | number[], admitted: number, rejected = 0): Field[] {
  const k: Field = typeof key === "string" ? ["str", key] : ["raw", [key.length, 0, ...key]];
  return [
    k,
    ["u32", 1],
    ["f64", admitted],
    ["f64", rejected],
    ["u8", 0],
    ["f64", 0],
    ["u32", 0],
    ["f64", 0],
    ["f64", 0],
    ["f64", 0],
  ];
}

test("protocol - a batch with bad entries drops only those and counts them by reason", () => {
  const bytes = rawFrame(1, [
    ...batchHeader,
    ["u16", 2],
    ["str", "api"],
    ["u32", 7],
    ...entry("good-1", 1),
    ...entry("nan", Number.NaN),
    ...entry("neg", 1, -1),
    ...entry("", 1),
    ...entry("x".repeat(1025), 1),
    ...entry([0xff, 0xfe], 1),
    ...entry("good-2", Number.MAX_VALUE),
    ["str", ""],
    ["u32", 1],
    ...entry("in-bad-rule", 1),
  ]);
  const r = decode(bytes);
  assert.ok(r.ok);
  assert.deepEqual(r.droppedEntries, { "bad-key": 3, "bad-rule": 1, "bad-number": 2 });
  assert.equal(r.message.type, "decision-batch");
  if (r.message.type !== "decision-batch") return;
  assert.deepEqual(
    r.message.groups.map((g) => [g.rule, g.entries.map((e) => e.key)]),
    [["api", ["good-1", "good-2"]]],
  );
});

test("protocol - bad header fields drop the whole message as bad-field", () => {
  const cases: Field[][] = [
    [
      ["str", "bad id!"],
      ["f64", 1],
      ["u32", 1],
      ["f64", 2],
      ["f64", 0],
      ["u16", 0],
    ],
    [
      ["str", "x".repeat(65)],
      ["f64", 1],
      ["u32", 1],
      ["f64", 2],
      ["f64", 0],
      ["u16", 0],
    ],
    [
      ["str", "n"],
      ["f64", -1],
      ["u32", 1],
      ["f64", 2],
      ["f64", 0],
      ["u16", 0],
    ],
    [
      ["str", "n"],
      ["f64", 1],
      ["u32", 1],
      ["f64", 2],
      ["f64", -1],
      ["u16", 0],
    ],
    [
      ["str", "n"],
      ["f64", 1],
      ["u32", 1],
      ["f64", Number.POSITIVE_INFINITY],
      ["f64", 0],
      ["u16", 0],
    ],
    [...batchHeader, ["u16", 0], ["u8", 0]], // a byte after the trailer
  ];
  for (const fields of cases)
    assert.deepEqual(decode(rawFrame(1, fields)), { ok: false, reason: "bad-field" });
  const empty: Field[] = [...batchHeader, ["u16", 0]];
  for (const sigLen of [1, 32, 63]) {
    assert.deepEqual(
      decode(rawFrame(1, empty, [sigLen, ...new Array<number>(sigLen).fill(7)])),
      { ok: false, reason: "bad-field" },
      `sigLen ${sigLen}`,
    );
  }
  assert.deepEqual(decode(rawFrame(1, empty, [64, 1, 2])), { ok: false, reason: "truncated" });
  assert.deepEqual(decode(rawFrame(1, empty, [])), { ok: false, reason: "truncated" });
  const role9 = rawFrame(3, [
    ["str", "n"],
    ["f64", 1],
    ["u32", 1],
    ["f64", 2],
    ["u8", 9],
  ]);
  assert.deepEqual(decode(role9), { ok: false, reason: "bad-field" });
});

test("protocol - a node's leaving notice is a heartbeat with role 3, and round-trips", () => {
  const leaving = { ...heartbeat, role: 3 as const };
  const r = decode(encodeHeartbeat(leaving));
  assert.ok(r.ok);
  assert.deepEqual(r.message, leaving);
  assert.equal(encodeHeartbeat(leaving).length, 33);
});

test("protocol - framing failures report their reason", () => {
  const good = encodeHeartbeat(heartbeat);
  const with_ = (i: number, v: number) => {
    const b = good.slice();
    b[i] = v;
    return b;
  };
  assert.deepEqual(decode(good.subarray(0, 7)), { ok: false, reason: "too-short" });
  assert.deepEqual(decode(new Uint8Array(MAX_MESSAGE_BYTES + 1)), {
    ok: false,
    reason: "too-large",
  });
  assert.deepEqual(decode(with_(1, 0x4d)), { ok: false, reason: "bad-magic" });
  assert.deepEqual(decode(with_(2, FORMAT_VERSION + 1)), { ok: false, reason: "unknown-version" });
  assert.deepEqual(decode(with_(2, 1)), { ok: false, reason: "unknown-version" }, "version 1");
  assert.deepEqual(decode(with_(3, 6)), { ok: false, reason: "unknown-type" });
  assert.deepEqual(decode(with_(10, good[10]! ^ 1)), { ok: false, reason: "bad-crc" });
  assert.deepEqual(decode(rawFrame(1, [...batchHeader, ["u16", 1]])), {
    ok: false,
    reason: "truncated",
  });
});

test("protocol - decode reads a frame that sits inside a larger buffer", () => {
  const frame = encodeHeartbeat(heartbeat);
  const big = new Uint8Array(frame.length + 10);
  big.set(frame, 5);
  const r = decode(big.subarray(5, 5 + frame.length));
  assert.ok(r.ok);
  assert.deepEqual(r.message, heartbeat);
});

test("protocol - a batch larger than maxMessageBytes splits into frames that each fit", () => {
  const entries = Array.from({ length: 500 }, (_, i) =>
    decisionEntry({ key: `key-${i}`, generation: i, admitted: i }),
  );
  const big = {
    ...batch,
    groups: [
      { rule: "a", entries },
      { rule: "b", entries },
    ],
  };
  const frames = encodeDecisionBatch(big, { maxMessageBytes: 4096 });
  assert.ok(frames.length > 5);
  const seen: string[] = [];
  for (const f of frames) {
    assert.ok(f.length <= 4096);
    const r = decode(f);
    assert.ok(r.ok && r.message.type === "decision-batch");
    assert.equal(r.message.seq, batch.seq);
    for (const g of r.message.groups) for (const e of g.entries) seen.push(`${g.rule}/${e.key}`);
  }
  assert.deepEqual(seen, [
    ...entries.map((e) => `a/${e.key}`),
    ...entries.map((e) => `b/${e.key}`),
  ]);
});

test("protocol - a full 1 MiB batch of maximal keys splits under the default limit", () => {
  const entries = Array.from({ length: 1200 }, (_, i) =>
    decisionEntry({
      key: `${i}`.padEnd(1024, "k"),
      generation: 0,
      admitted: 1,
      rejected: 1,
      isNew: true,
    }),
  );
  const frames = encodeDecisionBatch({ ...batch, groups: [{ rule: "r".repeat(64), entries }] });
  assert.equal(frames.length, 2);
  for (const f of frames) assert.ok(f.length <= MAX_MESSAGE_BYTES && decode(f).ok);
});

test("protocol - encoders reject what the wire cannot carry, naming the field", () => {
  const bad = (fn: () => unknown, field: string) =>
    assert.throws(fn, (e: unknown) => e instanceof InvalidArgumentError && e.field === field);
  bad(() => encode({ ...batch, nodeId: "a.b" }), "nodeId");
  bad(() => encode({ ...batch, seq: -1 }), "seq");
  bad(() => encode({ ...batch, groups: [{ rule: "", entries: [] }] }), "groups[0].rule");
  const e = decisionEntry({ admitted: 1, rejected: 1 });
  bad(
    () => encode({ ...batch, groups: [{ rule: "r", entries: [e, { ...e, admitted: -1 }] }] }),
    "groups[0].entries[1].admitted",
  );
  bad(
    () => encode({ ...batch, groups: [{ rule: "r", entries: [{ ...e, generation: 2 ** 32 }] }] }),
    "groups[0].entries[0].generation",
  );
  bad(
    () => encode({ ...batch, groups: [{ rule: "r", entries: [{ ...e, key: "\ud800" }] }] }),
    "groups[0].entries[0].key",
  );
  bad(
    () => encode({ ...batch, groups: [{ rule: "r", entries: [{ ...e, key: "é".repeat(513) }] }] }),
    "groups[0].entries[0].key",
  );
  bad(() => encodeRateUpdate({ ...update, targetNodeId: "" }), "targetNodeId");
  bad(
    () =>
      encode({
        ...update,
        groups: [
          {
            rule: "r",
            entries: [
              {
                key: "k",
                generation: 1,
                version: 1.5,
                allowance: 1,
                rampFrom: 1,
                rampMs: 1,
                retryAfterMs: 1,
              },
            ],
          },
        ],
      }),
    "groups[0].entries[0].version",
  );
  bad(() => encode({ ...defaults, liveNodes: 70_000 }), "liveNodes");
  bad(() => encode({ ...defaults, partitions: 257 }), "partitions");
  bad(() => encode({ ...update, owners: [{ partition: 1, epoch: 0 }] }), "owners[0]");
  bad(() => encode({ ...update, owners: [{ partition: 65536, epoch: 1 }] }), "owners[0]");
  bad(() => encode({ ...update, owners: Array(257).fill({ partition: 1, epoch: 1 }) }), "owners");
  bad(
    () => encode({ ...defaults, rules: [{ rule: "r", defaultShare: Number.NaN }] }),
    "rules[0].defaultShare",
  );
  bad(() => encode({ ...heartbeat, role: 4 as 1 }), "role");
  bad(() => encode(batch, { maxMessageBytes: 100 }), "maxMessageBytes");
});
