#!/usr/bin/env node
// `npm test`: makes sure NATS and Redis answer on 127.0.0.1 and prometheus and promtool are
// installed (scripts/services.mjs: started or installed when missing, one line saying what to
// install when that is not possible), builds, runs every unit and integration test, stops what it
// started, and exits with the test runner's exit code.
//
// `npm test -- FILE...` runs those built test files instead of all of them.
import { runWithServices } from "./services.mjs";
import { testFiles } from "./test-files.mjs";

/** The built unit and integration tests, at any depth (scripts/test-files.mjs). */
const TEST_DIRS = ["dist/test/unit", "dist/test/integration"];

const chosen = process.argv.slice(2);
// npm runs this script with npm_execpath set to its own CLI: the build uses the same npm.
const npm = process.env["npm_execpath"];
const build =
  npm === undefined ? ["npm", ["run", "build"]] : [process.execPath, [npm, "run", "build"]];

process.exitCode = await runWithServices({ nats: true, redis: true, prometheus: true }, [
  build,
  () => [
    process.execPath,
    [
      "--test",
      "--test-concurrency=2",
      "--test-timeout=120000",
      ...(chosen.length > 0 ? chosen : testFiles(TEST_DIRS)),
    ],
  ],
]);
