/**
 * The `sluice` command line: parses the command and hands over to it. Each command returns an
 * exit code; nothing here calls process.exit, so open handles are closed by their owners.
 */
import { readFileSync } from "node:fs";
import { SluiceError } from "../errors.js";
import type { Command } from "./command.js";

const commands = new Map<string, () => Promise<Command>>([]);

/** Registers a command; called by the composition root below. */
export function registerCommand(name: string, load: () => Promise<Command>): void {
  commands.set(name, load);
}

function version(): string {
  const pkg = JSON.parse(
    readFileSync(new URL("../../../package.json", import.meta.url), "utf8"),
  ) as {
    version: string;
  };
  return pkg.version;
}

async function help(): Promise<string> {
  const lines = [
    `sluice ${version()} - distributed rate limiter for Node.js services over NATS`,
    "",
    "Usage: sluice <command> [options]",
    "",
    "Commands:",
  ];
  for (const [name, load] of commands) lines.push(`  ${name.padEnd(12)} ${(await load()).summary}`);
  lines.push(
    "",
    "Options for every command:",
    "  -h, --help   show the command's own help",
    "",
    "Run `sluice <command> --help` for a command's options.",
  );
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    console.log(await help());
    return 0;
  }
  if (name === "-v" || name === "--version") {
    console.log(version());
    return 0;
  }
  const load = commands.get(name);
  if (load === undefined) {
    console.error(
      `sluice: unknown command \`${name}\`. Known: ${[...commands.keys()].join(", ")}.`,
    );
    console.error("Run `sluice --help` for usage.");
    return 2;
  }
  const command = await load();
  if (rest.includes("-h") || rest.includes("--help")) {
    console.log(command.usage);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    // Expected failures (bad options, bad config, no server) get one clear line, not a trace.
    if (err instanceof SluiceError) {
      console.error(`sluice ${name}: ${err.message}`);
      console.error(`Run \`sluice ${name} --help\` for usage.`);
      return 2;
    }
    throw err;
  }
}

registerCommand("demo", async () => (await import("./demo-command.js")).demoCommand);
registerCommand(
  "aggregator",
  async () => (await import("./aggregator-command.js")).aggregatorCommand,
);
registerCommand("loadgen", async () => (await import("./loadgen-command.js")).loadgenCommand);
registerCommand("bench", async () => (await import("./bench-command.js")).benchCommand);
registerCommand("keygen", async () => (await import("./keygen-command.js")).keygenCommand);
