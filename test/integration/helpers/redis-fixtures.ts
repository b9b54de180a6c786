/**
 * Shared pieces of the Redis integration tests: the shared server's URL, a unique key prefix per
 * test file (so files can run in parallel on one server) and cleanup of everything under it.
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { wallClockMs } from "../../../src/clock/clock.js";

/** The machine's shared Redis. Never stopped, paused or flushed by these tests. */
export const SHARED_REDIS_URL = "redis://127.0.0.1:6379";

/** `sluice-test:<file>:<random>:`, unique per call. */
export function uniquePrefix(file: string): string {
  return `sluice-test:${file}:${randomBytes(6).toString("hex")}:`;
}

/** A plain client for looking at keys and cleaning up; the caller quits it. */
export function adminClient(url: string = SHARED_REDIS_URL): Redis {
  return new Redis(url, { protocol: 2, maxRetriesPerRequest: 1 });
}

/** Every key under `prefix` (SCAN, so the server is never blocked). */
export async function keysUnder(client: Redis, prefix: string): Promise<string[]> {
  const pattern = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
  const found: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await client.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    found.push(...batch);
    cursor = next;
  } while (cursor !== "0");
  return found;
}

/** Deletes every key under `prefix`; returns how many. */
export async function deleteUnder(client: Redis, prefix: string): Promise<number> {
  const keys = await keysUnder(client, prefix);
  for (let i = 0; i < keys.length; i += 500) await client.del(...keys.slice(i, i + 500));
  return keys.length;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `probe` every `everyMs` until it returns true or `withinMs` passes; returns the outcome. */
export async function waitFor(
  probe: () => Promise<boolean> | boolean,
  withinMs: number,
  everyMs = 25,
): Promise<boolean> {
  const until = wallClockMs() + withinMs;
  for (;;) {
    if (await probe()) return true;
    if (wallClockMs() >= until) return false;
    await sleep(everyMs);
  }
}
