/**
 * The container settings only root@pam may make, as PVE config keys, and the
 * scripts that read and converge them on the node. Pure: the provider feeds
 * in what the probe printed and runs what comes out.
 */
import type { IdmapRange } from "../../stacks/idmap";
import { CONTROL_CHARS } from "../../stacks/patterns";
import { readFiles, renderScript, shellQuote, writeFileIfChanged } from "../ssh/script";

export interface RootDevice {
  path: string;
  gid: number;
  mode: string;
}

export interface RootMount {
  /** Directory on the node (a dataset's mountpoint). */
  hostPath: string;
  /** Mount point inside the container. */
  path: string;
  readOnly: boolean;
  /** Owner of hostPath on the node: the guest-side owner mapped through the container's id map. */
  owner: { uid: number; gid: number; mode: string };
}

export interface RootConfigSpec {
  devices: RootDevice[];
  mounts: RootMount[];
  features: { nesting: boolean; keyctl: boolean; fuse: boolean };
  idmap: IdmapRange[];
  /** Lines /etc/subuid and /etc/subgid must contain for the id map to be allowed. */
  subuid: string[];
  subgid: string[];
}

/** Keys Phoenix owns in a container's config: every devN, every bind mpN, features. */
export function isOwnedKey(key: string, value: string): boolean {
  return /^dev\d+$/.test(key) || (/^mp\d+$/.test(key) && value.startsWith("/")) || key === "features";
}

/** The mpN keys that hold storage volumes, not bind mounts: Phoenix never writes them. */
export function volumeSlots(config: Record<string, string>): string[] {
  return Object.entries(config)
    .filter(([k, v]) => /^mp\d+$/.test(k) && !isOwnedKey(k, v))
    .map(([k]) => k);
}

/**
 * A value for a PVE property string. PVE has no escaping there: pve-common
 * (libpve-common-perl 9.2.1, src/PVE/JSONSchema.pm) parse_property_string
 * splits the string on every ',' and reads `key=value` up to the first '=', a
 * part without '=' being the default key's value; print_property_string dies
 * on "illegal value with commas". So a ',' or '=' in a value would add or
 * change keys (`/models,backup=1` → backup=1), and a blank value is skipped
 * (`next if $part =~ /^\s*$/`): refused, as are control characters.
 */
export function propertyValue(what: string, value: string): string {
  if (/^\s*$/.test(value) || /[,=]/.test(value) || CONTROL_CHARS.test(value)) throw new Error(`${what} ${JSON.stringify(value)} cannot go into a PVE property string: it must be non-blank, without ',', '=' or control characters`);
  return value;
}

/** The config keys the spec stands for, in PVE's canonical property-string form. */
export function desiredKeys(spec: RootConfigSpec, volumeSlots: readonly string[] = []): Record<string, string> {
  const keys: Record<string, string> = {};
  spec.devices.forEach((d, i) => (keys[`dev${i}`] = `${propertyValue("device path", d.path)},gid=${d.gid},mode=${propertyValue("device mode", d.mode)}`));
  // Bind mounts take the mpN slots no volume holds: writing over a volume's slot would detach it.
  let slot = 0;
  for (const m of spec.mounts) {
    while (volumeSlots.includes(`mp${slot}`)) slot++;
    keys[`mp${slot++}`] = `${propertyValue("mount source", m.hostPath)},mp=${propertyValue("mount point", m.path)}${m.readOnly ? ",ro=1" : ""}`;
  }
  const features = (["fuse", "keyctl", "nesting"] as const).filter((f) => spec.features[f]).map((f) => `${f}=1`);
  if (features.length > 0) keys.features = features.join(",");
  return keys;
}

export function idmapLines(ranges: readonly IdmapRange[]): string[] {
  return ranges.map((r) => `${r.type} ${r.containerId} ${r.hostId} ${r.size}`);
}

export interface ProbedState {
  exists: boolean;
  running: boolean;
  /** Config keys of the container's current section (pct config). */
  config: Record<string, string>;
  /** lxc.idmap values, in order. */
  idmap: string[];
  /** Owner and mode of each mount's host directory, or undefined when absent. */
  owners: Record<string, { uid: number; gid: number; mode: string } | undefined>;
  subuid?: string;
  subgid?: string;
}

export interface ConfigPlan {
  set: Record<string, string>;
  delete: string[];
  idmap?: string[];
  chown: RootMount[];
  subuid?: string;
  subgid?: string;
}

/** What must change to bring the probed state to the spec; empty when converged. */
export function planRootConfig(spec: RootConfigSpec, state: ProbedState): ConfigPlan {
  const want = desiredKeys(spec, volumeSlots(state.config));
  const set = Object.fromEntries(Object.entries(want).filter(([k, v]) => state.config[k] !== v));
  // Whatever a clone inherited from its template and the spec does not declare goes: a guest has the devices it declares, no others.
  const del = Object.entries(state.config)
    .filter(([k, v]) => isOwnedKey(k, v) && !(k in want))
    .map(([k]) => k)
    .sort();
  const lines = idmapLines(spec.idmap);
  const idmap = JSON.stringify(lines) === JSON.stringify(state.idmap) ? undefined : lines;
  const chown = spec.mounts.filter((m) => {
    const o = state.owners[m.hostPath];
    return !o || o.uid !== m.owner.uid || o.gid !== m.owner.gid || Number.parseInt(o.mode, 8) !== Number.parseInt(m.owner.mode, 8);
  });
  const plan: ConfigPlan = { set, delete: del, chown };
  if (idmap) plan.idmap = idmap;
  const subuid = mergeSubIds(state.subuid ?? "", spec.subuid);
  if (spec.subuid.length > 0 && subuid !== (state.subuid ?? "")) plan.subuid = subuid;
  const subgid = mergeSubIds(state.subgid ?? "", spec.subgid);
  if (spec.subgid.length > 0 && subgid !== (state.subgid ?? "")) plan.subgid = subgid;
  return plan;
}

export function planIsEmpty(plan: ConfigPlan): boolean {
  return Object.keys(plan.set).length === 0 && plan.delete.length === 0 && !plan.idmap && plan.chown.length === 0 && !plan.subuid && !plan.subgid;
}

/** Adds the delegations a file lacks, keeping every existing line. */
export function mergeSubIds(existing: string, needed: readonly string[]): string {
  const lines = existing.split("\n").filter((l) => l.trim() !== "");
  const covers = (line: string, id: number) => {
    const [user, start, count] = line.split(":");
    return user === "root" && id >= Number(start) && id < Number(start) + Number(count);
  };
  const missing = needed.filter((n) => !lines.some((l) => covers(l, Number(n.split(":")[1]))));
  return lines.length + missing.length === 0 ? "" : [...lines, ...missing].join("\n") + "\n";
}

/** Prints the container's state as `key value` lines for parseProbe. */
export function renderProbe(vmid: number, mountPaths: readonly string[]): string {
  return renderScript(`
vmid=${vmid}
conf="$R/etc/pve/lxc/$vmid.conf"
if [ ! -f "$conf" ]; then echo "exists 0"; exit 0; fi
echo "exists 1"
if pct status "$vmid" | grep -q running; then echo "running 1"; else echo "running 0"; fi
pct config "$vmid" | while IFS= read -r line; do printf 'config %s\\n' "$line"; done
owner_paths=(${mountPaths.map(shellQuote).join(" ")})
for p in "\${owner_paths[@]}"; do
  if [ -d "$R$p" ]; then printf 'owner %s %s\\n' "$p" "$(stat -c '%u:%g:%a' "$R$p")"; fi
done
${readFiles(["/etc/subuid", "/etc/subgid"])}
`);
}

/** Converges the container; prints `changed` when anything moved, and reboots a running container so it takes effect. */
export function renderApply(vmid: number, plan: ConfigPlan, running: boolean): string {
  const lines = [`vmid=${vmid}`, `conf="$R/etc/pve/lxc/$vmid.conf"`];
  if (plan.subuid !== undefined) lines.push(writeFileIfChanged("/etc/subuid", plan.subuid));
  if (plan.subgid !== undefined) lines.push(writeFileIfChanged("/etc/subgid", plan.subgid));
  for (const m of plan.chown) {
    const dir = `"$R"${shellQuote(m.hostPath)}`;
    lines.push(`mkdir -p ${dir}`, `chown ${m.owner.uid}:${m.owner.gid} ${dir}`, `chmod ${m.owner.mode} ${dir}`, `echo ${shellQuote(`changed owner ${m.hostPath}`)}`);
  }
  const args = Object.entries(plan.set).flatMap(([k, v]) => [`--${k}`, shellQuote(v)]);
  if (plan.delete.length > 0) args.push("--delete", plan.delete.join(","));
  if (args.length > 0) lines.push(`pct set "$vmid" ${args.join(" ")}`, "echo 'changed config'");
  if (plan.idmap) {
    // lxc.* keys cannot go through pct set: rewrite them in the current section only (snapshots start at the first [section]).
    const block = plan.idmap.map((l) => `lxc.idmap: ${l}`).join("\\n");
    lines.push(
      `awk -v block=${shellQuote(block)} 'BEGIN{main=1} /^\\[/{if(main && block!="")print block; main=0} main && /^lxc\\.idmap[:=]/{next} {print} END{if(main && block!="")print block}' "$conf" > "$conf.phoenix"`,
      `cat "$conf.phoenix" > "$conf" && rm -f "$conf.phoenix"`,
      "echo 'changed idmap'",
    );
  }
  const configChanged = args.length > 0 || plan.idmap !== undefined;
  if (running && configChanged) lines.push(`pct reboot "$vmid"`, "echo 'rebooted'");
  return renderScript(lines.join("\n"));
}

/** Prints what nvidia-smi inside the running container sees: `gpu <bus id>, <driver version>` lines. */
export function renderGpuCheck(vmid: number): string {
  return renderScript(`
vmid=${vmid}
pct exec "$vmid" -- nvidia-smi --query-gpu=pci.bus_id,driver_version --format=csv,noheader | sed 's/^/gpu /'
`);
}

/** Compares what the guest sees with what it was given; returns the problem, or undefined. */
export function gpuViewProblem(expected: { busIds: string[]; driverVersion: string }, reported: string[]): string | undefined {
  const rows = reported.map((r) => r.split(",").map((f) => f.trim()));
  const seen = rows.map(([bus]) => (bus ?? "").toLowerCase()).sort();
  const want = expected.busIds.map((b) => b.toLowerCase()).sort();
  if (JSON.stringify(seen) !== JSON.stringify(want)) return `nvidia-smi inside sees GPUs [${seen.join(", ") || "none"}], expected exactly [${want.join(", ")}]`;
  const versions = [...new Set(rows.map(([, v]) => v))];
  if (versions.length !== 1 || versions[0] !== expected.driverVersion) {
    return `nvidia-smi inside reports driver ${versions.join(", ")}, the host runs ${expected.driverVersion}: the guest's NVIDIA user-space must match the host driver exactly (rebuild its CUDA template)`;
  }
  return undefined;
}
