/**
 * `sluice keygen`: makes an aggregator group signing key pair (Ed25519, NATS nkeys text of the
 * account role): the seed, which every aggregator of the group signs its rate updates and rule
 * defaults with, and the public key, which nodes check them against.
 *
 * A seed written to a file is created with mode 0600 and never replaces an existing file
 * unless `--force` is given; with `--out` the seed is not printed.
 */
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { generateKeyPair } from "../protocol/signing.js";
import { flag, parse } from "./args.js";
import type { Command } from "./command.js";

const OPTIONS = {
  out: { type: "string", short: "o" },
  force: { type: "boolean" },
  json: { type: "boolean" },
} as const;

export const keygenCommand: Command = {
  summary: "make a signing key pair for an aggregator group (seed and public key)",
  usage: [
    "Usage: sluice keygen [--out FILE [--force]] [--json]",
    "",
    "Makes a new Ed25519 key pair for signing the rate updates and rule defaults of an",
    "aggregator group, in NATS nkeys text: the seed (58 characters, starts with SA) is secret",
    "and goes to every aggregator of the group; the public key (56 characters, starts with A)",
    "goes to every node, which then drops updates that are unsigned or signed by another key.",
    "",
    "Options:",
    "  -o, --out FILE  write the seed to FILE (created with mode 0600) instead of printing it;",
    "                  prints only the public key",
    "  --force         with --out, replace FILE if it exists (it is removed, then created anew)",
    '  --json          print {"seed": ..., "publicKey": ...}, or {"publicKey": ..., "seedFile": ...}',
    "                  with --out",
    "",
    "To rotate: make a new pair, give the nodes both public keys, move the aggregators to the",
    "new seed, then remove the old public key from the nodes.",
    "",
    "Examples:",
    "  sluice keygen",
    "  sluice keygen --out group.seed",
    "  sluice keygen --json",
  ].join("\n"),
  async run(args) {
    const p = parse(args, OPTIONS);
    if (p.positionals.length > 0) {
      console.error(`sluice keygen: unexpected argument \`${p.positionals[0]}\`.`);
      console.error("Run `sluice keygen --help` for usage.");
      return 2;
    }
    const out = p.values.out;
    const json = flag(p, "json");
    if (flag(p, "force") && out === undefined) {
      console.error("sluice keygen: --force only applies with --out FILE.");
      return 2;
    }
    const { seed, publicKey } = generateKeyPair();
    if (typeof out !== "string") {
      if (json) console.log(JSON.stringify({ seed, publicKey }));
      else {
        console.log(`seed:       ${seed}`);
        console.log(`public key: ${publicKey}`);
        console.error("Keep the seed secret: anyone holding it can sign grants for the group.");
      }
      return 0;
    }
    const exists = existsSync(out);
    if (exists && !flag(p, "force")) {
      console.error(`sluice keygen: ${out} exists; not replacing it (pass --force to do so).`);
      return 1;
    }
    try {
      if (exists) rmSync(out);
      // "wx": fail rather than write through a file created meanwhile; the mode applies on creation.
      writeFileSync(out, `${seed}\n`, { mode: 0o600, flag: "wx" });
    } catch (err) {
      console.error(`sluice keygen: cannot write ${out}: ${(err as Error).message}`);
      return 1;
    }
    if (json) console.log(JSON.stringify({ publicKey, seedFile: out }));
    else console.log(`public key: ${publicKey}`);
    return 0;
  },
};
