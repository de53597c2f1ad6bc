/**
 * What each bridged Proxmox resource stands for in API calls, made through Phoenix's own client
 * so that the simulator validates every one against the official schema. One entry per type:
 * create, update (reads first and writes only what differs), delete, and read.
 *
 * These follow what the bpg provider does for the inputs Phoenix sets; they are not a port of
 * it. A type the program starts to use without an entry here fails the apply by name.
 */
import { encodeSshKeys, PveApiError, type FormParams, type GuestKind, type PveApi } from "../../providers/pve";
import { same } from "../../providers/common";
import { PartialCreateError, type Translation } from "./engine";
import { backupJobTranslation, pbsTranslation } from "./backup-translation";
import { aclTranslation, tokenTranslation, userTranslation } from "./access-translations";
import { haGroupTranslation, haResourceTranslation, haRuleTranslation } from "./ha-translations";

/** vmids bpg's create adopted because they already existed (see guestTranslation). */
export const adopted: number[] = [];

type Inputs = Record<string, unknown>;

const obj = (v: unknown): Inputs => (v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Inputs) : {});
const list = (v: unknown): Inputs[] => (Array.isArray(v) ? v.map(obj) : []);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);
const bool = (v: unknown): string | undefined => (v === undefined ? undefined : v ? "1" : "0");
const e = encodeURIComponent;

/** `k=v,k2=v2` with a leading bare value under "" (a property string's default key). */
export function parsePropertyString(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s.split(",")) {
    const i = part.indexOf("=");
    if (i < 0) out[""] = part;
    else out[part.slice(0, i)] = part.slice(i + 1);
  }
  return out;
}

function render(props: Record<string, string | undefined>): string {
  const head = props[""];
  const rest = Object.entries(props).filter(([k, v]) => k !== "" && v !== undefined).map(([k, v]) => `${k}=${v}`);
  return [...(head !== undefined ? [head] : []), ...rest].join(",");
}

/** A config value as PVE holds it agrees with the wanted one: property strings compare on the keys wanted. */
function agrees(want: string, have: unknown, propertyString: boolean): boolean {
  if (have === undefined) return false;
  if (!propertyString) return String(have) === want;
  const h = parsePropertyString(String(have));
  return Object.entries(parsePropertyString(want)).every(([k, v]) => h[k] === v);
}

/** The settings of a guest config that differ from what is wanted. */
function configDelta(want: Record<string, string | undefined>, have: Inputs, propertyKeys: ReadonlySet<string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(want)) if (v !== undefined && !agrees(v, have[k], propertyKeys.has(k) || /^(net|ipconfig|hostpci)\d+$/.test(k))) out[k] = v;
  return out;
}

function definedOnly(o: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).filter((x): x is [string, string] => x[1] !== undefined));
}

function startupString(s: unknown): string | undefined {
  const o = obj(s);
  if (Object.keys(o).length === 0) return undefined;
  return render({ order: o.order === undefined ? undefined : String(o.order), up: o.upDelay === undefined ? undefined : String(o.upDelay), down: o.downDelay === undefined ? undefined : String(o.downDelay) });
}

function sizeGiB(v: unknown): number {
  const m = /size=(\d+(?:\.\d+)?)([MGT])/.exec(String(v ?? ""));
  if (!m) return 0;
  return Number(m[1]) * ({ M: 1 / 1024, G: 1, T: 1024 }[m[2] as "M" | "G" | "T"] ?? 1);
}

interface GuestShape {
  kind: GuestKind;
  node: string;
  vmid: number;
  template: number;
  /** The template's node when bpg is told it (`clone.nodeName`); otherwise the guest's. */
  templateNode?: string;
  /** Parameters the clone call itself takes. */
  cloneParams: FormParams;
  config: Record<string, string | undefined>;
  disk: { key: string; gib: number };
  started: boolean;
  /** For a VM made from scratch: the disk as the create call allocates it. */
  createDisk?: Record<string, string>;
  /** Converted to a template once built. */
  isTemplate?: boolean;
}

/** Where a guest lives and what it is cloned from, as both guest types name them. */
function identity(i: Inputs): Pick<GuestShape, "node" | "vmid" | "template" | "templateNode"> {
  const from = obj(i.clone).nodeName;
  return { node: String(i.nodeName), vmid: Number(i.vmId), template: Number(obj(i.clone).vmId), ...(typeof from === "string" && from !== "" ? { templateNode: from } : {}) };
}

/** The config keys both guest types take from the same inputs. */
function commonConfig(i: Inputs): Record<string, string | undefined> {
  const dns = obj(obj(i.initialization).dns);
  return {
    description: i.description as string | undefined,
    tags: strings(i.tags).join(";") || undefined,
    cores: obj(i.cpu).cores === undefined ? undefined : String(obj(i.cpu).cores),
    memory: obj(i.memory).dedicated === undefined ? undefined : String(obj(i.memory).dedicated),
    nameserver: strings(dns.servers).join(" ") || undefined,
    searchdomain: dns.domain as string | undefined,
    startup: startupString(i.startup),
  };
}

function containerShape(i: Inputs): GuestShape {
  const init = obj(i.initialization);
  const ip = obj(obj(list(init.ipConfigs)[0]).ipv4);
  const nic = list(i.networkInterfaces)[0] ?? {};
  const features = obj(i.features);
  return {
    kind: "lxc",
    ...identity(i),
    cloneParams: { hostname: init.hostname as string | undefined, description: i.description as string | undefined, full: false },
    config: {
      hostname: init.hostname as string | undefined,
      ...commonConfig(i),
      swap: obj(i.memory).swap === undefined ? undefined : String(obj(i.memory).swap),
      net0: render({
        name: String(nic.name ?? "eth0"),
        bridge: nic.bridge as string | undefined,
        firewall: bool(nic.firewall),
        hwaddr: nic.macAddress as string | undefined,
        tag: nic.vlanId === undefined ? undefined : String(nic.vlanId),
        ip: ip.address as string | undefined,
        gw: ip.gateway as string | undefined,
      }),
      // bpg v0.111.1 containerCreateClone (container.go:1357) → containerGetFeatures (:2540): only the flags that are on.
      features: features.nesting === true ? "nesting=1" : undefined,
      onboot: bool(i.startOnBoot),
    },
    disk: { key: "rootfs", gib: Number(obj(i.disk).size ?? 0) },
    started: i.started !== false,
  };
}

function vmShape(i: Inputs): GuestShape {
  const init = obj(i.initialization);
  const ip = obj(obj(list(init.ipConfigs)[0]).ipv4);
  const user = obj(init.userAccount);
  const nic = list(i.networkDevices)[0] ?? {};
  const disk = list(i.disks)[0] ?? {};
  const config: Record<string, string | undefined> = {
    name: i.name as string | undefined,
    ...commonConfig(i),
    agent: obj(i.agent).enabled === undefined ? undefined : bool(obj(i.agent).enabled),
    // bpg v0.111.1 proxmoxtf/resource/vm/vm.go: cpu.type defaults to qemu64 (:78, :715-720) and is
    // sent at the clone's update (:2598-2626) and at a create (:3094), bare when it has no flags
    // (proxmox/nodes/vms/custom_cpu_emulation.go EncodeValues).
    cpu: String(obj(i.cpu).type ?? "qemu64"),
    net0: render({ "": String(nic.model ?? "virtio"), bridge: nic.bridge as string | undefined, firewall: bool(nic.firewall), tag: nic.vlanId === undefined ? undefined : String(nic.vlanId) }),
    ipconfig0: render({ ip: ip.address as string | undefined, gw: ip.gateway as string | undefined }),
    ciuser: user.username as string | undefined,
    sshkeys: strings(user.keys).length > 0 ? encodeSshKeys(strings(user.keys).join("\n")) : undefined,
    ide2: init.datastoreId === undefined ? undefined : `${String(init.datastoreId)}:cloudinit,media=cdrom`,
    onboot: bool(i.onBoot),
    machine: i.machine as string | undefined,
    scsihw: i.scsiHardware as string | undefined,
    ostype: obj(i.operatingSystem).type as string | undefined,
    boot: strings(i.bootOrders).length > 0 ? `order=${strings(i.bootOrders).join(";")}` : undefined,
    serial0: list(i.serialDevices)[0]?.device as string | undefined,
    vga: obj(i.vga).type === undefined ? undefined : `type=${String(obj(i.vga).type)}`,
    // bpg v0.111.1 proxmoxtf/resource/vm/vm.go: `bios` and `balloon` (memory.floating) go out in the
    // clone's update; the EFI disk is allocated there from efi_disk (vmGetEfiDisk :3765-3778:
    // `<datastore>:1`, format (default raw), efitype, pre-enrolled-keys).
    bios: i.bios as string | undefined,
    balloon: obj(i.memory).floating === undefined ? undefined : String(obj(i.memory).floating),
    efidisk0: i.efiDisk === undefined ? undefined : render({ "": `${String(obj(i.efiDisk).datastoreId)}:1`, format: String(obj(i.efiDisk).fileFormat ?? "raw"), efitype: obj(i.efiDisk).type as string | undefined, "pre-enrolled-keys": bool(obj(i.efiDisk).preEnrolledKeys) }),
  };
  list(i.hostpcis).forEach((h) => {
    config[String(h.device)] = render({ mapping: h.mapping as string | undefined, pcie: bool(h.pcie) });
  });
  const key = String(disk.interface ?? "scsi0");
  return {
    kind: "qemu",
    ...identity(i),
    cloneParams: { name: i.name as string | undefined, description: i.description as string | undefined, full: false },
    config,
    disk: { key, gib: Number(disk.size ?? 0) },
    started: i.started !== false,
    // Without a clone source the VM is created, its disk imported from a downloaded image.
    createDisk: disk.importFrom === undefined ? undefined : { [key]: render({ "": `${String(disk.datastoreId)}:0`, "import-from": String(disk.importFrom), discard: disk.discard as string | undefined }) },
    isTemplate: i.template === true,
  };
}

/** A VM's net0 starts with `model=MAC` once PVE has assigned the MAC: compare the model alone. */
function normalisedConfig(kind: GuestKind, have: Inputs): Inputs {
  if (kind !== "qemu" || typeof have.net0 !== "string") return have;
  const net = parsePropertyString(have.net0);
  const model = Object.keys(net).find((k) => /^(virtio|e1000|e1000e|rtl8139|vmxnet3)$/.test(k));
  if (model === undefined) return have;
  const { [model]: _mac, ...rest } = net;
  return { ...have, net0: render({ "": model, ...rest }) };
}

const PROPERTY_KEYS = new Set(["features", "startup", "ide2", "agent"]);

/**
 * `resize`: whether this step grows the disk to the declared size. bpg grows a VM's disk right
 * after its clone (bpg v0.111.1 proxmoxtf/resource/vm/vm.go:2867 → vm/disk/disk.go:134) and a
 * container's only on an update that changes `disk` (container/container.go:3636-3679, compared
 * with the live size); never at a container's clone (containerCreateClone :1260-1731).
 */
async function converge(api: PveApi, g: GuestShape, resize = true): Promise<Inputs> {
  const have = normalisedConfig(g.kind, (await api.guestConfig(g.node, g.kind, g.vmid)) as Inputs);
  const delta = configDelta(g.config, have, PROPERTY_KEYS);
  // The cloud-init drive is allocated once; its spec never reads back the way it was written.
  if ("ide2" in delta && typeof have.ide2 === "string" && have.ide2.includes("cloudinit")) delete delta.ide2;
  // So is the EFI disk: once allocated it reads back as its volume, `<storage>:vm-<id>-disk-N,…`.
  if ("efidisk0" in delta && typeof have.efidisk0 === "string") delete delta.efidisk0;
  if (Object.keys(delta).length > 0) await api.updateGuestConfig(g.node, g.kind, g.vmid, delta);
  if (resize && g.disk.gib > sizeGiB(have[g.disk.key])) await api.resizeGuestDisk(g.node, g.kind, g.vmid, g.disk.key, `${g.disk.gib}G`);
  if (g.isTemplate) {
    if (Number(have.template ?? 0) !== 1) await api.convertToTemplate(g.node, g.kind, g.vmid);
    return guestOutputs(api, g);
  }
  const status = await api.guestStatus(g.node, g.kind, g.vmid);
  if (g.started && status.status !== "running") await api.setGuestState(g.node, g.kind, g.vmid, "start");
  return guestOutputs(api, g);
}

/** What bpg's read puts in the state: the disk's size as PVE reports it (container.go:2814), whatever was asked. */
async function guestOutputs(api: PveApi, g: GuestShape): Promise<Inputs> {
  const config = (await api.guestConfig(g.node, g.kind, g.vmid)) as Inputs;
  return { nodeName: g.node, vmId: g.vmid, config, diskGiB: sizeGiB(config[g.disk.key]) };
}

/**
 * bpg's ForceNew inputs among those Phoenix sets (stacks/replacement.ts lists them all
 * with their lines): container.go node_name :991, clone.* :239-:268, disk.datastore_id :412,
 * unprivileged :1156, vm_id ForceNewIf :1172; vm.go clone.* :605-:633, vm_id :1767, node_name
 * unless migrate :1781 (guestDiff), initialization.user_data_file_id :999.
 */
const FORCE_NEW: Record<GuestKind, Array<(i: Inputs) => unknown>> = {
  lxc: [(i) => i.nodeName, (i) => i.vmId, (i) => i.clone, (i) => obj(i.disk).datastoreId, (i) => i.unprivileged],
  qemu: [(i) => i.nodeName, (i) => i.vmId, (i) => i.clone, (i) => obj(i.initialization).userDataFileId],
};
const FORCE_NEW_NAMES: Record<GuestKind, string[]> = { lxc: ["nodeName", "vmId", "clone", "disk.datastoreId", "unprivileged"], qemu: ["nodeName", "vmId", "clone", "initialization.userDataFileId"] };

/**
 * bpg diffs the new inputs against its state, where the disk size is what it read back: for a
 * container, a declared size below it forces a new container (CustomizeDiff ForceNewIf on
 * `disk`, container.go:1183-1227); for a VM it is an update that fails (vm/disk/disk.go:83).
 */
function guestDiff(kind: GuestKind, shape: (i: Inputs) => GuestShape) {
  return (entry: { inputs: Inputs; outputs: Inputs }, news: Inputs): { changes: boolean; replaces: string[] } => {
    const replaces = FORCE_NEW_NAMES[kind]
      .filter((_, n) => !same(FORCE_NEW[kind][n]!(entry.inputs), FORCE_NEW[kind][n]!(news)))
      // vm.go:1781-1790: customdiff.ForceNewIf(node_name, … return !d.Get(mkMigrate)): with `migrate` the new value decides, and a node change is an update (migrateVM).
      .filter((name) => !(kind === "qemu" && name === "nodeName" && news.migrate === true));
    const stateGiB = Number(entry.outputs.diskGiB ?? shape(entry.inputs).disk.gib);
    const wantGiB = shape(news).disk.gib;
    if (kind === "lxc" && wantGiB < stateGiB) replaces.push("disk.size");
    const withoutSize = (i: Inputs) => ({ ...i, disk: undefined, disks: undefined });
    return { changes: replaces.length > 0 || wantGiB !== stateGiB || !same(withoutSize(entry.inputs), withoutSize(news)) || !same(obj(entry.inputs.disk).datastoreId, obj(news.disk).datastoreId), replaces };
  };
}

/**
 * A container's update sends `features` only when they changed, and then all four flags,
 * `fuse=0,keyctl=0,nesting=1,mknod=0` (bpg v0.111.1 container.go:3728 d.HasChange →
 * containerGetFeaturesForUpdate :2546; proxmox/nodes/containers/containers_types.go
 * CustomFeatures.EncodeValues, in that order), which PVE refuses from a token.
 */
function updateShape(kind: GuestKind, shape: (i: Inputs) => GuestShape, olds: Inputs, news: Inputs): GuestShape {
  const g = shape(news);
  if (kind !== "lxc") return g;
  const f = obj(news.features);
  const flag = (k: string) => `${k}=${f[k] === true ? 1 : 0}`;
  g.config.features = same(olds.features, news.features) ? undefined : ["fuse", "keyctl", "nesting", "mknod"].map(flag).join(",");
  return g;
}

async function guestExists(api: PveApi, node: string, kind: GuestKind, vmid: number): Promise<boolean> {
  return (await api.listGuests(node, kind)).some((x) => x.vmid === vmid);
}

function guestTranslation(api: PveApi, kind: GuestKind, shape: (i: Inputs) => GuestShape): Translation {
  return {
    diff: guestDiff(kind, shape),
    async create(inputs) {
      const g = shape(inputs);
      if (g.createDisk) await api.createVm(g.node, { vmid: g.vmid, ...g.createDisk, ...definedOnly(g.config) });
      // A clone onto a vmid in use: PVE answers "CT <vmid> already exists" as a 500 (pve-guest-common
      // src/PVE/AbstractConfig.pm:261), bpg retries it as transient and, on the retry, takes
      // "already exists" as done (proxmox/nodes/containers/containers.go:31, vms/vms.go:39,
      // proxmox/retry/retry.go:144): it adopts the guest that is there.
      else if (await guestExists(api, g.node, kind, g.vmid)) adopted.push(g.vmid);
      else await cloneGuest(api, g);
      try {
        return { id: String(g.vmid), outputs: await converge(api, g, kind === "qemu") };
      } catch (err) {
        throw new PartialCreateError(String(g.vmid), { nodeName: g.node, vmId: g.vmid }, err);
      }
    },
    async update(entry, inputs) {
      const g = updateShape(kind, shape, entry.inputs, inputs);
      // vmUpdate (vm.go:6122-6170): d.HasChange(node_name) against the state, which vmRead keeps at the VM's node.
      const was = String(entry.outputs.nodeName ?? entry.inputs.nodeName);
      if (kind === "qemu" && was !== g.node) await migrateVm(api, g.vmid, was, g.node);
      return converge(api, g);
    },
    async delete(entry) {
      const g = shape(entry.inputs);
      if (!(await guestExists(api, g.node, kind, g.vmid))) return;
      if ((await api.guestStatus(g.node, kind, g.vmid)).status === "running") await api.setGuestState(g.node, kind, g.vmid, "stop");
      await api.deleteGuest(g.node, kind, g.vmid);
    },
    async read(entry) {
      const g = shape(entry.inputs);
      // vmRead (vm.go:4293-4322) finds the VM's node through the cluster (GetVMNodeName, proxmox/cluster/cluster.go:66:
      // GET /cluster/resources?type=vm) and records it; containerRead (container/container.go:2660-2687) reads at the
      // node_name in its state, and a container that is not there is gone (SetId("") on ErrResourceDoesNotExist).
      if (kind === "qemu") {
        const at = await vmNode(api, g.vmid);
        return at === undefined ? undefined : guestOutputs(api, { ...g, node: at });
      }
      return (await guestExists(api, String(entry.outputs.nodeName ?? g.node), kind, g.vmid)) ? guestOutputs(api, { ...g, node: String(entry.outputs.nodeName ?? g.node) }) : undefined;
    },
  };
}

/**
 * The clone, as bpg v0.111.1 makes it. From the guest's own node unless `clone.node_name` names
 * another; then a container is cloned on that node with `target` = the guest's node
 * (proxmoxtf/resource/container/container.go:1334-1338). A VM's template config is read there
 * and the status of each storage its disks use (vm.go:2389-2410, getDiskDatastores :7498:
 * every drive but `none`, EFI disk, TPM state); with all of them shared it is cloned with
 * `target` (:2412-2424), otherwise cloned on the template's node, its config lock awaited, and
 * migrated with `with-local-disks=1` (:2425-2461).
 */
async function cloneGuest(api: PveApi, g: GuestShape): Promise<void> {
  const from = g.templateNode !== undefined && g.templateNode !== g.node ? g.templateNode : undefined;
  if (g.kind === "lxc") {
    await api.cloneContainer(from ?? g.node, g.template, g.vmid, { ...(g.cloneParams as FormParams & { hostname?: string }), ...(from ? { target: g.node } : {}) });
    return;
  }
  if (!from) {
    await api.cloneVm(g.node, g.template, g.vmid, g.cloneParams as FormParams & { name?: string });
    return;
  }
  const config = await api.guestConfig(from, "qemu", g.template);
  const datastores = new Set<string>();
  for (const [k, v] of Object.entries(config)) {
    if (!/^((ide|sata|scsi|virtio)\d+|efidisk0|tpmstate0)$/.test(k) || typeof v !== "string") continue;
    const file = v.split(",")[0]!;
    if (file !== "none") datastores.add(file.split(":")[0]!);
  }
  let shared = true;
  for (const ds of datastores) {
    const status = await api.client.get<{ shared?: number | boolean }>(`/nodes/${e(from)}/storage/${e(ds)}/status`);
    // vm.go:2406: only an explicit `shared: false` counts as local.
    if (status.shared !== undefined && !status.shared) {
      shared = false;
      break;
    }
  }
  if (shared) {
    await api.cloneVm(from, g.template, g.vmid, { ...(g.cloneParams as FormParams & { name?: string }), target: g.node });
    return;
  }
  await api.cloneVm(from, g.template, g.vmid, g.cloneParams as FormParams & { name?: string });
  await api.waitForUnlock(from, "qemu", g.vmid);
  await api.runTask("POST", `/nodes/${e(from)}/qemu/${g.vmid}/migrate`, { target: g.node, "with-local-disks": true });
}

/** bpg v0.111.1 proxmox/cluster/cluster.go:66 GetVMNodeName: the node /cluster/resources lists the vmid on (any guest type). */
async function vmNode(api: PveApi, vmid: number): Promise<string | undefined> {
  const all = await api.client.get<Array<{ vmid?: number; node?: string }>>("/cluster/resources", { type: "vm" });
  return all.find((r) => r.vmid === vmid)?.node;
}

/**
 * A VM's node change with `migrate: true`, as bpg v0.111.1 makes it (proxmoxtf/resource/vm/vm.go):
 * migrateVM (:7674) reads the VM's status on the old node and whether it is an HA resource
 * (vmGetMigrationState: GET status/current, then proxmox/cluster/ha/resources/resources.go:96
 * Exists, a GET of `vm:<vmid>` where "does not exist"/"no such resource" means no, proxmox/api/
 * client.go:366-373); a VM outside HA, running or stopped, goes through migrateNonHAVM (:7820):
 * POST /nodes/<old>/qemu/<vmid>/migrate with target, `with-local-disks=1` and `online=1`, no
 * `targetstorage` (each disk keeps its storage id), and waits for the task. qemu-server
 * e6352be6 src/PVE/API2/Qemu.pm migrate_vm turns `online` into an offline migration for a VM
 * that is not running ("VM isn't running. Doing offline migration instead."). Not modelled:
 * an HA-managed VM (migrateHAVM / migrateStoppedHAVM: the HA manager's migrate endpoint) fails
 * here by name, and node-local devices the new config drops (vmUpdateNodeLocalDevicesBeforeMigration
 * :5908, a config update before the move) since Phoenix keeps a VM's mappings across a move.
 */
async function migrateVm(api: PveApi, vmid: number, from: string, to: string): Promise<void> {
  await api.guestStatus(from, "qemu", vmid);
  const ha = await api.client.get(`/cluster/ha/resources/${e(`vm:${vmid}`)}`).then(
    () => true,
    (err: unknown) => {
      if (err instanceof PveApiError && (err.status === 404 || /does not exist|no such resource/.test(err.detail))) return false;
      throw err;
    },
  );
  if (ha) throw new Error(`VM ${vmid} is an HA resource: the e2e harness does not model bpg's HA migration (vm.go migrateHAVM)`);
  await api.runTask("POST", `/nodes/${e(from)}/qemu/${vmid}/migrate`, { target: to, "with-local-disks": true, online: true });
}

// --- firewall ----------------------------------------------------------------------------------

function firewallBase(i: Inputs): string {
  if (i.containerId !== undefined) return `/nodes/${e(String(i.nodeName))}/lxc/${Number(i.containerId)}/firewall`;
  if (i.vmId !== undefined) return `/nodes/${e(String(i.nodeName))}/qemu/${Number(i.vmId)}/firewall`;
  if (i.nodeName !== undefined) return `/nodes/${e(String(i.nodeName))}/firewall`;
  return "/cluster/firewall";
}

const RULE_KEYS = ["type", "action", "macro", "proto", "source", "dest", "dport", "sport", "iface", "comment", "enable"] as const;

function ruleParams(r: Inputs): Record<string, string> {
  const out: Record<string, string | undefined> = {
    type: String(r.type),
    action: r.type === "group" ? (r.securityGroup as string | undefined) : (r.action as string | undefined),
    macro: r.macro as string | undefined,
    proto: r.proto as string | undefined,
    source: r.source as string | undefined,
    dest: r.dest as string | undefined,
    dport: r.dport === undefined ? undefined : String(r.dport),
    sport: r.sport === undefined ? undefined : String(r.sport),
    iface: r.iface as string | undefined,
    comment: r.comment as string | undefined,
    enable: bool(r.enabled ?? true),
  };
  return Object.fromEntries(Object.entries(out).filter((x): x is [string, string] => x[1] !== undefined));
}

function sameRule(want: Record<string, string>, have: Inputs): boolean {
  return RULE_KEYS.every((k) => (want[k] ?? "") === (have[k] === undefined ? "" : String(have[k])));
}

/**
 * A rules resource owns the whole rule list of its scope, in order. Rules go in the way bpg
 * v0.111.1 posts them (proxmoxtf/resource/firewall/rules.go RulesCreate: `slices.Backward(rules)`,
 * one POST each through proxmox/firewall/rules.go CreateRule, no `pos`): last first, since PVE
 * puts every new rule on top (pve-firewall 6.0.4 src/PVE/API2/Firewall/Rules.pm create_rule),
 * so they end in the declared order. A POST is never replayed (it would add the rule twice);
 * a delete by position carries the list's digest, so a replay cannot remove the next rule.
 * Simpler than bpg's update (match by signature, `moveto`, delete the excess): the harness
 * empties the list and posts it again.
 */
async function convergeRules(api: PveApi, path: string, rules: Inputs[]): Promise<Inputs[]> {
  const want = rules.map(ruleParams);
  let have = await api.client.get<Array<Inputs & { digest?: string }>>(path);
  const matches = want.length === have.length && want.every((w, i) => sameRule(w, have[i] ?? {}));
  if (!matches) {
    while (have.length > 0) {
      await api.client.delete(`${path}/${have.length - 1}`, { digest: have[0]?.digest });
      have = await api.client.get(path);
    }
    for (const w of [...want].reverse()) await api.client.post(path, w, { retry: "unapplied" });
  }
  return api.client.get<Inputs[]>(path);
}

async function scopeExists(api: PveApi, i: Inputs): Promise<boolean> {
  if (i.containerId !== undefined) return guestExists(api, String(i.nodeName), "lxc", Number(i.containerId));
  if (i.vmId !== undefined) return guestExists(api, String(i.nodeName), "qemu", Number(i.vmId));
  return true;
}

function rulesTranslation(api: PveApi): Translation {
  const apply = async (i: Inputs) => ({ rules: await convergeRules(api, `${firewallBase(i)}/rules`, list(i.rules)) });
  return {
    replaceOnChanges: ["nodeName", "containerId", "vmId"],
    create: async (i) => ({ id: firewallBase(i), outputs: await apply(i) }),
    update: (_entry, i) => apply(i),
    async delete(entry) {
      if (await scopeExists(api, entry.inputs)) await convergeRules(api, `${firewallBase(entry.inputs)}/rules`, []);
    },
    async read(entry) {
      return (await scopeExists(api, entry.inputs)) ? { rules: await api.client.get(`${firewallBase(entry.inputs)}/rules`) } : undefined;
    },
  };
}

/** Firewall options: `enabled`/`inputPolicy`/`outputPolicy` on the PVE keys they stand for. */
function optionsTranslation(api: PveApi, base: (i: Inputs) => string): Translation {
  const wanted = (i: Inputs): Record<string, string> =>
    Object.fromEntries(
      Object.entries({ enable: bool(i.enabled), policy_in: i.inputPolicy as string | undefined, policy_out: i.outputPolicy as string | undefined, ipfilter: bool(i.ipfilter) }).filter((x): x is [string, string] => x[1] !== undefined),
    );
  const apply = async (i: Inputs) => {
    const path = `${base(i)}/options`;
    const have = await api.client.get<Inputs>(path);
    const delta = Object.fromEntries(Object.entries(wanted(i)).filter(([k, v]) => String(have[k] ?? "") !== v));
    if (Object.keys(delta).length > 0) await api.client.put(path, delta);
    return api.client.get<Inputs>(path);
  };
  return {
    create: async (i) => ({ id: base(i), outputs: await apply(i) }),
    update: (_entry, i) => apply(i),
    async delete(entry) {
      if (!(await scopeExists(api, entry.inputs))) return;
      const keys = Object.keys(wanted(entry.inputs));
      if (keys.length > 0) await api.client.put(`${base(entry.inputs)}/options`, { delete: keys.join(",") });
    },
    async read(entry) {
      return (await scopeExists(api, entry.inputs)) ? api.client.get<Inputs>(`${base(entry.inputs)}/options`) : undefined;
    },
  };
}

function groupTranslation(api: PveApi): Translation {
  const path = (i: Inputs) => `/cluster/firewall/groups/${e(String(i.name))}`;
  const find = async (name: string) => (await api.securityGroups()).find((g) => g.group === name);
  const apply = async (i: Inputs) => {
    const name = String(i.name);
    const existing = await find(name);
    if (!existing) await api.createSecurityGroup(name, i.comment as string | undefined);
    else if ((existing.comment ?? "") !== String(i.comment ?? "")) await api.client.post("/cluster/firewall/groups", { group: name, rename: name, comment: i.comment as string | undefined });
    return { group: name, rules: await convergeRules(api, path(i), list(i.rules)) };
  };
  return {
    replaceOnChanges: ["name"],
    create: async (i) => ({ id: String(i.name), outputs: await apply(i) }),
    update: (_entry, i) => apply(i),
    async delete(entry) {
      if (!(await find(String(entry.inputs.name)))) return;
      await convergeRules(api, path(entry.inputs), []);
      await api.deleteSecurityGroup(String(entry.inputs.name));
    },
    async read(entry) {
      return (await find(String(entry.inputs.name))) ? { rules: await api.client.get(path(entry.inputs)) } : undefined;
    },
  };
}

/**
 * An IP set of a scope, as bpg v0.111.1 proxmoxtf/resource/firewall/ipset.go makes it: ipSetCreate
 * POSTs the set (adopting one that already exists, without touching its entries), then POSTs
 * each CIDR; the CIDR list is ForceNew, so a changed list replaces the set; ipSetUpdate only
 * renames or re-comments it; ipSetDelete removes every entry, then the set ("no such IPSet" is gone).
 */
function ipsetTranslation(api: PveApi): Translation {
  const base = (i: Inputs) => `${firewallBase(i)}/ipset`;
  const setPath = (i: Inputs) => `${base(i)}/${e(String(i.name))}`;
  const exists = async (i: Inputs) => (await scopeExists(api, i)) && (await api.client.get<Inputs[]>(base(i))).some((s) => s.name === i.name);
  const read = async (i: Inputs) => ({ name: i.name, comment: i.comment, cidrs: await api.client.get<Inputs[]>(setPath(i)) });
  return {
    replaceOnChanges: ["nodeName", "containerId", "vmId", "cidrs"],
    async create(i) {
      if (!(await exists(i))) {
        await api.client.post(base(i), { name: String(i.name), ...(i.comment !== undefined ? { comment: String(i.comment) } : {}) });
        for (const c of list(i.cidrs)) {
          await api.client.post(setPath(i), { cidr: String(c.name), ...(c.comment !== undefined ? { comment: String(c.comment) } : {}), ...(c.nomatch ? { nomatch: "1" } : {}) }, { retry: "unapplied" });
        }
      }
      return { id: String(i.name), outputs: await read(i) };
    },
    async update(_entry, i) {
      await api.client.post(base(i), { name: String(i.name), rename: String(i.name), comment: String(i.comment ?? "") });
      return read(i);
    },
    async delete(entry) {
      if (!(await exists(entry.inputs))) return;
      for (const c of await api.client.get<Inputs[]>(setPath(entry.inputs))) await api.client.delete(`${setPath(entry.inputs)}/${e(String(c.cidr))}`);
      await api.client.delete(setPath(entry.inputs));
    },
    read: async (entry) => ((await exists(entry.inputs)) ? read(entry.inputs) : undefined),
  };
}

// --- hardware mappings -------------------------------------------------------------------------

/**
 * One node's entry of a PCI mapping, as bpg v0.111.1 proxmox/types/hardwaremapping/map.go
 * Map.String() writes it: id, node, path, description, iommugroup, subsystem-id, in that order.
 */
function pciMapEntry(m: Inputs): string {
  const kv: Array<[string, unknown]> = [["id", m.id], ["node", m.node], ["path", m.path], ["description", m.comment], ["iommugroup", m.iommuGroup], ["subsystem-id", m.subsystemId]];
  return kv
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(",");
}

/**
 * hardware.mapping.PciLegacy: bpg v0.111.1 fwprovider/cluster/hardwaremapping/resource_pci.go.
 * Create POSTs /cluster/mapping/pci with the id, `description` (its `comment`) and one `map` per
 * node (models.go toCreateRequest/toRequestBase); Update PUTs the same body, deleting
 * `description` when the comment is gone and `mdev` unless mediated devices are on
 * (toUpdateRequest); Delete removes the mapping.
 */
function pciMappingTranslation(api: PveApi): Translation {
  const path = (id: string) => `/cluster/mapping/pci/${e(id)}`;
  const body = (i: Inputs) => ({ map: list(i.maps).map(pciMapEntry), ...(i.comment !== undefined ? { description: String(i.comment) } : {}) });
  const find = async (id: string) => (await api.client.get<Inputs[]>("/cluster/mapping/pci")).find((m) => m.id === id);
  return {
    replaceOnChanges: ["name"],
    async create(i) {
      const id = String(i.name);
      await api.client.post("/cluster/mapping/pci", { id, ...body(i) });
      return { id, outputs: await api.client.get<Inputs>(path(id)) };
    },
    async update(entry, i) {
      const del = [...(i.comment === undefined ? ["description"] : []), ...(i.mediatedDevices ? [] : ["mdev"])];
      await api.client.put(path(entry.id), { ...body(i), ...(del.length ? { delete: del.join(",") } : {}) });
      return api.client.get<Inputs>(path(entry.id));
    },
    async delete(entry) {
      if (await find(entry.id)) await api.client.delete(path(entry.id));
    },
    read: async (entry) => ((await find(entry.id)) ? api.client.get<Inputs>(path(entry.id)) : undefined),
  };
}

// --- storage -----------------------------------------------------------------------------------

function storageTranslation(api: PveApi, type: "zfspool" | "dir", fixed: (i: Inputs) => Record<string, string>): Translation {
  const mutable = (i: Inputs): Record<string, string> => ({ content: strings(i.contents).join(","), nodes: strings(i.nodes).join(",") });
  const find = async (id: string) => (await api.storages()).find((s) => s.storage === id);
  return {
    replaceOnChanges: ["resourceId", "zfsPool", "path"],
    async create(i) {
      const id = String(i.resourceId);
      await api.createStorage({ storage: id, type, ...fixed(i), ...mutable(i) });
      return { id, outputs: await api.storage(id) };
    },
    async update(entry, i) {
      const have = await api.storage(entry.id);
      const delta = Object.fromEntries(Object.entries(mutable(i)).filter(([k, v]) => String(have[k] ?? "") !== v));
      if (Object.keys(delta).length > 0) await api.updateStorage(entry.id, delta);
      return api.storage(entry.id);
    },
    async delete(entry) {
      if (await find(entry.id)) await api.deleteStorage(entry.id);
    },
    read: async (entry) => find(entry.id),
  };
}

// --- downloads ---------------------------------------------------------------------------------

/** download.File: the volume `<datastore>:<content>/<file>`, fetched by the node once (`overwrite: false`). */
function downloadTranslation(api: PveApi): Translation {
  const volid = (i: Inputs) => `${String(i.datastoreId)}:${String(i.contentType)}/${String(i.fileName)}`;
  const find = async (i: Inputs) => (await api.storageContent(String(i.nodeName), String(i.datastoreId))).find((v) => v.volid === volid(i));
  return {
    replaceOnChanges: ["nodeName", "datastoreId", "contentType", "fileName", "url", "checksum", "checksumAlgorithm"],
    async create(i) {
      if (!(await find(i))) {
        await api.downloadUrl(String(i.nodeName), String(i.datastoreId), {
          url: String(i.url),
          content: String(i.contentType),
          filename: String(i.fileName),
          checksum: i.checksum as string | undefined,
          "checksum-algorithm": i.checksumAlgorithm as string | undefined,
        });
      }
      return { id: volid(i), outputs: { ...(await find(i)) } };
    },
    update: async (entry) => entry.outputs,
    async delete(entry) {
      if (await find(entry.inputs)) await api.client.delete(`/nodes/${e(String(entry.inputs.nodeName))}/storage/${e(String(entry.inputs.datastoreId))}/content/${e(volid(entry.inputs))}`);
    },
    read: (entry) => find(entry.inputs) as Promise<Inputs | undefined>,
  };
}

// --- commands ----------------------------------------------------------------------------------

/** How the world runs one command: where it targets the host, in the sandbox; its stdout as the command's. */
export type CommandRunner = (inputs: Inputs) => Promise<{ stdout: string; stderr: string }>;

/**
 * command:remote:Command as the provider behaves: `create` runs on create and, with no `update`
 * command, again when `create` or `stdin` change; a change of `triggers` replaces the resource.
 * No `delete` command is set by Phoenix, so deleting runs nothing.
 */
export function commandTranslation(run: CommandRunner): Translation {
  const apply = async (i: Inputs) => ({ ...(await run(i)), create: i.create, triggers: i.triggers });
  return {
    replaceOnChanges: ["triggers", "connection"],
    async create(i) {
      return { id: `command-${Math.random().toString(36).slice(2, 10)}`, outputs: await apply(i) };
    },
    update: (_entry, i) => apply(i),
    delete: async () => undefined,
    read: async (entry) => entry.outputs,
  };
}

export const TYPES = {
  container: "proxmoxve:index/containerLegacy:ContainerLegacy",
  vm: "proxmoxve:index/vmLegacy:VmLegacy",
  guestOptions: "proxmoxve:firewall/optionsLegacy:OptionsLegacy",
  rules: "proxmoxve:firewall/rulesLegacy:RulesLegacy",
  ipset: "proxmoxve:firewall/ipsetLegacy:IpsetLegacy",
  pciMapping: "proxmoxve:hardware/mapping/pciLegacy:PciLegacy",
  group: "proxmoxve:cluster/firewall/security/groupLegacy:GroupLegacy",
  clusterFirewall: "proxmoxve:cluster/firewallLegacy:FirewallLegacy",
  nodeFirewall: "proxmoxve:node/firewallLegacy:FirewallLegacy",
  zfspool: "proxmoxve:storage/zfspoolLegacy:ZfspoolLegacy",
  directory: "proxmoxve:storage/directoryLegacy:DirectoryLegacy",
  download: "proxmoxve:download/file:File",
  user: "proxmoxve:index/userLegacy:UserLegacy",
  token: "proxmoxve:user/tokenLegacy:TokenLegacy",
  acl: "proxmoxve:index/aclLegacy:AclLegacy",
  command: "command:remote:Command",
  backupJob: "proxmoxve:backup/job:Job",
  pbs: "proxmoxve:storage/pbs:Pbs",
  haResource: "proxmoxve:index/haresourceLegacy:HaresourceLegacy",
  haRule: "proxmoxve:index/haruleLegacy:HaruleLegacy",
  haGroup: "proxmoxve:index/hagroupLegacy:HagroupLegacy",
} as const;

/**
 * The id the bpg provider gives an object of a type that creates something with a name of its
 * own (what `pulumi refresh --import-pending-creates` needs); undefined for types whose create
 * converges what exists (firewall options and rules, groups) and may simply run again.
 */
export function proxmoxId(type: string, i: Inputs): string | undefined {
  switch (type) {
    case TYPES.container:
    case TYPES.vm:
      return String(i.vmId);
    case TYPES.zfspool:
    case TYPES.directory:
    case TYPES.pbs:
      return String(i.resourceId);
    case TYPES.user:
      return String(i.userId);
    case TYPES.token:
      return `${String(i.userId)}!${String(i.tokenName)}`;
    case TYPES.download:
      return `${String(i.datastoreId)}:${String(i.contentType)}/${String(i.fileName)}`;
    case TYPES.backupJob:
    case TYPES.haResource:
      return String(i.resourceId);
    case TYPES.haRule:
      return String(i.rule);
    case TYPES.haGroup:
      return String(i.group);
    default:
      return undefined;
  }
}

/** The translation table, bound to one API client. */
export function proxmoxTranslations(api: PveApi): Record<string, Translation> {
  return {
    [TYPES.container]: guestTranslation(api, "lxc", containerShape),
    [TYPES.vm]: guestTranslation(api, "qemu", vmShape),
    [TYPES.guestOptions]: optionsTranslation(api, firewallBase),
    [TYPES.rules]: rulesTranslation(api),
    [TYPES.ipset]: ipsetTranslation(api),
    [TYPES.pciMapping]: pciMappingTranslation(api),
    [TYPES.group]: groupTranslation(api),
    [TYPES.clusterFirewall]: optionsTranslation(api, () => "/cluster/firewall"),
    [TYPES.nodeFirewall]: optionsTranslation(api, (i) => `/nodes/${e(String(i.nodeName))}/firewall`),
    [TYPES.zfspool]: storageTranslation(api, "zfspool", (i) => ({ pool: String(i.zfsPool) })),
    [TYPES.directory]: storageTranslation(api, "dir", (i) => ({ path: String(i.path) })),
    [TYPES.download]: downloadTranslation(api),
    [TYPES.backupJob]: backupJobTranslation(api),
    [TYPES.pbs]: pbsTranslation(api),
    [TYPES.user]: userTranslation(api),
    [TYPES.token]: tokenTranslation(api),
    [TYPES.acl]: aclTranslation(api),
    [TYPES.haResource]: haResourceTranslation(api),
    [TYPES.haRule]: haRuleTranslation(api),
    [TYPES.haGroup]: haGroupTranslation(api),
  };
}

