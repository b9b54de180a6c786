/**
 * Reads a rules file (YAML or JSON) and validates it, failing with the file, the field, what was
 * expected and what came. The built-in `demo` rule set needs no file.
 */
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { InvalidArgumentError, SluiceError } from "../errors.js";
import { type CompiledRule, compileRule, type RuleConfig } from "../limiter/rule.js";

/** A rules file that cannot be read or does not validate. */
export class ConfigError extends SluiceError {
  override name = "ConfigError";
  readonly file: string;

  constructor(file: string, message: string, options?: ErrorOptions) {
    super(`${file}: ${message}`, options);
    this.file = file;
  }
}

/** The rules `sluice demo` runs with when given no file. */
export const DEMO_RULES: readonly RuleConfig[] = [
  { name: "api", mode: "global", algorithm: "sliding-window", limit: 1000, windowMs: 1000 },
  { name: "search", mode: "global", algorithm: "token-bucket", limit: 400, windowMs: 1000 },
];

/** Loads `source`: a path to a YAML/JSON file with a top-level `rules:` list, or `builtin:demo`. */
export function loadRules(source: string): RuleConfig[] {
  if (source === "builtin:demo") return [...DEMO_RULES];
  let text: string;
  try {
    text = readFileSync(source, "utf8");
  } catch (err) {
    throw new ConfigError(source, `cannot read the rules file (${(err as Error).message})`, {
      cause: err,
    });
  }
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new ConfigError(source, `not valid YAML or JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const rules = (doc as { rules?: unknown } | null)?.rules;
  if (typeof doc !== "object" || doc === null || !Array.isArray(rules)) {
    throw new ConfigError(
      source,
      "expected a top-level `rules:` list, for example\nrules:\n  - { name: api, mode: global, limit: 100, windowMs: 1000 }",
    );
  }
  // Validate now, with the file named, rather than at first use.
  compileRules(rules as RuleConfig[], source);
  return rules as RuleConfig[];
}

/** Validates and compiles rules; errors name `file` when given. */
export function compileRules(rules: readonly RuleConfig[], file?: string): readonly CompiledRule[] {
  try {
    if (!Array.isArray(rules) || rules.length === 0) {
      throw new InvalidArgumentError("rules", "a non-empty array of rules", rules);
    }
    const compiled = rules.map((r, i) => compileRule(r, `rules[${i}]`, 100_000));
    const seen = new Set<string>();
    for (const [i, r] of compiled.entries()) {
      if (seen.has(r.name)) {
        throw new InvalidArgumentError(`rules[${i}].name`, "a name no other rule has", r.name);
      }
      seen.add(r.name);
    }
    return compiled;
  } catch (err) {
    if (err instanceof InvalidArgumentError && file !== undefined) {
      throw new ConfigError(file, err.message, { cause: err });
    }
    throw err;
  }
}
