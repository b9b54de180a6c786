/**
 * Checkpoints of partitions kept in the group's own store (the JetStream KV bucket), so a group
 * needs nothing but NATS: a handoff's checkpoint, and each owned partition's periodic one that a
 * takeover starts from.
 *
 * A checkpoint is written as chunks of at most `CHUNK_BYTES` under `checkpoints.<name>.<save>.<i>`
 * (a KV value must fit one NATS message), then a manifest under `checkpoints.<name>` naming the
 * save and its chunk count and length; the chunks of the save it replaces are deleted after. A
 * reader follows the manifest, so it never mixes the chunks of two saves. Names are
 * `[A-Za-z0-9_-]` tokens joined by dots.
 */
import { randomBytes } from "node:crypto";
import { InvalidArgumentError } from "../errors.js";
import type { CheckpointPort } from "./checkpoint-port.js";
import type { GroupStore } from "./group-store.js";

export const CHECKPOINT_PREFIX = "checkpoints.";
/** Largest chunk, bytes: well under the NATS server's default payload limit (1 MiB). */
export const CHUNK_BYTES = 512 * 1024;
const NAME = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

interface Manifest {
  readonly save: string;
  readonly chunks: number;
  readonly bytes: number;
}

function manifestOf(value: Uint8Array): Manifest | undefined {
  try {
    const m = JSON.parse(new TextDecoder().decode(value)) as Partial<Manifest>;
    if (
      typeof m.save === "string" &&
      NAME.test(m.save) &&
      Number.isInteger(m.chunks) &&
      Number.isInteger(m.bytes)
    ) {
      return m as Manifest;
    }
  } catch {
    // not a manifest
  }
  return undefined;
}

/** A checkpoint store over `store` (TTL: the store's own; the `ttlMs` of `save` is not used). */
export function createGroupCheckpointStore(store: GroupStore): CheckpointPort {
  const keyOf = (name: string) => {
    if (!NAME.test(name)) {
      throw new InvalidArgumentError("name", "[A-Za-z0-9_-] tokens joined by dots", name);
    }
    return CHECKPOINT_PREFIX + name;
  };
  return {
    async save(name, bytes) {
      const key = keyOf(name);
      const before = await store.get(key);
      const save = randomBytes(6).toString("hex");
      const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_BYTES));
      for (let i = 0; i < chunks; i++) {
        await store.put(
          `${key}.${save}.${i}`,
          bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES),
        );
      }
      const manifest: Manifest = { save, chunks, bytes: bytes.length };
      await store.put(key, new TextEncoder().encode(JSON.stringify(manifest)));
      const old = before === undefined || before.deleted ? undefined : manifestOf(before.value);
      if (old !== undefined) {
        for (let i = 0; i < old.chunks; i++) {
          await store.delete(`${key}.${old.save}.${i}`).catch(() => {});
        }
      }
    },
    async load(name) {
      const key = keyOf(name);
      const entry = await store.get(key);
      const m = entry === undefined || entry.deleted ? undefined : manifestOf(entry.value);
      if (m === undefined) return undefined;
      const out = new Uint8Array(m.bytes);
      let at = 0;
      for (let i = 0; i < m.chunks; i++) {
        const chunk = await store.get(`${key}.${m.save}.${i}`);
        if (chunk === undefined || chunk.deleted || at + chunk.value.length > m.bytes) {
          return undefined;
        }
        out.set(chunk.value, at);
        at += chunk.value.length;
      }
      return at === m.bytes ? out : undefined;
    },
  };
}
