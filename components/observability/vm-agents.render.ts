/**
 * node_exporter and Grafana Alloy (and, with a GPU passed through, the GPU
 * exporter) inside a VM. Phoenix reaches into a container with `pct exec`
 * (GuestInstall); a VM it reaches at first boot through the cloud-init user
 * data it writes. The VM gets the very install scripts a container runs
 * (exporters.render.ts, alloy.render.ts): the same pinned releases checked
 * against their published checksums, the same units and Alloy configuration,
 * validated before anything starts. Pure: typed config in, files and
 * commands for the user data out.
 */
import { opsGuest, runsNodeAgents } from "../../stacks/scrape";
import type { StackConfig, VmGuest } from "../../stacks/schema";
import type { RenderedFile } from "../render/files";
import { renderAlloyInstallScript } from "./alloy.render";
import { renderGuestExportersScript } from "./exporters.render";

/** Where the user data puts the install scripts; root-only, as they run as root. */
export const VM_AGENT_SCRIPTS = { exporters: "/usr/local/sbin/phoenix-exporters-install", alloy: "/usr/local/sbin/phoenix-alloy-install" } as const;

/**
 * The files and commands a VM's user data adds for the ops guest: the two install scripts and a run of
 * each. None when the stack has no ops guest, or the VM's user data is not Phoenix's (runsNodeAgents).
 * The commands go last in runcmd: after the NVIDIA driver a compose host installs, which the GPU
 * exporter reads. cloud-init writes runcmd as one `#!/bin/sh` script, a line per item and no `set -e`
 * (cloud-init 26.2 cloudinit/config/cc_runcmd.py handle → util.shellify), so a failing install does not
 * stop the next; cloud-init's final stage reports it (scripts_user).
 */
export function vmAgentParts(config: StackConfig, guest: VmGuest): { files: RenderedFile[]; run: string[][] } {
  if (opsGuest(config)?.role?.type !== "observability" || !runsNodeAgents(guest)) return { files: [], run: [] };
  const files: RenderedFile[] = [
    { path: VM_AGENT_SCRIPTS.exporters, content: renderGuestExportersScript(config, guest), mode: "0700" },
    { path: VM_AGENT_SCRIPTS.alloy, content: renderAlloyInstallScript(config, guest), mode: "0700" },
  ];
  return { files, run: files.map((f) => [f.path]) };
}
