/** Errors that know where they come from: a file and/or a config path. The commands' handler (scripts/cli.ts) prints both. */
import { YAMLError } from "yaml";

export interface ErrorPlace {
  /** A file, as the user would name it (relative to the project folder where possible). */
  file?: string;
  /** A config path without the namespace, e.g. `guests[3].compose`. */
  configPath?: string;
}

/** An error reported as one line: `<file>: phoenix:<configPath>: <message>`. Its message never holds a file's content. */
export class PlacedError extends Error implements ErrorPlace {
  readonly file?: string;
  readonly configPath?: string;
  constructor(message: string, place: ErrorPlace) {
    super(message);
    this.name = "PlacedError";
    if (place.file !== undefined) this.file = place.file;
    if (place.configPath !== undefined) this.configPath = place.configPath;
  }
}

/**
 * What went wrong parsing a file, without any of its text: YAML's and JSON's own
 * messages quote the offending line (yaml@2 adds a code frame; V8's JSON.parse
 * quotes the input), and the file may be one a stack editor pointed at a secret.
 */
export function parseFailure(e: unknown): string {
  if (e instanceof YAMLError) {
    const at = e.linePos?.[0];
    return `not valid YAML (${e.code}${at ? ` at line ${at.line}, column ${at.col}` : ""})`;
  }
  if (e instanceof RangeError) return "nested too deeply to read";
  if (e instanceof SyntaxError) return "not valid JSON";
  return "could not be parsed";
}
