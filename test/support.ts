/** What many test files need alike: the repo's paths, the committed stacks, golden files, and shellcheck. */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { expect } from "vitest";
import { readStackFile, validateStack } from "../stacks/load";
import type { StackConfig } from "../stacks/schema";

export const ROOT = path.resolve(__dirname, "..");
/** Third-party schemas the tests check rendered files against (see each folder's NOTE.md). */
export const REFERENCE_DIR = path.join(ROOT, "test", "reference");

/** A committed stack file, validated offline (no secrets needed). */
export function loadStack(file: string): StackConfig {
  const result = validateStack(readStackFile(path.join(ROOT, file)), { requireSecrets: false });
  if (result.ok !== true) throw new Error(`${file} does not validate: ${JSON.stringify(result)}`);
  return result.config;
}

/** Compares with <dir>/<name>; UPDATE_GOLDEN=1 rewrites the file instead. */
export function goldenChecker(dir: string): (name: string, content: string) => void {
  return (name, content) => {
    const file = path.join(dir, name);
    if (process.env.UPDATE_GOLDEN === "1") {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, content);
      return;
    }
    if (!fs.existsSync(file)) throw new Error(`golden file ${file} is missing: run UPDATE_GOLDEN=1 npx vitest run ${path.relative(ROOT, dir)}`);
    expect(content, `${name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it)`).toBe(fs.readFileSync(file, "utf8"));
  };
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `phoenix-${prefix}-`));
}

/** Fails with shellcheck's findings (all severities, style included) for a rendered script. */
export function shellcheck(name: string, script: string): void {
  try {
    execFileSync("shellcheck", ["--shell=bash", "--severity=style", "-"], { input: script, stdio: "pipe", encoding: "utf8" });
  } catch (e) {
    const err = e as { stdout?: string };
    throw new Error(`shellcheck finds problems in ${name}:\n${err.stdout ?? String(e)}`, { cause: e });
  }
}

export { freePort } from "./rig/ports";
