/**
 * Runs `sluice <command> ...` from an agreed wall-clock instant, for `bench/accuracy.ts`.
 *
 * `sluice loadgen --schedule` counts its offsets from the process's own start, and eight Node
 * processes booting at once on a busy 2-core machine start up to seconds apart, which would smear
 * a "shift" over that much time. So this launcher loads the CLI (the slow part) first, prints
 * `{"type":"ready"}`, reads the common start instant (wall ms) as one line on stdin, waits until
 * that instant plus its own offset, and then calls the very same `main()` that `bin/sluice.js`
 * calls. Schedules of different processes then line up to within a (warm) NATS connect.
 *
 * With `start-at:<offsetMs>` in place of the offset (for `loadgen`), it does not wait: it runs the
 * command at once with `--start-at-ms <start + offset>`, so the process connects first and its
 * load starts at that instant exactly, not a connect later (its `loadgen-start` line says when).
 *
 * Usage: node dist/bench/accuracy-launch.js [start-at:]<offsetMs> <sluice command> [options...]
 * Prints `{"type":"launch","lateMs":n}` (how late the wait ended) before the command's output.
 * Ends without running anything if stdin closes before a start instant arrives.
 */
import { createInterface } from "node:readline";
import { main } from "../src/cli/main.js";
import { wallClockMs } from "../src/clock/clock.js";

const when = process.argv[2] ?? "";
const startAt = when.startsWith("start-at:");
const offsetMs = Number(startAt ? when.slice("start-at:".length) : when);
const args = process.argv.slice(3);
if (!Number.isFinite(offsetMs) || args.length === 0) {
  console.error("usage: accuracy-launch.js [start-at:]<offsetMs> <sluice command> [options...]");
  process.exit(2);
}
// Load what the command will load, so nothing is left to compile after the wait.
if (args[0] === "loadgen") await import("../src/cli/loadgen-command.js");
if (args[0] === "aggregator") await import("../src/cli/aggregator-command.js");
const { connectNats } = await import("../src/transport/nats/nats-transport.js");
// One throwaway connection warms the NATS client's code, so the real connect after the wait
// takes milliseconds rather than the hundred or so a cold client needs on a busy machine.
const natsAt = args.indexOf("--nats");
const warm = await connectNats({
  servers: (natsAt >= 0 ? args[natsAt + 1]! : "nats://127.0.0.1:4222").split(","),
  name: "sluice-bench-warmup",
});
await warm.close();
process.stdout.write(`${JSON.stringify({ type: "ready" })}\n`);
const input = createInterface({ input: process.stdin });
const startAtWallMs = await new Promise<number | undefined>((resolve) => {
  input.once("line", (line) => resolve(Number(line)));
  input.once("close", () => resolve(undefined));
});
input.close();
process.stdin.destroy();
if (startAt && startAtWallMs !== undefined && Number.isFinite(startAtWallMs)) {
  process.exitCode = await main([...args, "--start-at-ms", String(startAtWallMs + offsetMs)]);
} else if (startAtWallMs !== undefined && Number.isFinite(startAtWallMs)) {
  const waitMs = startAtWallMs + offsetMs - wallClockMs();
  if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
  process.stdout.write(
    `${JSON.stringify({ type: "launch", lateMs: wallClockMs() - startAtWallMs - offsetMs })}\n`,
  );
  process.exitCode = await main(args);
}
