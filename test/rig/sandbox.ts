import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "fs";
import { dirname, join } from "path";
import * as ts from "typescript";
import type { SandboxState } from "./standins";

export type { SandboxState };

/** Tools that only read or touch files the script names; the scripts write "$R/…" paths with them. */
const REAL_TOOLS = [
  "bash", "sh", "cat", "grep", "sed", "awk", "mkdir", "rm", "mv", "cp", "ln", "tr", "cut", "sort", "uniq", "head", "tail",
  "wc", "base64", "stat", "readlink", "basename", "dirname", "cmp", "mktemp", "touch", "chmod", "env", "sleep", "tee", "sha256sum",
  "ls", "find", "xargs", "true", "false", "realpath", "printf", "test", "date", "chown", "seq",
  // Bounds a wait or a script (VmInstall's runner in a VM, providers/guest/vm-install.ts); runs the next tool from PATH.
  "timeout",
  // Unpack the release archives the curl stand-in serves (tar.gz, and Grafana's zips), into the temporary folder the script names.
  "tar", "gzip", "unzip",
  // util-linux: runs the next tool (mkdir) as the folder's owner.
  "setpriv",
];
const STAND_INS = [
  "zfs", "zpool", "wipefs", "lsblk", "uname", "lspci", "proxmox-boot-tool", "update-initramfs", "update-grub", "modprobe",
  "nvidia-smi", "nvidia-modprobe", "nvidia-uninstall", "dkms", "apt-get", "dpkg-query", "systemctl", "curl", "depmod",
  "modinfo", "mokutil", "efibootmgr",
  // Users, files and units an install script puts on the node, written under the sandbox's root (standins.ts).
  "useradd", "id", "install", "systemd-analyze",
  // The node's container tool, and what setup scripts call inside containers.
  "pct", "dpkg", "locale", "locale-gen", "update-ca-certificates", "python3",
  // The node's VM tool (guest agent commands), and what Phoenix runs inside VMs through it.
  "qm", "docker", "cloud-init",
];

export const DISKS = {
  a: "/dev/disk/by-id/nvme-Samsung_SSD_990_EVO_Plus_2TB_S7U5NJ0X100001",
  b: "/dev/disk/by-id/nvme-Samsung_SSD_990_EVO_Plus_2TB_S7U5NJ0X100002",
  c: "/dev/disk/by-id/nvme-Samsung_SSD_990_EVO_Plus_4TB_S7U5NJ0X100003",
  /** Holds an ext4 file system: must never be wiped without allowDestroy. */
  used: "/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0W200004",
};

function initialState(): SandboxState {
  return {
    calls: [],
    kernelRelease: "6.8.12-4-pve",
    disks: {
      [DISKS.a]: { signatures: [], partitions: [] },
      [DISKS.b]: { signatures: [], partitions: [] },
      [DISKS.c]: { signatures: [], partitions: [] },
      [DISKS.used]: { signatures: ["gpt", "PMBR"], partitions: [DISKS.used + "-part1"] },
    },
    pools: {},
    datasets: {},
    pci: [
      { address: "0000:01:00.0", classCode: "0300", id: "10de:2b85" },
      { address: "0000:01:00.1", classCode: "0403", id: "10de:22e8" },
      { address: "0000:02:00.0", classCode: "0300", id: "10de:2c05" },
      { address: "0000:02:00.1", classCode: "0403", id: "10de:22e9" },
    ],
    boot: "systemd-boot",
    aptInstalled: [],
    nvidia: { inUse: false, dkms: [], gpus: [{ busId: "00000000:02:00.0", name: "NVIDIA GeForce RTX 5070 Ti", memoryMiB: 16303 }], uvmMajor: 508 },
    systemdEnabled: [],
    containers: {},
  };
}

const INITIAL_FILES: Record<string, string> = {
  "proc/cmdline": "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1 ro boot=zfs quiet\n",
  "proc/cpuinfo": "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) Ultra 9 285K\n",
  "proc/devices": "Character devices:\n  1 mem\n  4 tty\n 10 misc\n\nBlock devices:\n  8 sd\n259 blkext\n",
  "etc/kernel/cmdline": "root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet\n",
  "etc/kernel/proxmox-boot-uuids": "9F3C-8E6B\n",
  "etc/default/grub": 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR="Proxmox VE"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n',
  "boot/vmlinuz-6.8.12-4-pve": "",
  "proc/meminfo": "MemTotal:       131072000 kB\nMemFree:        98304000 kB\n",
  "sys/module/zfs/parameters/zfs_arc_max": "0\n",
  "sys/module/zfs/parameters/zfs_arc_min": "0\n",
  "sys/firmware/efi/fw_platform_size": "64\n",
};

export interface Sandbox {
  dir: string;
  binDir: string;
  /** What PHOENIX_ROOT points at: the stand-in machine's "/". */
  root: string;
  state(): SandboxState;
  update(mutate: (s: SandboxState) => void): void;
  /** Calls made to the stand-ins since the last `clearCalls`, optionally only one tool's. */
  calls(tool?: string): string[][];
  clearCalls(): void;
  read(path: string): string;
  exists(path: string): boolean;
  write(path: string, content: string): void;
}

function transpileStandIns(target: string): void {
  const source = readFileSync(join(__dirname, "standins.ts"), "utf8");
  const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } });
  writeFileSync(target, outputText);
}

export function createSandbox(dir: string): Sandbox {
  const binDir = join(dir, "bin");
  const root = join(dir, "root");
  const lib = join(dir, "lib");
  for (const d of [binDir, root, lib]) mkdirSync(d, { recursive: true });
  const standIn = join(lib, "standin.cjs");
  transpileStandIns(standIn);
  for (const tool of STAND_INS) {
    writeFileSync(join(binDir, tool), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(standIn)} ${tool} "$@"\n`);
    chmodSync(join(binDir, tool), 0o755);
  }
  for (const tool of REAL_TOOLS) {
    const real = ["/usr/bin", "/bin"].map((d) => join(d, tool)).find((p) => existsSync(p));
    if (!real) throw new Error(`sandbox: ${tool} is not installed in /usr/bin or /bin; the rendered scripts need it`);
    symlinkSync(real, join(binDir, tool));
  }
  const statePath = join(dir, "state.json");
  writeFileSync(statePath, JSON.stringify(initialState(), null, 2));
  const sb: Sandbox = {
    dir,
    binDir,
    root,
    state: () => JSON.parse(readFileSync(statePath, "utf8")) as SandboxState,
    update(mutate) {
      // The stand-ins' own lock (standins.ts): a tool running over SSH may be between its read and write.
      const lock = `${statePath}.lock`;
      const pause = new Int32Array(new SharedArrayBuffer(4));
      for (;;) {
        try {
          mkdirSync(lock);
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
          Atomics.wait(pause, 0, 0, 5);
        }
      }
      try {
        const s = sb.state();
        mutate(s);
        // By rename, as the stand-ins save it: `state()` reads without the lock and must never see a half-written file.
        const tmp = `${statePath}.${process.pid}.tmp`;
        writeFileSync(tmp, JSON.stringify(s, null, 2));
        renameSync(tmp, statePath);
      } finally {
        rmSync(lock, { recursive: true, force: true });
      }
    },
    calls: (tool) => sb.state().calls.filter((c) => tool === undefined || c[0] === tool),
    clearCalls: () => sb.update((s) => (s.calls = [])),
    read: (p) => readFileSync(join(root, p), "utf8"),
    exists: (p) => existsSync(join(root, p)),
    write(p, content) {
      mkdirSync(dirname(join(root, p)), { recursive: true });
      writeFileSync(join(root, p), content);
    },
  };
  for (const [p, content] of Object.entries(INITIAL_FILES)) sb.write(p, content);
  // Folders every Debian node has: install scripts stage their files in /var/tmp and install binaries into /usr/local/bin.
  for (const d of ["var/tmp", "usr/local/bin"]) mkdirSync(join(root, d), { recursive: true });
  for (const d of Object.values(DISKS)) sb.write(d.slice(1), "");
  return sb;
}
