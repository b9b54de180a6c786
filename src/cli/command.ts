/**
 * What a `sluice` subcommand is. Its own module so the command modules and the entry point that
 * registers them (main.ts) both import it, and imports point one way: main -> commands -> this.
 */
export interface Command {
  /** One line for `sluice --help`. */
  readonly summary: string;
  /** The command's `--help` text. */
  readonly usage: string;
  /** Runs the command with its arguments (after the command name); resolves with the exit code. */
  run(args: string[]): Promise<number>;
}
