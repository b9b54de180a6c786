#!/usr/bin/env node
// The built test files: every `*.test.js` under the given folders of dist/, at any depth, sorted,
// whose source `.test.ts` still exists. The build writes dist/ without clearing it, so a test
// file that was moved or deleted leaves its old build behind, which must not run (twice, or
// against code it no longer matches). `node --test` on Node 20 expands no glob, and searching a
// folder it runs every `.js` file under a folder named `test`, helpers too: hence this list.
//
// Used by scripts/test.mjs (`npm test`). As a command, `node scripts/test-files.mjs DIR...` runs
// `node --test` over the test files under those folders of dist/ without starting any service
// (`npm run test:unit`), and exits with its exit code.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/** The test files under `dirs` (paths under the repository, e.g. `dist/test/unit`), relative to the cwd. */
export function testFiles(dirs) {
  return dirs.flatMap((dir) =>
    walk(join(root, dir))
      .filter((path) => hasSource(path))
      .sort()
      .map((path) => relative(process.cwd(), path)),
  );
}

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return walk(path);
    return entry.name.endsWith(".test.js") ? [path] : [];
  });
}

/** dist/test/unit/a/b.test.js -> test/unit/a/b.test.ts exists. */
function hasSource(builtPath) {
  const rel = relative(join(root, "dist"), builtPath);
  return existsSync(join(root, rel.replace(/\.js$/, ".ts")));
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dirs = process.argv.slice(2);
  if (dirs.length === 0) {
    console.error("usage: node scripts/test-files.mjs DIR... (e.g. dist/test/unit)");
    process.exit(2);
  }
  const r = spawnSync(process.execPath, ["--test", ...testFiles(dirs)], { stdio: "inherit" });
  process.exit(r.status ?? 1);
}
