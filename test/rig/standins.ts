/**
 * Stand-ins for the host tools the rendered scripts call. The rig transpiles this file to a
 * plain CommonJS script in the sandbox and puts one wrapper per tool on the session's PATH;
 * every tool keeps its state in the sandbox's state.json, so a script's effect can be read back
 * and a second run can be seen to change nothing. Only Node built-ins may be imported here.
 */
import { spawnSync } from "child_process";
import { createHash } from "crypto";
import * as fs from "fs";
import { constants as osConstants } from "os";
import * as path from "path";
import * as zlib from "zlib";

export interface SandboxState {
  /** Every stand-in invocation, in order: [tool, ...args]. */
  calls: string[][];
  kernelRelease: string;
  disks: Record<string, { signatures: string[]; partitions: string[] }>;
  pools: Record<string, { vdevType: string; disks: string[]; options: Record<string, string> }>;
  /** Locally set properties per dataset, as given to `zfs create -o`/`zfs set`. */
  datasets: Record<string, Record<string, string>>;
  /** Snapshots (`ds@name`) in creation order; their files are copied under /.zfs-standin/ (zfs snapshot/rollback). */
  snapshots?: string[];
  /** Per snapshot: when it was taken (seconds), its user holds (zfs hold) and the file systems cloned from it (set by tests). */
  snapshotMeta?: Record<string, { creation?: number; holds?: string[]; clones?: string[] }>;
  /** What `lspci -Dn` lists. */
  pci: Array<{ address: string; classCode: string; id: string }>;
  boot: "systemd-boot" | "grub-pbt" | "grub";
  aptInstalled: string[];
  nvidia: {
    installed?: string;
    loaded?: string;
    /** A container holds the device: unloading the module fails, as on a real host. */
    inUse: boolean;
    dkms: string[];
    /** `minor` is the device minor the module assigns (the N of /dev/nvidiaN); by default the probe order. */
    gpus: Array<{ busId: string; name: string; memoryMiB: number; minor?: number }>;
    /** The major the kernel happens to assign to nvidia-uvm at "boot". */
    uvmMajor: number;
    /** Installed kernels (besides the running one) DKMS cannot build the module for (NVIDIA/open-gpu-kernel-modules#1143). */
    unbuildable?: string[];
    /** The flavour nvidia-installer built (`--kernel-module-type`); modinfo reports its licence. */
    moduleType?: "open" | "proprietary";
  };
  /** UEFI Secure Boot state as mokutil --sb-state reports it. */
  secureBoot?: boolean;
  /** Certificates enrolled as Machine Owner Keys, by path (mokutil --test-key). */
  mokEnrolled?: string[];
  systemdEnabled: string[];
  /** The export lines `exportfs -ra` last published (from etc/exports). */
  nfsExported?: string[];
  /** What tools run through `pct exec <vmid>` changed inside each container, by vmid. */
  containers: Record<string, ContainerState>;
  /** What tools run through `qm guest exec <vmid>` changed inside each VM, by vmid. */
  vms?: Record<string, VmState>;
  /** SHA-256 of every release archive curl served, by URL, for the checksums file beside it. */
  releases?: Record<string, string>;
}

/**
 * A VM as `qm guest exec` reaches it. Its files live in the sandbox under `vm/<vmid>` (what
 * cloud-init wrote at first boot); `run/qm/<vmid>.status` says whether it runs.
 */
export interface VmState extends Partial<PackageScope> {
  /**
   * Compose projects by compose file: how often `docker compose up` (re)created their containers,
   * and the environment they got from the project's env_file then (a container keeps it until recreated).
   */
  compose: Record<string, { starts: number; env: Record<string, string> }>;
  /** How often `docker restart NAME` restarted each container. */
  restarts?: Record<string, number>;
}

/** The part of a machine's state that package and service tools touch: the host's, or one container's. */
interface PackageScope {
  aptInstalled: string[];
  systemdEnabled: string[];
}

export interface ContainerState extends PackageScope {
  /** Locales `locale-gen` has generated, as `locale -a` names them (en_US.utf8). */
  locales: string[];
  /** Times `update-ca-certificates` ran. */
  caUpdates: number;
  /** The NVIDIA user-space version a `--no-kernel-module` install put in. */
  nvidiaUserspace?: string;
  /** Packages pip installed, by virtualenv path inside the container, then name → version. */
  venvs: Record<string, Record<string, string>>;
}

const SIZE_PROPS = new Set(["quota", "refquota", "reservation", "refreservation", "recordsize", "volsize", "volblocksize", "special_small_blocks"]);
const ZFS_DEFAULTS: Record<string, string> = {
  compression: "off",
  recordsize: "131072",
  quota: "0",
  refquota: "0",
  reservation: "0",
  refreservation: "0",
  sync: "standard",
  atime: "on",
  relatime: "on",
  xattr: "on",
  acltype: "off",
  canmount: "on",
  dedup: "off",
  special_small_blocks: "0",
  type: "filesystem",
};

const sandbox = path.dirname(path.dirname(__filename));
const root = path.join(sandbox, "root");
const statePath = path.join(sandbox, "state.json");
/** Inside `pct exec`, PHOENIX_CT names the container and PHOENIX_ROOT is its root directory. */
const container = process.env.PHOENIX_CT;
/** Inside `qm guest exec`, PHOENIX_VM names the VM and PHOENIX_ROOT is its root directory. */
const vm = process.env.PHOENIX_VM;
const machineRoot = container || vm ? (process.env.PHOENIX_ROOT ?? root) : root;

const lockPath = `${statePath}.lock`;
/**
 * Scripts run in parallel over several SSH sessions, and each stand-in reads,
 * changes and writes state.json: a tool holds this lock from its read to its
 * write, so none loses another's change. mkdir is atomic; exit releases it.
 */
let held = false;
function lock(): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      fs.mkdirSync(lockPath);
      held = true;
      process.on("exit", unlock);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      Atomics.wait(pause, 0, 0, 5);
    }
  }
}
/** Releases the lock if this process still holds it (once handed over, another process may). */
function unlock(): void {
  if (!held) return;
  held = false;
  fs.rmSync(lockPath, { recursive: true, force: true });
}
function load(): SandboxState {
  return JSON.parse(fs.readFileSync(statePath, "utf8")) as SandboxState;
}
/** By rename: the harness reads state.json without the lock (sandbox.ts `state`), and must never see it half-written. */
function save(s: SandboxState): void {
  const tmp = `${statePath}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(s, null, 2));
  fs.renameSync(tmp, statePath);
}
function fail(msg: string, code = 1): never {
  process.stderr.write(msg + "\n");
  process.exit(code);
}
function out(lines: string[]): void {
  if (lines.length) process.stdout.write(lines.join("\n") + "\n");
}
function toBytes(v: string): string {
  if (v === "none") return "0";
  const m = /^(\d+(?:\.\d+)?)([KMGTP]?)B?$/i.exec(v);
  if (!m) return v;
  const pow = " KMGTP".indexOf((m[2] || " ").toUpperCase());
  return String(Math.floor(Number(m[1]) * 1024 ** pow));
}
function propValue(s: SandboxState, ds: string, prop: string): string | undefined {
  if (prop === "name") return ds;
  if (prop === "mountpoint") return s.datasets[ds]?.mountpoint ?? "/" + ds;
  // zfsprops(7) (zfs-2.3.4): `mounted` is read-only, yes or no; the stand-in mounts every file system it creates.
  if (prop === "mounted") return s.datasets[ds] ? "yes" : undefined;
  const local = s.datasets[ds]?.[prop];
  if (local !== undefined) return SIZE_PROPS.has(prop) ? toBytes(local) : local;
  return ZFS_DEFAULTS[prop];
}
/** Splits `-o k=v` / `-O k=v` pairs (per flag), bare flags and positional arguments. */
function parseOpts(args: string[], valueFlags: string[]): { props: Record<string, Record<string, string>>; rest: string[]; flags: Set<string> } {
  const props: Record<string, Record<string, string>> = Object.fromEntries(valueFlags.map((f) => [f, {}]));
  const rest: string[] = [];
  const flags = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (valueFlags.includes(a)) {
      const [k, ...v] = (args[++i] ?? "").split("=");
      props[a]![k!] = v.join("=");
    } else if (/^-[a-zA-Z]+$/.test(a)) flags.add(a);
    else rest.push(a);
  }
  return { props, rest, flags };
}

/** Pool property defaults (zfs-2.3.4 module/zcommon/zpool_prop.c) for the settable ones the tests use. */
const ZPOOL_DEFAULTS: Record<string, string> = {
  ashift: "0",
  autotrim: "off",
  autoexpand: "off",
  autoreplace: "off",
  failmode: "wait",
  listsnapshots: "off",
  multihost: "off",
  delegation: "on",
  comment: "-",
  cachefile: "-",
};

/**
 * The state's key for a disk named by any of its /dev/disk/by-id links: like udev's, an alias is
 * a symlink in the sandbox root that resolves to the same file as the disk the state names.
 */
function diskKey(s: SandboxState, dev: string): string {
  if (s.disks[dev]) return dev;
  const real = (p: string) => (fs.existsSync(path.join(root, p)) ? fs.realpathSync(path.join(root, p)) : undefined);
  const target = real(dev);
  return (target && Object.keys(s.disks).find((k) => real(k) === target)) || dev;
}

function zfs(s: SandboxState, args: string[]): void {
  const [sub, ...rest] = args;
  switch (sub) {
    case "list": {
      const o = rest.indexOf("-o");
      const cols = (o >= 0 ? rest[o + 1]! : "name").split(",");
      const names = rest.filter((a, i) => !a.startsWith("-") && !["-o", "-t", "-s", "-d"].includes(rest[i - 1]!));
      for (const n of names) if (!s.datasets[n]) fail(`cannot open '${n}': dataset does not exist`);
      // zfs-list(8): `-t snapshot -d 1 <ds>…` lists the datasets' own snapshots; `-s creation` oldest first, as kept here.
      // With `-t snapshot,bookmark` bookmarks too, which the stand-in has none of; createtxg is the creation order.
      if (["snapshot", "snapshot,bookmark"].includes(rest[rest.indexOf("-t") + 1]!)) {
        const known: Record<string, (x: string, i: number) => string> = {
          name: (x) => x,
          createtxg: (_x, i) => String(i + 1),
          creation: (x) => String(s.snapshotMeta?.[x]?.creation ?? "-"),
          userrefs: (x) => String(s.snapshotMeta?.[x]?.holds?.length ?? 0),
          clones: (x) => s.snapshotMeta?.[x]?.clones?.join(",") || "-",
        };
        if (cols.some((c) => !known[c])) fail(`zfs stand-in: snapshots list only ${Object.keys(known).join(",")}`, 2);
        return out((s.snapshots ?? []).map((x, i) => [x, i] as const).filter(([x]) => !names.length || names.includes(x.split("@")[0]!)).map(([x, i]) => cols.map((c) => known[c]!(x, i)).join("\t")));
      }
      const shown = names.length ? names : Object.keys(s.datasets).sort();
      return out(shown.map((d) => cols.map((c) => propValue(s, d, c) ?? "-").join("\t")));
    }
    case "get": {
      const o = rest.indexOf("-o");
      const cols = (o >= 0 ? rest[o + 1]! : "name,property,value,source").split(",");
      const positional = rest.filter((a, i) => !a.startsWith("-") && rest[i - 1] !== "-o");
      const [propList, ds] = positional;
      if (!ds || !s.datasets[ds]) fail(`cannot open '${ds}': dataset does not exist`);
      const lines: string[] = [];
      for (const p of propList!.split(",")) {
        const v = propValue(s, ds, p);
        if (v === undefined) fail(`bad property list: invalid property '${p}'`, 2);
        const source = s.datasets[ds]![p] !== undefined ? "local" : "default";
        lines.push(cols.map((c) => ({ name: ds, property: p, value: v, source })[c] ?? "-").join("\t"));
      }
      return out(lines);
    }
    case "create": {
      const { props: byFlag, rest: names, flags } = parseOpts(rest, ["-o"]);
      const props = byFlag["-o"]!;
      const name = names[0]!;
      if (s.datasets[name]) fail(`cannot create '${name}': dataset already exists`);
      const parent = name.split("/").slice(0, -1).join("/");
      if (!s.datasets[parent]) {
        if (!flags.has("-p") || !s.pools[name.split("/")[0]!]) fail(`cannot create '${name}': parent does not exist`);
        const parts = name.split("/");
        for (let i = 2; i < parts.length; i++) s.datasets[parts.slice(0, i).join("/")] ??= {};
      }
      for (const p of Object.keys(props)) if (!(p in ZFS_DEFAULTS) && p !== "mountpoint") fail(`cannot create '${name}': invalid property '${p}'`);
      s.datasets[name] = props;
      // ZFS mounts a new file system at once: its mountpoint directory exists from then on.
      fs.mkdirSync(path.join(root, propValue(s, name, "mountpoint")!), { recursive: true });
      return;
    }
    case "set": {
      const ds = rest[rest.length - 1]!;
      if (!s.datasets[ds]) fail(`cannot open '${ds}': dataset does not exist`);
      for (const kv of rest.slice(0, -1)) {
        const [k, ...v] = kv.split("=");
        if (!(k! in ZFS_DEFAULTS) && k !== "mountpoint") fail(`cannot set property for '${ds}': invalid property '${k}'`);
        s.datasets[ds]![k!] = v.join("=");
      }
      return;
    }
    case "snapshot": {
      // zfs-snapshot(8): every ds@name at once or none; lzc_snapshot (libzfs_core.c) needs them in one pool (EXDEV otherwise).
      const snaps = rest.filter((a) => !a.startsWith("-"));
      const pools = new Set(snaps.map((x) => x.split(/[/@]/)[0]));
      // Two of one file system in one call are refused too (libzfs_dataset.c zfs_snapshot_nvl: EXDEV's message).
      const fss = snaps.map((x) => x.split("@")[0]);
      if (pools.size > 1 || new Set(fss).size < fss.length) fail(`cannot create snapshot '${snaps[0]}': multiple snapshots of same fs not allowed`);
      for (const x of snaps) {
        const [ds, name] = x.split("@") as [string, string | undefined];
        if (!name || !s.datasets[ds]) fail(`cannot open '${ds}': dataset does not exist`);
        if ((s.snapshots ?? []).includes(x)) fail(`cannot create snapshot '${x}': dataset already exists`);
      }
      for (const x of snaps) {
        fs.cpSync(path.join(root, propValue(s, x.split("@")[0]!, "mountpoint")!), path.join(root, ".zfs-standin", x), { recursive: true });
        (s.snapshots ??= []).push(x);
        (s.snapshotMeta ??= {})[x] = { creation: Math.floor(Date.now() / 1000) };
      }
      return;
    }
    case "hold":
    case "release": {
      // zfs-hold(8): `zfs hold <tag> <snapshot>…`, `zfs release <tag> <snapshot>…`.
      const [tag, ...snaps] = rest.filter((a) => !a.startsWith("-"));
      for (const x of snaps) {
        if (!(s.snapshots ?? []).includes(x)) fail(`cannot ${sub} snapshot '${x}': dataset does not exist`);
        const meta = ((s.snapshotMeta ??= {})[x] ??= {});
        meta.holds = sub === "hold" ? [...(meta.holds ?? []), tag!] : (meta.holds ?? []).filter((h) => h !== tag);
      }
      return;
    }
    case "rollback": {
      // zfs-rollback(8): only to the most recent snapshot unless -r, which destroys the newer ones.
      const x = rest.filter((a) => !a.startsWith("-"))[0]!;
      const ds = x.split("@")[0]!;
      const mine = (s.snapshots ?? []).filter((y) => y.startsWith(ds + "@"));
      if (!mine.includes(x)) fail(`cannot open '${x}': dataset does not exist`);
      const newer = mine.slice(mine.indexOf(x) + 1);
      if (newer.length && !rest.includes("-r")) fail(`cannot rollback to '${x}': more recent snapshots or bookmarks exist\nuse '-r' to force deletion of the following snapshots and bookmarks:\n${newer.join("\n")}`);
      // zfs-2.3.4 cmd/zfs/zfs_main.c rollback_check_dependent: clones of a newer snapshot stop -r before anything is destroyed.
      const cloned = newer.flatMap((y) => s.snapshotMeta?.[y]?.clones ?? []);
      if (cloned.length) fail(`cannot rollback to '${x}': clones of previous snapshots exist\nuse '-R' to force deletion of the following clones and dependents:\n${cloned.join("\n")}`);
      // libzfs_dataset.c zfs_rollback: each newer one is destroyed in turn; a held one fails (EBUSY) and the rollback stops, the others already gone.
      for (const y of newer) {
        if (s.snapshotMeta?.[y]?.holds?.length) {
          save(s);
          fail(`cannot destroy snapshot ${y}: dataset is busy`);
        }
        s.snapshots = s.snapshots!.filter((z) => z !== y);
        fs.rmSync(path.join(root, ".zfs-standin", y), { recursive: true, force: true });
      }
      const mountpoint = path.join(root, propValue(s, ds, "mountpoint")!);
      fs.rmSync(mountpoint, { recursive: true, force: true });
      fs.cpSync(path.join(root, ".zfs-standin", x), mountpoint, { recursive: true });
      return;
    }
    case "unmount": {
      // The stand-in does not model unmounted file systems (`mounted` stays yes); the dataset must exist.
      const ds = rest.filter((a) => !a.startsWith("-"))[0]!;
      if (!s.datasets[ds]) fail(`cannot open '${ds}': dataset does not exist`);
      return;
    }
    case "destroy": {
      const recursive = rest.includes("-r");
      const ds = rest.filter((a) => !a.startsWith("-"))[0]!;
      if (ds.includes("@")) {
        if (!(s.snapshots ?? []).includes(ds)) fail(`could not find any snapshots to destroy; check snapshot names.`);
        if (s.snapshotMeta?.[ds]?.holds?.length) fail(`cannot destroy snapshot ${ds}: dataset is busy`);
        s.snapshots = s.snapshots!.filter((y) => y !== ds);
        fs.rmSync(path.join(root, ".zfs-standin", ds), { recursive: true, force: true });
        return;
      }
      if (!s.datasets[ds]) fail(`cannot open '${ds}': dataset does not exist`);
      const children = Object.keys(s.datasets).filter((d) => d.startsWith(ds + "/"));
      if (children.length && !recursive) fail(`cannot destroy '${ds}': filesystem has children\nuse '-r' to destroy the following datasets:\n${children.join("\n")}`);
      for (const d of [ds, ...children]) delete s.datasets[d];
      return;
    }
    default:
      fail(`zfs stand-in: unsupported subcommand ${sub}`, 2);
  }
}

function zpool(s: SandboxState, args: string[]): void {
  const [sub, ...rest] = args;
  switch (sub) {
    case "list": {
      const names = rest.filter((a, i) => !a.startsWith("-") && rest[i - 1] !== "-o");
      for (const n of names) if (!s.pools[n]) fail(`cannot open '${n}': no such pool`);
      return out((names.length ? names : Object.keys(s.pools).sort()).map((n) => n));
    }
    case "status": {
      const row = (n: string, depth: number) => `\t${"  ".repeat(depth)}${n.padEnd(40 - 2 * depth)}  ONLINE       0     0     0`;
      const named = rest.filter((a) => !a.startsWith("-"));
      for (const n of named) if (!s.pools[n]) fail(`cannot open '${n}': no such pool`);
      const shown = named.length ? named : Object.keys(s.pools).sort();
      // zfs-2.3.4 cmd/zpool/zpool_main.c zpool_do_status: with no pool named and none imported, "no pools available" goes to stderr, exit 0.
      if (shown.length === 0) return void process.stderr.write("no pools available\n");
      return out(
        shown.flatMap((name) => {
          const pool = s.pools[name]!;
          const leaves = pool.disks.map((d) => d + "-part1");
          const tree = pool.vdevType === "single" || pool.vdevType === "stripe" ? leaves.map((l) => row(l, 1)) : [row(`${pool.vdevType}-0`, 1), ...leaves.map((l) => row(l, 2))];
          return [`  pool: ${name}`, " state: ONLINE", "config:", "", `\t${"NAME".padEnd(40)}  STATE     READ WRITE CKSUM`, row(name, 0), ...tree, "", "errors: No known data errors"];
        }),
      );
    }
    case "get": {
      // zpool-get(8): `zpool get [-Hp] [-o field[,field]…] property[,property]… pool`.
      const o = rest.indexOf("-o");
      const cols = (o >= 0 ? rest[o + 1]! : "name,property,value,source").split(",");
      const [propList, name] = rest.filter((a, i) => !a.startsWith("-") && rest[i - 1] !== "-o");
      const pool = s.pools[name!] ?? fail(`cannot open '${name}': no such pool`);
      return out(
        propList!.split(",").map((p) => {
          const local = pool.options[p];
          const value = local ?? ZPOOL_DEFAULTS[p] ?? fail(`bad property list: invalid property '${p}'`, 2);
          return cols.map((c) => ({ name: name!, property: p, value, source: local !== undefined ? "local" : "default" })[c] ?? "-").join("\t");
        }),
      );
    }
    case "set": {
      // zpool-set(8): one property=value, then the pool. The refusals are zpool_valid_proplist's
      // (zfs-2.3.4 lib/libzfs/libzfs_pool.c); ashift is accepted, and like the real pool only
      // records the hint: the existing vdevs keep theirs (zpoolprops(7)).
      const [kv, name] = rest;
      const pool = s.pools[name!] ?? fail(`cannot open '${name}': no such pool`);
      const [k, ...v] = kv!.split("=");
      const why = k === "altroot" ? "can only be set during pool creation or import" : k === "readonly" ? "can only be set at import time" : !(k! in ZPOOL_DEFAULTS) ? undefined : "";
      if (why === undefined) fail(`cannot set property for '${name}': invalid property '${k}'`);
      if (why) fail(`cannot set property for '${name}': property '${k}' ${why}`);
      pool.options[k!] = v.join("=");
      return;
    }
    case "create": {
      const o = parseOpts(rest, ["-o", "-O"]);
      const [name, ...spec] = o.rest;
      const force = o.flags.has("-f");
      if (s.pools[name!]) fail(`cannot create '${name}': pool already exists`);
      const vdevType = spec[0] && !spec[0].startsWith("/") ? spec.shift()! : spec.length > 1 ? "stripe" : "single";
      for (const d of spec) {
        const disk = s.disks[diskKey(s, d)];
        if (!disk) fail(`cannot open '${d}': no such device in /dev\nmust be a full path or shorthand device name`);
        if (!force && (disk.signatures.length || disk.partitions.length)) {
          fail(`invalid vdev specification\nuse '-f' to override the following errors:\n${d} contains a filesystem of type '${disk.signatures[0] ?? "gpt"}'`);
        }
      }
      for (const d of spec) s.disks[diskKey(s, d)] = { signatures: ["zfs_member"], partitions: [d + "-part1", d + "-part9"] };
      s.pools[name!] = { vdevType, disks: spec, options: o.props["-o"]! };
      s.datasets[name!] = o.props["-O"]!;
      fs.mkdirSync(path.join(root, propValue(s, name!, "mountpoint")!), { recursive: true });
      return;
    }
    case "destroy": {
      const name = rest.filter((a) => !a.startsWith("-"))[0]!;
      if (!s.pools[name]) fail(`cannot open '${name}': no such pool`);
      delete s.pools[name];
      for (const d of Object.keys(s.datasets)) if (d === name || d.startsWith(name + "/")) delete s.datasets[d];
      return;
    }
    default:
      fail(`zpool stand-in: unsupported subcommand ${sub}`, 2);
  }
}

function writeRootFile(rel: string, content: string): void {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
}

function procDevices(s: SandboxState, withUvm: boolean): void {
  const file = path.join(root, "proc/devices");
  const lines = fs.readFileSync(file, "utf8").split("\n").filter((l) => !/nvidia/.test(l) && l !== "");
  const chr = lines.indexOf("Character devices:");
  const extra = ["195 nvidia-frontend", ...(withUvm ? [`${s.nvidia.uvmMajor} nvidia-uvm`] : []), "237 nvidia-caps"].map((l) => l.padStart(3));
  lines.splice(chr + 1, 0, ...extra);
  fs.writeFileSync(file, lines.join("\n") + "\n");
}

const minorOf = (g: SandboxState["nvidia"]["gpus"][number], i: number): number => g.minor ?? i;

/**
 * /proc/driver/nvidia/gpus/<bus>/information while the module is loaded, as
 * open-gpu-kernel-modules kernel-open/nvidia/nv-procfs.c (nv_procfs_add_gpu, nv_procfs_read_gpu_info)
 * writes it: the directory is "%04x:%02x:%02x.%1x", the minor line "Device Minor: \t %u".
 */
function procDriverNvidia(s: SandboxState): void {
  const dir = path.join(root, "proc/driver/nvidia");
  fs.rmSync(dir, { recursive: true, force: true });
  if (!s.nvidia.loaded) return;
  writeRootFile("proc/driver/nvidia/version", `NVRM version: NVIDIA UNIX x86_64 Kernel Module  ${s.nvidia.loaded}\n`);
  s.nvidia.gpus.forEach((g, i) => {
    const bus = g.busId.toLowerCase().replace(/^0000(?=[0-9a-f]{4}:)/, "");
    writeRootFile(
      `proc/driver/nvidia/gpus/${bus}/information`,
      `Model: \t\t ${g.name}\nIRQ:   \t\t 16\nGPU UUID: \t GPU-00000000-0000-0000-0000-00000000000${i}\nVideo BIOS: \t 98.05.19.00.01\nBus Type: \t PCIe\nDMA Size: \t 52 bits\nDMA Mask: \t 0xfffffffffffff\nBus Location: \t ${bus}\nDevice Minor: \t ${minorOf(g, i)}\nGPU Excluded:\t No\n`,
    );
  });
}

function nvidiaSmi(s: SandboxState, args: string[]): void {
  if (!s.nvidia.loaded) fail("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.", 9);
  // Like the real tool run as root, it creates the control and per-GPU nodes, named by device minor.
  s.nvidia.gpus.forEach((g, i) => writeRootFile(`dev/nvidia${minorOf(g, i)}`, ""));
  writeRootFile("dev/nvidiactl", "");
  if (!fs.readFileSync(path.join(root, "proc/devices"), "utf8").includes("nvidia-frontend")) procDevices(s, false);
  const q = args.find((a) => a.startsWith("--query-gpu="));
  if (!q) return out([`NVIDIA-SMI ${s.nvidia.loaded}    Driver Version: ${s.nvidia.loaded}`]);
  const fields = q.slice("--query-gpu=".length).split(",");
  out(
    s.nvidia.gpus.map((g, i) =>
      fields
        .map((f) => ({ index: String(i), "pci.bus_id": g.busId, name: g.name, "memory.total": String(g.memoryMiB), driver_version: s.nvidia.loaded })[f] ?? fail(`Field "${f}" is not a valid field to query.`, 2))
        .join(", "),
    ),
  );
}

/**
 * nvidia-smi run through `pct exec`: the container sees only the GPUs whose /dev/nvidia<index> its
 * config passes in (devN), and its own user-space must match the host's kernel module, as NVML
 * requires; the driver version it reports is the kernel module's.
 */
function containerNvidiaSmi(s: SandboxState, vmid: string, args: string[]): void {
  const userspace = containerState(s).nvidiaUserspace;
  if (!userspace) fail("bash: line 1: nvidia-smi: command not found", 127);
  const passed = confSections(vmid).current.filter((l) => /^dev\d+:/.test(l)).map((l) => l.slice(l.indexOf(":") + 1).trim().split(",")[0]);
  if (!s.nvidia.loaded || !passed.includes("/dev/nvidiactl")) fail("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.", 9);
  if (userspace !== s.nvidia.loaded) fail("Failed to initialize NVML: Driver/library version mismatch\nNVML library version: " + userspace, 18);
  const visible = s.nvidia.gpus.filter((g, i) => passed.includes(`/dev/nvidia${minorOf(g, i)}`));
  if (visible.length === 0) fail("No devices were found", 6);
  const q = args.find((a) => a.startsWith("--query-gpu="));
  if (!q) return out([`NVIDIA-SMI ${s.nvidia.loaded}    Driver Version: ${s.nvidia.loaded}`]);
  const fields = q.slice("--query-gpu=".length).split(",");
  // Inside, NVML numbers the visible GPUs from 0 whatever their index on the host.
  out(visible.map((g, i) => fields.map((f) => ({ index: String(i), "pci.bus_id": g.busId, name: g.name, "memory.total": String(g.memoryMiB), driver_version: s.nvidia.loaded })[f] ?? fail(`Field "${f}" is not a valid field to query.`, 2)).join(", ")));
}

/** Installed kernels: the images in /boot, and always the running one. */
function bootKernels(s: SandboxState): string[] {
  const dir = path.join(root, "boot");
  const images = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.startsWith("vmlinuz-")).map((f) => f.slice("vmlinuz-".length)) : [];
  return [...new Set([s.kernelRelease, ...images])];
}

/**
 * dkms(8) status and install for the registered nvidia module. A built module is listed as
 * "nvidia/<v>, <kernel>, x86_64: installed"; one that is only registered as "nvidia/<v>: added".
 */
function dkms(s: SandboxState, args: string[]): void {
  const opt = (flag: string) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);
  const kernels = opt("-k") ? [opt("-k")!] : bootKernels(s);
  const version = opt("-v");
  const modules = s.nvidia.dkms.filter((m) => !version || m === `nvidia/${version}`);
  if (args[0] === "install") {
    if (modules.length === 0) fail(`Error! The module/version combo: nvidia-${version} is not located in the DKMS tree.`, 3);
    for (const k of kernels) if (s.nvidia.unbuildable?.includes(k)) fail(`Error! Bad return status for module build on kernel: ${k} (x86_64)\nConsult /var/lib/dkms/nvidia/${version}/build/make.log for more information.`, 10);
    return;
  }
  out(modules.flatMap((m) => kernels.map((k) => (s.nvidia.unbuildable?.includes(k) ? `${m}: added` : `${m}, ${k}, x86_64: installed`))));
}

function installer(s: SandboxState, args: string[]): void {
  const [runfile, ...flags] = args;
  const version = /NVIDIA-Linux-x86_64-([0-9.]+)\.run$/.exec(runfile ?? "")?.[1];
  if (!version) fail(`installer stand-in: cannot tell the version from ${runfile}`, 2);
  if (!flags.includes("--silent")) fail("installer stand-in: interactive run", 2);
  if (flags.includes("--no-kernel-module")) return userSpaceInstall(s, version);
  if (s.nvidia.loaded) fail("ERROR: An NVIDIA kernel module 'nvidia' appears to already be loaded in your kernel.");
  const headers = [`proxmox-headers-${s.kernelRelease}`, `pve-headers-${s.kernelRelease}`];
  if (!headers.some((h) => s.aptInstalled.includes(h))) fail("ERROR: Unable to find the kernel source tree for the currently running kernel.");
  const nouveau = fs.existsSync(path.join(root, "sys/module/nouveau"));
  if (nouveau && !flags.includes("--skip-module-load")) fail("ERROR: Unable to load the kernel module 'nvidia.ko'. This happens most frequently when this kernel module was built against the wrong or improperly configured kernel sources");
  s.nvidia.installed = version;
  s.nvidia.dkms = flags.includes("--dkms") ? [`nvidia/${version}`] : [];
  // nvidia-installer 580.95.05 option_table.h: --kernel-module-type "open" or "proprietary"; without it
  // kernel.c valid_kernel_module_types picks open when both are valid (and only open for Blackwell).
  const type = flags.find((f) => f.startsWith("--kernel-module-type="))?.slice("--kernel-module-type=".length) ?? "open";
  if (type !== "open" && type !== "proprietary") fail(`ERROR: Invalid kernel module type "${type}"`, 2);
  s.nvidia.moduleType = type;
  if (nouveau) return;
  s.nvidia.loaded = version;
  procDevices(s, false);
}

const LIB_DIR = "usr/lib/x86_64-linux-gnu";

/** A container install: only the libraries, which must match the host's kernel module exactly. */
function userSpaceInstall(s: SandboxState, version: string): void {
  if (!container) fail("installer stand-in: --no-kernel-module outside a container", 2);
  const libs = path.join(machineRoot, LIB_DIR);
  fs.mkdirSync(libs, { recursive: true });
  for (const f of fs.readdirSync(libs)) if (/^lib(cuda|nvidia-ml)\.so\./.test(f)) fs.rmSync(path.join(libs, f));
  for (const lib of ["libcuda.so", "libnvidia-ml.so"]) fs.writeFileSync(path.join(libs, `${lib}.${version}`), "");
  containerState(s).nvidiaUserspace = version;
}

function containerState(s: SandboxState): ContainerState {
  if (!container) fail("stand-in: not inside a container", 2);
  return (s.containers[container] ??= { aptInstalled: [], systemdEnabled: [], locales: [], caUpdates: 0, venvs: {} });
}

/** Inside `qm guest exec`: the VM's packages and units (what install scripts run through its guest agent changed). */
function vmState(s: SandboxState): VmState & PackageScope {
  if (!vm) fail("stand-in: not inside a VM", 2);
  const state = ((s.vms ??= {})[vm] ??= { compose: {} });
  state.aptInstalled ??= [];
  state.systemdEnabled ??= [];
  return state as VmState & PackageScope;
}

function packageScope(s: SandboxState): PackageScope {
  return container ? containerState(s) : vm ? vmState(s) : s;
}

const ctConf = (vmid: string) => path.join(root, "etc/pve/lxc", `${vmid}.conf`);
const ctStatus = (vmid: string) => path.join(root, "run/pct", `${vmid}.status`);

/** The current section of a container's config (snapshot sections start at the first `[name]` line). */
function confSections(vmid: string): { current: string[]; rest: string[] } {
  const file = ctConf(vmid);
  if (!fs.existsSync(file)) fail(`Configuration file 'nodes/pve/lxc/${vmid}.conf' does not exist`, 255);
  const lines = fs.readFileSync(file, "utf8").split("\n");
  const cut = lines.findIndex((l) => l.startsWith("["));
  const current = (cut < 0 ? lines : lines.slice(0, cut)).filter((l) => l.trim() !== "");
  return { current, rest: cut < 0 ? [] : lines.slice(cut) };
}

const confKey = (line: string) => line.slice(0, line.search(/[:=]/));

function running(vmid: string): boolean {
  return fs.existsSync(ctStatus(vmid)) && fs.readFileSync(ctStatus(vmid), "utf8").trim() === "running";
}

function setStatus(vmid: string, status: "running" | "stopped"): void {
  fs.mkdirSync(path.dirname(ctStatus(vmid)), { recursive: true });
  fs.writeFileSync(ctStatus(vmid), status + "\n");
}

/** pct over the config files in $root/etc/pve/lxc and status files in $root/run/pct, as PVE's CLI behaves. */
function pct(args: string[]): void {
  const [sub, vmid, ...rest] = args;
  if (!sub || !vmid || !/^\d+$/.test(vmid)) fail("pct stand-in: usage: pct <command> <vmid> [options]", 255);
  const { current, rest: snapshots } = confSections(vmid);
  const isTemplate = current.some((l) => /^template:\s*1$/.test(l));
  switch (sub) {
    case "config":
      return out(current);
    case "status":
      return out([`status: ${running(vmid) ? "running" : "stopped"}`]);
    case "set": {
      const set = new Map<string, string>();
      let del: string[] = [];
      for (let i = 0; i < rest.length; i += 2) {
        const key = rest[i]?.replace(/^--/, "") ?? "";
        const value = rest[i + 1];
        if (value === undefined) fail(`400 not enough arguments for option '${key}'`, 255);
        if (key === "delete") del = value.split(/[,;\s]+/).filter(Boolean);
        else set.set(key, value);
      }
      const kept = current.filter((l) => !del.includes(confKey(l)) && !set.has(confKey(l)));
      const updated = current.filter((l) => set.has(confKey(l))).map((l) => `${confKey(l)}: ${set.get(confKey(l))}`);
      const added = [...set].filter(([k]) => !current.some((l) => confKey(l) === k)).map(([k, v]) => `${k}: ${v}`);
      fs.writeFileSync(ctConf(vmid), [...kept, ...updated, ...added, ...(snapshots.length ? ["", ...snapshots] : [])].join("\n") + "\n");
      return;
    }
    case "start":
      if (isTemplate) fail(`CT ${vmid} is a template`, 255);
      if (running(vmid)) fail(`CT ${vmid} already running`, 255);
      return setStatus(vmid, "running");
    case "stop":
    case "shutdown":
      if (!running(vmid)) fail(`CT ${vmid} not running`, 255);
      return setStatus(vmid, "stopped");
    case "reboot":
      if (!running(vmid)) fail(`CT ${vmid} not running`, 255);
      return;
    case "exec": {
      if (rest[0] !== "--" || rest.length < 2) fail("pct stand-in: usage: pct exec <vmid> -- <command> [args]", 255);
      if (!running(vmid)) fail(`CT ${vmid} not running`, 255);
      const ctRoot = path.join(root, "ct", vmid);
      fs.mkdirSync(ctRoot, { recursive: true });
      // The command's own stand-ins take the lock: hand it over.
      unlock();
      const res = spawnSync(rest[1]!, rest.slice(2), { stdio: "inherit", env: { ...process.env, PHOENIX_ROOT: ctRoot, PHOENIX_CT: vmid } });
      // The command's own stand-ins saved the state: exit without saving this process's stale copy.
      return process.exit(res.status ?? 255);
    }
    default:
      fail(`pct stand-in: unsupported command ${sub}`, 255);
  }
}

const qmStatus = (vmid: string) => path.join(root, "run/qm", `${vmid}.status`);

/**
 * qm's guest-agent commands as qemu-server@9.2.6 src/PVE/CLI/qm.pm has them: `qm guest cmd <vmid>
 * ping` prints nothing (an empty result), `qm guest exec <vmid> [--timeout N] [--pass-stdin 1]
 * -- <command>` runs the command in the VM, with qm's stdin (read to EOF, at most 1 MiB) as its
 * stdin when --pass-stdin is set, and prints the exec-status as JSON (exited, exitcode or signal,
 * out-data, err-data; Agent.pm qemu_exec_status); qm itself exits 0 whatever the command's status.
 * Agent.pm assert_agent_available: the VM must run and its agent answer; the agent comes with
 * cloud-init's first boot, modelled by the VM's root directory existing.
 */
function qm(args: string[]): void {
  const [sub, op, vmid, ...rest] = args;
  if (sub !== "guest" || (op !== "exec" && op !== "cmd")) fail(`qm stand-in: unsupported command ${args.slice(0, 2).join(" ")}`, 255);
  if (!vmid || !/^\d+$/.test(vmid)) fail(`400 Parameter verification failed.\nvmid: type check ('integer') failed - got '${vmid ?? ""}'`, 255);
  if (!fs.existsSync(qmStatus(vmid))) fail(`Configuration file 'nodes/pve/qemu-server/${vmid}.conf' does not exist`, 255);
  if (fs.readFileSync(qmStatus(vmid), "utf8").trim() !== "running") fail(`VM ${vmid} is not running`, 255);
  const vmRoot = path.join(root, "vm", vmid);
  if (!fs.existsSync(vmRoot)) fail("QEMU guest agent is not running", 255);
  if (op === "cmd") {
    if (rest[0] !== "ping") fail(`qm stand-in: only the ping agent command is modelled, not ${rest[0] ?? ""}`, 255);
    return;
  }
  const dash = rest.indexOf("--");
  const options = dash < 0 ? rest : rest.slice(0, dash);
  const argv = dash < 0 ? [] : rest.slice(dash + 1);
  let passStdin = false;
  for (let i = 0; i < options.length; i += 2) {
    const [key, value] = [options[i]!, options[i + 1]];
    if (key === "--pass-stdin") passStdin = value === "1";
    else if (key !== "--timeout" && key !== "--synchronous") fail(`400 Parameter verification failed.\n${key.replace(/^--/, "")}: property is not defined in schema and the schema does not allow additional properties`, 255);
  }
  const input = passStdin ? fs.readFileSync(0, "utf8") : undefined;
  if (input !== undefined && input.length > 1024 * 1024) fail("'input-data' (STDIN) is limited to 1 MiB, aborting", 255);
  if (argv.length === 0) fail("qm stand-in: only commands are modelled, not bare input-data", 255);
  // The command's own stand-ins take the lock: hand it over.
  unlock();
  const res = spawnSync(argv[0]!, argv.slice(1), { input: input ?? "", encoding: "utf8", env: { ...process.env, PHOENIX_ROOT: vmRoot, PHOENIX_VM: vmid } });
  // qga/qapi-schema.json GuestExecStatus: `exitcode` for a normal end, `signal` for a process a signal ended.
  const status: Record<string, unknown> = res.signal ? { exited: 1, signal: osConstants.signals[res.signal] } : { exitcode: res.status ?? 255, exited: 1 };
  if (res.stdout) status["out-data"] = res.stdout;
  if (res.stderr) status["err-data"] = res.stderr;
  process.stdout.write(JSON.stringify(status, null, 3) + "\n");
  // The command's own stand-ins saved the state: exit without saving this process's stale copy.
  process.exit(0);
}

/**
 * `docker compose -f FILE up -d [--force-recreate]` inside a VM: the compose file must be there,
 * and so must every file its env_file names (Phoenix renders env_file as a list of absolute
 * paths). A project is (re)created on its first `up` and with --force-recreate; the stand-in
 * does not model Compose's comparison of a running container's configuration.
 */
function docker(s: SandboxState, args: string[]): void {
  if (!vm) fail("docker stand-in: only inside a VM (qm guest exec)", 127);
  if (args[0] === "restart" && args.length === 2) {
    // A container a started compose project named (container_name:); Docker prints the name it restarted.
    const name = args[1]!;
    const state = vmState(s);
    const known = Object.entries(state.compose).some(([file, p]) => p.starts > 0 && new RegExp(`^\\s*container_name:\\s*${name.replace(/[.]/g, "\\.")}\\s*$`, "m").test(fs.readFileSync(path.join(machineRoot, file), "utf8")));
    if (!known) fail(`Error response from daemon: No such container: ${name}`, 1);
    (state.restarts ??= {})[name] = (state.restarts[name] ?? 0) + 1;
    return out([name]);
  }
  const [sub, flag, file, up, ...rest] = args;
  if (sub !== "compose" || flag !== "-f" || !file || up !== "up" || !rest.includes("-d")) fail(`docker stand-in: unsupported docker ${args.join(" ")}`, 2);
  const composePath = path.join(machineRoot, file);
  if (!fs.existsSync(composePath)) fail(`open ${file}: no such file or directory`, 1);
  const envFiles = [...fs.readFileSync(composePath, "utf8").matchAll(/^\s*env_file:\s*\n((?:\s*-\s*\S+\n)+)/gm)].flatMap((m) =>
    m[1]!.split("\n").map((l) => l.replace(/^\s*-\s*/, "").trim()).filter(Boolean),
  );
  const env: Record<string, string> = {};
  for (const f of envFiles) {
    const p = path.join(machineRoot, f);
    if (!fs.existsSync(p)) fail(`env file ${f} not found: stat ${f}: no such file or directory`, 1);
    for (const line of fs.readFileSync(p, "utf8").split("\n")) {
      const i = line.indexOf("=");
      if (i > 0 && !line.startsWith("#")) env[line.slice(0, i)] = line.slice(i + 1);
    }
  }
  const state = vmState(s);
  const prev = state.compose[file];
  if (!prev || rest.includes("--force-recreate")) state.compose[file] = { starts: (prev?.starts ?? 0) + 1, env };
}

/** `python3 -m venv DIR`: a virtualenv whose python and pip are stand-ins bound to DIR. */
function python3(s: SandboxState, args: string[]): void {
  const dir = args[0] === "-m" && args[1] === "venv" ? args[2] : undefined;
  if (!dir) fail("python3 stand-in: only `python3 -m venv DIR` is supported", 2);
  const venv = "/" + path.relative(machineRoot, dir);
  fs.mkdirSync(path.join(dir, "bin"), { recursive: true });
  for (const tool of ["python", "pip"]) {
    fs.writeFileSync(path.join(dir, "bin", tool), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(__filename)} ${tool} ${JSON.stringify(venv)} "$@"\n`, { mode: 0o755 });
  }
  containerState(s).venvs[venv] ??= {};
}

/** pip of one virtualenv: `install [--no-cache-dir] NAME==VERSION…` and `show NAME`. */
function pip(s: SandboxState, venv: string, args: string[]): void {
  const pkgs = (containerState(s).venvs[venv] ??= {});
  const [sub, ...rest] = args;
  if (sub === "show") {
    const version = pkgs[rest[0] ?? ""];
    if (!version) fail(`WARNING: Package(s) not found: ${rest[0]}`);
    return out([`Name: ${rest[0]}`, `Version: ${version}`]);
  }
  if (sub !== "install") fail(`pip stand-in: unsupported command ${sub}`, 2);
  // `-r FILE` (a hash-locked requirements file): its `name==version` lines; a path that does not exist fails as pip does.
  const files = rest.flatMap((a, i) => (a === "-r" ? [rest[i + 1]!] : []));
  const fromFiles = files.flatMap((f) => {
    if (!fs.existsSync(f)) fail(`ERROR: Could not open requirements file: [Errno 2] No such file or directory: '${f}'`);
    return [...fs.readFileSync(f, "utf8").matchAll(/^([A-Za-z0-9._-]+==[^\s;\\]+)/gm)].map((m) => m[1]!);
  });
  for (const spec of [...rest.filter((a) => !a.startsWith("-") && !files.includes(a)), ...fromFiles]) {
    const [name, version] = spec.split("==");
    if (!name || !version) fail(`pip stand-in: unpinned requirement ${spec}`, 2);
    pkgs[name] = version;
  }
}

// --- Release downloads and the service tools of an install script on the node ---------------

/** A release's checksums file (promu's sha256sums.txt, goreleaser's checksums.txt / <project>_<version>_checksums.txt, Grafana's SHA256SUMS). */
const CHECKSUMS = /[/_-](sha256sums|checksums)\.txt$|\/SHA256SUMS$/;

/**
 * A release archive as its publisher lays it out: <base>/<binary>, the binary named for the
 * project (the archive's name up to its version). It is a stand-in script; the archive is built
 * with the real tar and gzip with fixed metadata, and its SHA-256 is remembered for the checksums
 * file beside it, which the install script checks it against.
 */
function serveRelease(s: SandboxState, url: string, dest: string): void {
  const file = url.slice(url.lastIndexOf("/") + 1);
  if (file.endsWith(".zip")) return serveZipRelease(s, url, dest);
  const base = file.replace(/\.tar\.gz$/, "");
  const binary = base.replace(/[-_]v?\d.*$/, "");
  const work = fs.mkdtempSync(path.join(sandbox, "release-"));
  fs.mkdirSync(path.join(work, base));
  fs.writeFileSync(path.join(work, base, binary), `#!/bin/sh\necho "${binary} (stand-in of ${file})"\n`, { mode: 0o755 });
  const res = spawnSync("tar", ["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-czf", dest, "-C", work, base], { env: { ...process.env, GZIP: "-n" }, encoding: "utf8" });
  fs.rmSync(work, { recursive: true, force: true });
  if (res.status !== 0) fail(`curl stand-in: could not build ${file}: ${res.stderr}`, 2);
  (s.releases ??= {})[url] = createHash("sha256").update(fs.readFileSync(dest)).digest("hex");
}

/**
 * A release zip as Grafana publishes Loki's and Alloy's: the binary alone at the top, named as the zip
 * without .zip (zip -j; alloy@v1.18.1 scripts/publish-release-artifacts.sh). Written here as a stored
 * (uncompressed) zip with the Unix mode in the central directory, so the real unzip restores it as executable
 * (APPNOTE.TXT 4.3.7, 4.3.12, 4.3.16; external attributes' high 16 bits hold st_mode when "made by" is Unix).
 */
function serveZipRelease(s: SandboxState, url: string, dest: string): void {
  const file = url.slice(url.lastIndexOf("/") + 1);
  const name = Buffer.from(file.replace(/\.zip$/, ""));
  const data = Buffer.from(`#!/bin/sh\necho "${name.toString()} (stand-in of ${file})"\n`);
  const crc = zlib.crc32(data);
  const DOS_DATE = (1 << 5) | 1; // 1980-01-01
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4);
  local.writeUInt16LE(DOS_DATE, 12);
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(data.length, 18);
  local.writeUInt32LE(data.length, 22);
  local.writeUInt16LE(name.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE((3 << 8) | 20, 4);
  central.writeUInt16LE(20, 6);
  central.writeUInt16LE(DOS_DATE, 14);
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(data.length, 20);
  central.writeUInt32LE(data.length, 24);
  central.writeUInt16LE(name.length, 28);
  central.writeUInt32LE((0o100755 << 16) >>> 0, 38);
  const cdOffset = local.length + name.length + data.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + name.length, 12);
  end.writeUInt32LE(cdOffset, 16);
  fs.writeFileSync(dest, Buffer.concat([local, name, data, central, name, end]));
  (s.releases ??= {})[url] = createHash("sha256").update(fs.readFileSync(dest)).digest("hex");
}

/** The checksums file of a release directory: every archive of that directory served so far, `sha256  name` as sha256sum prints. */
function serveChecksums(s: SandboxState, url: string, dest: string): void {
  const dir = url.slice(0, url.lastIndexOf("/") + 1);
  const lines = Object.entries(s.releases ?? {}).flatMap(([u, sha]) => (u.startsWith(dir) && !u.slice(dir.length).includes("/") ? [`${sha}  ${u.slice(dir.length)}`] : []));
  fs.writeFileSync(dest, lines.map((l) => `${l}\n`).join(""));
}

/**
 * A GET to a service on this machine's loopback: it answers when an enabled unit of this machine
 * listens on that port (--web.listen-address=[host]:PORT or Alloy's --server.http.listen-addr in its ExecStart), as its service would
 * once started; otherwise the connection is refused (curl exit 7).
 */
function loopbackGet(s: SandboxState, url: string): void {
  const port = /^http:\/\/(?:127\.0\.0\.1|localhost):(\d+)\//.exec(url)?.[1];
  if (!port) fail(`curl stand-in: only -o downloads and loopback GETs are supported, not ${url}`, 2);
  const listens = packageScope(s).systemdEnabled.some((unit) => {
    const file = path.join(machineRoot, "etc/systemd/system", unit);
    // Prometheus' exporters take --web.listen-address; Alloy --server.http.listen-addr (alloy@v1.18.1 internal/alloycli/cmd_run.go).
    return fs.existsSync(file) && new RegExp(`--(web\\.listen-address|server\\.http\\.listen-addr)=\\S*:${port}(\\s|$)`).test(fs.readFileSync(file, "utf8"));
  });
  if (!listens) fail(`curl: (7) Failed to connect to 127.0.0.1 port ${port}: Connection refused`, 7);
}

/** useradd --system … NAME: a line in the machine's etc/passwd; exit 9 when the name is taken, as useradd(8) does. */
function useradd(args: string[]): void {
  const name = args[args.length - 1]!;
  const passwd = path.join(machineRoot, "etc/passwd");
  const lines = fs.existsSync(passwd) ? fs.readFileSync(passwd, "utf8").split("\n").filter(Boolean) : [];
  if (lines.some((l) => l.split(":")[0] === name)) fail(`useradd: user '${name}' already exists`, 9);
  const home = args[args.indexOf("--home-dir") + 1] ?? "/nonexistent";
  const shell = args[args.indexOf("--shell") + 1] ?? "/usr/sbin/nologin";
  const uid = 900 + lines.length;
  fs.mkdirSync(path.dirname(passwd), { recursive: true });
  fs.writeFileSync(passwd, [...lines, `${name}:x:${uid}:${uid}::${home}:${shell}`].join("\n") + "\n");
}

/** `id -u NAME` reads the machine's etc/passwd (where useradd wrote); anything else is the real id. */
function id(args: string[]): void {
  if (args[0] !== "-u" || args.length !== 2) {
    const res = spawnSync("/usr/bin/id", args, { stdio: "inherit" });
    process.exit(res.status ?? 1);
  }
  const passwd = path.join(machineRoot, "etc/passwd");
  const line = (fs.existsSync(passwd) ? fs.readFileSync(passwd, "utf8").split("\n") : []).find((l) => l.split(":")[0] === args[1]);
  if (!line) fail(`id: '${args[1]}': no such user`);
  out([line.split(":")[2]!]);
}

/**
 * install(1) as install scripts call it: `-d [-m MODE] DIR…`, or `-m MODE [-o USER] [-g GROUP] SRC DEST`.
 * Owners are not applied (the sandbox runs as whoever runs the tests).
 */
function install(args: string[]): void {
  let mode = "0755";
  let dirs = false;
  const paths: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "-d") dirs = true;
    else if (a === "-m") mode = args[++i]!;
    else if (a === "-o" || a === "-g") i++;
    else if (a.startsWith("-")) fail(`install stand-in: unsupported option ${a}`, 2);
    else paths.push(a);
  }
  const m = parseInt(mode, 8);
  if (dirs) {
    for (const d of paths) {
      fs.mkdirSync(d, { recursive: true });
      fs.chmodSync(d, m);
    }
    return;
  }
  if (paths.length !== 2) fail("install stand-in: usage: install -m MODE SRC DEST", 2);
  if (!fs.existsSync(path.dirname(paths[1]!))) fail(`install: cannot create regular file '${paths[1]}': No such file or directory`);
  fs.copyFileSync(paths[0]!, paths[1]!);
  fs.chmodSync(paths[1]!, m);
}

/**
 * `systemd-analyze verify UNIT…` on the machine's files: each must exist with a [Unit] section; a
 * service's ExecStart must name an executable that exists on the machine, and a timer's service
 * must exist beside it, as systemd-analyze verify reports ("Command … is not executable",
 * "… not found").
 */
function systemdAnalyze(args: string[]): void {
  if (args[0] !== "verify") fail(`systemd-analyze stand-in: unsupported command ${args[0]}`, 2);
  for (const file of args.slice(1)) {
    if (!fs.existsSync(file)) fail(`Failed to prepare filename ${file}: No such file or directory`);
    const text = fs.readFileSync(file, "utf8");
    if (!/^\[Unit\]$/m.test(text)) fail(`${file}: no [Unit] section`);
    if (file.endsWith(".service")) {
      const exec = /^ExecStart=(\S+)/m.exec(text)?.[1];
      if (!exec) fail(`${file}: Service has no ExecStart=, ExecStop=, or SuccessAction=. Refusing.`);
      const onMachine = path.join(machineRoot, exec);
      if (!fs.existsSync(onMachine) || (fs.statSync(onMachine).mode & 0o111) === 0) fail(`${file}: Command ${exec} is not executable: No such file or directory`);
    }
    if (file.endsWith(".timer") && !fs.existsSync(file.replace(/\.timer$/, ".service"))) fail(`${file}: Timer unit lacks value setting. Refusing.`);
  }
}

/** Tools that exist on the node only once their package is installed. */
const PROVIDES: Record<string, string[]> = { "nfs-kernel-server": ["exportfs"] };

function installTool(tool: string): void {
  const target = path.join(sandbox, "bin", tool);
  if (!fs.existsSync(target)) fs.writeFileSync(target, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(__filename)} ${tool} "$@"\n`, { mode: 0o755 });
}

function main(): void {
  const [tool, ...args] = process.argv.slice(2);
  lock();
  const s = load();
  s.calls.push([tool!, ...args]);
  save(s);
  const run = (): void => {
    switch (tool) {
      case "zfs":
        return zfs(s, args);
      case "zpool":
        return zpool(s, args);
      case "wipefs": {
        const dev = diskKey(s, args[args.length - 1]!);
        const disk = s.disks[dev] ?? fail(`wipefs: error: ${dev}: probing initialization failed: No such file or directory`);
        if (args.includes("-a")) {
          s.disks[dev] = { signatures: [], partitions: [] };
          return;
        }
        return out(disk.signatures);
      }
      case "lsblk": {
        const dev = diskKey(s, args[args.length - 1]!);
        const disk = s.disks[dev] ?? fail(`lsblk: ${dev}: not a block device`, 32);
        return out([path.basename(dev), ...disk.partitions.map((p) => path.basename(p))]);
      }
      case "uname":
        return out([args.includes("-r") ? s.kernelRelease : "Linux"]);
      case "lspci":
        return out(s.pci.map((d) => `${d.address} ${d.classCode}: ${d.id} (rev a1)`));
      case "proxmox-boot-tool":
        if (args[0] !== "status") return;
        if (s.boot === "grub") fail("E: /etc/kernel/proxmox-boot-uuids does not exist.", 2);
        return out(["System currently booted with uefi", `9F3C-8E6B is configured with: ${s.boot === "systemd-boot" ? "uefi" : "grub"} (versions: ${s.kernelRelease})`]);
      case "modprobe": {
        if (args[0] === "-r") {
          if (args.some((m) => m.startsWith("nvidia")) && s.nvidia.inUse) fail("modprobe: FATAL: Module nvidia is in use.");
          if (args.some((m) => m === "nvidia")) s.nvidia.loaded = undefined;
          return;
        }
        if (args.includes("nvidia") && s.nvidia.installed) s.nvidia.loaded ??= s.nvidia.installed;
        return;
      }
      case "nvidia-modprobe":
        if (!s.nvidia.loaded) fail("nvidia-modprobe: the NVIDIA kernel module is not loaded");
        if (args.includes("-u")) {
          procDevices(s, true);
          writeRootFile("dev/nvidia-uvm", "");
          writeRootFile("dev/nvidia-uvm-tools", "");
        }
        return;
      case "nvidia-smi":
        return container ? containerNvidiaSmi(s, container, args) : nvidiaSmi(s, args);
      case "nvidia-installer":
        return installer(s, args);
      case "nvidia-uninstall":
        if (s.nvidia.loaded && s.nvidia.inUse) fail("ERROR: Unable to unload the kernel module 'nvidia'; it is in use.");
        s.nvidia = { ...s.nvidia, installed: undefined, loaded: undefined, dkms: [] };
        return;
      case "dkms":
        return dkms(s, args);
      case "mokutil": {
        // mokutil src/mokutil.c: print_sb_state prints "SecureBoot enabled" (exit 0) or "SecureBoot disabled"
        // (exit 1); test_key prints "<file> is already enrolled" (exit 1) or "<file> is not enrolled" (exit 0).
        if (args[0] === "--sb-state") {
          out([s.secureBoot ? "SecureBoot enabled" : "SecureBoot disabled"]);
          if (!s.secureBoot) process.exitCode = 1;
          return;
        }
        if (args[0] === "--test-key") {
          const file = args[1] ?? fail("mokutil: option '--test-key' requires an argument", 255);
          if (!fs.existsSync(file)) fail(`Failed to get file status, ${file}`, 255);
          const enrolled = (s.mokEnrolled ?? []).some((k) => path.join(root, k) === file || k === file);
          out([`${file} ${enrolled ? "is already enrolled" : "is not enrolled"}`]);
          if (enrolled) process.exitCode = 1;
          return;
        }
        return fail(`mokutil stand-in: unsupported ${args.join(" ")}`, 2);
      }
      case "modinfo": {
        // modinfo(8) -F license: the module's MODULE_LICENSE; open modules are "Dual MIT/GPL".
        if (args[args.length - 1] !== "nvidia" || !s.nvidia.installed) fail(`modinfo: ERROR: Module ${args[args.length - 1]} not found.`);
        return out([s.nvidia.moduleType === "open" ? "Dual MIT/GPL" : "NVIDIA"]);
      }
      case "apt-get": {
        const scope = packageScope(s);
        if (args.includes("install")) {
          // `-o Name=value` (providers/ssh/apt.ts APT_GET) takes a value that is no package.
          for (const p of args.filter((a, i) => !a.startsWith("-") && args[i - 1] !== "-o" && a !== "install")) {
            if (!scope.aptInstalled.includes(p)) scope.aptInstalled.push(p);
            // A package that brings a tool puts it on the node's PATH.
            if (!container && !vm) for (const tool of PROVIDES[p] ?? []) installTool(tool);
          }
        }
        return;
      }
      case "exportfs": {
        const exportsFile = path.join(root, "etc/exports");
        s.nfsExported = fs.existsSync(exportsFile) ? fs.readFileSync(exportsFile, "utf8").split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#")) : [];
        return;
      }
      case "dpkg-query": {
        const pkg = args[args.length - 1]!;
        if (!packageScope(s).aptInstalled.includes(pkg)) fail(`dpkg-query: no packages found matching ${pkg}`);
        return out(["install ok installed"]);
      }
      case "dpkg": {
        const deb = args[0] === "-i" ? args[1] : undefined;
        if (!deb || !fs.existsSync(deb)) fail(`dpkg: error: cannot access archive '${deb}': No such file or directory`, 2);
        const scope = packageScope(s);
        const pkg = path.basename(deb).split("_")[0]!;
        if (!scope.aptInstalled.includes(pkg)) scope.aptInstalled.push(pkg);
        return;
      }
      case "systemctl": {
        const scope = packageScope(s);
        // enable and disable take every unit named (systemctl(1): enable UNIT…).
        const units = args.filter((a) => !a.startsWith("-")).slice(1);
        const unit = units[0];
        if (args[0] === "enable") for (const u of units) if (!scope.systemdEnabled.includes(u)) scope.systemdEnabled.push(u);
        if (args[0] === "disable") scope.systemdEnabled = scope.systemdEnabled.filter((u) => !units.includes(u));
        if (args[0] === "is-enabled") {
          if (!unit || !scope.systemdEnabled.includes(unit)) fail("disabled");
          return out(["enabled"]);
        }
        return;
      }
      case "pct":
        return pct(args);
      case "qm":
        return qm(args);
      case "docker":
        return docker(s, args);
      case "cloud-init":
        // `cloud-init status --wait` in a VM whose first boot is over (its root exists).
        if (!vm || args[0] !== "status") fail(`cloud-init stand-in: only \`cloud-init status [--wait]\` inside a VM`, 2);
        return out(["status: done"]);
      case "locale":
        if (args[0] !== "-a") fail("locale stand-in: only -a is supported", 2);
        return out(["C", "C.utf8", "POSIX", ...containerState(s).locales]);
      case "locale-gen":
        for (const name of args) {
          const m = /^([A-Za-z_]+)\.UTF-8$/i.exec(name) ?? fail(`locale-gen stand-in: unsupported locale ${name}`, 2);
          const generated = `${m[1]}.utf8`;
          if (!containerState(s).locales.includes(generated)) containerState(s).locales.push(generated);
        }
        return;
      case "update-ca-certificates": {
        const dir = path.join(machineRoot, "usr/local/share/ca-certificates");
        const certs = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith(".crt")).sort() : [];
        fs.mkdirSync(path.join(machineRoot, "etc/ssl/certs"), { recursive: true });
        fs.writeFileSync(path.join(machineRoot, "etc/ssl/certs/ca-certificates.crt"), certs.map((f) => fs.readFileSync(path.join(dir, f), "utf8")).join(""));
        containerState(s).caUpdates++;
        return;
      }
      case "python3":
        return python3(s, args);
      case "pip":
      case "python": {
        const [venv, ...rest] = args;
        const pipArgs = tool === "python" ? (rest[0] === "-m" && rest[1] === "pip" ? rest.slice(2) : fail("python stand-in: only `python -m pip` is supported", 2)) : rest;
        return pip(s, venv!, pipArgs);
      }
      case "curl": {
        const o = args.indexOf("-o");
        const url = args[args.length - 1]!;
        if (o < 0) return loopbackGet(s, url);
        if (url.includes("missing")) fail("curl: (22) The requested URL returned error: 404", 22);
        if (url.endsWith(".tar.gz") || url.endsWith(".zip")) return serveRelease(s, url, args[o + 1]!);
        if (CHECKSUMS.test(url)) return serveChecksums(s, url, args[o + 1]!);
        fs.writeFileSync(args[o + 1]!, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(__filename)} nvidia-installer "$0" "$@"\n`);
        return;
      }
      case "useradd":
        return useradd(args);
      case "id":
        return id(args);
      case "install":
        return install(args);
      case "systemd-analyze":
        return systemdAnalyze(args);
      case "update-initramfs":
      case "update-grub":
      case "depmod":
        return;
      default:
        fail(`stand-in: unknown tool ${tool}`, 127);
    }
  };
  run();
  if (!container) procDriverNvidia(s);
  save(s);
}

main();
