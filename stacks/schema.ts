/**
 * The typed stack configuration: the single source of truth for what a Phoenix
 * machine is. Every top-level export below is one `phoenix:<key>` in the stack
 * file. Structural rules live here; rules that relate fields to each other live
 * in validate.ts.
 */
import { z } from "zod";
import { CIDR_RE, IPV4_RE } from "./net";
import { DATASET_REF, DISK_BY_ID, ENV_NAME, ENV_VALUE, FREE_TEXT, GGUF_PATH, GUEST_PATH, HF_MODEL, IDENTIFIER, MODEL_NAME, PROJECT_FILE, RESERVED_ZFS_PROPERTIES, text, TIME_ZONE, URL_PATH, USER_NAME, ZFS_NAME, ZFS_VALUE } from "./patterns";

export { UNKNOWN } from "./unknown";

// Named formats as PVE defines them (pve-common JSONSchema.pm), so a config that
// passes here is not rejected later by the API.
const DNS_LABEL = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?";
const NODE_RE = /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/;
// JSON Schema has no regex flags: spell case-insensitivity out in the classes.
const STORAGE_ID_RE = /^[A-Za-z][A-Za-z0-9\-_.]*[A-Za-z0-9]$/;
const MAC_RE = /^[a-fA-F0-9][02468aceACE](?::[a-fA-F0-9]{2}){5}$/;
const BRIDGE_RE = /^[-_.\w\d]+$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_\-+.]*$/;
const PCI_RE = /^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/;
const ZFS_COMPONENT_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;
const VERSION_RE = /^\d+(\.\d+)*([-+.][A-Za-z0-9.]+)?$/;

export const hostname = z
  .string()
  .regex(new RegExp(`^${DNS_LABEL}$`), "must be a valid hostname: letters, digits and '-', 1–63 characters, not starting or ending with '-'");
export const dnsName = z
  .string()
  .regex(new RegExp(`^(${DNS_LABEL}\\.)*${DNS_LABEL}$`), "must be a DNS name such as internal.example.org");
export const ipv4 = z.string().regex(IPV4_RE, "must be an IPv4 address such as 10.0.0.10");
export const cidr = z.string().regex(CIDR_RE, "must be an IPv4 address with prefix length, such as 10.0.0.10/24");
export const vmid = z
  .number()
  .int("must be a whole number")
  .min(100, "must be between 100 and 999999999 (Proxmox reserves ids below 100)")
  .max(999999999, "must be between 100 and 999999999");
export const storageId = z.string().min(2).regex(STORAGE_ID_RE, "must be a Proxmox storage id: letters, digits, '-', '_', '.'");
const version = z.string().regex(VERSION_RE, "must be an exact version such as 580.95.05 (no ranges, no 'latest')");
const aptVersion = z.string().regex(/^(\d+:)?[0-9][A-Za-z0-9.+~-]*$/, "must be an exact apt version such as 5:28.5.1-1~ubuntu.24.04~noble");
const sha256 = z.string().regex(/^[0-9a-fA-F]{64}$/, "must be a SHA-256 hex digest (64 hex characters)");

// --- Proxmox connection ------------------------------------------------------

// The comment after the key is one line of printable text.
const HOST_KEY_RE = /^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa) [A-Za-z0-9+/=]+( [\x20-\x7e]*)?$/;

const sshAccess = z
  .strictObject({
    /** Address the node's sshd listens on. */
    host: z.union([ipv4, dnsName], { error: "must be an IPv4 address or a DNS name" }),
    port: z.number().int().min(1).max(65535).default(22),
    user: text(USER_NAME).default("root"),
    /** The node's host key as an OpenSSH public key line: an unknown key is refused. */
    hostKey: z.string().regex(HOST_KEY_RE, "must be an OpenSSH public key line, as in /etc/ssh/ssh_host_ed25519_key.pub").optional(),
    /** Or the path of that .pub file, relative to the project directory. */
    hostKeyFile: text(PROJECT_FILE).optional(),
  })
  .refine((s) => (s.hostKey === undefined) !== (s.hostKeyFile === undefined), { message: "set exactly one of hostKey or hostKeyFile: Phoenix refuses an unpinned host key", path: ["hostKey"] });

export const proxmoxSchema = z.strictObject({
  /** API base URL, e.g. https://10.0.0.13:8006. */
  endpoint: z.url({ protocol: /^https$/, error: "must be an https:// URL such as https://10.0.0.13:8006" }),
  /** The API token's id, USER@REALM!TOKENID; its secret is the Pulumi secret proxmoxTokenSecret. */
  // eslint-disable-next-line no-control-regex -- the point is to refuse them
  tokenId: z.string().regex(/^[^\s\x00-\x1f\x7f@!]+@[A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+$/, "must be USER@REALM!TOKENID, e.g. phoenix@pve!pulumi"),
  nodes: z
    .array(
      z.strictObject({
        name: z.string().regex(NODE_RE, "must be a Proxmox node name"),
        /** SSH to the node for what the API cannot do (raw lxc.* lines, host preparation). */
        ssh: sshAccess.optional(),
        /** What guests may take of the node (stacks/placement.ts): checked per node, and used to place guests that name no node. */
        capacity: z.strictObject({ memoryMiB: z.number().int().min(256), cores: z.number().int().min(1).max(8192) }).optional(),
      }),
    )
    .min(1, "declare at least one node"),
  /** The PVE major version the cluster runs: 9 has HA rules, 8 HA groups (stacks/cluster.ts). */
  pveVersion: z.union([z.literal(8), z.literal(9)]).optional(),
  tls: z
    .strictObject({
      /** PEM of the CA that signed the API's certificate (on a PVE node: /etc/pve/pve-root-ca.pem). */
      caPem: z.string().regex(/-----BEGIN CERTIFICATE-----/, "must be a PEM certificate").optional(),
      /** Path of that PEM, relative to the project directory. */
      caFile: text(PROJECT_FILE).optional(),
      /** Skip certificate verification. Only for a first bootstrap: anyone on the path can read the token. */
      insecure: z.boolean().default(false),
    })
    .refine((t) => !(t.caPem && t.caFile), { message: "set caPem or caFile, not both", path: ["caFile"] })
    .refine((t) => !(t.insecure && (t.caPem || t.caFile)), { message: "insecure skips verification, so a CA would be ignored: remove insecure", path: ["insecure"] })
    .default({ insecure: false }),
});

// --- Host -------------------------------------------------------------------

export const gpuModes = ["lxc-shared", "vm-passthrough", "unused"] as const;

const gpuSchema = z.strictObject({
  /** The id guests use to ask for this GPU. */
  id: z.number().int().min(0),
  /** PCI address of the GPU function, e.g. 0000:01:00.0. */
  pci: z.string().regex(PCI_RE, "must be a full PCI address such as 0000:01:00.0"),
  model: text(FREE_TEXT, 200).min(1),
  memoryGiB: z.number().positive(),
  /** CUDA compute capability, e.g. "12.0" (sm_120); defaults to the one known for the model name (stacks/compat.ts). */
  computeCapability: z.string().regex(/^\d{1,2}\.\d$/, "must be major.minor, e.g. 12.0").optional(),
  /** lxc-shared: host driver, shared into containers; vm-passthrough: bound to vfio for one VM. */
  mode: z.enum(gpuModes),
  /** The node the GPU is in; defaults to host.node. */
  node: z.string().regex(NODE_RE, "must be a Proxmox node name").optional(),
});

const zfsProperties = z
  .record(
    z.string().regex(/^[a-z][a-z0-9_:.]*$/, "ZFS property names are lower case, e.g. recordsize"),
    z.union([text(ZFS_VALUE, 1024), z.number(), z.boolean()]),
  )
  .superRefine((props, ctx) => {
    for (const name of Object.keys(props)) {
      const why = RESERVED_ZFS_PROPERTIES[name];
      if (why !== undefined) ctx.addIssue({ code: "custom", path: [name], message: `Phoenix owns the ZFS property ${name}: ${why}; remove it` });
    }
  });

export const poolTopologies = { single: 1, mirror: 2, raidz1: 3, raidz2: 4 } as const;

const poolSchema = z.strictObject({
  name: z.string().regex(ZFS_COMPONENT_RE, "must be a ZFS pool name"),
  /** The node whose disks these are; defaults to host.node. The same pool name may be declared once per node. */
  node: z.string().regex(NODE_RE, "must be a Proxmox node name").optional(),
  topology: z.enum(Object.keys(poolTopologies) as [keyof typeof poolTopologies]),
  /** Disks by stable id: /dev/disk/by-id/… . */
  disks: z.array(text(DISK_BY_ID)).min(1),
  ashift: z.number().int().min(9).max(16).default(12),
  properties: zfsProperties.default({}),
  /** Let Phoenix wipe declared disks that are not empty when it creates the pool. Never used on an existing pool. */
  wipeDisksOnCreate: z.boolean().optional(),
  /** Let Phoenix destroy the pool, and every dataset in it, when it is removed from this file. Never used on an edit. */
  allowDestroy: z.boolean().default(false),
}).superRefine((p, ctx) => {
  // Until the split, allowDestroy also let Phoenix wipe disks to create the pool: such a stack must say which it means.
  if (p.allowDestroy && p.wipeDisksOnCreate === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["allowDestroy"],
      message:
        "allowDestroy now only lets Phoenix destroy the pool when you remove it from this file; wiping non-empty disks to create it is wipeDisksOnCreate. " +
        "Set wipeDisksOnCreate (true or false), and keep allowDestroy: true only if removing the pool should destroy it",
    });
  }
});

/** PVE storage plugin types (pve-storage src/PVE/Storage/*Plugin.pm). */
export const storageTypes = ["dir", "zfspool", "zfs", "lvm", "lvmthin", "rbd", "cephfs", "btrfs", "nfs", "cifs", "iscsi", "iscsidirect", "glusterfs", "pbs", "esxi"] as const;
export const storageContents = ["images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"] as const;
/** What every PVE installer gives `local` (pve-installer Proxmox/Install/StorageConfig.pm): no snippets, and import only on newer ones. */
export const INSTALLER_LOCAL_CONTENT = ["iso", "vztmpl", "backup"] as const;

const datasetSchema = z.strictObject({
  pool: text(ZFS_NAME),
  /** Dataset name below the pool, e.g. shared-models or vm-disks/fast. */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]*(\/[A-Za-z0-9][A-Za-z0-9_.:-]*)*$/, "must be a ZFS dataset path below the pool"),
  /** The nodes the dataset is made on, each in its own pool of that name; its storage is registered for exactly these nodes. Defaults to [host.node]. */
  nodes: z.array(z.string().regex(NODE_RE, "must be a Proxmox node name")).min(1).optional(),
  properties: zfsProperties.default({}),
  /** How Proxmox sees the dataset; omit for a dataset only bind-mounted into guests. */
  storage: z
    .strictObject({
      id: storageId,
      type: z.enum(["zfspool", "dir"]),
      content: z.array(z.enum(storageContents)).min(1),
    })
    .optional(),
  /** Holds secrets (e.g. a CA's keys): may be mounted into one guest only. */
  secret: z.boolean().default(false),
  /** Owner and mode of the dataset's top directory on the host, as uid/gid seen inside the guests that mount it. */
  owner: z.strictObject({ uid: z.number().int().min(0).max(65535), gid: z.number().int().min(0).max(65535), mode: z.string().regex(/^0?[0-7]{3}$/).default("0750") }).optional(),
  allowDestroy: z.boolean().default(false),
});

const bridgeSchema = z.strictObject({
  name: z.string().regex(BRIDGE_RE, "must be a Linux bridge name such as vmbr1"),
  vlan: z.number().int().min(1).max(4094).optional(),
  subnet: cidr,
  gateway: ipv4.optional(),
});

export const hostSchema = z.strictObject({
  /** The Proxmox node this host is; defaults to the first declared node. */
  node: z.string().regex(NODE_RE).optional(),
  managementBridge: z.string().regex(BRIDGE_RE).default("vmbr0"),
  /** The host's own address on the management bridge, with prefix. */
  address: cidr,
  gateway: ipv4,
  dnsServers: z.array(ipv4).min(1),
  /** Internal DNS domain; service hosts are <name>.<domain>. */
  domain: dnsName,
  timezone: text(TIME_ZONE).default("Etc/UTC"),
  /** Networks allowed to reach SSH (22) and the web UI (8006) when the node firewall drops inbound. */
  adminNetworks: z.array(cidr).default([]),
  /** Other bridges (or VLANs) guests attach to, with their subnet. */
  bridges: z.array(bridgeSchema).default([]),
  gpus: z.array(gpuSchema).default([]),
  nvidiaDriver: z
    .strictObject({
      version,
      /**
       * SHA-256 of NVIDIA-Linux-x86_64-<version>.run, checked before the installer runs
       * (`sha256sum NVIDIA-Linux-x86_64-<version>.run` on a copy downloaded from NVIDIA).
       * Optional only so that stacks imported from the old scripts validate; the shipped stacks pin it.
       */
      runfileSha256: sha256.optional(),
      /**
       * Which kernel modules nvidia-installer builds (`--kernel-module-type`, nvidia-installer 580.95.05
       * option_table.h: "open" or "proprietary"). Blackwell (RTX 50) GPUs need the open ones; the
       * proprietary ones are only for GPUs before Turing. What was loaded is verified by its licence.
       */
      kernelModules: z.enum(["open", "proprietary"]).default("open"),
    })
    .optional(),
  zfs: z
    .strictObject({
      /** ZFS ARC ceiling in GiB, persisted and applied at runtime: one value for host.node, or a value per node name. */
      arcMaxGiB: z.union([z.number().positive(), z.record(z.string().regex(NODE_RE, "must be a Proxmox node name"), z.number().positive())]).optional(),
      pools: z.array(poolSchema).default([]),
      datasets: z.array(datasetSchema).default([]),
    })
    .default({ pools: [], datasets: [] }),
  /** Datasets exported over NFS to Docker hosts, to exactly the VMs named; other lines of /etc/exports are kept. */
  nfsExports: z
    .array(
      z.strictObject({
        /** The dataset, as pool/name from zfs.datasets. */
        volume: text(DATASET_REF),
        /** vmids of the VMs allowed to mount it; it is mounted at /srv/phoenix-data in each. */
        clients: z.array(vmid).min(1),
        options: z.array(z.string().regex(/^[a-z_]+(=[A-Za-z0-9_.:/-]+)?$/, "must be an exports(5) option such as rw or no_subtree_check")).default(["rw", "sync", "no_subtree_check", "root_squash"]),
      }),
    )
    .default([]),
  /**
   * Storages that exist on the node without Phoenix managing them (e.g. local), with the content
   * /etc/pve/storage.cfg gives them. By default `local` as PVE's installer writes it: iso, vztmpl,
   * backup, and import only from pve-installer 9.0.7 on (Proxmox/Install/StorageConfig.pm, commit
   * ec1d5ee); never snippets. A node whose local has more is declared here with what it has.
   */
  existingStorages: z
    .array(
      z.strictObject({
        id: storageId,
        content: z.array(z.enum(storageContents)).min(1),
        /** The PVE storage type, e.g. dir or zfspool; checked where it matters (linked clones). */
        type: z.enum(storageTypes).optional(),
        /** The nodes it exists on (storage.cfg `nodes`); omitted: every node. */
        nodes: z.array(z.string().regex(NODE_RE, "must be a Proxmox node name")).min(1).optional(),
        /** One storage seen by every node it exists on (NFS, CIFS, PBS, Ceph RBD, set up by you): a template on it is reachable from each. */
        shared: z.boolean().optional(),
      }),
    )
    .default([{ id: "local", content: [...INSTALLER_LOCAL_CONTENT], type: "dir" }]),
  /**
   * The storage Phoenix writes the VMs' cloud-init user data to (a dir storage of a dataset
   * here, or local): named, so another storage gaining snippets content moves nothing.
   */
  snippetStorage: storageId.optional(),
});

// --- Firewall ---------------------------------------------------------------

const PORT_SPEC_RE = /^\d{1,5}(:\d{1,5})?(,\d{1,5}(:\d{1,5})?)*$/;
export const firewallProtocols = ["tcp", "udp", "icmp", "icmpv6", "ipv6-icmp", "sctp", "gre", "esp", "ah", "udplite"] as const;

const portSpec = z
  .union([z.number(), z.string()])
  .transform((v) => String(v))
  .refine((v) => PORT_SPEC_RE.test(v) && v.split(/[,:]/).every((p) => Number(p) >= 1 && Number(p) <= 65535), {
    message: "must be a port 1–65535, a range 8000:8010, or a comma list of these",
  });

const ADDRESS_ITEM = `(${IPV4_RE.source.slice(1, -1)}(\\/(3[0-2]|[12]?\\d))?|${IPV4_RE.source.slice(1, -1)}-${IPV4_RE.source.slice(1, -1)})`;
const fwAddress = z
  .string()
  .refine(
    (v) => new RegExp(`^!?${ADDRESS_ITEM}(,${ADDRESS_ITEM})*$`).test(v) || /^\+(dc\/|guest\/)?[A-Za-z][A-Za-z0-9_-]+$/.test(v) || /^(dc\/|guest\/)?[A-Za-z][A-Za-z0-9_-]+$/.test(v),
    { message: "must be an IPv4 address, CIDR, range a-b, comma list of these, an alias name, or an ipset +name" },
  );

export const firewallRuleSchema = z
  .strictObject({
    type: z.enum(["in", "out"]),
    action: z.enum(["ACCEPT", "DROP", "REJECT"]),
    /** A PVE macro such as SSH or HTTPS, instead of proto/ports. */
    macro: z.string().regex(/^[A-Za-z0-9]+$/).optional(),
    proto: z.union([z.enum(firewallProtocols), z.number().int().min(0).max(255)], { error: `must be one of ${firewallProtocols.join(", ")} or an IP protocol number` }).optional(),
    source: fwAddress.optional(),
    dest: fwAddress.optional(),
    dport: portSpec.optional(),
    sport: portSpec.optional(),
    iface: z.string().regex(/^[a-z][a-z0-9_]{1,20}$/).optional(),
    comment: text(FREE_TEXT, 200).optional(),
    enabled: z.boolean().default(true),
  })
  .refine((r) => !(r.dport || r.sport) || r.proto === "tcp" || r.proto === "udp" || r.proto === "sctp" || r.proto === "udplite", {
    message: "ports need proto tcp, udp, sctp or udplite",
    path: ["proto"],
  });

const policy = z.enum(["ACCEPT", "DROP", "REJECT"]);

const guestFirewallSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    policyIn: policy.default("DROP"),
    policyOut: policy.default("ACCEPT"),
    rules: z.array(firewallRuleSchema).default([]),
    /** Security groups (declared under phoenix:firewall) applied to this guest. */
    groups: z.array(text(IDENTIFIER, 18)).default([]),
    /**
     * PVE's ipfilter: the guest may send only from its own address, so it cannot take another's
     * on the bridge to pass their source-IP rules. Defaults to on for a static address; a DHCP
     * guest cannot have it (PVE would drop all its traffic).
     */
    ipfilter: z.boolean().optional(),
  })
  .default({ enabled: true, policyIn: "DROP", policyOut: "ACCEPT", rules: [], groups: [] });

export const firewallSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    /** Inbound policy of the datacenter, which is also the nodes' inbound policy. */
    policyIn: policy.default("DROP"),
    policyOut: policy.default("ACCEPT"),
    rules: z.array(firewallRuleSchema).default([]),
    groups: z
      .array(
        z.strictObject({
          name: z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{1,17}$/, "must be 2–18 characters: letters, digits, '-', '_', starting with a letter"),
          comment: text(FREE_TEXT, 200).optional(),
          rules: z.array(firewallRuleSchema).min(1),
          /** Its members must not reach each other: validation proves it from the rules (stacks/isolation.ts). */
          isolated: z.boolean().optional(),
        }),
      )
      .default([]),
    /**
     * The nodes' own firewall; their inbound policy is policyIn above, as in PVE. Its rules are
     * deployed as security group phoenix-node, after Phoenix's admin rules (components/firewall.ts),
     * so they cannot carry iface; the datacenter's rules above apply to the nodes too and may.
     */
    node: z
      .strictObject({
        enabled: z.boolean().default(true),
        rules: z.array(firewallRuleSchema).default([]),
      })
      .default({ enabled: true, rules: [] }),
    /**
     * The seed's hardening checklist as validation rules (stacks/isolation.ts hardeningIssues): the node
     * drops inbound except 8006 and 443 (and 22 from host.adminNetworks), containers are unprivileged,
     * isolated groups' members take nothing from outside.
     */
    hardening: z.boolean().default(false),
  })
  .default({ enabled: true, policyIn: "DROP", policyOut: "ACCEPT", rules: [], groups: [], node: { enabled: true, rules: [] }, hardening: false });

// --- Templates and guests -----------------------------------------------------

const networkSchema = z.strictObject({
  bridge: z.string().regex(BRIDGE_RE).optional(),
  /** IPv4 address with prefix, or dhcp. */
  ip: z.union([z.literal("dhcp"), cidr], { error: "must be an IPv4 address with prefix (10.0.0.10/24) or 'dhcp'" }),
  /** Defaults to the bridge's gateway. */
  gateway: ipv4.optional(),
  mac: z.string().regex(MAC_RE, "must be a unicast MAC address such as BC:24:11:00:00:01").optional(),
  vlan: z.number().int().min(1).max(4094).optional(),
});

const startupSchema = z.strictObject({
  onBoot: z.boolean().default(true),
  order: z.number().int().min(0).optional(),
  upDelay: z.number().int().min(0).optional(),
  downDelay: z.number().int().min(0).optional(),
});

const featuresSchema = z.strictObject({
  nesting: z.boolean().default(false),
  keyctl: z.boolean().default(false),
  fuse: z.boolean().default(false),
});

/**
 * The CPU model a VM sees. Set on every VM Phoenix makes, since bpg v0.111.1 defaults
 * `cpu.type` to qemu64 (proxmoxtf/resource/vm/vm.go dvCPUType :78, schema default :715-720) and
 * sends it with the clone's first update (vmCreateClone :2598-2626), whatever the template has:
 * qemu64 lacks x86-64-v2 and AVX. x86-64-v2-AES runs on any x86-64-v2 host with AES-NI; the
 * v3/v4 levels need a host that has them; `host` passes this node's CPU through. Names from
 * bpg's CPUTypeValidator (proxmoxtf/resource/vm/validators.go).
 */
export const vmCpuTypes = ["x86-64-v2-AES", "x86-64-v3", "x86-64-v4", "host"] as const;
const vmCpuType = z.enum(vmCpuTypes).default("x86-64-v2-AES");

const mountSchema = z.strictObject({
  /** The dataset to mount, as pool/name from host.zfs.datasets. */
  volume: text(DATASET_REF),
  /** Absolute path inside the guest. */
  path: text(GUEST_PATH),
  /** Owner inside the guest. */
  uid: z.number().int().min(0).max(65535).default(0),
  gid: z.number().int().min(0).max(65535).default(0),
  readOnly: z.boolean().default(false),
});

/** Settings shared by templates and guests: what a Proxmox guest is, regardless of its role. */
const machineFields = {
  vmid,
  name: hostname,
  /** Node the guest lives on; defaults to the host's node. */
  node: z.string().regex(NODE_RE).optional(),
  cores: z.number().int().min(1).max(512).default(2),
  memoryMiB: z.number().int().min(16).default(2048),
  swapMiB: z.number().int().min(0).default(512),
  diskGiB: z.number().int().min(1).default(16),
  /** Storage of the root disk. */
  storage: storageId,
  tags: z.array(z.string().regex(TAG_RE, "tags are letters, digits, '_', '-', '+', '.'")).default([]),
  description: text(FREE_TEXT, 8192).optional(),
  // Accepted so that a template asking for them gets a precise error, not "unknown key".
  gpus: z.array(z.number().int().min(0)).default([]),
  startup: startupSchema.optional(),
};

/** A copy of a template built on another node from the same layers, for guests there when the template's storage is local (stacks/cluster.ts). */
const templateCopySchema = z.strictObject({ node: z.string().regex(NODE_RE, "must be a Proxmox node name"), vmid });
/** Per-node copies; each copy's storage is the template's own (a storage id present on that node too). */
const templateCopies = z.array(templateCopySchema).default([]);

export const templateLayers = ["base", "cuda", "vllm"] as const;

const lxcTemplateSource = z.union([
  z.strictObject({
    /** An OS template from the Proxmox catalogue (pveam available), e.g. ubuntu-24.04-standard_24.04-2_amd64.tar.zst. */
    catalogue: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.+-]*\.tar\.(gz|xz|zst)$/, "must be a catalogue file name such as ubuntu-24.04-standard_24.04-2_amd64.tar.zst"),
    /** Storage holding vztmpl content. */
    storage: storageId,
  }),
  z.strictObject({ /** Another template to clone (linked). */ clone: vmid }),
]);

export const templateSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    kind: z.literal("lxc"),
    ...machineFields,
    source: lxcTemplateSource,
    /** What the template's setup scripts install on top of its source. */
    layer: z.enum(templateLayers),
    unprivileged: z.boolean().default(true),
    features: featuresSchema.default({ nesting: false, keyctl: false, fuse: false }),
    /** Pinned versions of what the layer installs (e.g. cuda: 12.8, vllm: 0.11.0). */
    versions: z.record(text(IDENTIFIER, 32), version).default({}),
    copies: templateCopies,
  }),
  z.strictObject({
    kind: z.literal("vm"),
    ...machineFields,
    cpuType: vmCpuType,
    copies: templateCopies,
    source: z
      .strictObject({
        /** Cloud image URL (a dated release, so the checksum stays valid). */
        url: z.url({ protocol: /^https$/, error: "must be an https:// URL" }),
        /** SHA-256 of the image, verified on download. */
        sha256: sha256.optional(),
        /** Or: the publisher's SHA256SUMS file, fetched over HTTPS at apply time to verify against. */
        sha256SumsUrl: z.url({ protocol: /^https$/, error: "must be an https:// URL" }).optional(),
        /** Storage the image is downloaded to (import content). */
        storage: storageId,
      })
      .refine((s) => (s.sha256 === undefined) !== (s.sha256SumsUrl === undefined), { message: "set exactly one of sha256 or sha256SumsUrl: an image is never used unverified", path: ["sha256"] }),
  }),
]);

const vllmSchema = z.strictObject({
  engine: z.literal("vllm"),
  version: version.optional(),
  model: text(HF_MODEL),
  servedModelName: text(MODEL_NAME, 128),
  task: z.enum(["generate", "embed"]).default("generate"),
  maxModelLen: z.number().int().positive().optional(),
  dtype: z.enum(["auto", "half", "float16", "bfloat16", "float", "float32"]).default("auto"),
  quantization: z.string().regex(/^[a-z0-9_-]+$/).optional(),
  gpuMemoryUtilization: z.number().gt(0).max(1).default(0.9),
  tensorParallelSize: z.number().int().min(1).default(1),
  trustRemoteCode: z.boolean().default(false),
  /** Where weights are downloaded; should be on a mounted model volume. */
  downloadDir: text(GUEST_PATH).default("/models"),
  port: z.number().int().min(1).max(65535).default(8000),
  /** Require the API key held in the Pulumi secret modelApiKey. */
  requireApiKey: z.boolean().default(false),
  /** vLLM's --reasoning-parser: splits a reasoning model's trace from its answer (stacks/options/vllm.ts lists the names). */
  reasoningParser: z.string().regex(/^[a-z0-9_]+$/, "must be a reasoning parser name such as deepseek_r1").optional(),
});

const ollamaSchema = z.strictObject({
  engine: z.literal("ollama"),
  version,
  /** SHA-256 of the release's ollama-linux-amd64.tgz, verified before it is unpacked. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be the archive's SHA-256: 64 lower-case hex characters"),
  port: z.number().int().min(1).max(65535).default(11434),
  modelsDir: text(GUEST_PATH).default("/models/ollama"),
  models: z
    .array(
      z.strictObject({
        name: text(MODEL_NAME, 128),
        kind: z.enum(["chat", "embedding"]).default("chat"),
        /** VRAM the model takes when loaded, counted against the server's GPUs. */
        vramGiB: z.number().positive(),
      }),
    )
    .min(1),
});

const llamacppSchema = z.strictObject({
  engine: z.literal("llamacpp"),
  /** llama.cpp release tag, e.g. b6500. */
  version: z.string().regex(/^b\d+$/, "must be a llama.cpp release tag such as b6500"),
  /** The commit the tag must resolve to, checked after checkout. */
  commit: z.string().regex(/^[0-9a-f]{40}$/, "must be the tag's full 40-character commit id"),
  /** CMAKE_CUDA_ARCHITECTURES, e.g. "120"; defaults to the compute capabilities of the guest's GPUs. */
  cudaArchitectures: z.string().regex(/^[0-9]{2,3}[af]?(-real|-virtual)?(;[0-9]{2,3}[af]?(-real|-virtual)?)*$/, "must be CUDA architectures such as 120 or 86;120").optional(),
  /** GGUF file, absolute path inside the guest (on a mounted volume). */
  model: text(GGUF_PATH),
  servedModelName: text(MODEL_NAME, 128),
  kind: z.enum(["chat", "embedding"]).default("chat"),
  contextSize: z.number().int().positive().default(8192),
  gpuLayers: z.number().int().min(-1).default(999),
  port: z.number().int().min(1).max(65535).default(8080),
  vramGiB: z.number().positive(),
});

const portWithDefault = (p: number) => z.number().int().min(1).max(65535).default(p);
const percent = (p: number) => z.number().gt(0).lt(100).default(p);
/** Alert thresholds: the rules in components/observability/rules.render.ts read them from here. */
const OBS_ALERT_DEFAULTS = { routeErrorPercent: 5, zfsCapacityPercent: 80, hostMemoryAvailablePercent: 10, gpuTemperatureCelsius: 85, gpuMemoryPercent: 95, modelQueueDepth: 16, downForMinutes: 5, certificateExpiryHours: 4 };

/** The ops guest: Prometheus and Alertmanager (and node_exporter in it), their data on a mounted dataset. */
const observabilitySchema = z.strictObject({
  type: z.literal("observability"),
  prometheus: z.strictObject({ version: version.default("3.5.5"), port: portWithDefault(9090), retentionDays: z.number().int().min(1).max(3650).default(30) }).default({ version: "3.5.5", port: 9090, retentionDays: 30 }),
  alertmanager: z.strictObject({ version: version.default("0.34.0"), port: portWithDefault(9093) }).default({ version: "0.34.0", port: 9093 }),
  /** node_exporter, installed on the ops guest and scraped on the host and every guest. */
  nodeExporter: z.strictObject({ version: version.default("1.12.1"), port: portWithDefault(9100) }).default({ version: "1.12.1", port: 9100 }),
  /** blackbox_exporter on the ops guest: probes every TLS endpoint for its certificate's expiry. */
  blackboxExporter: z.strictObject({ version: version.default("0.28.0"), port: portWithDefault(9115) }).default({ version: "0.28.0", port: 9115 }),
  /** Loki on the ops guest, its data under dataDir: the journals Alloy ships (grafana/loki's release zip, checked against its SHA256SUMS). */
  loki: z.strictObject({ version: version.default("3.6.15"), port: portWithDefault(3100), retentionDays: z.number().int().min(1).max(3650).default(30) }).default({ version: "3.6.15", port: 3100, retentionDays: 30 }),
  /** Grafana Alloy on every container (the ops guest included), shipping the journal to Loki; its UI on the loopback. */
  alloy: z.strictObject({ version: version.default("1.18.1"), port: portWithDefault(12345) }).default({ version: "1.18.1", port: 12345 }),
  /** Grafana on the ops guest, from Grafana's signed APT repository at this exact version. */
  grafana: z
    .strictObject({
      version: version.default("12.3.0"),
      port: portWithDefault(3000),
      /** The fingerprint of the key that signs apt.grafana.com; the downloaded key must carry it. */
      aptKeyFingerprint: z.string().regex(/^[0-9A-F]{40}$/, "must be a 40-digit upper-case hex OpenPGP fingerprint").default("B53AE77BADB630A683046005963FA27710458545"),
    })
    .default({ version: "12.3.0", port: 3000, aptKeyFingerprint: "B53AE77BADB630A683046005963FA27710458545" }),
  /** The GPU exporter's port where it runs (utkuozdemir/nvidia_gpu_exporter, which reads nvidia-smi and so works on GeForce cards). */
  gpuExporterPort: portWithDefault(9835),
  gpuExporterVersion: version.default("1.14.0"),
  /** nginx-prometheus-exporter on the gateway, reading nginx's loopback stub_status. */
  nginxExporter: z.strictObject({ version: version.default("1.5.3"), port: portWithDefault(9113) }).default({ version: "1.5.3", port: 9113 }),
  /** prometheus-pve-exporter on the ops guest, with a PVEAuditor token Phoenix creates (user pveUser). */
  pveExporter: z
    .strictObject({ version: version.default("3.10.0"), port: portWithDefault(9221), pveUser: z.string().regex(/^[a-z][a-z0-9_-]{0,31}@pve$/, "must be a user of the pve realm, e.g. phoenix-metrics@pve").default("phoenix-metrics@pve") })
    .default({ version: "3.10.0", port: 9221, pveUser: "phoenix-metrics@pve" }),
  /** The guest path of the dataset mount holding Prometheus' and Alertmanager's data. */
  dataDir: text(GUEST_PATH).default("/var/lib/phoenix-observability"),
  scrapeIntervalSeconds: z.number().int().min(5).max(300).default(30),
  alerts: z
    .strictObject({
      zfsCapacityPercent: percent(OBS_ALERT_DEFAULTS.zfsCapacityPercent),
      /** Share of a route's requests Traefik answers with 502, 503 or 504 (its backend down) above which it alerts. */
      routeErrorPercent: percent(OBS_ALERT_DEFAULTS.routeErrorPercent),
      hostMemoryAvailablePercent: percent(OBS_ALERT_DEFAULTS.hostMemoryAvailablePercent),
      gpuTemperatureCelsius: z.number().int().min(40).max(110).default(OBS_ALERT_DEFAULTS.gpuTemperatureCelsius),
      gpuMemoryPercent: percent(OBS_ALERT_DEFAULTS.gpuMemoryPercent),
      /** Requests waiting in a vLLM server's queue. */
      modelQueueDepth: z.number().int().min(1).default(OBS_ALERT_DEFAULTS.modelQueueDepth),
      /** How long a target is down before its alert fires. */
      downForMinutes: z.number().int().min(1).max(1440).default(OBS_ALERT_DEFAULTS.downForMinutes),
      /**
       * Hours of validity left below which a certificate alerts. Step-CA issues 24 h certificates by default, renewed
       * when a third of that is left (components/render/cert-timer.ts): fewer hours means renewal has been failing.
       */
      certificateExpiryHours: z.number().int().min(1).max(8760).default(OBS_ALERT_DEFAULTS.certificateExpiryHours),
    })
    .default(OBS_ALERT_DEFAULTS),
});

/** A gateway API client's name: it names its secret (phoenix:gatewayApiKey-<name>) and is the rate-limit key nginx logs. */
export const API_CLIENT_NAME = /^[a-z][a-z0-9-]{0,31}$/;

const gatewayApiKeysSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    clients: z
      .array(
        z.strictObject({
          name: z.string().regex(API_CLIENT_NAME, "must be 1–32 characters: a lower-case letter, then lower-case letters, digits or '-'"),
          /** nginx limit_req_zone rate: requests per second (r/s) or per minute (r/m). */
          rate: z.string().regex(/^[1-9][0-9]{0,5}r\/[sm]$/, "must be a request rate such as 10r/s or 600r/m").default("10r/s"),
          /** Requests above the rate let through at once before nginx answers 429 (limit_req burst=, nodelay). */
          burst: z.number().int().min(0).max(100000).default(20),
        }),
      )
      .default([]),
  })
  .superRefine((keys, ctx) => {
    const seen = new Set<string>();
    keys.clients.forEach((c, i) => {
      if (seen.has(c.name)) ctx.addIssue({ code: "custom", path: ["clients", i, "name"], message: `client ${c.name} is declared twice: client names must be unique` });
      seen.add(c.name);
    });
  })
  // prefault, not default: zod 4 returns a default as it is, without the check above (zod v4 "default" vs "prefault").
  .prefault({});

export const roleSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("step-ca"),
    version: version.default("0.28.4"),
    cliVersion: version.default("0.28.7"),
    rootName: text(FREE_TEXT, 64).min(1).default("Phoenix Root CA"),
    intermediateName: text(FREE_TEXT, 64).min(1).default("Phoenix Intermediate CA"),
    /** Names the CA answers on; defaults to ca.<domain>. */
    dnsNames: z.array(dnsName).default([]),
    /** The admin (JWK) provisioner's name. Not "acme": step ca init --acme would then name the ACME provisioner acme-1 (smallstep/certificates v0.28.4 pki/pki.go), and Phoenix uses /acme/acme/directory. */
    provisioner: text(IDENTIFIER, 64)
      .refine((v) => v !== "acme", { message: "'acme' is the name of the CA's ACME provisioner, which step ca init would rename to acme-1: choose another name, e.g. admin" })
      .default("admin"),
    port: z.number().int().min(1).max(65535).default(9000),
  }),
  z.strictObject({
    type: z.literal("traefik"),
    version: version.default("3.5.3"),
    /** Serve the dashboard on the internal entry point (never with api.insecure). */
    dashboard: z.boolean().default(true),
  }),
  z.strictObject({
    type: z.literal("nginx-gateway"),
    maxBodyMiB: z.number().int().min(1).default(64),
    readTimeoutSeconds: z.number().int().min(1).default(600),
    /** API keys on the OpenAI routes (byModel, and the gateway host's /v1 paths): on unless a stack turns them off. */
    apiKeys: gatewayApiKeysSchema,
  }),
  z.strictObject({ type: z.literal("model-server"), server: z.discriminatedUnion("engine", [vllmSchema, ollamaSchema, llamacppSchema]) }),
  z.strictObject({
    type: z.literal("portainer-server"),
    version: version.default("2.33.2"),
    adminUser: text(USER_NAME).default("admin"),
    port: z.number().int().min(1).max(65535).default(9443),
  }),
  z.strictObject({
    type: z.literal("portainer-agent"),
    version: version.default("2.33.2"),
    /** vmid of the Portainer server this agent registers with. */
    server: vmid,
    /** Environment name shown in Portainer. */
    environment: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$/, "must be 1–64 characters: letters, digits, space, '_', '.', '-'"),
    port: z.number().int().min(1).max(65535).default(9001),
  }),
  observabilitySchema,
  z.strictObject({
    /**
     * A VM whose cloud-init user data installs Docker and starts its dockerStacks with `docker compose`
     * (no Portainer); with `nvidia`, the GPU it is passed runs on a driver and CUDA installed in the VM.
     */
    type: z.literal("compose-host"),
    nvidia: z
      .strictObject({
        /** Ubuntu's nvidia-driver-<branch>-open, e.g. branch 580 at 580.173.02-0ubuntu0.24.04.1 (packages.ubuntu.com, noble-updates). */
        branch: z.string().regex(/^\d{3}$/, "must be a driver branch such as 580"),
        driver: aptVersion,
        /** CUDA toolkit major.minor from NVIDIA's repository: package cuda-toolkit-<major>-<minor>. */
        cuda: z.string().regex(/^\d{2}\.\d$/, "must be major.minor, e.g. 12.8"),
        /** nvidia-container-toolkit's exact apt version, e.g. 1.17.8-1. */
        containerToolkit: aptVersion,
      })
      .optional(),
  }),
]);

const dockerStackSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, "must be lower case letters, digits, '-', '_' (a compose project name)"),
  /** Compose file path, relative to the project root. */
  compose: text(PROJECT_FILE),
  env: z.record(text(ENV_NAME), text(ENV_VALUE, 4096)).default({}),
  /** Environment variables whose values are Pulumi secrets: VAR → secret config key. */
  secretEnv: z.record(text(ENV_NAME), z.string().regex(/^[A-Za-z][A-Za-z0-9_-]*$/)).default({}),
});

/**
 * Tailscale tags as the guest advertises them, without the `tag:` prefix. tailscale v1.88.3
 * tailcfg/tailcfg.go CheckTag takes ASCII letters, digits and '-', starting with a letter; this is
 * narrower (lower case, at most 63 characters).
 */
export const tailscaleTag = z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, "must be a tag name without 'tag:': lower case letters, digits and '-', starting with a letter");

const guestTailscaleSchema = z.strictObject({
  /** The node's name in the tailnet; defaults to the guest's name. */
  hostname: hostname.optional(),
  /** Tags the guest advertises (tailscale up --advertise-tags); the auth key must be allowed to set them. */
  tags: z.array(tailscaleTag).min(1),
});

/** Where a guest that names no node may go; the plan is computed at validation, in the order of guests (stacks/placement.ts). */
const placementSchema = z.strictObject({
  /** A node with a GPU whose model contains this text (case-insensitive), e.g. "RTX 5090". */
  gpuModel: text(FREE_TEXT, 200).min(1).optional(),
  /** Memory the node must still have free after this guest, in MiB. */
  headroomMiB: z.number().int().min(0).default(0),
  /** Guests with the same group go to different nodes (replicas). */
  antiAffinity: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, "must be lower case letters, digits and '-', starting with a letter").optional(),
});

/**
 * An HA resource (pve-ha-manager src/PVE/API2/HA/Resources.pm): PVE 9 adds a node-affinity rule for
 * `nodes` and a negative resource-affinity rule for `apartFrom` (API2/HA/Rules.pm); PVE 8 an HA group
 * for `nodes` (API2/HA/Groups.pm) and no resource affinity.
 */
const haSchema = z.strictObject({
  state: z.enum(["started", "stopped"]).default("started"),
  /** Preferred nodes, most preferred first (priority by order). */
  nodes: z.array(z.string().regex(NODE_RE, "must be a Proxmox node name")).min(1).optional(),
  /** Run only on `nodes`, never elsewhere (PVE 9 rule `strict`, PVE 8 group `restricted`). */
  strict: z.boolean().default(false),
  /** Guests (by vmid, each HA too) this one must never run beside. PVE 9 only. */
  apartFrom: z.array(vmid).default([]),
  maxRestart: z.number().int().min(0).max(10).default(1),
  maxRelocate: z.number().int().min(0).max(10).default(1),
});

/** Guest fields whose change makes bpg's provider destroy and re-clone the guest (stacks/replacement.ts). */
export const replaceableGuestFields = ["clone", "storage", "unprivileged"] as const;

const guestFields = {
  ...machineFields,
  /** vmid of the template this guest is a linked clone of. */
  clone: vmid,
  network: networkSchema,
  /** DNS servers and search domain; default to the host's. */
  dns: z.strictObject({ servers: z.array(ipv4).min(1).optional(), searchDomain: dnsName.optional() }).optional(),
  firewall: guestFirewallSchema,
  /** Join the tailnet with the pre-auth key phoenix:tailscaleAuthKey (components/tailscale). */
  tailscale: guestTailscaleSchema.optional(),
  /** Guests (by vmid) that must be up before this one, where no data flows to say so. */
  dependsOn: z.array(vmid).default([]),
  role: roleSchema.optional(),
  /** Lifts the guest's protection: apply once with this set, then remove the guest from the stack to destroy it and its disk. */
  allowDestroy: z.boolean().default(false),
  /** Fields whose change in this apply may destroy the guest with its disk and clone it anew; remove them once applied. */
  allowReplace: z.array(z.enum(replaceableGuestFields)).default([]),
  /** For a guest that names no node: what its node must offer (stacks/placement.ts). */
  placement: placementSchema.optional(),
  /** Make the guest an HA resource of the cluster's HA manager (components/ha.ts). */
  ha: haSchema.optional(),
};

export const guestSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    kind: z.literal("lxc"),
    ...guestFields,
    unprivileged: z.boolean().default(true),
    features: featuresSchema.default({ nesting: false, keyctl: false, fuse: false }),
    mounts: z.array(mountSchema).default([]),
    /** Ids seen as themselves on the host (e.g. gid 33 to share files with the host's www-data). */
    idPassthrough: z
      .strictObject({
        uids: z.array(z.number().int().min(0).max(65535)).default([]),
        gids: z.array(z.number().int().min(0).max(65535)).default([]),
      })
      .default({ uids: [], gids: [] }),
  }),
  z.strictObject({
    kind: z.literal("vm"),
    ...guestFields,
    cpuType: vmCpuType,
    cloudInit: z
      .strictObject({
        user: z.string().regex(/^[a-z_][a-z0-9_-]*$/).default("phoenix"),
        /** Public keys only; never private keys. */
        sshKeys: z.array(z.string().regex(/^(ssh-ed25519|ecdsa-sha2-[a-z0-9-]+|ssh-rsa) [A-Za-z0-9+/=]+( [\x20-\x7e]*)?$/, "must be one OpenSSH public key line (type, key, optional comment)")).default([]),
      })
      .default({ user: "phoenix", sshKeys: [] }),
    dockerStacks: z.array(dockerStackSchema).default([]),
    /** Exact apt versions of Docker on a Portainer VM, from Docker's repository. */
    docker: z
      .strictObject({
        engine: aptVersion,
        containerd: aptVersion,
        compose: aptVersion,
      })
      .default({ engine: "5:28.5.1-1~ubuntu.24.04~noble", containerd: "1.7.28-1~ubuntu.24.04~noble", compose: "2.40.0-1~ubuntu.24.04~noble" }),
  }),
]);

// --- Services and routes ---------------------------------------------------------

export const serviceSchema = z.strictObject({
  name: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, "must be lower case letters, digits and '-', starting with a letter"),
  /** vmid of the guest serving it. */
  guest: vmid,
  port: z.number().int().min(1).max(65535),
  /** What the backend speaks on that port. */
  scheme: z.enum(["http", "https"]).default("http"),
  /** Path that answers 2xx when healthy. */
  healthPath: text(URL_PATH).default("/"),
});

export const routeSchema = z
  .strictObject({
    /** Host name the route matches; defaults to the gateway's host. */
    host: dnsName.optional(),
    /** Path prefix the route matches, e.g. /qdrant/. */
    path: text(URL_PATH).default("/"),
    /** Service that receives the request. */
    service: text(IDENTIFIER, 63).optional(),
    /** Route by the request body's "model" to the model server serving it (OpenAI-compatible paths). */
    byModel: z.boolean().default(false),
    stripPrefix: z.boolean().default(false),
    websocket: z.boolean().default(false),
  })
  .refine((r) => (r.service === undefined) === r.byModel, { message: "a route needs either service or byModel: true, not both", path: ["service"] });

export type Role = z.infer<typeof roleSchema>;
export type Template = z.infer<typeof templateSchema>;
export type Guest = z.infer<typeof guestSchema>;
export type LxcGuest = Extract<Guest, { kind: "lxc" }>;
export type VmGuest = Extract<Guest, { kind: "vm" }>;
export type Service = z.infer<typeof serviceSchema>;
export type Route = z.infer<typeof routeSchema>;
export type FirewallRule = z.infer<typeof firewallRuleSchema>;
export type Host = z.infer<typeof hostSchema>;
export type Gpu = Host["gpus"][number];

/**
 * The tailnet: the package pinned from Tailscale's apt repository, and the access rules of the
 * policy file synth renders (out/<stack>/tailscale-policy.hujson) for you to apply in the admin console.
 */
export const tailscaleSchema = z.strictObject({
  /** Exact apt version of the tailscale package, e.g. 1.90.9. */
  version: aptVersion,
  /** Who may apply the tags (tagOwners), e.g. user:you@example.com or autogroup:admin. */
  tagOwners: z.array(z.string().regex(/^(user:[^\s@]+@[A-Za-z0-9.-]+|group:[a-z0-9-]+|autogroup:[a-z-]+)$/, "must be user:<email>, group:<name> or autogroup:<name>")).min(1),
  /** Tags of devices that are not guests (a phone), so rules may name them. */
  deviceTags: z.array(tailscaleTag).default([]),
  /** Who reaches what; everything else is denied (a tailnet policy with acls denies what no rule accepts). */
  acls: z
    .array(
      z.strictObject({
        src: tailscaleTag,
        dst: tailscaleTag,
        /** Ports at the destination, or "*". */
        ports: z.union([z.literal("*"), z.array(z.number().int().min(1).max(65535)).min(1)]).default("*"),
      }),
    )
    .default([]),
});

// --- Backups and snapshot policies (components/backup, stacks/backup.ts, docs/backup.md) ----------

/** pve-common@9.2.1 src/PVE/ParseUtils.pm $EMAIL_RE, the `email-or-username-list` items vzdump's mailto takes. */
const EMAIL_RE = /^[\w+\-~]+(\.[\w+\-~]+)*@[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*$/;
/** pve-common@9.2.1 src/PVE/JSONSchema.pm $CONFIGID_RE: a backup job's id (`pve-configid`, Backup.pm create_job). */
const CONFIGID_RE = /^[A-Za-z][A-Za-z0-9_-]+$/;
/**
 * A systemd-style calendar event as PVE's jobs take it (Backup.pm: `pve-calendar-event`, parsed by
 * proxmox-time's Rust CalendarEvent). unverified: that parser is not reproduced here; this admits
 * the characters its grammar uses, and test/backup checks the shipped schedules with
 * `systemd-analyze calendar`, whose grammar PVE's is a subset of.
 */
const CALENDAR_RE = /^[a-z0-9*:/,.~ -]+$/;
const keepCount = z.number().int().min(1).max(100_000);

/** A Proxmox Backup Server declared as a PVE storage (proxmoxve:storage/pbs:Pbs, pve-storage PBSPlugin.pm). */
const pbsStorageSchema = z.strictObject({
  id: storageId,
  /** The PBS host name or address. */
  server: z.union([ipv4, dnsName], { error: "must be an IPv4 address or a DNS name" }),
  datastore: text(IDENTIFIER, 64),
  /** The PBS user (or API token) PVE logs in as, e.g. backup@pbs or backup@pbs!pve. */
  username: z.string().regex(/^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+(![A-Za-z][A-Za-z0-9._-]*)?$/, "must be USER@REALM or USER@REALM!TOKEN, e.g. backup@pbs"),
  /** SHA-256 of the PBS server's certificate (`proxmox-backup-manager cert info`); pve-common `fingerprint-sha256`. */
  fingerprint: z.string().regex(/^([A-Fa-f0-9]{2}:){31}[A-Fa-f0-9]{2}$/, "must be the certificate's SHA-256 fingerprint: 32 hex pairs separated by ':'"),
  /** The phoenix:<key> holding the password (or token secret): set with `pulumi config set --secret`. */
  passwordSecretKey: z.string().regex(/^[A-Za-z][A-Za-z0-9_-]*$/, "must be a config key name such as pbsPassword"),
  /**
   * The phoenix:<key> holding the client-side encryption key, so the PBS server only ever stores
   * ciphertext: the JSON key file `proxmox-backup-client key create --kdf none <file>` writes, set
   * with `pulumi config set --secret phoenix:<key> < <file>` (pve-storage@9.1.7
   * src/PVE/Storage/PBSPlugin.pm `encryption-key`: on_add_hook refuses a value that is not JSON
   * with `data` and keeps it in /etc/pve/priv/storage/<id>.enc). Keep a copy off the box:
   * restoring needs it. Required under firewall.hardening.
   */
  encryptionKeySecretKey: z.string().regex(/^[A-Za-z][A-Za-z0-9_-]*$/, "must be a config key name such as pbsEncryptionKey").optional(),
  /** A PBS namespace inside the datastore. */
  namespace: z.string().regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+){0,7}$/, "must be a PBS namespace such as phoenix or site/phoenix").optional(),
});

/** Which guests a job backs up. PVE selects by all, vmid list or pool; tags are resolved to vmids here (vzdump has no tag selection). */
const backupSelectionSchema = z.union([
  z.strictObject({ all: z.literal(true), /** Guests left out of `all`. */ exclude: z.array(vmid).default([]) }),
  z.strictObject({ vmids: z.array(vmid).min(1) }),
  z.strictObject({ /** Every declared guest carrying one of these tags, when the stack is applied. */ tags: z.array(z.string().regex(TAG_RE, "tags are letters, digits, '_', '-', '+', '.'")).min(1) }),
  /** A PVE resource pool, which Phoenix does not manage: its members are not counted as covered. */
  z.strictObject({ pool: z.string().regex(/^[A-Za-z0-9_\-/]+$/, "must be a PVE pool id") }),
]);

const backupJobSchema = z.strictObject({
  /** The job's id in /etc/pve/jobs.cfg. */
  id: z.string().regex(CONFIGID_RE, "must be a PVE job id: a letter, then letters, digits, '_', '-'"),
  /** When it runs, a PVE calendar event such as "02:30", "mon..fri 21:00" or "*-*-* 03:00". */
  schedule: z.string().max(128).regex(CALENDAR_RE, "must be a calendar event such as 02:30 or sat 03:00"),
  /** Where archives go: a storage with backup content (a dir storage of a dataset, or a PBS storage). */
  storage: storageId,
  guests: backupSelectionSchema,
  /** vzdump's mode: snapshot (no downtime), suspend, or stop (consistent, with downtime). */
  mode: z.enum(["snapshot", "suspend", "stop"]).default("snapshot"),
  /** Ignored by a PBS storage, which always compresses (zstd). */
  compress: z.enum(["0", "gzip", "lzo", "zstd"]).default("zstd"),
  /** How many archives to keep (vzdump's prune-backups); old ones are pruned after each run. */
  retention: z
    .strictObject({ last: keepCount.optional(), hourly: keepCount.optional(), daily: keepCount.optional(), weekly: keepCount.optional(), monthly: keepCount.optional(), yearly: keepCount.optional() })
    .refine((r) => Object.values(r).some((v) => v !== undefined), { message: "keep at least one kind (e.g. daily: 7): without any, PVE keeps every archive forever" }),
  /** Mail the result to these addresses; without them, PVE's notification system (Datacenter → Notifications) reports it. */
  notify: z
    .strictObject({
      mailto: z.array(z.string().max(254).regex(EMAIL_RE, "must be an email address")).default([]),
      when: z.enum(["always", "failure"]).default("failure"),
    })
    .default({ mailto: [], when: "failure" }),
  enabled: z.boolean().default(true),
});

/** A sanoid template: how many snapshots of each period to keep (0: none taken). */
const snapshotTemplateSchema = z.strictObject({
  frequently: z.number().int().min(0).max(10_000).default(0),
  hourly: z.number().int().min(0).max(10_000).default(0),
  daily: z.number().int().min(0).max(10_000).default(0),
  weekly: z.number().int().min(0).max(10_000).default(0),
  monthly: z.number().int().min(0).max(10_000).default(0),
  yearly: z.number().int().min(0).max(10_000).default(0),
});

export const backupSchema = z.strictObject({
  /** Proxmox Backup Servers, as PVE storages jobs may target. */
  pbs: z.array(pbsStorageSchema).default([]),
  jobs: z.array(backupJobSchema).default([]),
  /** Guests with data that no job backs up, on purpose: each with the reason. */
  notBackedUp: z.array(z.strictObject({ vmid, reason: text(FREE_TEXT, 200).min(1) })).default([]),
  /** ZFS snapshot policies, run on the node by sanoid (its Debian package and systemd timer). */
  snapshots: z
    .strictObject({
      templates: z.record(z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, "template names are letters, digits, '_', '-'"), snapshotTemplateSchema).default({}),
      datasets: z.array(z.strictObject({ /** As pool/name from host.zfs.datasets. */ dataset: text(DATASET_REF), template: z.string() })).default([]),
    })
    .default({ templates: {}, datasets: [] }),
});

export type BackupConfig = z.infer<typeof backupSchema>;
export type BackupJob = BackupConfig["jobs"][number];

/** The stack file's `phoenix:*` keys, without the namespace. */
export const stackSchema = z.strictObject({
  proxmox: proxmoxSchema,
  host: hostSchema,
  templates: z.array(templateSchema).default([]),
  guests: z.array(guestSchema).default([]),
  services: z.array(serviceSchema).default([]),
  routes: z.array(routeSchema).default([]),
  firewall: firewallSchema,
  tailscale: tailscaleSchema.optional(),
  /** Backup jobs and ZFS snapshot policies; without it, nothing is backed up (synth's plan says so). */
  backup: backupSchema.optional(),
  /**
   * A guest snapshot before Phoenix re-runs a guest's install (providers/guest/guest-snapshot.ts),
   * named `phoenix-<change>-<hash>`; the last `keep` of Phoenix's are kept, others' are never touched.
   * A guest PVE cannot snapshot (a bind mount, a root disk on a dir storage) is named in preview and
   * its install does not re-run unless `whenUnsupported: proceed`.
   */
  changeSnapshots: z
    .strictObject({
      keep: z.number().int().min(1).max(50).default(3),
      whenUnsupported: z.enum(["refuse", "proceed"]).default("refuse"),
    })
    .default({ keep: 3, whenUnsupported: "refuse" }),
});

export type StackConfig = z.infer<typeof stackSchema>;
export type StackConfigInput = z.input<typeof stackSchema>;
