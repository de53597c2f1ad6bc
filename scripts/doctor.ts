/**
 * `npm run doctor -- <stack> [--json] [--outputs <file>] [--ca <file>] [--ssh-key <file>]`:
 * inside-out diagnostics of every service of a running stack (guest, firewall,
 * host → service, gateway → Traefik → service, through the gateway), one table,
 * and for each failing service the first failing layer with what to do.
 * Exit 0 when every service is healthy, 1 when one is not, 2 on a usage or configuration error.
 */
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { formatIssues, readStackFile, validateStack } from "../stacks/load";
import type { StackConfig } from "../stacks/schema";
import { guestsViaNode, sshNode } from "./doctor/channels";
import { diagnose } from "./doctor/diagnose";
import { planDoctor, type Address, type OutputsJson } from "./doctor/plan";
import { renderJson, renderTable } from "./doctor/report";
import { runChecks, type Channels } from "./doctor/run";

export interface DoctorArgs {
  stack: string;
  json: boolean;
  outputs?: string;
  ca?: string;
  sshKey?: string;
}

export interface DoctorDeps {
  cwd: string;
  /** The node and guest channels for the loaded stack. */
  channels(config: StackConfig, args: DoctorArgs): Promise<Channels>;
  /** What `pulumi stack output --json --show-secrets` prints, when no --outputs file is given; undefined when unavailable. */
  stackOutputs?(stack: string): Promise<string | undefined>;
  resolve?: (a: Address) => Address;
  now?: () => Date;
}

const USAGE = "usage: npm run doctor -- <stack> [--json] [--outputs <outputs.json>] [--ca <root.pem>] [--ssh-key <private key>]";

export function parseArgs(argv: readonly string[]): DoctorArgs | string {
  const rest = [...argv];
  const args: Partial<DoctorArgs> = { json: false };
  while (rest.length > 0) {
    const a = rest.shift()!;
    if (a === "--json") args.json = true;
    else if (a === "--outputs" || a === "--ca" || a === "--ssh-key") {
      const value = rest.shift();
      if (!value) return `${a} needs a file\n${USAGE}`;
      args[a === "--outputs" ? "outputs" : a === "--ca" ? "ca" : "sshKey"] = value;
    } else if (a.startsWith("-")) return `unknown option ${a}\n${USAGE}`;
    else if (args.stack === undefined) args.stack = a;
    else return `one stack only\n${USAGE}`;
  }
  return args.stack ? (args as DoctorArgs) : USAGE;
}

export async function runDoctor(argv: readonly string[], deps: DoctorDeps): Promise<{ code: number; text: string }> {
  const args = parseArgs(argv);
  if (typeof args === "string") return { code: 2, text: args };
  const file = path.join(deps.cwd, `Pulumi.${args.stack}.yaml`);
  if (!fs.existsSync(file)) return { code: 2, text: `no stack file Pulumi.${args.stack}.yaml in ${deps.cwd}` };
  const checked = validateStack(readStackFile(file), { requireSecrets: false });
  if (checked.ok === false) return { code: 2, text: formatIssues(checked.issues) };
  if (checked.ok === "deferred") return { code: 2, text: `values not known: ${checked.unknownPaths.join(", ")}` };

  const notes: string[] = [];
  let outputsText: string | undefined;
  if (args.outputs) outputsText = fs.readFileSync(path.resolve(deps.cwd, args.outputs), "utf8");
  else {
    outputsText = await deps.stackOutputs?.(args.stack);
    if (outputsText === undefined) notes.push(`no stack outputs for ${args.stack}: addresses come from the stack file`);
  }
  const outputs = (outputsText === undefined ? {} : JSON.parse(outputsText)) as OutputsJson;
  const caPem = outputs.caRootPem ?? (args.ca ? fs.readFileSync(path.resolve(deps.cwd, args.ca), "utf8") : undefined);
  if (!caPem) notes.push("no CA root (caRootPem output or --ca): certificate chains are shown, not verified");

  const plan = planDoctor(checked.config, outputs);
  const findings = await runChecks(plan.checks, await deps.channels(checked.config, args), {
    resolve: deps.resolve ?? ((a) => a),
    ...(caPem ? { caRoot: new X509Certificate(caPem) } : {}),
    now: (deps.now ?? (() => new Date()))(),
  });
  const diagnoses = diagnose(findings, plan.contexts);
  const report = { ok: diagnoses.length === 0, notes, findings, diagnoses };
  return { code: report.ok ? 0 : 1, text: args.json ? renderJson(report) : renderTable(report) };
}

const run = promisify(execFile);

/** The node's SSH connection from the stack file, with the key from --ssh-key or the stack's secret. */
async function sshChannels(config: StackConfig, args: DoctorArgs, cwd: string): Promise<Channels> {
  const nodeName = config.host.node ?? config.proxmox.nodes[0]!.name;
  const ssh = config.proxmox.nodes.find((n) => n.name === nodeName)?.ssh;
  if (!ssh) throw new Error(`proxmox.nodes[${nodeName}].ssh is not set: the doctor reaches the node and its guests over SSH`);
  const hostKey = ssh.hostKey ?? fs.readFileSync(path.resolve(cwd, ssh.hostKeyFile!), "utf8");
  const privateKey = args.sshKey
    ? fs.readFileSync(path.resolve(cwd, args.sshKey), "utf8")
    : (await run("pulumi", ["config", "get", "phoenix:sshPrivateKey", "--stack", args.stack], { cwd })).stdout;
  const node = sshNode({ host: ssh.host, port: ssh.port, username: ssh.user, hostKey, privateKey });
  return { node, guest: guestsViaNode(node) };
}

if (require.main === module) {
  const cwd = process.cwd();
  runDoctor(process.argv.slice(2), {
    cwd,
    channels: (config, args) => sshChannels(config, args, cwd),
    stackOutputs: (stack) =>
      run("pulumi", ["stack", "output", "--json", "--show-secrets", "--stack", stack], { cwd, maxBuffer: 16 * 1024 * 1024 }).then(
        (r) => r.stdout,
        () => undefined,
      ),
  }).then(
    ({ code, text }) => {
      (code === 0 ? console.log : console.error)(text);
      process.exitCode = code;
    },
    (e: unknown) => {
      console.error(`doctor failed: ${e instanceof Error ? e.message : String(e)}`);
      process.exitCode = 2;
    },
  );
}
