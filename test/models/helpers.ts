/** Shared by the model-server tests: the prod stack's servers, golden files, and the real tools (shellcheck, systemd-analyze). */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { goldenChecker } from "../support";
import { modelServerSpec, type ModelServerSpec } from "../../components/models/server";
import { readStackFile, validateStack, type RawStack } from "../../stacks/load";
import type { StackConfig } from "../../stacks/schema";

const ROOT = path.resolve(__dirname, "..", "..");
const GOLDEN_DIR = path.join(__dirname, "golden");

export function prodRaw(): RawStack {
  return readStackFile(path.join(ROOT, "Pulumi.prod.yaml"));
}

export function configOf(raw: RawStack): StackConfig {
  const result = validateStack(raw, { requireSecrets: false });
  if (result.ok !== true) throw new Error(`the stack does not validate: ${JSON.stringify(result)}`);
  return result.config;
}

export const prodConfig = (): StackConfig => configOf(prodRaw());

export function prodSpec(vmid: number): ModelServerSpec {
  return modelServerSpec(prodConfig(), vmid);
}

/** Compares with test/models/golden/<name>; UPDATE_GOLDEN=1 rewrites the file instead. */
export const expectGolden = goldenChecker(GOLDEN_DIR);

export { shellcheck, tempDir } from "../support";

/** Writes an executable that stands in for a tool, at dir/name. */
export function standIn(dir: string, name: string, script: string): string {
  const file = path.join(dir, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(file, `#!/usr/bin/env bash\n${script}`, { mode: 0o755 });
  return file;
}

export interface SystemdVerdict {
  /** What `systemd-analyze verify` printed (warnings included); empty for a clean unit. */
  warnings: string;
  ok: boolean;
  /** The command line as systemd parsed it, split back into argv. */
  argv: string[];
  /** The Environment= assignments as systemd parsed them. */
  environment: string[];
}

/**
 * The values of one field of systemd's debug dump ("Command Line", "Description", "Environment"), in order.
 * The dump is split on "\n" alone: a unit value may hold U+2028 or U+0085, which systemd passes through as
 * ordinary characters but which JavaScript's `.` and multiline `$` treat as line ends (the fuzz once read back a
 * vLLM model "\u2028'Qwen3-4B" cut at the U+2028).
 */
export function dumpFields(dump: string, field: string): string[] {
  const prefix = `${field}: `;
  return dump.split("\n").flatMap((line) => {
    const at = line.replace(/^[\t ]*/, "");
    return at.startsWith(prefix) ? [at.slice(prefix.length)] : [];
  });
}

/**
 * Runs `systemd-analyze verify` on a unit, with its ExecStart binary replaced by
 * an empty executable (verify refuses a unit whose binary does not exist), and
 * reads back from systemd's debug dump how it parsed ExecStart and Environment.
 */
export function systemdVerify(unitName: string, content: string, dir: string): SystemdVerdict {
  const binary = /^ExecStart=(\S+)/m.exec(content)?.[1];
  if (!binary) throw new Error(`${unitName} has no ExecStart`);
  const standInBinary = standIn(path.join(dir, "bin"), path.basename(binary), "exit 0\n");
  const unitFile = path.join(dir, unitName);
  fs.writeFileSync(unitFile, content.replace(`ExecStart=${binary}`, `ExecStart=${standInBinary}`));
  const plain = spawnSync("systemd-analyze", ["verify", "--man=no", unitFile], { encoding: "utf8" });
  const debug = spawnSync("systemd-analyze", ["verify", "--man=no", unitFile], { encoding: "utf8", env: { ...process.env, SYSTEMD_LOG_LEVEL: "debug" } });
  const dump = `${debug.stdout}${debug.stderr}`;
  const commandLine = dumpFields(dump, "Command Line")[0];
  return {
    ok: plain.status === 0,
    warnings: `${plain.stdout}${plain.stderr}`.trim(),
    argv: commandLine === undefined ? [] : [binary, ...splitDumpedCommandLine(commandLine).slice(1)],
    environment: dumpFields(dump, "Environment"),
  };
}

/**
 * systemd's dump quotes each argument like a shell word ("..." with backslash
 * escapes); `$$` is still there because variables are expanded at exec time,
 * where `$$` becomes `$`.
 */
function splitDumpedCommandLine(line: string): string[] {
  const args: string[] = [];
  let i = 0;
  while (i < line.length) {
    if (line[i] === " ") {
      i++;
      continue;
    }
    let arg = "";
    while (i < line.length && line[i] !== " ") {
      if (line[i] === '"') {
        i++;
        while (i < line.length && line[i] !== '"') {
          if (line[i] === "\\") i++;
          arg += line[i] ?? "";
          i++;
        }
        i++;
      } else {
        if (line[i] === "\\") i++;
        arg += line[i] ?? "";
        i++;
      }
    }
    args.push(arg.replace(/\$\$/g, "$"));
  }
  return args;
}
