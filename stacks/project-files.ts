/**
 * Files a stack names (compose files, the node's CA, a node's SSH host key) are
 * read only from inside the project folder: the path, and the real path once
 * symlinks are followed, must stay inside it, and must be a regular file. A stack
 * file's editor can thus not make `pulumi preview` read ~/.aws/credentials.
 * Errors name the file and the config path, never its content.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { PlacedError } from "./errors";
import { requiredVariables } from "./compose-vars";
import type { StackConfig } from "./schema";
import type { ConfigIssue } from "./validate";

/** A project file the configuration names. */
export interface ProjectFileUse {
  file: string;
  /** Config path of the setting. */
  path: string;
  /** Made or fetched by the user before the first `up` (so only listed, offline), rather than part of the project. */
  fromNode: boolean;
  /** How to make it, where that is not obvious from the setting. */
  howTo?: string;
}

export function projectFileUses(config: StackConfig): ProjectFileUse[] {
  const uses: ProjectFileUse[] = [];
  if (config.proxmox.tls.caFile) uses.push({ file: config.proxmox.tls.caFile, path: "proxmox.tls.caFile", fromNode: true });
  config.proxmox.nodes.forEach((n, i) => {
    if (n.ssh?.hostKeyFile) uses.push({ file: n.ssh.hostKeyFile, path: `proxmox.nodes[${i}].ssh.hostKeyFile`, fromNode: true });
  });
  config.templates.forEach((t, i) => {
    const vllm = t.kind === "lxc" && t.layer === "vllm" ? t.versions?.vllm : undefined;
    // The vllm layer installs only hash-locked wheels (providers/template/layers.ts): the lock is made where PyPI is reachable.
    if (vllm) uses.push({ file: `providers/template/vllm-locks/${vllm}.txt`, path: `templates[${i}].versions.vllm`, fromNode: true, howTo: `providers/template/vllm-locks/generate.sh ${vllm}, on a machine that reaches PyPI; commit the file` });
  });
  config.guests.forEach((g, i) => {
    if (g.kind === "vm") g.dockerStacks.forEach((s, j) => uses.push({ file: s.compose, path: `guests[${i}].dockerStacks[${j}].compose`, fromNode: false }));
  });
  return uses;
}

type Located = { ok: true; real: string } | { ok: false; missing: boolean; message: string };

/** Where a project file really is, or why it may not be read. */
function locate(root: string, file: string): Located {
  const inside = (base: string, p: string) => {
    const rel = path.relative(base, p);
    return rel !== "" && !rel.startsWith(`..${path.sep}`) && rel !== ".." && !path.isAbsolute(rel);
  };
  if (file.includes("\0")) return { ok: false, missing: false, message: `${JSON.stringify(file)} is not a file name` };
  const full = path.resolve(root, file);
  if (!inside(root, full)) return { ok: false, missing: false, message: `${file} is outside the project folder: name a file inside it, relative to it` };
  let real: string;
  try {
    real = fs.realpathSync(full);
  } catch {
    return { ok: false, missing: true, message: `${file} does not exist in the project folder` };
  }
  // realpath of the root too: the project itself may sit behind a symlink (e.g. /tmp on macOS).
  if (!inside(fs.realpathSync(root), real)) return { ok: false, missing: false, message: `${file} leads outside the project folder through a symlink: keep the file itself in the project` };
  if (!fs.statSync(real).isFile()) return { ok: false, missing: false, message: `${file} is not a regular file` };
  return { ok: true, real };
}

/**
 * Problems with the project files a configuration names. Missing files fetched
 * from the node are errors only when `requireAll` (pulumi preview/up); otherwise
 * they come back in `missing`, to list like unset secrets.
 */
export function projectFileIssues(config: StackConfig, root: string, requireAll: boolean): { issues: ConfigIssue[]; missing: ProjectFileUse[] } {
  const issues: ConfigIssue[] = [];
  const missing: ProjectFileUse[] = [];
  for (const use of projectFileUses(config)) {
    const found = locate(root, use.file);
    if (found.ok) continue;
    // A file made by a command (the vLLM lock) is listed, never an error here: its template's own check
    // refuses preview without it (providers/template/lxc-template.ts), and only stacks that build it need it.
    if (found.missing && use.fromNode && (!requireAll || use.howTo)) missing.push(use);
    else issues.push({ path: use.path, message: found.message });
  }
  issues.push(...composeVariableIssues(config, root));
  return { issues, missing };
}

/**
 * What PortainerStack's check refuses at preview, caught here: a compose file's required
 * variables (${VAR:?…}) that the stack's env and secretEnv do not set. Names only, never values.
 */
function composeVariableIssues(config: StackConfig, root: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  config.guests.forEach((g, i) => {
    if (g.kind !== "vm") return;
    g.dockerStacks.forEach((s, j) => {
      if (!locate(root, s.compose).ok) return;
      const missing = requiredVariables(readProjectFile(root, s.compose, `guests[${i}].dockerStacks[${j}].compose`)).filter((v) => !(v in s.env) && !(v in s.secretEnv));
      if (missing.length > 0) issues.push({ path: `guests[${i}].dockerStacks[${j}].env`, message: `${s.compose} requires ${missing.join(", ")}: set ${missing.length > 1 ? "them" : "it"} in the stack's env (or secretEnv)` });
    });
  });
  return issues;
}

/** A project file's text, trimmed; throws a PlacedError naming the file and config path. */
export function readProjectFile(root: string, file: string, configPath: string): string {
  const found = locate(root, file);
  if (!found.ok) throw new PlacedError(found.message, { configPath });
  // O_NOFOLLOW: the file checked above cannot be swapped for a symlink before it is opened.
  const fd = fs.openSync(found.real, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    if (!fs.fstatSync(fd).isFile()) throw new PlacedError(`${file} is not a regular file`, { configPath });
    return fs.readFileSync(fd, "utf8").trim();
  } finally {
    fs.closeSync(fd);
  }
}
