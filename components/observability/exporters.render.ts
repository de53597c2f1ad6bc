/**
 * The exporters outside the ops guest's own services: node_exporter in every
 * container and Docker host VM (and nginx-prometheus-exporter on the gateway,
 * the GPU exporter in a VM a GPU is passed through to), the host's
 * node_exporter with its textfile collector and the GPU exporter, and the
 * ops guest's prometheus-pve-exporter with the token Phoenix creates. Pure:
 * typed config in, files and scripts out.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { stringify } from "yaml";
import type { Guest, StackConfig } from "../../stacks/schema";
import { runsGpuExporter } from "../../stacks/scrape";
import { fileList, shQuote, type RenderedFile } from "../render/files";
import { renderAptEnsure, renderInstallScript, renderReleaseInstalls, type PinnedRelease } from "../render/install-script";
import { GATEWAY_LAYOUT } from "../core/nginx.render";
import { renderGuestUnit, systemUser, unitPath } from "./install.render";
import { BIN, gpuExporterRelease, nginxExporterRelease, nodeExporterRelease, observabilityRole } from "./releases";

export const EXPORTER_UNITS = { node: "node-exporter.service", nginx: "nginx-exporter.service", gpu: "gpu-exporter.service", pve: "pve-exporter.service", textfile: "phoenix-textfile" } as const;

/** node_exporter's textfile collector directory on the host (node_exporter@v1.12.1 collector/textfile.go --collector.textfile.directory). */
export const TEXTFILE_DIR = "/var/lib/phoenix/textfile";

const ready = (port: number, p: string) => `curl -fsS --max-time 3 http://127.0.0.1:${port}${p} >/dev/null`;

interface ExporterService {
  unit: string;
  user: string;
  content: string;
  /** Path and port the verify step asks. */
  port: number;
  path: string;
}

function nodeExporterService(config: StackConfig, where: Guest | "host"): ExporterService {
  const role = observabilityRole(config);
  // node_exporter@v1.12.1: the ZFS collector is on by default (collector/zfs_common.go:19), the textfile collector reads --collector.textfile.directory.
  const exec = [BIN.nodeExporter, `--web.listen-address=:${role.nodeExporter.port}`, ...(where === "host" ? [`--collector.textfile.directory=${TEXTFILE_DIR}`] : [])];
  return { unit: EXPORTER_UNITS.node, user: "node-exporter", port: role.nodeExporter.port, path: "/metrics", content: renderGuestUnit(where, { description: `node_exporter ${role.nodeExporter.version} (Phoenix)`, user: "node-exporter", exec, reloadOnHup: false, writes: [] }) };
}

/**
 * nvidia_gpu_exporter where the driver is (the host, or a VM a GPU is passed through to).
 * nvidia_gpu_exporter@v1.14.0 internal/app/app.go: --web.listen-address (default :9835), nvidia-smi from PATH;
 * internal/nvidiasmi/resolve.go ResolveFields: auto mode falls back to the built-in field list when nvidia-smi
 * cannot be queried, and internal/exporter/exporter.go Collect still serves the exporter's own health series,
 * so /metrics answers before the driver's module is loaded (a VM's first boot).
 */
function gpuExporterService(config: StackConfig, where: Guest | "host"): ExporterService {
  const role = observabilityRole(config);
  return { unit: EXPORTER_UNITS.gpu, user: "gpu-exporter", port: role.gpuExporterPort, path: "/metrics", content: renderGuestUnit(where, { description: `nvidia_gpu_exporter ${role.gpuExporterVersion} (Phoenix)`, user: "gpu-exporter", exec: [BIN.gpuExporter, `--web.listen-address=:${role.gpuExporterPort}`], reloadOnHup: false, writes: [] }) };
}

/**
 * The exporters a guest runs: node_exporter; on the gateway nginx-prometheus-exporter reading the loopback
 * stub_status; in a VM a GPU is passed through to, the GPU exporter (stacks/scrape.ts runsGpuExporter).
 */
export function guestExporters(config: StackConfig, guest: Guest): { releases: PinnedRelease[]; services: ExporterService[] } {
  const role = observabilityRole(config);
  const releases = [nodeExporterRelease(role)];
  const services = [nodeExporterService(config, guest)];
  if (runsGpuExporter(config, guest)) {
    releases.push(gpuExporterRelease(role));
    services.push(gpuExporterService(config, guest));
  }
  if (guest.role?.type === "nginx-gateway") {
    releases.push(nginxExporterRelease(role));
    // nginx-prometheus-exporter@v1.5.3 exporter.go: --nginx.scrape-uri (default http://127.0.0.1:8080/stub_status), --web.listen-address (default :9113).
    const exec = [BIN.nginxExporter, `--nginx.scrape-uri=http://127.0.0.1:${GATEWAY_LAYOUT.stubStatusPort}/stub_status`, `--web.listen-address=:${role.nginxExporter.port}`];
    services.push({ unit: EXPORTER_UNITS.nginx, user: "nginx-exporter", port: role.nginxExporter.port, path: "/metrics", content: renderGuestUnit(guest, { description: `nginx-prometheus-exporter ${role.nginxExporter.version} (Phoenix)`, user: "nginx-exporter", exec, reloadOnHup: false, writes: [] }) });
  }
  return { releases, services };
}

interface ExportersExtras {
  files?: RenderedFile[];
  prepare?: string;
  /** Units enabled and started besides the services (a timer). */
  units?: string[];
  /** On the Proxmox node or in a VM: every path under "$R" (InstallScriptSpec.onNode). */
  onNode?: boolean;
}

function exportersScript(name: string, description: string, releases: PinnedRelease[], services: ExporterService[], extras: ExportersExtras = {}): string {
  const at = (p: string) => (extras.onNode ? `"$R"${shQuote(p)}` : p);
  return renderInstallScript({
    name,
    description,
    onNode: extras.onNode,
    prepare: `${renderAptEnsure(["curl", "ca-certificates"])}
${[...new Set(services.map((s) => s.user))].map(systemUser).join("\n")}
${extras.prepare ?? ""}${renderReleaseInstalls(releases, { onNode: extras.onNode })}`,
    files: fileList([...services.map((s) => ({ path: unitPath(s.unit), content: s.content })), ...(extras.files ?? [])]),
    validate: `systemd-analyze verify ${[...services.map((s) => s.unit), ...(extras.units ?? [])].map((u) => at(unitPath(u))).join(" ")}`,
    reload: `systemctl daemon-reload
${services.map((s) => `systemctl enable --quiet ${s.unit}\nif changed_file ${unitPath(s.unit)} || ! systemctl is-active --quiet ${s.unit}; then systemctl restart ${s.unit}; fi`).join("\n")}`,
    verify: services.map((s) => ready(s.port, s.path)).join(" && "),
    finish: `systemctl enable --now --quiet ${[...services.map((s) => s.unit), ...(extras.units ?? [])].join(" ")}`,
  });
}

export function renderGuestExportersFiles(config: StackConfig, guest: Guest): RenderedFile[] {
  return guestExporters(config, guest).services.map((s) => ({ path: unitPath(s.unit), content: s.content }));
}

/**
 * The install script of a guest's exporters: run through GuestInstall in a container, through the guest agent in a VM
 * (vm-agents.render.ts), where, as on the node, its paths are under "$R" from PHOENIX_ROOT (unset in a real VM).
 */
export function renderGuestExportersScript(config: StackConfig, guest: Guest): string {
  const { releases, services } = guestExporters(config, guest);
  return exportersScript("phoenix-exporters", `${services.map((s) => s.unit.replace(".service", "")).join(", ")}: pinned releases and systemd units`, releases, services, { onNode: guest.kind === "vm" });
}

/**
 * The host's textfile metrics, written every five minutes: kernels without the pinned NVIDIA
 * driver's DKMS module (the doctor's kernel-upgrade preflight, scripts/doctor/kernel-modules.ts),
 * NVIDIA Xid errors in this boot's kernel log ("NVRM: Xid", NVIDIA's Xid catalogue), and whether
 * the node's last vzdump task failed. Written to a temporary file and renamed, so node_exporter
 * never reads half a file (node_exporter@v1.12.1 README, Textfile Collector).
 */
export function renderHostTextfileScript(config: StackConfig): string {
  const driver = config.host.nvidiaDriver?.version;
  const node = config.host.node ?? config.proxmox.nodes[0]!.name;
  return `#!/usr/bin/env bash
# Phoenix: textfile metrics of the host for node_exporter. Generated; changes made here are overwritten.
set -euo pipefail
dir=${shQuote(TEXTFILE_DIR)}
tmp=$(mktemp "$dir/.phoenix.prom.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
${
  driver === undefined
    ? ""
    : `  missing=0
  for f in /boot/vmlinuz-*; do
    [ -e "$f" ] || continue
    k=\${f##*/vmlinuz-}
    if ! dkms status -m nvidia -v ${shQuote(driver)} -k "$k" 2>/dev/null | grep -q ': installed'; then missing=$((missing + 1)); fi
  done
  echo '# HELP phoenix_nvidia_kernels_without_module Installed kernels the pinned NVIDIA driver has no DKMS module for.'
  echo '# TYPE phoenix_nvidia_kernels_without_module gauge'
  echo "phoenix_nvidia_kernels_without_module $missing"
  xid=$(journalctl -k -b -q --no-pager 2>/dev/null | grep -c 'NVRM: Xid' || true)
  echo '# HELP phoenix_nvidia_xid_errors NVIDIA Xid errors in the kernel log since boot.'
  echo '# TYPE phoenix_nvidia_xid_errors gauge'
  echo "phoenix_nvidia_xid_errors \${xid:-0}"
`
}  # unverified: pvesh's JSON of /nodes/{node}/tasks (status "OK" once a task ended well) was not read in pve-manager's source.
  failed=$(pvesh get /nodes/${shQuote(node)}/tasks --typefilter vzdump --limit 1 --output-format json 2>/dev/null | python3 -c 'import json,sys; t=json.load(sys.stdin); print(1 if t and t[0].get("status") not in (None, "OK") else 0)' || echo 0)
  echo '# HELP phoenix_backup_last_task_failed 1 when the last vzdump task on this node did not end OK.'
  echo '# TYPE phoenix_backup_last_task_failed gauge'
  echo "phoenix_backup_last_task_failed $failed"
  echo '# HELP phoenix_textfile_timestamp_seconds When this file was written.'
  echo '# TYPE phoenix_textfile_timestamp_seconds gauge'
  echo "phoenix_textfile_timestamp_seconds $(date +%s)"
} >"$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$dir/phoenix.prom"
trap - EXIT
`;
}

const TEXTFILE_SCRIPT = "/usr/local/lib/phoenix/textfile-metrics";

/** The host's exporters: node_exporter with the textfile collector, the textfile timer, and the GPU exporter when GPUs are shared with containers. */
export function renderHostExportersScript(config: StackConfig): string {
  const role = observabilityRole(config);
  const releases = [nodeExporterRelease(role)];
  const services = [nodeExporterService(config, "host")];
  if (config.host.gpus.some((g) => g.mode === "lxc-shared")) {
    releases.push(gpuExporterRelease(role));
    services.push(gpuExporterService(config, "host"));
  }
  const timer = `[Unit]\nDescription=Phoenix textfile metrics every five minutes\n\n[Timer]\nOnBootSec=1min\nOnUnitActiveSec=5min\n\n[Install]\nWantedBy=timers.target\n`;
  const oneshot = `[Unit]\nDescription=Phoenix textfile metrics (NVIDIA modules, Xid errors, backups)\n\n[Service]\nType=oneshot\nExecStart=${TEXTFILE_SCRIPT}\n`;
  return exportersScript(
    "phoenix-host-exporters",
    "node_exporter (ZFS and textfile collectors), the GPU exporter and Phoenix's textfile metrics",
    releases,
    services,
    {
      files: [
        { path: TEXTFILE_SCRIPT, content: renderHostTextfileScript(config), mode: "0755" },
        { path: unitPath(`${EXPORTER_UNITS.textfile}.service`), content: oneshot },
        { path: unitPath(`${EXPORTER_UNITS.textfile}.timer`), content: timer },
      ],
      prepare: `install -d -m 0755 "$R"${shQuote(TEXTFILE_DIR)}\n`,
      // The timer starts the oneshot; both are checked by systemd-analyze with the services.
      units: [`${EXPORTER_UNITS.textfile}.timer`],
      onNode: true,
    },
  );
}

// --- prometheus-pve-exporter on the ops guest ---------------------------------------------------

export const PVE_EXPORTER = {
  venv: "/opt/phoenix/pve-exporter",
  /** Root-only: the service reads it through LoadCredential=, never from its own user's reach. */
  config: "/etc/phoenix/pve-exporter.yml",
} as const;

/** prometheus-pve-exporter's upstream hash-locked requirements (requirements.txt, pip-compile --generate-hashes) at the pinned tag. */
export function pveExporterLock(version: string): string {
  const file = path.join(__dirname, "locks", `pve-exporter-${version}.txt`);
  if (!fs.existsSync(file)) throw new Error(`prometheus-pve-exporter ${version}: no lock ${file}; copy requirements.txt of that tag there`);
  return fs.readFileSync(file, "utf8");
}

/**
 * pve.yml with the token (prometheus-pve-exporter@v3.10.0 README "token authentication": user,
 * token_name, token_value; the dict is passed to proxmoxer.ProxmoxAPI). `token` is the bridged
 * token's value, `<user>!<name>=<secret>` (bpg v0.111.1 proxmox/access/user_token.go CreateUserToken).
 */
export function renderPveExporterConfig(config: StackConfig, token: string): string {
  const m = /^([^!]+)!([^=]+)=(.+)$/.exec(token);
  if (!m) throw new Error("the PVE metrics token is not <user>!<token>=<secret>");
  return stringify({ default: { user: m[1], token_name: m[2], token_value: m[3], verify_ssl: !config.proxmox.tls.insecure } });
}

export function renderPveExporterFiles(config: StackConfig, token: string): RenderedFile[] {
  const role = observabilityRole(config);
  const guest = config.guests.find((g) => g.role?.type === "observability")!;
  return [
    { path: PVE_EXPORTER.config, content: renderPveExporterConfig(config, token), mode: "0600", owner: "root:root" },
    {
      path: unitPath(EXPORTER_UNITS.pve),
      content: renderGuestUnit(guest, {
        description: `prometheus-pve-exporter ${role.pveExporter.version} (Phoenix)`,
        user: "pve-exporter",
        // prometheus-pve-exporter@v3.10.0 src/pve_exporter/cli.py: --config.file, --web.listen-address.
        exec: [`${PVE_EXPORTER.venv}/bin/pve_exporter`, "--config.file=${CREDENTIALS_DIRECTORY}/pve.yml", `--web.listen-address=[::]:${role.pveExporter.port}`],
        reloadOnHup: false,
        writes: [],
        // systemd.exec LoadCredential=: root reads the file, the service sees a copy only it can read.
        extra: [`LoadCredential=pve.yml:${PVE_EXPORTER.config}`],
      }),
    },
  ];
}

/** Shell for the ops guest's prepare step: the exporter in a venv, its dependencies verified by the upstream hash lock. */
export function renderPveExporterPrepare(config: StackConfig): string {
  const v = observabilityRole(config).pveExporter.version;
  // unverified: the exporter's own sdist hash. PyPI is unreachable here and no public lock file in the searched corpus pins
  // prometheus-pve-exporter==3.10.0 (nor its sdist prometheus_pve_exporter-3.10.0), so it alone is installed by version without --require-hashes.
  return `${renderAptEnsure(["python3-venv", "ca-certificates"])}
${systemUser("pve-exporter")}
if [ "$(${PVE_EXPORTER.venv}/bin/pip show prometheus-pve-exporter 2>/dev/null | sed -n 's/^Version: //p')" != ${shQuote(v)} ]; then
  python3 -m venv ${PVE_EXPORTER.venv}
  ${PVE_EXPORTER.venv}/bin/pip install --no-cache-dir --require-hashes --no-deps -r <(base64 -d <<'PHOENIX_LOCK'
${Buffer.from(pveExporterLock(v)).toString("base64").match(/.{1,76}/g)!.join("\n")}
PHOENIX_LOCK
)
  ${PVE_EXPORTER.venv}/bin/pip install --no-cache-dir --no-deps ${shQuote(`prometheus-pve-exporter==${v}`)}
fi`;
}
