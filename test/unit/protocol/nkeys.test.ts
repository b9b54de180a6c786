import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey, sign } from "node:crypto";
import { test } from "node:test";
import fc from "fast-check";
import {
  base32Decode,
  base32Encode,
  crc16,
  decodePublicKey,
  decodeSeed,
  encodePublicKey,
  encodeSeed,
  type NkeyRole,
} from "../../../src/protocol/nkeys.js";

const ascii = (s: string) => new TextEncoder().encode(s);

/**
 * Published nkeys: user seed and public key pairs from the test suites of nkeys clients
 * (mmmries/nkeys test/nkeys_test.exs, with a signature of its nonce; nats-io/nats.rs
 * tests/auth_nkey.rs; nats-io/nkeys creds_utils_test.go, whose user JWT names the public key as
 * its subject and an account key as its issuer), and an account key from an nsc setup.
 */
const USER_VECTORS = [
  {
    seed: "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU",
    publicKey: "UCK5N7N66OBOINFXAYC2ACJQYFSOD4VYNU6APEJTAVFZB2SVHLKGEW7L",
  },
  {
    seed: "SUANQDPB2RUOE4ETUA26CNX7FUKE5ZZKFCQIIW63OX225F2CO7UEXTM7ZY",
    publicKey: "UAMMBNV2EYR65NYZZ7IAK5SIR5ODNTTERJOBOF4KJLMWI45YOXOSWULM",
  },
  {
    seed: "SUAOTBNEUHZDFJT3EUMELT7MQTP24JF3XVCXQNDSCU74G5IU6VAJBKH5LI",
    publicKey: "UDE6WTGLTTPCRJRJCKBJRGVNZTLIVR7LEEELR4CYWWWBKJS7XYIKXDUU",
  },
];
const ACCOUNT_KEYS = [
  "AADWLTHICV4SUAGF6EKNVEW5BBP7YRDIBGWGGHZ5JBDOQYA7GUFM6AQU",
  "AA46UMWMO7MTNJMJ2FJUYBWOAQCPFMX4OCCLCIEUILA6XNCJJGJQTDMG",
];

const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
function publicOfSeed(seed: Uint8Array): Uint8Array {
  const priv = createPrivateKey({
    key: Buffer.concat([PKCS8_PREFIX, seed]),
    format: "der",
    type: "pkcs8",
  });
  const der = createPublicKey(priv).export({ format: "der", type: "spki" });
  return new Uint8Array(der.subarray(der.length - 32));
}

function raw(r: Uint8Array | string): Uint8Array {
  assert.ok(typeof r !== "string", `decoded: ${String(r)}`);
  return r;
}

test("nkeys - CRC-16/XMODEM check values", () => {
  assert.equal(crc16(new Uint8Array(0)), 0);
  assert.equal(crc16(ascii("123456789")), 0x31c3);
  assert.equal(crc16(ascii("abc")), 0x9dd6);
  assert.equal(crc16(ascii("ABC")), 0x3994);
  assert.equal(crc16(Uint8Array.of(0xff)), 0x1ef0);
});

test("nkeys - base32 matches RFC 4648 test vectors (without padding) and round-trips", () => {
  const rfc: [string, string][] = [
    ["", ""],
    ["f", "MY"],
    ["fo", "MZXQ"],
    ["foo", "MZXW6"],
    ["foob", "MZXW6YQ"],
    ["fooba", "MZXW6YTB"],
    ["foobar", "MZXW6YTBOI"],
  ];
  for (const [plain, enc] of rfc) {
    assert.equal(base32Encode(ascii(plain)), enc);
    assert.deepEqual(base32Decode(enc), ascii(plain));
  }
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
      assert.deepEqual(base32Decode(base32Encode(b)), b);
    }),
  );
  assert.equal(base32Decode("MZXW6y"), undefined, "lower case");
  assert.equal(base32Decode("MZXW61"), undefined, "outside the alphabet");
  assert.equal(base32Decode("MZ="), undefined, "padding");
  assert.equal(base32Decode("M"), undefined, "a length no byte count has");
  assert.equal(base32Decode("M3"), undefined, "nonzero padding bits");
});

test("nkeys - published user seeds give their published public keys and signature", () => {
  for (const v of USER_VECTORS) {
    const seed = raw(decodeSeed(v.seed, "user"));
    assert.equal(seed.length, 32);
    assert.equal(encodeSeed("user", seed), v.seed);
    assert.equal(encodePublicKey("user", publicOfSeed(seed)), v.publicKey);
    assert.deepEqual(raw(decodePublicKey(v.publicKey, "user")), publicOfSeed(seed));
  }
  // The signature mmmries/nkeys publishes for its seed and nonce (Ed25519 is deterministic).
  const seed = raw(decodeSeed(USER_VECTORS[0]!.seed, "user"));
  const priv = createPrivateKey({
    key: Buffer.concat([PKCS8_PREFIX, seed]),
    format: "der",
    type: "pkcs8",
  });
  assert.equal(
    sign(null, ascii("PXoWU7zWAMt75FY"), priv).toString("base64"),
    "ZaAiVDgB5CeYoXoQ7cBCmq+ZllzUnGUoDVb8C7PilWvCs8XKfUchAUhz2P4BYAF++Dg3w05CqyQFRDiGL6LrDw==",
  );
});

test("nkeys - published account keys decode and encode back", () => {
  for (const k of ACCOUNT_KEYS) {
    assert.equal(encodePublicKey("account", raw(decodePublicKey(k, "account"))), k);
  }
});

test("nkeys - seeds and public keys of every role round-trip with their letters", () => {
  const roles: [NkeyRole, string][] = [
    ["account", "A"],
    ["user", "U"],
    ["operator", "O"],
    ["server", "N"],
    ["cluster", "C"],
  ];
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
      for (const [role, letter] of roles) {
        const pub = encodePublicKey(role, bytes);
        const seed = encodeSeed(role, bytes);
        assert.equal(pub.length, 56);
        assert.equal(seed.length, 58);
        assert.equal(pub[0], letter);
        assert.equal(seed.slice(0, 2), `S${letter}`);
        assert.deepEqual(decodePublicKey(pub, role), bytes);
        assert.deepEqual(decodeSeed(seed, role), bytes);
      }
    }),
    { numRuns: 50 },
  );
});

test("nkeys - a changed character fails the CRC", () => {
  const key = ACCOUNT_KEYS[0]!;
  const seed = encodeSeed("account", new Uint8Array(32).fill(9));
  for (const [text, decodeIt] of [
    [key, (t: string) => decodePublicKey(t, "account")],
    [seed, (t: string) => decodeSeed(t, "account")],
  ] as const) {
    for (let i = 2; i < text.length - 1; i++) {
      const c = text[i] === "B" ? "C" : "B";
      assert.equal(decodeIt(text.slice(0, i) + c + text.slice(i + 1)), "bad-crc", `at ${i}`);
    }
  }
});

test("nkeys - another role, a seed for a public key (and back), bad length or characters fail", () => {
  const bytes = new Uint8Array(32).fill(3);
  assert.equal(decodePublicKey(encodePublicKey("user", bytes), "account"), "wrong-prefix");
  assert.equal(decodeSeed(USER_VECTORS[0]!.seed, "account"), "wrong-prefix");
  assert.equal(decodeSeed(encodeSeed("operator", bytes), "account"), "wrong-prefix");
  assert.equal(decodePublicKey(encodeSeed("account", bytes), "account"), "bad-length");
  assert.equal(decodeSeed(encodePublicKey("account", bytes), "account"), "bad-length");
  assert.equal(decodePublicKey(ACCOUNT_KEYS[0]!.toLowerCase(), "account"), "bad-character");
  assert.equal(decodePublicKey(`${ACCOUNT_KEYS[0]!.slice(0, 55)}1`, "account"), "bad-character");
  assert.equal(decodePublicKey("", "account"), "bad-length");
});
