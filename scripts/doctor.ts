/**
 * `npm run doctor -- <stack> [--json] [--outputs <file>] [--ca <file>] [--ssh-key <file>]`:
 * the gateway's status page first (scripts/doctor/status-page.ts), then inside-out diagnostics of the services it does not show healthy (guest, firewall,
 * host → service, gateway → Traefik → service, through the gateway), one table,
 * and for each failing service the first failing layer with what to do.
 * Exit 0 when every service is healthy, 1 when one is not (or on an error, printed by runCli), 2 on a usage or configuration error.
 */
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { formatIssues, readStackFile, validateStack } from "../stacks/load";
import { parseFailure, PlacedError } from "../stacks/errors";
import type { StackConfig } from "../stacks/schema";
import { nodeChannels, sshNode } from "./doctor/channels";
import { hostNodeOf } from "../stacks/cluster";
import { diagnose } from "./doctor/diagnose";
import { KERNEL_MODULE_COMMAND, kernelModuleCheck } from "./doctor/kernel-modules";
import { planDoctor, type Address, type OutputsJson } from "./doctor/plan";
import { renderJson, renderTable } from "./doctor/report";
import { backendTelemetry, telemetrySource } from "./doctor/telemetry";
import { runChecks, type Channels } from "./doctor/run";
import { fetchStatusPage, healthyOnPage, STATUS_PAGE_PATH, statusPageFindings, type StatusPageResult } from "./doctor/status-page";
import { runCli } from "./cli";
import { drillFindings } from "./doctor/restore-drill";
import { stackApi, stackSshConnection } from "./stack-guest";
import type { PveApi } from "../providers/pve";

export interface DoctorArgs {
  stack: string;
  json: boolean;
  outputs?: string;
  ca?: string;
  sshKey?: string;
  /** A guest (name or vmid) whose newest backup is restored into a scratch guest and checked (scripts/doctor/restore-drill.ts). */
  restoreDrill?: string;
}

export interface DoctorDeps {
  cwd: string;
  /** The node and guest channels for the loaded stack. */
  channels(config: StackConfig, args: DoctorArgs): Promise<Channels>;
  /** What `pulumi stack output --json --show-secrets` prints, when no --outputs file is given; undefined when unavailable. */
  stackOutputs?(stack: string): Promise<string | undefined>;
  resolve?: (a: Address) => Address;
  now?: () => Date;
  /** Reads the gateway's status page; fetchStatusPage (HTTPS) unless a test gives its own. */
  statusPage?: (gateway: Address, host: string, caRoot: X509Certificate | undefined) => Promise<StatusPageResult>;
  /** A token client for the stack's API, for the restore drill. */
  api?(config: StackConfig, args: DoctorArgs): Promise<PveApi>;
}

const USAGE = "usage: npm run doctor -- <stack> [--json] [--outputs <outputs.json>] [--ca <root.pem>] [--ssh-key <private key>] [--restore-drill <guest>]";

export function parseArgs(argv: readonly string[]): DoctorArgs | string {
  const rest = [...argv];
  const args: Partial<DoctorArgs> = { json: false };
  while (rest.length > 0) {
    const a = rest.shift()!;
    if (a === "--json") args.json = true;
    else if (a === "--restore-drill") {
      const value = rest.shift();
      if (!value) return `--restore-drill needs a guest name or vmid\n${USAGE}`;
      args.restoreDrill = value;
    } else if (a === "--outputs" || a === "--ca" || a === "--ssh-key") {
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
  const name = `Pulumi.${args.stack}.yaml`;
  const file = path.join(deps.cwd, name);
  if (!fs.existsSync(file)) return { code: 2, text: `no stack file ${name} in ${deps.cwd}` };
  const checked = validateStack(readStackFile(file, name), { requireSecrets: false, projectRoot: deps.cwd });
  if (checked.ok === false) return { code: 2, text: `${name}: ${formatIssues(checked.issues)}` };
  if (checked.ok === "deferred") return { code: 2, text: `${name}: values not known: ${checked.unknownPaths.join(", ")}` };

  const notes: string[] = [];
  let outputsText: string | undefined;
  if (args.outputs) outputsText = readArgFile(deps.cwd, args.outputs);
  else {
    outputsText = await deps.stackOutputs?.(args.stack);
    if (outputsText === undefined) notes.push(`no stack outputs for ${args.stack}: addresses come from the stack file`);
  }
  const outputs = parseOutputs(outputsText, args.outputs ?? "pulumi stack output --json");
  const caPem = outputs.caRootPem ?? (args.ca ? readArgFile(deps.cwd, args.ca) : undefined);
  if (!caPem) notes.push("no CA root (caRootPem output or --ca): certificate chains are shown, not verified");

  const plan = planDoctor(checked.config, outputs);
  const channels = await deps.channels(checked.config, args);
  const caRoot = caPem ? new X509Certificate(caPem) : undefined;
  // The status page first: the services it shows healthy are reported from it; the others, and all of
  // them when it cannot be read, are probed layer by layer.
  const resolve = deps.resolve ?? ((a: Address) => a);
  const status = await (deps.statusPage ?? fetchStatusPage)(resolve(plan.statusPage.gateway), plan.statusPage.host, caRoot);
  const pageUrl = `https://${plan.statusPage.host}${STATUS_PAGE_PATH}`;
  const fromPage = "page" in status ? statusPageFindings(status.page) : [];
  const healthy = "page" in status ? healthyOnPage(status.page) : new Set<string>();
  if ("page" in status) notes.push(`status page ${pageUrl}: ${healthy.size} service(s) healthy there, the others probed layer by layer`);
  else notes.push(`status page ${pageUrl} not read (${status.error}): every layer of every service probed`);
  const probed = await runChecks(
    plan.checks.filter((c) => !healthy.has(c.service)),
    channels,
    { resolve, ...(caRoot ? { caRoot } : {}), now: (deps.now ?? (() => new Date()))() },
  );
  const findings = [...fromPage, ...probed];
  const diagnoses = diagnose(findings, plan.contexts);
  // The node's kernel-upgrade preflight, when the stack pins a host NVIDIA driver: reported only when it finds something.
  const driver = checked.config.host.nvidiaDriver?.version;
  if (driver) {
    const preflight = kernelModuleCheck(driver, await channels.node.run(KERNEL_MODULE_COMMAND));
    if (preflight.finding.status === "fail") findings.push(preflight.finding);
    else notes.push(`node ${preflight.finding.check}: ${preflight.finding.detail}`);
    if (preflight.diagnosis) diagnoses.unshift(preflight.diagnosis);
  }
  if (args.restoreDrill !== undefined) {
    if (!deps.api) return { code: 2, text: "the restore drill needs the API, which this doctor was not given" };
    const drill = await drillFindings(checked.config, args.restoreDrill, plan.checks, channels, await deps.api(checked.config, args));
    findings.push(...drill.findings);
    diagnoses.push(...drill.diagnoses);
  }
  // What Prometheus and Loki on the ops guest saw of each failing backend (scripts/doctor/telemetry.ts).
  const source = telemetrySource(checked.config);
  if (source) {
    const now = (deps.now ?? (() => new Date()))();
    await Promise.all(
      diagnoses.map(async (d) => {
        const ctx = plan.contexts.get(d.service);
        if (ctx) d.telemetry = await backendTelemetry(ctx, source, { resolve: deps.resolve ?? ((a) => a), now });
      }),
    );
  }
  // In a cluster, each service is labelled and grouped by the node its guest runs on (scripts/doctor/report.ts).
  const nodes = checked.config.proxmox.nodes.length > 1 ? Object.fromEntries([...plan.contexts].map(([service, ctx]) => [service, ctx.node])) : undefined;
  const report = { ok: diagnoses.length === 0, notes, findings, diagnoses, ...(nodes ? { nodes } : {}) };
  return { code: report.ok ? 0 : 1, text: args.json ? renderJson(report) : renderTable(report) };
}

/** A file named on the command line (the operator's own, so not confined to the project); errors name it. */
function readArgFile(cwd: string, file: string): string {
  try {
    return fs.readFileSync(path.resolve(cwd, file), "utf8");
  } catch (e) {
    throw new PlacedError(`cannot be read (${(e as NodeJS.ErrnoException).code ?? "error"})`, { file });
  }
}

/** The stack outputs: they hold secrets (--show-secrets), so a parse error never quotes them. */
function parseOutputs(text: string | undefined, from: string): OutputsJson {
  if (text === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new PlacedError(parseFailure(e), { file: from });
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new PlacedError("must be a JSON object of stack outputs", { file: from });
  return parsed as OutputsJson;
}

const run = promisify(execFile);

/**
 * The nodes' SSH connections from the stack file, with the key from --ssh-key or the stack's
 * secret (read once): host.node's for the node's own checks, and each guest's node for the
 * commands inside it (channels.ts guestsViaNodes), each connected on first use.
 */
async function sshChannels(config: StackConfig, args: DoctorArgs, cwd: string): Promise<Channels> {
  const why = "the doctor reaches each node, and the guests on it, over SSH";
  const hostNode = hostNodeOf(config);
  const first = await stackSshConnection(cwd, args.stack, config, hostNode, why, args.sshKey ? readArgFile(cwd, args.sshKey) : undefined);
  return nodeChannels(config, async (name) => sshNode(name === hostNode ? first : await stackSshConnection(cwd, args.stack, config, name, why, first.privateKey)));
}

if (require.main === module) {
  const cwd = process.cwd();
  void runCli("doctor", async (argv) => {
    const { code, text } = await runDoctor(argv, {
      cwd,
      channels: (config, args) => sshChannels(config, args, cwd),
      api: (config, args) => stackApi(cwd, args.stack, config),
      stackOutputs: (stack) =>
        run("pulumi", ["stack", "output", "--json", "--show-secrets", "--stack", stack], { cwd, maxBuffer: 16 * 1024 * 1024 }).then(
          (r) => r.stdout,
          () => undefined,
        ),
    });
    (code === 0 ? console.log : console.error)(text);
    return code;
  });
}
