/**
 * Runs child processes that start together: each prints `ready` once set up, all are released
 * by one line on stdin at the same moment, and each ends by printing one JSON line, its result.
 * Every child is killed if the whole run takes longer than `timeoutMs`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

/**
 * Spawns `node <script> <json config>` for each config, releases them together once all are
 * ready (calling `beforeRelease` first), and resolves with their results in config order.
 */
export async function runReleased<R>(
  script: string,
  configs: readonly unknown[],
  options: { timeoutMs: number; beforeRelease?: () => Promise<void> },
): Promise<R[]> {
  const children: ChildProcess[] = [];
  const results: Promise<R>[] = [];
  const ready: Promise<void>[] = [];
  for (const [i, config] of configs.entries()) {
    const child = spawn(process.execPath, [script, JSON.stringify(config)], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    children.push(child);
    const lines = createInterface({ input: child.stdout! });
    let markReady: () => void;
    ready.push(new Promise((resolve) => (markReady = resolve)));
    results.push(
      new Promise((resolve, reject) => {
        lines.on("line", (line) => {
          if (line === "ready") markReady();
          else resolve(JSON.parse(line) as R);
        });
        child.once("exit", (code) => {
          markReady();
          if (code !== 0) reject(new Error(`child ${i} of ${script} exited with ${code}`));
        });
      }),
    );
  }
  const timer = setTimeout(() => {
    for (const c of children) c.kill("SIGKILL");
  }, options.timeoutMs);
  try {
    await Promise.all(ready);
    await options.beforeRelease?.();
    for (const c of children) c.stdin!.write("go\n");
    return await Promise.all(results);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once a line arrives on stdin: the release of {@link runReleased}. */
export async function waitForRelease(): Promise<void> {
  const lines = createInterface({ input: process.stdin });
  await new Promise<void>((resolve) => lines.once("line", () => resolve()));
  lines.close();
}
