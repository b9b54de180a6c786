/** `sluice bench`: runs the benchmark suite shipped with the package (the same as `npm run bench`). */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Command } from "./command.js";

const SUITES = ["local", "strict"] as const;

export const benchCommand: Command = {
  summary: "measure decisions per second against rate-limiter-flexible, limiter, a plain bucket",
  usage: [
    "Usage: sluice bench [suite...]",
    "",
    `Suites: ${SUITES.join(", ")} (default: all that are built). Each prints a table, then one JSON`,
    "line. Environment: BENCH_ROUNDS (default 7), BENCH_OPS (operations per round).",
    "strict needs Redis at REDIS_URL (default redis://127.0.0.1:6379).",
  ].join("\n"),
  async run(args) {
    const wanted = args.length > 0 ? args : [...SUITES];
    for (const suite of wanted) {
      if (!(SUITES as readonly string[]).includes(suite)) {
        console.error(`sluice bench: unknown suite \`${suite}\`. Known: ${SUITES.join(", ")}.`);
        return 2;
      }
      const file = fileURLToPath(new URL(`../../bench/${suite}.js`, import.meta.url));
      if (!existsSync(file)) {
        if (args.length > 0) {
          console.error(`sluice bench: suite \`${suite}\` is not built (${file}).`);
          return 1;
        }
        continue;
      }
      const code = await new Promise<number>((resolve) => {
        const child = spawn(process.execPath, ["--expose-gc", file], { stdio: "inherit" });
        child.on("exit", (c) => resolve(c ?? 1));
      });
      if (code !== 0) return code;
    }
    return 0;
  },
};
