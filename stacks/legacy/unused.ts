/**
 * The legacy fields no mapping takes, and why, as LEGACY-FORMAT.md records what
 * the old scripts read. A field listed here is reported only when the converter
 * did not consume it (e.g. vm_defaults.cores when every VM sets its own).
 */
import { LEGACY_FILES, type LegacyFileName } from "./format";
import type { FileNotes } from "./report";

const unused = (pattern: string, reason: string) => ({ pattern, kind: "unused" as const, reason });
const unsupported = (pattern: string, reason: string, fix?: string) => ({ pattern, kind: "unsupported" as const, reason, fix });

const NO_NFS = "not imported: Phoenix manages only its own block of /etc/exports, for the exports declared in host.nfsExports";

export const FIELD_NOTES: Record<LegacyFileName, FileNotes> = {
  [LEGACY_FILES.hypervisor]: {
    fallback: "no script of the bash orchestrator reads this field (a typo, or left over from an older version)",
    notes: [
      unused("version", "not read by any script"),
      unused("author", "not read by any script"),
      unsupported("core_paths.lxc_config_file", "where the old CLI found its config; not needed"),
      unsupported("core_paths.vm_config_file", "where the old CLI found its config; not needed"),
      unused("core_paths.*", "not read by any script"),
      unused("network.external_registry_url", "not read (the values are hardcoded in the scripts)"),
      unused("network.portainer_server_ip", "not read (10.0.0.111 is hardcoded in the Portainer manager)"),
      unused("network.portainer_server_port", "not read (9443 is hardcoded in the Portainer manager)"),
      unused("network.default_subnet", "not read by any script"),
      unused("network.fallback_dns", "not read by any script"),
      unsupported("network.nfs_server", NO_NFS, "declare each export the Docker hosts need under host.nfsExports"),
      unsupported("network.workgroup", "Phoenix does not manage Samba"),
      unsupported("network.portainer_agent_port", "no Portainer agent VM to apply it to"),
      unsupported("users", "Phoenix does not create admin users on the host (the password hash and key were not imported)", "keep managing host users outside Phoenix"),
      unused("docker.portainer_server_image", "not read (the compose file hardcodes the image)"),
      unsupported("docker.portainer_agent_image", "Phoenix pins the Portainer version in the agent role (version)"),
      unsupported("nfs", NO_NFS, "declare each export under host.nfsExports; lines outside Phoenix's block of /etc/exports stay as they are"),
      unsupported("samba", "Phoenix does not manage Samba", "keep the Samba configuration on the host by hand"),
      unused("samba.shares[].options", "not read by the Samba script"),
      unused("zfs.datasets[].storage_class", "not read by any script"),
      unsupported("zfs.settings.allow_destructive_operations", "not imported on purpose", "set allowDestroy on a pool or dataset only when you mean to let Phoenix destroy it"),
      unused("proxmox_defaults", "not read by any script"),
      unused("tests", "not read by any script"),
      unsupported("nvidia_driver.install", "no driver version to install"),
      unsupported("nvidia_driver.runfile_url", "Phoenix installs the driver itself, with DKMS so it survives kernel upgrades"),
      unused("nvidia_driver.cuda_version", "not read (the container script hardcodes cuda-toolkit-12-8)"),
      unused("nvidia_driver.install_vllm_libs", "not read by any script"),
      unused("behavior", "not read by any script"),
      unused("shared_volumes.*", "not read by any script (its CTIDs are stale)"),
      unsupported("portainer_api.admin_user", "no Portainer server VM to apply it to"),
      unsupported("portainer_api.portainer_hostname", "no Portainer server service to route it to"),
      unused("vm_defaults.ubuntu_release", "no VM template uses it"),
      unsupported("dns_server.enabled", "Phoenix does not run dnsmasq on the host", "run a DNS server in a guest if you need internal names"),
      unsupported("dns_server.upstream_servers", "Phoenix does not run dnsmasq on the host"),
      unused("dns_server.authoritative_zones", "not read by any script"),
      unused("step_ca", "not read (the names are hardcoded in the old 103 script); set rootName, intermediateName and dnsNames on the step-ca role if you want them"),
    ],
  },
  [LEGACY_FILES.lxc]: {
    fallback: "no script of the bash orchestrator reads this field (a typo, or left over from an older version)",
    notes: [
      unused("$schema", "editor hint only"),
      unsupported("nvidia_repo_url", "Phoenix installs CUDA through the cuda template layer"),
      unsupported("nvidia_runfile_url", "Phoenix installs the user-space driver matching host.nvidiaDriver itself"),
      unsupported("nvidia_driver_version", "no container uses a GPU"),
      unused("lxc_configs.*.swap_mb", "not read by any script; Phoenix's swapMiB default (512) applies"),
      unused("lxc_configs.*.ports", "not read by any script"),
      unused("lxc_configs.*.health_check", "not read (the code read health_checks)"),
      unused("lxc_configs.*.tests", "not read by any script"),
      unsupported("lxc_configs.*.portainer_role", "Phoenix runs Portainer in VMs"),
    ],
  },
  [LEGACY_FILES.vm]: {
    fallback: "no script of the bash orchestrator reads this field (a typo, or left over from an older version)",
    notes: [
      unused("vm_defaults.template", "not read by any script"),
      unused("vm_defaults.disk_size_gb", "not read by any script"),
      unused("vm_defaults.*", "every VM sets its own value"),
      unused("vms[].template_snapshot_name", "not read (the code reads snapshots{})"),
      unused("vms[].dns_records", "not read by any script"),
      unused("vms[].count", "not read by any script"),
      unused("vms[].qm_options", "not read by any script"),
      unused("vms[].network_config.nameserver", "ignored by the scripts, which hardcoded 10.0.0.13"),
      unused("vms[].portainer_environment_name", "only a Portainer agent has an environment"),
      unsupported("vms[].portainer_agent_hostname", "Phoenix reaches the agent at the VM's address"),
      unsupported("vms[].snapshots", "Phoenix takes no lifecycle snapshots"),
      unsupported("vms[].trigger_sync_on_completion", "no Phoenix equivalent"),
    ],
  },
  [LEGACY_FILES.stacks]: {
    fallback: "the old scripts did not read phoenix_stacks_config.json on main (they used per-stack phoenix.json files)",
    notes: [
      unsupported("docker_stacks.*.environments.*.files", "Phoenix copies no extra files into a stack", "reference the files from the compose file instead"),
      unsupported("docker_stacks.*.environments.*.services", "Traefik labels: Phoenix routes through phoenix:routes", "add routes for the services the labels exposed"),
    ],
  },
};
