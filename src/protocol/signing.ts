/**
 * Ed25519 signing of frames by the aggregator group, and checking by the nodes.
 *
 * Keys are NATS nkeys of the account role (nkeys.ts): the group's public key starts with "A"
 * (56 characters), its seed with "SA" (58). `sluice keygen` makes a pair. Every member of a
 * group signs with the group's seed; a receiver accepts a frame signed by any of the public
 * keys it is given, so a key is rotated by configuring receivers with both keys, moving the
 * senders to the new seed, then dropping the old key.
 *
 * A seed never appears in an error message or in a signer's properties.
 */
import {
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  randomBytes,
  sign as signBytes,
  verify as verifyBytes,
} from "node:crypto";
import { InvalidArgumentError } from "../errors.js";
import {
  decodePublicKey,
  decodeSeed,
  encodePublicKey,
  encodeSeed,
  type NkeyFailure,
  type NkeyRole,
  PUBLIC_KEY_CHARS,
  RAW_KEY_BYTES,
  roleLetter,
  SEED_CHARS,
} from "./nkeys.js";

/** Length of an Ed25519 signature, bytes (the only nonzero `sigLen` of a frame). */
export const SIGNATURE_BYTES = 64;

/** The nkeys role of an aggregator group's signing key. */
export const GROUP_KEY_ROLE: NkeyRole = "account";

/** What the encoders take: signs the bytes of a frame before its signature trailer. */
export interface Signer {
  /** An Ed25519 signature (64 bytes) of `bytes`; must not keep `bytes`, which is reused. */
  sign(bytes: Uint8Array): Uint8Array;
}

/** What `decode` takes: checks a frame's signature. */
export interface Verifier {
  /** True when `signature` is a valid signature of `signedBytes` under an accepted key. */
  verify(signedBytes: Uint8Array, signature: Uint8Array): boolean;
}

/** A {@link Signer} made from a seed, with the public key receivers must be given. */
export interface KeySigner extends Signer {
  /** The public key of the seed, in nkeys text ("A..."). */
  readonly publicKey: string;
}

/** A {@link Verifier} that accepts any of its public keys. */
export interface KeyVerifier extends Verifier {
  /** The accepted public keys, in nkeys text, without duplicates. */
  readonly publicKeys: readonly string[];
}

/** DER of a PKCS#8 Ed25519 private key, up to the 32 seed bytes (RFC 8410). */
const PKCS8_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
]);
/** DER of a SubjectPublicKeyInfo Ed25519 key, up to the 32 key bytes (RFC 8410). */
const SPKI_PREFIX = Uint8Array.from([
  0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
]);

const SEED_EXPECTED = `an aggregator group seed: ${SEED_CHARS} base32 characters starting with "S${roleLetter(GROUP_KEY_ROLE)}", as \`sluice keygen\` prints`;
const PUBLIC_EXPECTED = `an aggregator group public key: ${PUBLIC_KEY_CHARS} base32 characters starting with "${roleLetter(GROUP_KEY_ROLE)}", as \`sluice keygen\` prints`;

const WHY: Record<NkeyFailure, string> = {
  "bad-length": "of another length",
  "bad-character": "with a character outside A-Z and 2-7",
  "bad-crc": "whose checksum does not match (a character was changed or mistyped)",
  "wrong-prefix": "of another kind (another nkey role, or a seed given for a public key or back)",
};

function concat(a: Uint8Array, b: Uint8Array): Buffer {
  const out = Buffer.alloc(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function privateKeyOf(seed: Uint8Array): KeyObject {
  return createPrivateKey({ key: concat(PKCS8_PREFIX, seed), format: "der", type: "pkcs8" });
}

function rawPublicKeyOf(privateKey: KeyObject): Uint8Array {
  const der = createPublicKey(privateKey).export({ format: "der", type: "spki" });
  return new Uint8Array(der.subarray(der.length - RAW_KEY_BYTES));
}

/** A seed as the error shows it: its shape only. */
function redacted(text: unknown): unknown {
  return typeof text === "string" ? `a string of ${text.length} characters (not shown)` : text;
}

/**
 * A signer from an aggregator group seed ("SA...", surrounding whitespace ignored, so the
 * contents of a seed file will do). Throws {@link InvalidArgumentError} for anything else.
 */
export function createSigner(seedText: string, field = "seed"): KeySigner {
  const text = typeof seedText === "string" ? seedText.trim() : seedText;
  const seed = decodeSeed(text, GROUP_KEY_ROLE);
  if (typeof seed === "string") {
    throw new InvalidArgumentError(field, `${SEED_EXPECTED}; got one ${WHY[seed]}`, redacted(text));
  }
  const privateKey = privateKeyOf(seed);
  seed.fill(0);
  const publicKey = encodePublicKey(GROUP_KEY_ROLE, rawPublicKeyOf(privateKey));
  return {
    publicKey,
    sign: (bytes) => signBytes(null, bytes, privateKey),
  };
}

/**
 * A verifier that accepts a signature by any of `publicKeys` (aggregator group public keys,
 * "A...", whitespace around each ignored). Throws {@link InvalidArgumentError} naming the bad
 * one, or when the list is empty.
 */
export function createVerifier(publicKeys: readonly string[], field = "publicKeys"): KeyVerifier {
  if (!Array.isArray(publicKeys) || publicKeys.length === 0) {
    throw new InvalidArgumentError(field, `a non-empty list of ${PUBLIC_EXPECTED}`, publicKeys);
  }
  const texts: string[] = [];
  const keys: KeyObject[] = [];
  for (let i = 0; i < publicKeys.length; i++) {
    const raw = publicKeys[i];
    const text = typeof raw === "string" ? raw.trim() : raw;
    const key = decodePublicKey(text as string, GROUP_KEY_ROLE);
    if (typeof key === "string") {
      throw new InvalidArgumentError(
        `${field}[${i}]`,
        `${PUBLIC_EXPECTED}; got one ${WHY[key]}`,
        raw,
      );
    }
    if (texts.includes(text as string)) continue;
    texts.push(text as string);
    keys.push(createPublicKey({ key: concat(SPKI_PREFIX, key), format: "der", type: "spki" }));
  }
  return {
    publicKeys: texts,
    verify(signedBytes, signature) {
      if (signature.length !== SIGNATURE_BYTES) return false;
      for (const key of keys) if (verifyBytes(null, signedBytes, key, signature)) return true;
      return false;
    },
  };
}

/** A new aggregator group key pair: the seed ("SA...", secret) and its public key ("A..."). */
export function generateKeyPair(): { readonly seed: string; readonly publicKey: string } {
  const raw = new Uint8Array(randomBytes(RAW_KEY_BYTES));
  const seed = encodeSeed(GROUP_KEY_ROLE, raw);
  const publicKey = encodePublicKey(GROUP_KEY_ROLE, rawPublicKeyOf(privateKeyOf(raw)));
  raw.fill(0);
  return { seed, publicKey };
}
