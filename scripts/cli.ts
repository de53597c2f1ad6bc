/**
 * The one top-level handler every command runs under (validate, doctor, synth,
 * import-legacy, sim, bench): whatever escapes the command becomes one message
 * on stderr, naming the file and the config path where the error carries them,
 * and exit code 1. `--debug` (anywhere in the arguments) adds the stack trace.
 */
import type { ErrorPlace } from "../stacks/errors";

export { PlacedError, type ErrorPlace } from "../stacks/errors";

/** The message a command prints for an error: its place, then its message (parse errors are made without the file's text: stacks/errors.ts parseFailure). */
export function describeError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const place = e as Error & ErrorPlace;
  const prefix = [place.file, place.configPath === undefined ? undefined : `phoenix:${place.configPath}`].filter((p) => p !== undefined);
  return [...prefix, e.message].join(": ");
}

/**
 * Runs a command's main with `--debug` taken out of its arguments.
 * main returns the exit code (default 0), which is set as process.exitCode so
 * long-running commands (the simulator) keep running. A throw or rejection
 * prints `<name>: <describeError>` (plus the stack with --debug) and exits 1.
 */
export async function runCli(name: string, main: (argv: string[]) => Promise<number | void> | number | void, argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  const debug = argv.includes("--debug");
  try {
    const code = await main(argv.filter((a) => a !== "--debug"));
    process.exitCode = code ?? 0;
  } catch (e) {
    console.error(`${name}: ${describeError(e)}`);
    if (debug && e instanceof Error && e.stack) console.error(e.stack);
    // Exit now: a failed command may hold sockets or servers open that would keep the process alive.
    process.exit(1);
  }
}
