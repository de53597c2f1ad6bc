/**
 * node_exporter and Grafana Alloy (and, with a GPU passed through, the GPU exporter) inside a VM.
 * Phoenix reaches into a container with `pct exec` (GuestInstall) and into a VM through its QEMU
 * guest agent (providers/guest/vm-install.ts VmInstall, on every apply where they are missing or
 * changed, so a VM created before them gets them too). The VM runs the very install scripts a
 * container runs (exporters.render.ts, alloy.render.ts): the same pinned releases checked against
 * their published checksums, the same units and Alloy configuration, validated before anything
 * starts; rendered rooted at PHOENIX_ROOT as the node's are (unset in a real VM). Pure: typed
 * config in, scripts out.
 */
import type { VmScript } from "../../providers/guest/vm-install";
import { opsGuest, runsNodeAgents, shipsJournal } from "../../stacks/scrape";
import type { StackConfig, VmGuest } from "../../stacks/schema";
import { ALLOY_PATHS, renderAlloyInstallScript } from "./alloy.render";
import { guestExporters, renderGuestExportersScript } from "./exporters.render";

/**
 * The install scripts a VM runs for the ops guest, exporters first, with the units each leaves
 * running. None when the stack has no ops guest, or the VM is not one Phoenix prepares
 * (runsNodeAgents: its cloud-init user data installs the guest agent the scripts arrive through,
 * and HA does not keep it stopped: VmInstall would wait for an agent that never answers and fail
 * the apply; the scripts are installed on the first apply after it is declared started).
 */
export function vmAgentScripts(config: StackConfig, guest: VmGuest): VmScript[] {
  if (opsGuest(config)?.role?.type !== "observability" || !runsNodeAgents(guest)) return [];
  return [
    { name: "exporters", script: renderGuestExportersScript(config, guest), units: guestExporters(config, guest).services.map((s) => s.unit) },
    ...(shipsJournal(config, guest) ? [{ name: "alloy", script: renderAlloyInstallScript(config, guest), units: [ALLOY_PATHS.unit] }] : []),
  ];
}
