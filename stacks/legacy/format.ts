/**
 * The bash orchestrator's four JSON files, described the way its scripts read
 * them (jq with defaults), not the way its stale JSON schemas claimed: numbers
 * may arrive as strings, most fields may be missing, and unknown fields are
 * kept so the importer can report them instead of silently losing them.
 */
import { z } from "zod";

export const LEGACY_FILES = {
  hypervisor: "phoenix_hypervisor_config.json",
  lxc: "phoenix_lxc_configs.json",
  vm: "phoenix_vm_configs.json",
  stacks: "phoenix_stacks_config.json",
} as const;

export type LegacyFileName = (typeof LEGACY_FILES)[keyof typeof LEGACY_FILES];

// jq hands bash "8" and 8 alike, so the scripts never told them apart.
const int = z.union([z.number().int(), z.string().regex(/^\s*-?\d+\s*$/).transform((s) => Number(s.trim()))]);
const num = z.union([z.number(), z.string().regex(/^\s*-?\d+(\.\d+)?\s*$/).transform((s) => Number(s.trim()))]);
// `[ "$x" == "true" ]` is how the scripts tested flags.
const bool = z.union([z.boolean(), z.enum(["true", "false"]).transform((s) => s === "true")]);
const str = z.string();
const strList = z.array(z.string());

/** `gpu_assignment`: "none", "0", "0,1" or "0, 1": the script split on commas and trimmed with xargs. */
export const gpuAssignment = z
  .string()
  .transform((s) => (s.trim().toLowerCase() === "none" || s.trim() === "" ? [] : s.split(",").map((part) => part.trim())));

export interface LxcOption {
  key: string;
  value: string;
}

/** A raw `.conf` line as written in `lxc_options`: both `key=value` and `key: value` were used. */
export const lxcOption = z.string().transform((line, ctx): LxcOption => {
  const at = line.search(/[:=]/);
  if (at <= 0) {
    // The line is not echoed: it may hold anything, secrets included.
    ctx.addIssue({ code: "custom", message: "is neither key=value nor key: value" });
    return z.NEVER;
  }
  return { key: line.slice(0, at).trim(), value: line.slice(at + 1).trim() };
});

const legacyFirewallRule = z.looseObject({
  type: str.optional(),
  action: str.optional(),
  source: str.optional(),
  dest: str.optional(),
  proto: str.optional(),
  port: z.union([z.number(), z.string()]).optional(),
  macro: str.optional(),
  comment: str.optional(),
});
export type LegacyFirewallRule = z.infer<typeof legacyFirewallRule>;

const legacyFirewall = z.looseObject({
  enabled: bool.optional(),
  rules: z.array(legacyFirewallRule).optional(),
});

const traefikService = z.looseObject({ name: str, port: int });

export const hypervisorSchema = z.looseObject({
  domain_name: str.optional(),
  timezone: str.optional(),
  users: z.looseObject({ username: str.optional(), password_hash: str.optional(), sudo_access: bool.optional(), ssh_public_key: str.optional() }).optional(),
  network: z
    .looseObject({
      // One interface object in the files; a list is accepted because the first entry is all the scripts ever used.
      interfaces: z
        .union([
          z.looseObject({ name: str.optional(), address: str.optional(), gateway: str.optional(), dns_nameservers: strList.optional() }),
          z.array(z.looseObject({ name: str.optional(), address: str.optional(), gateway: str.optional(), dns_nameservers: strList.optional() })),
        ])
        .optional(),
      hostname: str.optional(),
      nfs_server: str.optional(),
      portainer_agent_port: int.optional(),
    })
    .optional(),
  docker: z.looseObject({ portainer_agent_image: str.optional() }).optional(),
  nfs: z.looseObject({ exports: z.array(z.looseObject({ path: str, clients: strList.optional(), options: strList.optional() })).optional() }).optional(),
  zfs: z
    .looseObject({
      arc_max_gb: num.optional(),
      pools: z.array(z.looseObject({ name: str, raid_level: str.optional(), disks: strList.optional() })).optional(),
      datasets: z
        .array(
          z.looseObject({
            name: str,
            pool: str,
            properties: z.union([str, z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]))]).optional(),
            proxmox_storage_type: str.optional(),
            proxmox_content_type: str.optional(),
          }),
        )
        .optional(),
    })
    .optional(),
  proxmox_storage_ids: z.record(z.string(), z.string()).optional(),
  mount_point_base: str.optional(),
  nvidia_driver: z.looseObject({ install: bool.optional(), version: str.optional() }).optional(),
  shared_volumes: z
    .looseObject({
      firewall: z
        .looseObject({
          enabled: bool.optional(),
          default_input_policy: str.optional(),
          default_output_policy: str.optional(),
          global_firewall_rules: z.array(legacyFirewallRule).optional(),
        })
        .optional(),
    })
    .optional(),
  portainer_api: z.looseObject({ admin_user: str.optional(), admin_password: str.optional(), portainer_hostname: str.optional() }).optional(),
  vm_defaults: z.looseObject({ ubuntu_release: str.optional() }).optional(),
  dns_server: z.looseObject({ enabled: bool.optional(), upstream_servers: strList.optional() }).optional(),
});
export type LegacyHypervisor = z.infer<typeof hypervisorSchema>;

const vllmEngineConfig = z.looseObject({
  ModelConfig: z.looseObject({ model: str.optional(), trust_remote_code: bool.optional(), dtype: str.optional(), max_model_len: int.optional() }).optional(),
  CacheConfig: z.looseObject({ quantization: str.nullable().optional(), gpu_memory_utilization: num.optional() }).optional(),
  ParallelConfig: z.looseObject({ tensor_parallel_size: int.optional() }).optional(),
  ServerConfig: z.looseObject({ host: str.optional(), port: int.optional(), served_model_name: str.optional() }).optional(),
});
export type LegacyVllmConfig = z.infer<typeof vllmEngineConfig>;

const lxcConfigSchema = z.looseObject({
  name: str,
  memory_mb: int.optional(),
  cores: int.optional(),
  template: str.optional(),
  storage_pool: str.optional(),
  storage_size_gb: int.optional(),
  network_config: z
    .looseObject({ name: str.optional(), bridge: str.optional(), ip: str.optional(), gw: str.optional(), nameservers: str.optional() })
    .optional(),
  mac_address: str.optional(),
  gpu_assignment: gpuAssignment.optional(),
  portainer_role: str.optional(),
  unprivileged: bool.optional(),
  clone_from_ctid: z.union([str, z.number()]).transform(String).optional(),
  template_snapshot_name: str.optional(),
  enable_lifecycle_snapshots: bool.optional(),
  features: strList.optional(),
  application_script: str.optional(),
  pct_options: strList.optional(),
  lxc_options: z.array(lxcOption).optional(),
  apparmor_profile: str.optional(),
  apparmor_manages_nesting: bool.optional(),
  vllm_engine_config: vllmEngineConfig.optional(),
  firewall: legacyFirewall.optional(),
  dependencies: z.array(z.union([str, z.number()]).transform(String)).optional(),
  zfs_volumes: z.array(z.looseObject({ name: str, pool: str, size_gb: int, mount_point: str })).optional(),
  mount_points: z.array(z.looseObject({ host_path: str, container_path: str, owner_uid: int.optional(), owner_gid: int.optional() })).optional(),
  health_checks: z.array(z.looseObject({ name: str.optional(), script: str.optional() })).optional(),
  traefik_service: traefikService.optional(),
  id_maps: z.array(z.looseObject({ type: str, host_id: int, container_id: int, size: int.optional() })).optional(),
  trigger_sync_on_completion: bool.optional(),
  bootstrap_ca_url: str.optional(),
});
export type LegacyLxc = z.infer<typeof lxcConfigSchema>;

export const lxcFileSchema = z.looseObject({
  nvidia_driver_version: str.optional(),
  lxc_configs: z.record(z.string(), lxcConfigSchema).optional(),
});
export type LegacyLxcFile = z.infer<typeof lxcFileSchema>;

const vmConfigSchema = z.looseObject({
  vmid: int,
  name: str,
  is_template: bool.optional(),
  template_image: str.optional(),
  clone_from_vmid: int.optional(),
  cores: int.optional(),
  memory_mb: int.optional(),
  disk_size_gb: int.optional(),
  storage_pool: str.optional(),
  network_bridge: str.optional(),
  start_at_boot: bool.optional(),
  boot_order: int.optional(),
  boot_delay: int.optional(),
  features: strList.optional(),
  portainer_role: str.optional(),
  portainer_environment_name: str.optional(),
  dependencies: z.array(z.union([str, z.number()]).transform(String)).optional(),
  traefik_service: traefikService.optional(),
  network_config: z.looseObject({ ip: str.optional(), gw: str.optional() }).optional(),
  user_config: z.looseObject({ username: str.optional() }).optional(),
  volumes: z.array(z.looseObject({ name: str.optional(), path: str.optional(), mount_point: str.optional() })).optional(),
  // The legacy schema said objects; the config and the code used plain names.
  docker_stacks: z.array(z.union([str, z.looseObject({ name: str, environment: str.optional() })])).optional(),
  firewall: legacyFirewall.optional(),
});
export type LegacyVm = z.infer<typeof vmConfigSchema>;

export const vmFileSchema = z.looseObject({
  vm_defaults: z
    .looseObject({ cores: int.optional(), memory_mb: int.optional(), storage_pool: str.optional(), network_bridge: str.optional() })
    .optional(),
  vms: z.array(vmConfigSchema).optional(),
});
export type LegacyVmFile = z.infer<typeof vmFileSchema>;

export const stacksFileSchema = z.looseObject({
  docker_stacks: z
    .record(
      z.string(),
      z.looseObject({
        compose_file_path: str.optional(),
        environments: z
          .record(z.string(), z.looseObject({ variables: z.array(z.looseObject({ name: str, value: z.union([str, z.number(), z.boolean()]).transform(String) })).optional() }))
          .optional(),
      }),
    )
    .optional(),
});
export type LegacyStacksFile = z.infer<typeof stacksFileSchema>;
