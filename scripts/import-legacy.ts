/**
 * `npm run import-legacy -- <dir> --stack <name> [--force] [--debug]`: reads
 * the bash orchestrator's JSON from <dir> and always writes its result in the
 * project directory: Pulumi.<name>.yaml when it validates, otherwise the draft
 * Pulumi.<name>.draft.yaml; and import-report.md beside it, which it prints.
 * Exit 0: the stack file is written and valid; 1: a draft and the problems to
 * fix, or a legacy file refused; 2: usage.
 *
 * The legacy folder is input from elsewhere, read defensively: each file is a
 * regular file of at most MAX_FILE_BYTES, a symlink only when it stays inside
 * the folder, JSON at most MAX_DEPTH deep, and no error quotes a file's content.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { LegacyInput } from "../stacks/legacy/convert";
import { LEGACY_FILES } from "../stacks/legacy/format";
import { draftFileName, importLegacy } from "../stacks/legacy/import";

const USAGE = "usage: npm run import-legacy -- <legacy config dir> --stack <name> [--force] [--debug]";
/** The largest legacy file seen is ~33 KB; 4 MiB leaves room and bounds memory. */
export const MAX_FILE_BYTES = 4 * 1024 * 1024;
/** The legacy files nest 6 levels deep; JSON deeper than this is refused before it is parsed. */
export const MAX_DEPTH = 64;
/** Names of bin/ scripts listed at most, and how deep: the list only says which scripts exist. */
const MAX_SCRIPTS = 5000;
const MAX_SCRIPT_DEPTH = 4;

export interface ImportRun {
  code: number;
  stdout: string;
}

/** A legacy file refused, named with the legacy field where known; never with its content. */
export class LegacyFileError extends Error {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`${file}: ${reason}`);
  }
}

interface Args {
  dir: string;
  stack: string;
  force: boolean;
  debug: boolean;
}

function parseArgs(args: string[]): Args | string {
  let dir: string | undefined;
  let stack: string | undefined;
  let force = false;
  let debug = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--force") force = true;
    else if (arg === "--debug") debug = true;
    else if (arg === "--stack") stack = args[++i];
    else if (arg.startsWith("--stack=")) stack = arg.slice("--stack=".length);
    else if (arg.startsWith("-")) return `unknown option ${arg}`;
    else if (dir === undefined) dir = arg;
    else return `unexpected argument ${arg}`;
  }
  if (!dir || !stack) return "name the legacy config directory and the stack";
  // Pulumi's own rule for stack names, so the file name is one Pulumi will pick up.
  if (!/^[A-Za-z0-9_.-]+$/.test(stack)) return `'${stack}' is not a stack name: letters, digits, '_', '.', '-'`;
  return { dir, stack, force, debug };
}

/**
 * The text of one legacy file, or undefined when it does not exist. Refused:
 * anything but a regular file (a FIFO, /dev/zero), a symlink whose target
 * leaves the legacy folder (/etc/passwd), and files over MAX_FILE_BYTES.
 * O_NONBLOCK keeps a FIFO swapped in after the check from blocking the open;
 * the descriptor is checked again before reading, and reading stops at the limit.
 */
export function readLegacyFile(dir: string, name: string): string | undefined {
  const file = path.join(dir, name);
  let link: fs.Stats;
  try {
    link = fs.lstatSync(file);
  } catch {
    return undefined;
  }
  let target = file;
  if (link.isSymbolicLink()) {
    try {
      target = fs.realpathSync(file);
    } catch {
      throw new LegacyFileError(name, "a symlink to nothing");
    }
    const root = fs.realpathSync(dir);
    if (path.relative(root, target).startsWith("..") || path.isAbsolute(path.relative(root, target))) {
      throw new LegacyFileError(name, "a symlink that leaves the legacy folder: refused (copy the file into the folder if it is meant)");
    }
  }
  const fd = fs.openSync(target, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new LegacyFileError(name, "not a regular file: refused");
    if (stat.size > MAX_FILE_BYTES) throw new LegacyFileError(name, `${stat.size} bytes, over the ${MAX_FILE_BYTES}-byte limit for a legacy file: refused`);
    const buffer = Buffer.alloc(MAX_FILE_BYTES + 1);
    let length = 0;
    for (let n = -1; n !== 0 && length <= MAX_FILE_BYTES; length += n) n = fs.readSync(fd, buffer, length, buffer.length - length, null);
    if (length > MAX_FILE_BYTES) throw new LegacyFileError(name, `over the ${MAX_FILE_BYTES}-byte limit for a legacy file: refused`);
    return buffer.subarray(0, length).toString("utf8");
  } finally {
    fs.closeSync(fd);
  }
}

/** Line and column of a character offset, for error messages that must not quote the text. */
function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset).split("\n");
  return `line ${before.length}, column ${before.at(-1)!.length + 1}`;
}

/**
 * JSON.parse of a legacy file, after checking its nesting depth (the importer
 * walks the result recursively). Errors give a position, never the text.
 */
export function parseLegacyJson(name: string, text: string): unknown {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (ch === "\\") i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "{" || ch === "[") {
      if (++depth > MAX_DEPTH) throw new LegacyFileError(name, `nested deeper than ${MAX_DEPTH} levels at ${lineColumn(text, i)}: refused`);
    } else if (ch === "}" || ch === "]") depth--;
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    // V8 says "at position N" (and sometimes "(line L column C)") after a quote of the text: keep only the position.
    const at = /position (\d+)/.exec((e as Error).message);
    throw new LegacyFileError(name, `not valid JSON${at ? ` at ${lineColumn(text, Number(at[1]))}` : ""}`);
  }
}

/** Script names the legacy config may reference: the orchestrator kept them in bin/ beside etc/. Names only, never contents. */
function listScripts(dir: string): Set<string> | undefined {
  const isDir = (d: string) => {
    try {
      return fs.lstatSync(d).isDirectory();
    } catch {
      return false;
    }
  };
  const roots = [path.join(dir, "bin"), path.join(dir, "..", "bin")].filter(isDir);
  if (roots.length === 0) return undefined;
  const names = new Set<string>();
  const walk = (d: string, depth: number): void => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      if (names.size >= MAX_SCRIPTS) return;
      // Dirent does not follow symlinks, so a link to / is listed as a name, not walked.
      if (entry.isDirectory()) {
        if (depth < MAX_SCRIPT_DEPTH) walk(path.join(d, entry.name), depth + 1);
      } else names.add(entry.name);
    }
  };
  roots.forEach((root) => walk(root, 0));
  return names;
}

function run(parsed: Args, cwd: string): ImportRun {
  const dir = path.resolve(cwd, parsed.dir);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) return { code: 2, stdout: `${parsed.dir} is not a directory\n${USAGE}` };
  const stackName = `Pulumi.${parsed.stack}.yaml`;
  const draftName = draftFileName(parsed.stack);
  for (const name of [stackName, draftName]) {
    if (fs.existsSync(path.join(cwd, name)) && !parsed.force) {
      return { code: 2, stdout: `${name} already exists: choose another stack name, or pass --force to replace it` };
    }
  }

  const input: LegacyInput = { scripts: listScripts(dir) };
  for (const [key, name] of Object.entries(LEGACY_FILES) as [keyof typeof LEGACY_FILES, string][]) {
    const text = readLegacyFile(dir, name);
    if (text !== undefined) input[key] = parseLegacyJson(name, text);
  }
  if (Object.keys(LEGACY_FILES).every((key) => input[key as keyof typeof LEGACY_FILES] === undefined)) {
    return { code: 2, stdout: `${parsed.dir} holds none of ${Object.values(LEGACY_FILES).join(", ")}` };
  }

  const outcome = importLegacy(input, parsed.stack);
  fs.writeFileSync(path.join(cwd, "import-report.md"), outcome.report);
  if (outcome.stackYaml !== undefined) {
    fs.writeFileSync(path.join(cwd, stackName), outcome.stackYaml);
    return { code: 0, stdout: `${outcome.report}\nWrote ${stackName} and import-report.md.` };
  }
  if (outcome.draftYaml === undefined) return { code: 1, stdout: `${outcome.report}\n${outcome.errors}\nNothing but import-report.md was written.` };
  fs.writeFileSync(path.join(cwd, draftName), outcome.draftYaml);
  return { code: 1, stdout: `${outcome.report}\n${outcome.errors}\nWrote the draft ${draftName} and import-report.md; ${stackName} was not written.` };
}

/** The command: every failure is one message naming the file (and field), exit 1; the stack trace only with --debug. */
export function runImport(args: string[], cwd: string): ImportRun {
  const parsed = parseArgs(args);
  if (typeof parsed === "string") return { code: 2, stdout: `${parsed}\n${USAGE}` };
  try {
    return run(parsed, cwd);
  } catch (e) {
    const error = e as Error;
    const message = error instanceof LegacyFileError ? error.message : `import-legacy failed: ${error.name}${(error as NodeJS.ErrnoException).code ? ` ${(error as NodeJS.ErrnoException).code}` : ""}${(error as NodeJS.ErrnoException).path ? ` on ${path.basename((error as NodeJS.ErrnoException).path!)}` : ""}`;
    return { code: 1, stdout: parsed.debug ? `${message}\n${error.stack ?? ""}` : `${message} (run with --debug for the stack trace)` };
  }
}

if (require.main === module) {
  const { code, stdout } = runImport(process.argv.slice(2), process.cwd());
  console.log(stdout);
  process.exitCode = code;
}
