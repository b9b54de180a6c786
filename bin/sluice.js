#!/usr/bin/env node
// The `sluice` command. The code lives in dist/ (run `npm run build` first in a clone).
import { existsSync } from "node:fs";

const entry = new URL("../dist/src/cli/main.js", import.meta.url);
if (!existsSync(entry)) {
  console.error(
    "sluice: dist/ is missing. In a clone of the repo, run `npm ci && npm run build` first.",
  );
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
