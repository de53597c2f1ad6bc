/**
 * The one rule for systemd sandboxing in every unit Phoenix renders: options
 * that make systemd set up a mount namespace for the service are used only on
 * guests that can create one.
 *
 * systemd sets up a mount namespace for a service when any of these is set
 * (systemd src/core/exec-invoke.c, exec_needs_mount_namespace(): read_write_paths,
 * read_only_paths, inaccessible_paths, private_tmp, private_devices, protect_system,
 * protect_home, protect_kernel_*, protect_control_groups, bind mounts, temporary
 * file systems, ...). An unprivileged LXC container without nesting cannot: the
 * service fails at the NAMESPACE step, exit status 226 ("Failed to set up mount
 * namespacing: /run/systemd/unit-root/proc: Permission denied", systemd/systemd#17866,
 * closed "not-our-bug": the container's AppArmor profile denies the mounts; lxc's
 * distrobuilder disables these options in containers without nesting for that reason,
 * lxc/distrobuilder#619). A privileged container fares no better without nesting
 * (canonical/lxd#8252). A VM has its own kernel and no such limit.
 */
import type { Guest } from "../../stacks/schema";

/** Unit options that need a mount namespace (the ones Phoenix would use; see exec_needs_mount_namespace). */
export const MOUNT_NAMESPACE_OPTIONS = [
  "ProtectSystem",
  "ProtectHome",
  "PrivateTmp",
  "PrivateDevices",
  "PrivateMounts",
  "ProtectKernelTunables",
  "ProtectKernelModules",
  "ProtectKernelLogs",
  "ProtectControlGroups",
  "ReadWritePaths",
  "ReadOnlyPaths",
  "InaccessiblePaths",
  "BindPaths",
  "BindReadOnlyPaths",
  "TemporaryFileSystem",
] as const;

/** Whether systemd inside the guest (or on the Proxmox host itself) can give a service its own mount namespace. */
export function canSandboxMounts(guest: Guest | "host"): boolean {
  return guest === "host" || guest.kind === "vm" || guest.features.nesting;
}

export interface Sandbox {
  /** Directories the service writes to; everything else is read-only where the guest allows. */
  readWritePaths: string[];
}

/**
 * The [Service] lines that confine a service's view of the file system, or
 * none on a guest that cannot honour them. NoNewPrivileges and capability
 * bounding need no namespace and are the unit's own business.
 */
export function sandboxLines(guest: Guest | "host", sandbox: Sandbox): string[] {
  if (!canSandboxMounts(guest)) return [];
  return ["ProtectSystem=strict", "ProtectHome=true", "PrivateTmp=true", ...(sandbox.readWritePaths.length > 0 ? [`ReadWritePaths=${sandbox.readWritePaths.join(" ")}`] : [])];
}
