/** The plan's cluster section: where each guest runs and why, each node's load against its capacity, and HA. */
import { guestNodeOf, haSid, pveMajor } from "../../stacks/cluster";
import { placementPlan } from "../../stacks/placement";
import type { StackConfig } from "../../stacks/schema";

/** Empty for a single-node stack, so its plan reads as before. */
export function clusterSection(config: StackConfig): string[] {
  if (config.proxmox.nodes.length < 2) return [];
  const plan = placementPlan(config);
  const lines = ["## Nodes and placement", "", "Computed at validation, in the order guests are declared (stacks/placement.ts).", "", "| node | guests | memory | cores |", "|---|---|---|---|"];
  for (const l of plan.load) {
    const guests = config.guests.filter((g) => guestNodeOf(config, g) === l.node).map((g) => `${g.vmid} ${g.name}${g.placement ? ` (rule${g.placement.antiAffinity ? `, apart in ${g.placement.antiAffinity}` : ""}${g.placement.gpuModel ? `, GPU ${g.placement.gpuModel}` : ""})` : ""}`);
    const of = (used: number, cap: number | undefined, unit: string) => `${used}${unit}${cap === undefined ? "" : ` of ${cap}${unit}`}`;
    lines.push(`| ${l.node} | ${guests.join(", ") || "—"} | ${of(l.memoryMiB, l.capacity?.memoryMiB, " MiB")} | ${of(l.cores, l.capacity?.cores, "")} |`);
  }
  lines.push("");
  const ha = config.guests.filter((g) => g.ha);
  if (ha.length > 0) {
    lines.push(`### HA (PVE ${pveMajor(config)}: ${pveMajor(config) === 9 ? "rules" : "groups"})`, "", "| resource | state | nodes | apart from |", "|---|---|---|---|");
    for (const g of ha) lines.push(`| ${haSid(g)} ${g.name} | ${g.ha!.state} | ${g.ha!.nodes?.join(" > ") ?? "any"}${g.ha!.strict ? " (strict)" : ""} | ${g.ha!.apartFrom.join(", ") || "—"} |`);
    lines.push("");
  }
  return lines;
}
