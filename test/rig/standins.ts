/**
 * Stand-ins for the host tools the rendered scripts call. The rig transpiles this file to a
 * plain CommonJS script in the sandbox and puts one wrapper per tool on the session's PATH;
 * every tool keeps its state in the sandbox's state.json, so a script's effect can be read back
 * and a second run can be seen to change nothing. Only Node built-ins may be imported here.
 */
import * as fs from "fs";
import * as path from "path";

export interface SandboxState {
  /** Every stand-in invocation, in order: [tool, ...args]. */
  calls: string[][];
  kernelRelease: string;
  disks: Record<string, { signatures: string[]; partitions: string[] }>;
  pools: Record<string, { vdevType: string; disks: string[]; options: Record<string, string> }>;
  /** Locally set properties per dataset, as given to `zfs create -o`/`zfs set`. */
  datasets: Record<string, Record<string, string>>;
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
    gpus: Array<{ busId: string; name: string; memoryMiB: number }>;
    /** The major the kernel happens to assign to nvidia-uvm at "boot". */
    uvmMajor: number;
  };
  systemdEnabled: string[];
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

function load(): SandboxState {
  return JSON.parse(fs.readFileSync(statePath, "utf8")) as SandboxState;
}
function save(s: SandboxState): void {
  fs.writeFileSync(statePath, JSON.stringify(s, null, 2));
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

function zfs(s: SandboxState, args: string[]): void {
  const [sub, ...rest] = args;
  switch (sub) {
    case "list": {
      const o = rest.indexOf("-o");
      const cols = (o >= 0 ? rest[o + 1]! : "name").split(",");
      const names = rest.filter((a, i) => !a.startsWith("-") && rest[i - 1] !== "-o" && rest[i - 1] !== "-t");
      for (const n of names) if (!s.datasets[n]) fail(`cannot open '${n}': dataset does not exist`);
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
    case "destroy": {
      const recursive = rest.includes("-r");
      const ds = rest.filter((a) => !a.startsWith("-"))[0]!;
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
      const name = rest.filter((a) => !a.startsWith("-"))[0]!;
      const pool = s.pools[name];
      if (!pool) fail(`cannot open '${name}': no such pool`);
      const row = (n: string, depth: number) => `\t${"  ".repeat(depth)}${n.padEnd(40 - 2 * depth)}  ONLINE       0     0     0`;
      const leaves = pool.disks.map((d) => d + "-part1");
      const tree =
        pool.vdevType === "single" || pool.vdevType === "stripe"
          ? leaves.map((l) => row(l, 1))
          : [row(`${pool.vdevType}-0`, 1), ...leaves.map((l) => row(l, 2))];
      return out([`  pool: ${name}`, " state: ONLINE", "config:", "", `\t${"NAME".padEnd(40)}  STATE     READ WRITE CKSUM`, row(name, 0), ...tree, "", "errors: No known data errors"]);
    }
    case "create": {
      const o = parseOpts(rest, ["-o", "-O"]);
      const [name, ...spec] = o.rest;
      const force = o.flags.has("-f");
      if (s.pools[name!]) fail(`cannot create '${name}': pool already exists`);
      const vdevType = spec[0] && !spec[0].startsWith("/") ? spec.shift()! : spec.length > 1 ? "stripe" : "single";
      for (const d of spec) {
        const disk = s.disks[d];
        if (!disk) fail(`cannot open '${d}': no such device in /dev\nmust be a full path or shorthand device name`);
        if (!force && (disk.signatures.length || disk.partitions.length)) {
          fail(`invalid vdev specification\nuse '-f' to override the following errors:\n${d} contains a filesystem of type '${disk.signatures[0] ?? "gpt"}'`);
        }
      }
      for (const d of spec) s.disks[d] = { signatures: ["zfs_member"], partitions: [d + "-part1", d + "-part9"] };
      s.pools[name!] = { vdevType, disks: spec, options: o.props["-o"]! };
      s.datasets[name!] = o.props["-O"]!;
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

function nvidiaSmi(s: SandboxState, args: string[]): void {
  if (!s.nvidia.loaded) fail("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.", 9);
  // Like the real tool run as root, it creates the control and per-GPU nodes.
  s.nvidia.gpus.forEach((_, i) => writeRootFile(`dev/nvidia${i}`, ""));
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

function installer(s: SandboxState, args: string[]): void {
  const [runfile, ...flags] = args;
  const version = /NVIDIA-Linux-x86_64-([0-9.]+)\.run$/.exec(runfile ?? "")?.[1];
  if (!version) fail(`installer stand-in: cannot tell the version from ${runfile}`, 2);
  if (!flags.includes("--silent")) fail("installer stand-in: interactive run", 2);
  if (s.nvidia.loaded) fail("ERROR: An NVIDIA kernel module 'nvidia' appears to already be loaded in your kernel.");
  const headers = [`proxmox-headers-${s.kernelRelease}`, `pve-headers-${s.kernelRelease}`];
  if (!headers.some((h) => s.aptInstalled.includes(h))) fail("ERROR: Unable to find the kernel source tree for the currently running kernel.");
  const nouveau = fs.existsSync(path.join(root, "sys/module/nouveau"));
  if (nouveau && !flags.includes("--skip-module-load")) fail("ERROR: Unable to load the kernel module 'nvidia.ko'. This happens most frequently when this kernel module was built against the wrong or improperly configured kernel sources");
  s.nvidia.installed = version;
  s.nvidia.dkms = flags.includes("--dkms") ? [`nvidia/${version}`] : [];
  if (nouveau) return;
  s.nvidia.loaded = version;
  procDevices(s, false);
}

function main(): void {
  const [tool, ...args] = process.argv.slice(2);
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
        const dev = args[args.length - 1]!;
        const disk = s.disks[dev] ?? fail(`wipefs: error: ${dev}: probing initialization failed: No such file or directory`);
        if (args.includes("-a")) {
          s.disks[dev] = { signatures: [], partitions: [] };
          return;
        }
        return out(disk.signatures);
      }
      case "lsblk": {
        const dev = args[args.length - 1]!;
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
        return nvidiaSmi(s, args);
      case "nvidia-installer":
        return installer(s, args);
      case "nvidia-uninstall":
        if (s.nvidia.loaded && s.nvidia.inUse) fail("ERROR: Unable to unload the kernel module 'nvidia'; it is in use.");
        s.nvidia = { ...s.nvidia, installed: undefined, loaded: undefined, dkms: [] };
        return;
      case "dkms":
        return out(s.nvidia.dkms.map((m) => `${m}, ${s.kernelRelease}, x86_64: installed`));
      case "apt-get":
        if (args.includes("install")) for (const p of args.filter((a) => !a.startsWith("-") && a !== "install")) if (!s.aptInstalled.includes(p)) s.aptInstalled.push(p);
        return;
      case "dpkg-query": {
        const pkg = args[args.length - 1]!;
        if (!s.aptInstalled.includes(pkg)) fail(`dpkg-query: no packages found matching ${pkg}`);
        return out(["install ok installed"]);
      }
      case "systemctl": {
        const unit = args.filter((a) => !a.startsWith("-"))[1];
        if (args[0] === "enable" && unit && !s.systemdEnabled.includes(unit)) s.systemdEnabled.push(unit);
        if (args[0] === "disable" && unit) s.systemdEnabled = s.systemdEnabled.filter((u) => u !== unit);
        if (args[0] === "is-enabled") {
          if (!unit || !s.systemdEnabled.includes(unit)) fail("disabled");
          return out(["enabled"]);
        }
        return;
      }
      case "curl": {
        const o = args.indexOf("-o");
        const url = args[args.length - 1]!;
        if (o < 0) fail("curl stand-in: only -o downloads are supported", 2);
        if (url.includes("missing")) fail("curl: (22) The requested URL returned error: 404", 22);
        fs.writeFileSync(args[o + 1]!, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(__filename)} nvidia-installer "$0" "$@"\n`);
        return;
      }
      case "update-initramfs":
      case "update-grub":
      case "depmod":
        return;
      default:
        fail(`stand-in: unknown tool ${tool}`, 127);
    }
  };
  run();
  save(s);
}

main();
