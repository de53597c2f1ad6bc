import type { Sandbox } from "./sandbox";

/**
 * The stand-in calls that destroy something on the node since the sandbox's calls were last
 * cleared: pools, datasets, disk signatures, the NVIDIA driver. Removal of Phoenix's own files
 * is seen by reading them back, as a script removes them with rm.
 */
export function destructiveCalls(sandbox: Sandbox): string[] {
  return sandbox
    .calls()
    .filter(([tool, sub, ...rest]) => (tool === "zpool" && sub === "destroy") || (tool === "zfs" && sub === "destroy") || (tool === "wipefs" && [sub, ...rest].includes("-a")) || tool === "nvidia-uninstall")
    .map((c) => c.join(" "));
}

/** The calls that change ZFS or the NVIDIA driver on the node, destructive or not (reads left out). */
export function zfsAndDriverWrites(sandbox: Sandbox): string[][] {
  return sandbox
    .calls()
    .filter(([tool, sub, ...rest]) => ((tool === "zpool" || tool === "zfs") && !["list", "status", "get"].includes(sub ?? "")) || (tool === "wipefs" && [sub, ...rest].includes("-a")) || tool === "nvidia-installer" || tool === "nvidia-uninstall");
}
