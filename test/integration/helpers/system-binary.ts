/**
 * System binaries for the integration tests (nats-server, redis-server, prometheus, promtool),
 * found the way `npm test` finds them: scripts/services.mjs, on PATH and then in Debian's
 * directories. A missing one fails the test that needs it with the line that says what to
 * install (never a skip).
 */

/** What the tests use of scripts/services.mjs (plain JS, loaded at run time). */
export interface ServicesModule {
  readonly HOST: string;
  readonly SYSTEM_DIRS: readonly string[];
  findBinary(name: string, where?: { path?: string; dirs?: readonly string[] }): string | undefined;
  installHint(names: readonly string[]): string;
  requireBinaries(
    names: readonly string[],
    options?: {
      root?: boolean;
      path?: string;
      dirs?: readonly string[];
      run?: (file: string, args: string[], env?: NodeJS.ProcessEnv) => Promise<number>;
      say?: (line: string) => void;
    },
  ): Promise<Record<string, string>>;
  answers(host: string, port: number, timeoutMs?: number): Promise<boolean>;
  ensureServices(wanted: {
    nats?: boolean;
    redis?: boolean;
    prometheus?: boolean;
    natsPort?: number;
    redisPort?: number;
    root?: boolean;
    path?: string;
    dirs?: readonly string[];
    say?: (line: string) => void;
  }): Promise<{ started: { name: string; port: number; dir: string }[]; stop(): Promise<void> }>;
  readonly ServiceError: new (message: string) => Error;
}

/** scripts/services.mjs of this checkout (this file runs from `dist/test/integration/helpers/`). */
export const SERVICES_SCRIPT = new URL("../../../../scripts/services.mjs", import.meta.url);

export const services = (await import(SERVICES_SCRIPT.href)) as ServicesModule;

/** The path of system binary `name`, or an error naming the Debian package to install. */
export function systemBinary(name: string): string {
  const path = services.findBinary(name);
  if (path === undefined) {
    throw new Error(`${services.installHint([name])}; \`npm test\` installs it when run as root`);
  }
  return path;
}
