import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { SCHEMA_DIR } from "./schema";
import { die } from "./tasks";

export interface Volume {
  volid: string;
  storage: string;
  content: string;
  format: string;
  size: number;
  ctime: number;
  vmid?: number;
  /** For a linked clone: the base volume it was cloned from. */
  parent?: string;
  /** For a backup archive (snapshots.ts): the guest's kind and its configuration as vzdump stored it. */
  backup?: { kind: "lxc" | "qemu"; config: Record<string, string> };
  /** A backup's notes (vzdump `notes-template`, pve-manager PVE/VZDump.pm generate_notes). */
  notes?: string;
}

export interface Storage {
  id: string;
  type: string;
  /** Storage.cfg keys other than `storage`/`type`, as strings. */
  config: Record<string, string>;
  total: number;
  volumes: Map<string, Volume>;
  /** When the allocation lock is next free (serialises allocations, as pve-storage's cluster_lock_storage does). */
  lockFreeAt: number;
}

export interface Snapshot {
  name: string;
  description: string;
  snaptime: number;
  parent?: string;
  config: Record<string, string>;
}

export interface Guest {
  kind: "lxc" | "qemu";
  vmid: number;
  node: string;
  config: Record<string, string>;
  status: "running" | "stopped";
  snapshots: Map<string, Snapshot>;
  /** The snapshot the current state descends from (the config file's `parent`). */
  parent?: string;
  startedAt?: number;
}

/**
 * What happened to a guest's volumes' contents (snapshots.ts), for a node stand-in that keeps
 * real files behind them (test/e2e/node-files.ts) to repeat in order.
 */
export type VolumeEvent =
  | { kind: "snapshot" | "delsnapshot" | "rollback"; vmid: number; snapname: string }
  | { kind: "backup"; vmid: number; volid: string }
  | { kind: "restore"; vmid: number; volid: string };

export interface FirewallRule {
  [key: string]: string;
}

export interface IpSet {
  comment?: string;
  entries: Map<string, { nomatch?: string; comment?: string }>;
}

/** One firewall configuration file: cluster.fw, host.fw or <vmid>.fw (and a security group's rules). */
export interface FirewallScope {
  options: Record<string, string>;
  rules: FirewallRule[];
  ipsets: Map<string, IpSet>;
  aliases: Map<string, { cidr: string; comment?: string }>;
}

export interface PciDevice {
  id: string;
  class: string;
  vendor: string;
  device: string;
  subsystem_vendor: string;
  subsystem_device: string;
  iommugroup: number;
  vendor_name: string;
  device_name: string;
  mdev?: boolean;
}

export interface Disk {
  devpath: string;
  model: string;
  serial: string;
  size: number;
  type: string;
  used?: string;
}

export interface Node {
  name: string;
  pci: PciDevice[];
  disks: Disk[];
  zfsPools: Map<string, { name: string; size: number; devices: string[]; raidlevel: string }>;
  firewall: FirewallScope;
}

export interface PciMapping {
  id: string;
  description?: string;
  map: string[];
  mdev?: string;
  "live-migration-capable"?: string;
}

export interface AplEntry {
  [key: string]: string;
}

export function newFirewallScope(): FirewallScope {
  return { options: {}, rules: [], ipsets: new Map(), aliases: new Map() };
}

/** SHA1 over a canonical rendering, as PVE digests the config file text. */
export function digestOf(value: unknown): string {
  return crypto.createHash("sha1").update(JSON.stringify(value)).digest("hex");
}

const GIB = 1024 ** 3;

export class SimState {
  readonly nodes = new Map<string, Node>();
  readonly storages = new Map<string, Storage>();
  readonly guests = new Map<number, Guest>();
  readonly mappings = new Map<string, PciMapping>();
  readonly firewall = newFirewallScope();
  readonly groups = new Map<string, { comment?: string; rules: FirewallRule[] }>();
  readonly guestFirewall = new Map<number, FirewallScope>();
  readonly aplinfo: AplEntry[];
  /** Appended by snapshot, rollback, backup and restore tasks; drained by whoever mirrors them. */
  readonly volumeEvents: VolumeEvent[] = [];
  /** Nodes that are down: what the API proxies to them fails (cluster.ts offlineProxyError). */
  readonly offline = new Set<string>();
  private macCounter = 0;

  constructor(readonly now: () => number) {
    this.aplinfo = parseAplinfo(fs.readFileSync(path.join(SCHEMA_DIR, "aplinfo.dat"), "utf8"));
  }

  node(name: string): Node {
    const n = this.nodes.get(name);
    if (!n) throw die(`hostname lookup '${name}' failed - failed to get address info for: ${name}: Name or service not known`);
    return n;
  }

  storage(id: string): Storage {
    const s = this.storages.get(id);
    if (!s) throw die(`storage '${id}' does not exist`);
    return s;
  }

  /** A guest of the given kind on the given node, or PVE's "does not exist" error. */
  guest(node: string, kind: "lxc" | "qemu", vmid: number): Guest {
    const g = this.guests.get(vmid);
    if (!g || g.kind !== kind || g.node !== node) {
      const file = kind === "lxc" ? `nodes/${node}/lxc/${vmid}.conf` : `nodes/${node}/qemu-server/${vmid}.conf`;
      throw die(`Configuration file '${file}' does not exist`);
    }
    return g;
  }

  guestFw(vmid: number): FirewallScope {
    let fw = this.guestFirewall.get(vmid);
    if (!fw) {
      fw = newFirewallScope();
      this.guestFirewall.set(vmid, fw);
    }
    return fw;
  }

  /** A MAC from the datacenter default prefix BC:24:11, unique within this simulator. */
  newMac(): string {
    const n = ++this.macCounter;
    const b = [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff].map((x) => x.toString(16).toUpperCase().padStart(2, "0"));
    return `BC:24:11:${b.join(":")}`;
  }

  contentOf(storage: Storage): string[] {
    return (storage.config.content ?? "").split(",").filter((c) => c !== "");
  }

  /** Name of the next free disk volume for a guest, following pve-storage's naming per storage type. */
  private nextVolName(storage: Storage, vmid: number, prefix: string, suffix: string): string {
    for (let i = 0; ; i++) {
      const name = storage.type === "dir" ? `${vmid}/${prefix}-${vmid}-disk-${i}${suffix}` : `${prefix}-${vmid}-disk-${i}`;
      const used = [...storage.volumes.keys()].some((v) => v === `${storage.id}:${name}` || v.endsWith(`/${name}`));
      if (!used) return name;
    }
  }

  /** Allocates a new disk (`vdisk_alloc`): subvol for containers on zfspool, raw images otherwise. */
  allocDisk(storageId: string, vmid: number, sizeGiB: number, content: "rootdir" | "images"): Volume {
    const storage = this.storage(storageId);
    if (!this.contentOf(storage).includes(content)) {
      throw die(`storage '${storageId}' does not support ${content === "rootdir" ? "container directories" : "vm images"}`);
    }
    const sub = content === "rootdir" && storage.type === "zfspool";
    const name = this.nextVolName(storage, vmid, sub ? "subvol" : "vm", storage.type === "dir" ? ".raw" : "");
    const vol: Volume = {
      volid: `${storageId}:${name}`,
      storage: storageId,
      content,
      format: sub ? "subvol" : "raw",
      size: Math.round(sizeGiB * GIB),
      ctime: Math.floor(this.now() / 1000),
      vmid,
    };
    storage.volumes.set(vol.volid, vol);
    return vol;
  }

  /**
   * A QEMU cloud-init drive, `vm-<vmid>-cloudinit` (with `.qcow2` on storages with a path), 4 MiB:
   * qemu-server@9.1.2 src/PVE/API2/Qemu.pm create_disks and src/PVE/QemuServer.pm clone_disk,
   * CLOUDINIT_DISK_SIZE in src/PVE/QemuServer/Cloudinit.pm.
   */
  allocCloudinit(storageId: string, vmid: number): Volume {
    const storage = this.storage(storageId);
    if (!this.contentOf(storage).includes("images")) throw die(`storage '${storageId}' does not support vm images`);
    const dir = storage.config.path !== undefined;
    const volid = `${storageId}:${dir ? `${vmid}/` : ""}vm-${vmid}-cloudinit${dir ? ".qcow2" : ""}`;
    if (storage.volumes.has(volid)) throw die(`volume '${volid}' already exists`);
    const vol: Volume = { volid, storage: storageId, content: "images", format: dir ? "qcow2" : "raw", size: 4 * 1024 ** 2, ctime: Math.floor(this.now() / 1000), vmid };
    storage.volumes.set(volid, vol);
    return vol;
  }

  /** A linked clone of a base volume, named `<base>/<new>` as pve-storage does on zfspool. */
  linkClone(baseVolid: string, vmid: number): Volume {
    const base = this.volume(baseVolid);
    const storage = this.storage(base.storage);
    const sub = base.format === "subvol";
    const name = this.nextVolName(storage, vmid, sub ? "subvol" : "vm", storage.type === "dir" ? ".qcow2" : "");
    const baseName = baseVolid.slice(storage.id.length + 1);
    const vol: Volume = { ...base, volid: `${storage.id}:${baseName}/${name}`, vmid, parent: baseVolid, ctime: Math.floor(this.now() / 1000) };
    storage.volumes.set(vol.volid, vol);
    return vol;
  }

  volume(volid: string): Volume {
    const sid = volid.split(":")[0] ?? "";
    const vol = this.storages.get(sid)?.volumes.get(volid);
    if (!vol) throw die(`volume '${volid}' does not exist`);
    return vol;
  }

  /** Turns a guest volume into a base volume (`subvol-` → `basevol-`, `vm-` → `base-`), as templating does. */
  convertToBase(volid: string): string {
    const vol = this.volume(volid);
    const storage = this.storage(vol.storage);
    const newId = volid.replace(/\bsubvol-(\d+-disk-\d+)$/, "basevol-$1").replace(/\bvm-(\d+-disk-\d+)(\.\w+)?$/, "base-$1$2");
    storage.volumes.delete(volid);
    storage.volumes.set(newId, { ...vol, volid: newId });
    return newId;
  }

  freeVolume(volid: string): void {
    const vol = this.volume(volid);
    const users = [...this.storage(vol.storage).volumes.values()].filter((v) => v.parent === volid);
    // pve-storage@9.1.7 src/PVE/Storage.pm vdisk_free: the volume name, without the storage.
    if (users.length > 0) throw die(`base volume '${volid.slice(volid.indexOf(":") + 1)}' is still in use by linked clones`);
    this.storage(vol.storage).volumes.delete(volid);
  }

  usedBytes(storage: Storage): number {
    let used = 0;
    for (const v of storage.volumes.values()) if (!v.parent) used += v.size;
    return used;
  }

  addStorage(id: string, type: string, config: Record<string, string>, totalGiB: number): Storage {
    const s: Storage = { id, type, config, total: totalGiB * GIB, volumes: new Map(), lockFreeAt: 0 };
    this.storages.set(id, s);
    return s;
  }

  addNode(name: string): Node {
    const n: Node = { name, pci: [], disks: [], zfsPools: new Map(), firewall: newFirewallScope() };
    this.nodes.set(name, n);
    return n;
  }
}

/** Parses the Debian-control-style aplinfo index (continuation lines start with whitespace). */
export function parseAplinfo(text: string): AplEntry[] {
  const out: AplEntry[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const entry: AplEntry = {};
    let last: string | undefined;
    for (const line of block.split("\n")) {
      const m = /^([\w-]+):\s*(.*)$/.exec(line);
      if (m) {
        last = (m[1] as string).toLowerCase();
        entry[last] = m[2] as string;
      } else if (last && /^\s/.test(line)) {
        entry[last] += `\n${line.trim()}`;
      }
    }
    if (entry.type !== "lxc" || !entry.location) continue;
    const template = path.basename(entry.location);
    out.push({
      ...entry,
      template,
      headline: entry.description?.split("\n")[0] ?? "",
      location: `http://download.proxmox.com/images/${entry.location}`,
    });
  }
  return out;
}

/** The prod host's shape: one node, two NVIDIA GPUs in separate IOMMU groups, NVMe disks, the standard storages. */
export function seedProdLike(state: SimState, nodeName: string, version: 8 | 9): void {
  const node = state.addNode(nodeName);
  const gpu = (bus: string, device: string, name: string, group: number): PciDevice[] => [
    {
      id: `0000:${bus}:00.0`,
      class: "0x030000",
      vendor: "0x10de",
      device,
      subsystem_vendor: "0x1043",
      subsystem_device: "0x87b3",
      iommugroup: group,
      vendor_name: "NVIDIA Corporation",
      device_name: name,
    },
    {
      id: `0000:${bus}:00.1`,
      class: "0x040300",
      vendor: "0x10de",
      device: device === "0x2204" ? "0x1aef" : "0x22ba",
      subsystem_vendor: "0x1043",
      subsystem_device: "0x87b3",
      iommugroup: group,
      vendor_name: "NVIDIA Corporation",
      device_name: "High Definition Audio Controller",
    },
  ];
  node.pci.push(
    {
      id: "0000:00:00.0",
      class: "0x060000",
      vendor: "0x1022",
      device: "0x14d8",
      subsystem_vendor: "0x1022",
      subsystem_device: "0x14d8",
      iommugroup: 0,
      vendor_name: "Advanced Micro Devices, Inc. [AMD]",
      device_name: "Root Complex",
    },
    ...gpu("01", "0x2204", "GA102 [GeForce RTX 3090]", 14),
    ...gpu("41", "0x2684", "AD102 [GeForce RTX 4090]", 32),
    ...["02", "03"].map((bus, i) => ({
      id: `0000:${bus}:00.0`,
      class: "0x010802",
      vendor: "0x144d",
      device: "0xa80c",
      subsystem_vendor: "0x144d",
      subsystem_device: "0xa801",
      iommugroup: 15 + i,
      vendor_name: "Samsung Electronics Co Ltd",
      device_name: "NVMe SSD Controller S4LV008[Pascal]",
    })),
  );
  node.disks.push(
    { devpath: "/dev/nvme0n1", model: "Samsung SSD 990 PRO 2TB", serial: "S7KHNJ0W100001", size: 2000398934016, type: "nvme", used: "ZFS" },
    { devpath: "/dev/nvme1n1", model: "Samsung SSD 990 PRO 2TB", serial: "S7KHNJ0W100002", size: 2000398934016, type: "nvme", used: "ZFS" },
    { devpath: "/dev/nvme2n1", model: "Samsung SSD 990 PRO 4TB", serial: "S7KHNJ0W100003", size: 4000787030016, type: "nvme" },
  );
  node.zfsPools.set("rpool", { name: "rpool", size: 1992864825344, devices: ["/dev/nvme0n1p3", "/dev/nvme1n1p3"], raidlevel: "mirror" });
  seedInstallerStorages(state, version);
}

/**
 * The storages a ZFS install writes to /etc/pve/storage.cfg: pve-installer
 * Proxmox/Install/StorageConfig.pm get_zfs_config, `local` (dir /var/lib/vz) and `local-zfs`
 * (zfspool rpool/data, sparse). `local` holds iso,vztmpl,backup, plus import from
 * pve-installer 9.0.7 on (commit ec1d5ee "enable import content type by default", after the
 * 9.0.6 bump): a PVE 9.1 ISO has it, an 8.x install does not. Never snippets.
 */
export function seedInstallerStorages(state: SimState, version: 8 | 9): void {
  state.addStorage("local", "dir", { path: "/var/lib/vz", content: version >= 9 ? "iso,vztmpl,backup,import" : "iso,vztmpl,backup" }, 200);
  state.addStorage("local-zfs", "zfspool", { pool: "rpool/data", content: "images,rootdir", sparse: "1" }, 1800);
}
