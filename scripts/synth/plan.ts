/**
 * What synth tells a reviewer about a stack, computed from the recorded graph:
 * resources by tier, the dependency waves (what can run in parallel), the
 * guests and the GPU budget, and the graph in Graphviz form. Pure.
 */
import { clusterSection } from "./cluster";
import type { Registered } from "../offline-program";
import { guestNode, snapshotMethod } from "../../components/guest/snapshot";
import { templateArchive } from "../../components/templates";
import { backupCoverage, pruneBackups } from "../../stacks/backup";
import { gpuAllocation, modelsOf } from "../../stacks/plan";
import type { StackConfig } from "../../stacks/schema";
import { overviewSection } from "./overview";
import { ROLE_TIER, TIERS, type Tier } from "./tiers";

/** Tiers by the type of the root's child (machine/machine.ts); guests go by their role. */
const TIER_OF_TYPE: Record<string, Tier> = {
  "phoenix:host:HostPrep": "host",
  "phoenix:firewall:ClusterFirewall": "firewall",
  "phoenix:template:Templates": "templates",
  "phoenix:observability:Observability": "observability",
  "phoenix:backup:DataProtection": "backup",
  "phoenix:index:Core": "core",
  "phoenix:index:Models": "models",
  "phoenix:index:Docker": "docker",
};

/** The tier a resource belongs to: the child of the machine's root it descends from, and for a guest its role. */
export function tierOf(r: Registered, byName: Map<string, Registered>, config: StackConfig): Tier {
  if (r.type.startsWith("pulumi:providers:")) return "providers";
  // The resources on the way down from the root: the tier, then (under the guests' tier) the guest.
  const path: Registered[] = [];
  for (let at: Registered | undefined = r; at && at.type !== "phoenix:index:Machine"; at = at.parent ? byName.get(at.parent) : undefined) path.unshift(at);
  const [tier, below] = path;
  if (tier && TIER_OF_TYPE[tier.type]) return TIER_OF_TYPE[tier.type]!;
  const vmid = below && /^guest-(\d+)$/.exec(below.name)?.[1];
  const guest = vmid ? config.guests.find((g) => g.vmid === Number(vmid)) : undefined;
  return (guest?.role && ROLE_TIER[guest.role.type]) || "guests";
}

/** Custom resources a resource waits for: a component dependency stands for all its custom descendants. */
function customDeps(r: Registered, byName: Map<string, Registered>, children: Map<string, Registered[]>): string[] {
  const out = new Set<string>();
  const expand = (name: string) => {
    const d = byName.get(name);
    if (!d) return;
    if (d.custom) out.add(d.name);
    else for (const c of children.get(d.name) ?? []) expand(c.name);
  };
  r.dependsOn.forEach(expand);
  return [...out];
}

/** Resources grouped by the earliest step they can run at, given unbounded parallelism. */
export function waves(resources: readonly Registered[]): string[][] {
  const byName = new Map(resources.map((r) => [r.name, r]));
  const children = new Map<string, Registered[]>();
  for (const r of resources) if (r.parent) children.set(r.parent, [...(children.get(r.parent) ?? []), r]);
  const level = new Map<string, number>();
  const visiting = new Set<string>();
  const levelOf = (name: string): number => {
    const known = level.get(name);
    if (known !== undefined) return known;
    if (visiting.has(name)) throw new Error(`dependency cycle through ${name}`);
    visiting.add(name);
    const deps = customDeps(byName.get(name)!, byName, children);
    const l = deps.length === 0 ? 0 : 1 + Math.max(...deps.map(levelOf));
    visiting.delete(name);
    level.set(name, l);
    return l;
  };
  // Providers are configuration the engine sets up before anything runs, not a step.
  const custom = resources.filter((r) => r.custom && !r.type.startsWith("pulumi:providers:"));
  custom.forEach((r) => levelOf(r.name));
  const out: string[][] = [];
  for (const r of custom) (out[level.get(r.name)!] ??= []).push(r.name);
  return out.map((w) => w.sort());
}

/**
 * Config text in a Markdown table cell. GFM spec 0.29 §4.10 Tables: a `|` in a cell's content is
 * escaped as `\|`; CommonMark 0.31 §2.4 Backslash escapes: any ASCII punctuation may be, which
 * keeps `<`, `&`, backticks, emphasis and links from turning text into markup.
 */
export const mdCell = (text: string): string => text.replace(/[\\|<>&`*_[\]~]/g, "\\$&");

export function renderPlan(stack: string, config: StackConfig, resources: readonly Registered[], missingSecrets: readonly string[], notes: readonly string[] = []): string {
  const byName = new Map(resources.map((r) => [r.name, r]));
  const custom = resources.filter((r) => r.custom);
  const lines: string[] = [`# Phoenix plan: ${stack}`, "", ...overviewSection(config), `${custom.length} resources in ${TIERS.filter((t) => custom.some((r) => tierOf(r, byName, config) === t)).length} tiers.`, ""];
  if (missingSecrets.length > 0) lines.push(`Secrets to set before \`pulumi up\`: ${missingSecrets.map((s) => `\`phoenix:${s}\``).join(", ")}.`, "");
  for (const note of notes) lines.push(note, "");

  lines.push("## Resources by tier", "");
  for (const tier of TIERS) {
    const inTier = custom.filter((r) => tierOf(r, byName, config) === tier);
    if (inTier.length === 0) continue;
    lines.push(`### ${tier} (${inTier.length})`, "", ...inTier.map((r) => `- \`${r.name}\` — ${r.type}`), "");
  }

  lines.push("## Dependency waves", "", "Each wave can run in parallel once the waves before it are done.", "");
  waves(resources).forEach((w, i) => lines.push(`${i + 1}. ${w.map((n) => `\`${n}\``).join(", ")}`));
  lines.push("");

  lines.push("## Guests", "", "| id | name | IP | template | GPUs | routes |", "|---|---|---|---|---|---|");
  for (const g of config.guests) {
    const services = new Set(config.services.filter((s) => s.guest === g.vmid).map((s) => s.name));
    const routed = config.routes.filter((r) => (r.service !== undefined && services.has(r.service)) || (r.byModel && modelsOf(g).length > 0)).map((r) => `${r.host ?? ""}${r.path}`);
    lines.push(`| ${g.vmid} | ${g.name} | ${g.network.ip} | ${g.clone} | ${g.gpus.join(", ") || "—"} | ${mdCell(routed.join(", ")) || "—"} |`);
  }
  lines.push("");

  lines.push(...clusterSection(config));
  lines.push(...dataSafetySection(config));
  lines.push(...backupSection(config));
  lines.push(...changeSnapshotSection(config));

  lines.push("## GPU memory", "", "| GPU | model | memory | allocated | users |", "|---|---|---|---|---|");
  for (const a of gpuAllocation(config)) {
    const users = a.users.map((u) => `${u.guest} (${u.engine}, ${Math.round(u.memoryGiB * 10) / 10} GiB)`).join("; ") || "—";
    lines.push(`| ${a.gpu} | ${mdCell(a.model)} | ${a.memoryGiB} GiB | ${Math.round(a.totalGiB * 10) / 10} GiB | ${users} |`);
  }
  lines.push("");
  return lines.join("\n");
}

/**
 * What this configuration lets Phoenix destroy, per resource that holds data: without a flag
 * here, removing the resource from the file keeps its data, and an edit that would replace it is
 * refused before any change (pools: providers/host/zfs-pool.ts diff; guests: the destroy guard,
 * stacks/replacement.ts). Synth has no previous state, so it states the permissions
 * the plan carries; `pulumi preview` names the changes that would use them.
 */
export function dataSafetySection(config: StackConfig): string[] {
  const rows: string[] = [];
  for (const p of config.host.zfs.pools) {
    const removed = p.allowDestroy ? "**destroyed**, with every dataset in it (allowDestroy)" : "kept on the host";
    const create = p.wipeDisksOnCreate ? "; may wipe non-empty disks when first created (wipeDisksOnCreate)" : "";
    rows.push(`| pool \`${p.name}\` | ${removed} | never: disk, layout and ashift edits are refused with the manual steps${create} |`);
  }
  for (const d of config.host.zfs.datasets) {
    const storage = d.storage ? `; its storage \`${d.storage.id}\` loses only its definition` : "";
    rows.push(`| dataset \`${d.pool}/${d.name}\` | ${d.allowDestroy ? "**destroyed** (allowDestroy)" : "kept on the host"}${storage} | never |`);
  }
  for (const g of config.guests) {
    const removed = g.allowDestroy ? "**destroyed** with its disks (allowDestroy)" : "refused: the guest is protected";
    const replaced = g.allowReplace.length > 0 ? `**replaced**, disk lost, on a change of ${g.allowReplace.join(", ")} (allowReplace)` : "refused: every replacing edit is named at preview";
    rows.push(`| ${g.kind === "vm" ? "VM" : "CT"} ${g.vmid} \`${mdCell(g.name)}\` | ${removed} | ${replaced} |`);
  }
  return ["## What may destroy data", "", "| resource | if removed from the file | if an edit would replace it |", "|---|---|---|", ...rows, ""];
}

/**
 * What protects each guest's data: the backup jobs that archive it (vzdump: root disk only, bind
 * mounts left out, stacks/backup.ts) and the snapshot policies of the datasets it keeps data on.
 */
export function backupSection(config: StackConfig): string[] {
  const head = ["## Backups and snapshots", ""];
  if (!config.backup) return [...head, "**Nothing is backed up**: the stack declares no `phoenix:backup` (docs/backup.md).", ""];
  const jobs = config.backup.jobs.map((j) => `- job \`${j.id}\`: ${mdCell(j.schedule)} to \`${j.storage}\`, ${j.mode}, ${Object.entries(pruneBackups(j.retention)).map(([k, v]) => `${k}=${v}`).join(", ")}${j.enabled ? "" : " (disabled)"}`);
  const rows = backupCoverage(config).map((c) => {
    const backedUp = c.jobs.length > 0 ? c.jobs.map((j) => `\`${j}\``).join(", ") : c.notBackedUp !== undefined ? `not backed up: ${mdCell(c.notBackedUp)}` : "—";
    const data = c.datasets.map((d) => `\`${d}\` ${c.snapshotted[d] ? `(snapshots: ${mdCell(c.snapshotted[d])})` : "(**no snapshots**)"}`).join(", ") || "—";
    return `| ${c.guest.kind === "vm" ? "VM" : "CT"} ${c.guest.vmid} \`${mdCell(c.guest.name)}\` | ${backedUp} | ${data} |`;
  });
  const policies = config.backup.snapshots.datasets.map((d) => `- \`${d.dataset}\`: template \`${d.template}\``);
  return [...head, ...jobs, "", "| guest | backup jobs (root disk) | datasets it keeps data on |", "|---|---|---|", ...rows, "", ...(policies.length ? ["Snapshot policies (sanoid):", "", ...policies, ""] : [])];
}

/**
 * The snapshot Phoenix takes before it changes each guest (components/guest/snapshot.ts): PVE's,
 * its ZFS datasets on the node, or none; preview logs nothing for the first two.
 */
export function changeSnapshotSection(config: StackConfig): string[] {
  const { keep, whenUnsupported } = config.changeSnapshots;
  const archive = templateArchive(config);
  const lxcTemplates = config.templates.filter((t) => t.kind === "lxc").map((t) => `${t.vmid} \`${mdCell(t.name)}\``);
  const templates = lxcTemplates.length === 0 ? [] : [
    `Before an LXC template is rebuilt (${lxcTemplates.join(", ")}), Phoenix backs up the old build with vzdump to \`${archive.storage}\`, notes \`phoenix-template <name> build <hash>\`, and keeps the last ${archive.keep} per template (PVE cannot snapshot a template; \`pct restore\` brings one back). A template that guests are linked clones of is not rebuilt: preview names them and the procedure (a new template, guests moved to it, the old one frozen).`,
    "",
  ];
  const rows = config.guests.map((g) => {
    const node = guestNode(config, g);
    const m = snapshotMethod(config, g, config.proxmox.nodes.find((n) => n.name === node)?.ssh !== undefined);
    const why = mdCell(m.pveObstacles.join("; "));
    const text =
      m.method === "pve"
        ? `PVE snapshot (${g.kind === "lxc" ? "pct" : "qm"} snapshot)`
        : m.method === "zfs"
          ? `ZFS snapshot of its volumes and mounted datasets on the node (PVE cannot: ${why})`
          : `**none**: ${why}; ${whenUnsupported === "proceed" ? "changes proceed without one" : "a change of its install or root settings is refused"}`;
    return `| ${g.kind === "vm" ? "VM" : "CT"} ${g.vmid} \`${mdCell(g.name)}\` | ${text} |`;
  });
  return [
    "## Snapshots before changes",
    "",
    `Before a guest's install re-runs or its root settings change, Phoenix snapshots it as \`phoenix-<change>-<hash>\` and keeps the last ${keep} of its own (\`changeSnapshots\`; whenUnsupported: ${whenUnsupported}).`,
    "",
    "| guest | snapshot method |",
    "|---|---|",
    ...rows,
    "",
    ...templates,
  ];
}

const TIER_COLOURS: Record<Tier, string> = {
  providers: "#eeeeee",
  host: "#fde2c8",
  firewall: "#f8d0d0",
  templates: "#e3d7f5",
  core: "#cfe3f7",
  models: "#d3f0d3",
  docker: "#f5ecc4",
  observability: "#d5eef0",
  backup: "#f0dde8",
  guests: "#e8e8e8",
};

/** The graph of custom resources, one cluster per tier, for `dot -Tsvg`. */
export function renderDot(config: StackConfig, resources: readonly Registered[]): string {
  const byName = new Map(resources.map((r) => [r.name, r]));
  const children = new Map<string, Registered[]>();
  for (const r of resources) if (r.parent) children.set(r.parent, [...(children.get(r.parent) ?? []), r]);
  const custom = resources.filter((r) => r.custom && !r.type.startsWith("pulumi:providers:"));
  const q = (s: string) => JSON.stringify(s);
  const lines = ["digraph phoenix {", "  rankdir=LR;", "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];", "  edge [color=\"#666666\"];"];
  for (const tier of TIERS) {
    const inTier = custom.filter((r) => tierOf(r, byName, config) === tier);
    if (inTier.length === 0) continue;
    lines.push(`  subgraph ${q(`cluster_${tier}`)} {`, `    label=${q(tier)}; style=filled; color=${q(TIER_COLOURS[tier])};`);
    for (const r of inTier) lines.push(`    ${q(r.name)} [label=${q(`${r.name}\n${r.type.split(":").pop()}`)}, fillcolor="white"];`);
    lines.push("  }");
  }
  const shown = new Set(custom.map((r) => r.name));
  for (const r of custom) for (const d of customDeps(r, byName, children)) if (shown.has(d)) lines.push(`  ${q(d)} -> ${q(r.name)};`);
  lines.push("}");
  return lines.join("\n") + "\n";
}

// How the SDK serializes a secret value; offline, its value is already a placeholder.
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

function unwrapSecret(v: unknown): unknown {
  return v !== null && typeof v === "object" && SECRET_SIG in v ? (v as unknown as { value: unknown }).value : v;
}

export interface Artifact {
  /** Relative to out/<stack>/. */
  path: string;
  content: string;
}

/**
 * Every file Phoenix puts on a guest, and the script that puts it there, under
 * a folder per guest (`103-step-ca/etc/step-ca/config/ca.json`,
 * `103-step-ca/install/ct-103-step-ca-install.sh`).
 */
export function artifacts(config: StackConfig, resources: readonly Registered[]): Artifact[] {
  const folder = (vmid: number) => {
    const g = config.guests.find((x) => x.vmid === vmid) ?? config.templates.find((x) => x.vmid === vmid);
    return g ? `${vmid}-${g.name}` : String(vmid);
  };
  const out: Artifact[] = [];
  for (const r of resources.filter((x) => x.type === "phoenix:guest:GuestInstall")) {
    const dir = folder(Number(r.inputs.vmid));
    // A file list that holds a secret (a model server's key) is a secret as a whole.
    for (const f of (unwrapSecret(r.inputs.files) as { path: string; content: string }[] | undefined) ?? []) out.push({ path: `${dir}${f.path}`, content: f.content });
    for (const run of resources.filter((x) => x.parent === r.name && x.type === "command:remote:Command")) {
      const script = unwrapSecret(run.inputs.stdin);
      if (typeof script === "string") out.push({ path: `${dir}/install/${run.name}.sh`, content: script });
    }
  }
  // A VM's install scripts, run through its guest agent (providers/guest/vm-install.ts).
  for (const r of resources.filter((x) => x.type.endsWith(":VmInstall"))) {
    for (const s of (unwrapSecret(r.inputs.scripts) as { name: string; script: string }[] | undefined) ?? []) out.push({ path: `${folder(Number(r.inputs.vmid))}/install/${r.name}-${s.name}.sh`, content: s.script });
  }
  for (const r of resources.filter((x) => x.type.endsWith(":NodeFile"))) {
    const vmid = /^vm-(\d+)-user-data$/.exec(r.name)?.[1];
    const content = unwrapSecret(r.inputs.content);
    if (vmid && typeof content === "string") out.push({ path: `${folder(Number(vmid))}/cloud-init/user-data.yaml`, content });
  }
  return out;
}
