/**
 * The Lua scripts of the Redis strict store: read once from `lua/` next to this module (the build
 * copies them to dist/), defined on each client with `defineCommand`, which sends EVALSHA and falls
 * back to EVAL when the server does not know the script (first use on a connection, after a
 * restart or a SCRIPT FLUSH).
 */
import { readFileSync } from "node:fs";
import type { AlgorithmName } from "../../algorithms/types.js";
import type { RedisClient } from "./connection.js";

export interface ScriptSpec {
  /** The command name `defineCommand` adds to the client. */
  readonly command: string;
  /**
   * File under `lua/`, named `verb-noun-<numKeys>.lua`; `n` means any number of keys, given as
   * the first argument of each call.
   */
  readonly file: string;
}

/**
 * One decide script per algorithm; each serves the ops "consume", "peek", "refund", "charge" and
 * "block" on n keys at once (decided in order, at one instant).
 */
export const DECIDE_SCRIPTS: Readonly<Record<AlgorithmName, ScriptSpec>> = {
  "token-bucket": { command: "sluiceDecideTokenBucket", file: "decide-token-bucket-n.lua" },
  gcra: { command: "sluiceDecideGcra", file: "decide-gcra-n.lua" },
  "sliding-window": { command: "sluiceDecideSlidingWindow", file: "decide-sliding-window-n.lua" },
};

const sources = new Map<string, string>();

/** The text of `lua/<file>`, read on first use. */
export function scriptSource(file: string): string {
  let source = sources.get(file);
  if (source === undefined) {
    source = readFileSync(new URL(`./lua/${file}`, import.meta.url), "utf8");
    sources.set(file, source);
  }
  return source;
}

/** Adds every decide script to `client` as a command (idempotent). */
export function defineDecideScripts(client: RedisClient): void {
  for (const spec of Object.values(DECIDE_SCRIPTS)) {
    client.defineCommand(spec.command, { lua: scriptSource(spec.file) });
  }
}

type ScriptCommand = (args: readonly string[]) => Promise<unknown>;

/**
 * Runs a script defined by {@link defineDecideScripts}: `args` are the number of keys, the KEYS,
 * then ARGV (ioredis flattens the array, which saves a spread per call).
 */
export function runScript(
  client: RedisClient,
  command: string,
  args: readonly string[],
): Promise<unknown> {
  return (client as unknown as Record<string, ScriptCommand>)[command]!(args);
}
