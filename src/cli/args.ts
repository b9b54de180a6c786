/**
 * Command-line option parsing on `node:util` parseArgs, with conversions that fail like the
 * rest of Sluice: naming the option, what was expected and what came.
 */
import { parseArgs } from "node:util";
import { InvalidArgumentError } from "../errors.js";

export type OptionSpec = Record<string, { type: "string" | "boolean"; short?: string }>;

export interface Parsed {
  readonly values: Record<string, string | boolean | undefined>;
  readonly positionals: string[];
}

/** Parses `args`; unknown options throw an error that lists the known ones. */
export function parse(args: string[], spec: OptionSpec): Parsed {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: spec,
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Parsed["values"], positionals };
  } catch (err) {
    const known = Object.keys(spec)
      .map((k) => `--${k}`)
      .join(", ");
    throw new InvalidArgumentError("options", `only known options (${known})`, args.join(" "), {
      cause: err,
    });
  }
}

/** A number option: `--name` as a finite number within bounds, or `fallback` when absent. */
export function num(
  p: Parsed,
  name: string,
  fallback: number,
  bounds: { min?: number; max?: number; integer?: boolean } = {},
): number {
  const raw = p.values[name];
  if (raw === undefined) return fallback;
  const v = Number(raw);
  const ok =
    typeof raw === "string" &&
    raw.trim() !== "" &&
    Number.isFinite(v) &&
    (!bounds.integer || Number.isInteger(v)) &&
    (bounds.min === undefined || v >= bounds.min) &&
    (bounds.max === undefined || v <= bounds.max);
  if (!ok) {
    const parts = [bounds.integer ? "an integer" : "a number"];
    if (bounds.min !== undefined) parts.push(`>= ${bounds.min}`);
    if (bounds.max !== undefined) parts.push(`<= ${bounds.max}`);
    throw new InvalidArgumentError(`--${name}`, parts.join(" "), raw);
  }
  return v;
}

export function str(p: Parsed, name: string, fallback: string): string {
  const raw = p.values[name];
  return typeof raw === "string" ? raw : fallback;
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

/** Resolves when SIGINT or SIGTERM arrives, or after `ms` if given; removes its listeners. */
export function untilSignal(ms?: number): Promise<string> {
  return new Promise((resolve) => {
    const done = (why: string) => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      if (timer !== undefined) clearTimeout(timer);
      resolve(why);
    };
    const onInt = () => done("SIGINT");
    const onTerm = () => done("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
    const timer = ms === undefined ? undefined : setTimeout(() => done("duration"), ms);
  });
}
