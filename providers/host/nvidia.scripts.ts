import { APT_GET, aptGetUpdate } from "../ssh/apt";
import { INSTALLED_FN, readFiles, removeFile, renderScript, shellQuote, writeFileIfChanged } from "../ssh/script";
import { DKMS_MOK_PROBE, SECURE_BOOT_PROBE } from "./secure-boot";

export const NVIDIA_UNIT = "phoenix-nvidia-devices.service";
export const NVIDIA_UNIT_PATH = `/etc/systemd/system/${NVIDIA_UNIT}`;
export const NOUVEAU_CONF = "/etc/modprobe.d/phoenix-nouveau.conf";
export const NOUVEAU_CONTENT = "# Managed by Phoenix: the NVIDIA driver serves the GPUs shared with containers.\nblacklist nouveau\noptions nouveau modeset=0\n";

/**
 * Device nodes must exist before guests start: nvidia-smi loads the driver and creates
 * /dev/nvidia0… and /dev/nvidiactl, nvidia-modprobe -u creates /dev/nvidia-uvm*. Their majors
 * (nvidia-uvm's is assigned at boot) are what containers are allowed to use.
 */
export const NVIDIA_UNIT_CONTENT = `# Managed by Phoenix
[Unit]
Description=Create NVIDIA device nodes before guests start
After=systemd-modules-load.service
Before=pve-guests.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/nvidia-smi
ExecStart=/usr/bin/nvidia-modprobe -u -c=0

[Install]
WantedBy=multi-user.target
`;

export const QUERY_FIELDS = "index,pci.bus_id,name,memory.total,driver_version";


const HEADER_PACKAGES = ['"proxmox-headers-$k"', "proxmox-default-headers", "dkms", "build-essential", "pkg-config"];

/** Where the loaded driver describes each GPU, by "%04x:%02x:%02x.%1x" (open-gpu-kernel-modules kernel-open/nvidia/nv-procfs.c, nv_procfs_add_gpu). */
export const PROC_NVIDIA_GPUS = "/proc/driver/nvidia/gpus";

/**
 * Prints `kernel`, `headers yes|no`, `dkms <status line>`, `gpu <csv row>`, `minor <bus> <minor>`,
 * `unit enabled|disabled`, the managed files, `dev <major> <name>` from /proc/devices,
 * `nouveau loaded` and `node <path>`.
 */
export function renderNvidiaProbe(): string {
  return renderScript(`
k="$(uname -r)"
echo "kernel $k"
${INSTALLED_FN}
if installed "proxmox-headers-$k" || installed "pve-headers-$k"; then echo "headers yes"; else echo "headers no"; fi
dkms status -m nvidia 2>/dev/null | sed 's/^/dkms /' || true
# The kernels a reboot can pick: every installed image, not only the running one.
for f in "$R"/boot/vmlinuz-*; do
  if [ -e "$f" ]; then echo "bootkernel \${f##*/vmlinuz-}"; fi
done
echo "license $(modinfo -F license nvidia 2>/dev/null || true)"
${SECURE_BOOT_PROBE}
${DKMS_MOK_PROBE}
if out="$(nvidia-smi --query-gpu=${QUERY_FIELDS} --format=csv,noheader,nounits 2>/dev/null)"; then
  printf '%s\\n' "$out" | sed 's/^/gpu /'
fi
# nv-procfs.c nv_procfs_read_gpu_info prints "Device Minor:", a tab, a space and nvl->minor_num.
for info in "$R"${PROC_NVIDIA_GPUS}/*/information; do
  [ -r "$info" ] || continue
  bus="\${info%/information}"
  echo "minor \${bus##*/} $(awk -F: '/^Device Minor:/ {gsub(/[[:space:]]/, "", $2); print $2; exit}' "$info")"
done
if systemctl is-enabled ${NVIDIA_UNIT} >/dev/null 2>&1; then echo "unit enabled"; else echo "unit disabled"; fi
${readFiles([NVIDIA_UNIT_PATH, NOUVEAU_CONF])}
grep -E '^ *[0-9]+ nvidia' "$R/proc/devices" | sed 's/^ */dev /' || true
if [ -d "$R/sys/module/nouveau" ]; then echo "nouveau loaded"; fi
for n in "$R"/dev/nvidia* "$R"/dev/nvidia-caps/*; do
  if [ -e "$n" ] && [ ! -d "$n" ]; then echo "node \${n#"$R"}"; fi
done
`);
}

export type KernelModuleType = "open" | "proprietary";

/**
 * The open modules are "dual licensed MIT/GPLv2" (NVIDIA driver README, kernel_open.html), which
 * modinfo prints as "Dual MIT/GPL"; anything else is the proprietary flavour.
 * unverified: the MODULE_LICENSE strings were not read in nv.c itself.
 */
export function moduleTypeOfLicense(licence: string | undefined): KernelModuleType | "" {
  if (!licence) return "";
  return licence.trim() === "Dual MIT/GPL" ? "open" : "proprietary";
}

/** Installed kernels DKMS has not built the nvidia module of `version` for (`dkms status` lines "nvidia/<v>, <kernel>, <arch>: installed"). */
export function kernelsWithoutModule(kernels: string[], dkmsLines: string[], version: string): string[] {
  const built = new Set(
    dkmsLines
      .map((l) => /^nvidia\/([0-9.]+), ([^,]+), [^:]+: installed/.exec(l))
      .filter((m) => m?.[1] === version)
      .map((m) => m![2]),
  );
  return kernels.filter((k) => !built.has(k)).sort();
}

export interface NvidiaInstall {
  version: string;
  runfileUrl: string;
  runfileSha256?: string;
  kernelModuleType: KernelModuleType;
}

/**
 * Installs the pinned driver with DKMS (so every later kernel gets a module built), after the
 * headers of the running kernel and the meta package that pulls headers for future kernels.
 * A loaded driver of another version is unloaded first; if containers hold it, we stop and say so.
 */
export function renderNvidiaInstall(spec: NvidiaInstall): string {
  return renderScript(`
v=${shellQuote(spec.version)}
url=${shellQuote(spec.runfileUrl)}
k="$(uname -r)"
# nouveau holds the GPUs until a reboot with the blacklist: build now, load after that boot.
load=()
if [ -d "$R/sys/module/nouveau" ]; then load=(--skip-module-load); fi
${INSTALLED_FN}
missing=()
for p in ${HEADER_PACKAGES.join(" ")}; do
  if ! installed "$p"; then missing+=("$p"); fi
done
if [ \${#missing[@]} -gt 0 ]; then
  ${aptGetUpdate("", "  ")}
  DEBIAN_FRONTEND=noninteractive ${APT_GET} install -y --no-install-recommends "\${missing[@]}"
fi

nouveau="$(
${writeFileIfChanged(NOUVEAU_CONF, NOUVEAU_CONTENT)}
)"
if [ -n "$nouveau" ]; then echo "$nouveau"; update-initramfs -u -k all; fi

if ! dkms status -m nvidia 2>/dev/null | grep -q "^nvidia/$v,"; then
  cache="$R/var/cache/phoenix"
  mkdir -p "$cache"
  runfile="$cache/NVIDIA-Linux-x86_64-$v.run"
  if [ ! -s "$runfile" ]; then
    curl -fsSL -o "$runfile.part" "$url"
    mv -f "$runfile.part" "$runfile"
  fi
${
  spec.runfileSha256
    ? `  if ! printf '%s  %s\\n' ${shellQuote(spec.runfileSha256)} "$runfile" | sha256sum -c --quiet -; then
    rm -f "$runfile"
    echo "the NVIDIA installer from $url does not have the configured sha256; check runfileSha256" >&2
    exit 1
  fi`
    : "  :"
}
  if nvidia-smi >/dev/null 2>&1; then
    if ! modprobe -r nvidia_uvm nvidia_drm nvidia_modeset nvidia; then
      echo "the loaded NVIDIA driver is in use (containers or VMs with GPUs are running); stop them, or reboot, then run pulumi up again to install $v" >&2
      exit 1
    fi
  fi
  # nvidia-installer 580.95.05 option_table.h: --kernel-module-type, "open" or "proprietary".
  sh "$runfile" --silent --dkms --kernel-module-type=${shellQuote(spec.kernelModuleType)} --accept-license --no-x-check --no-nouveau-check --no-opengl-files "\${load[@]}"
  echo "changed driver $v"
fi

# Every installed kernel gets the module before anyone reboots into it.
for f in "$R"/boot/vmlinuz-*; do
  [ -e "$f" ] || continue
  kk="\${f##*/vmlinuz-}"
  if ! dkms status -m nvidia -v "$v" -k "$kk" 2>/dev/null | grep -q ': installed'; then
    dkms install -m nvidia -v "$v" -k "$kk" || echo "dkms could not build nvidia $v for $kk" >&2
  fi
done

unit="$(
${writeFileIfChanged(NVIDIA_UNIT_PATH, NVIDIA_UNIT_CONTENT)}
)"
if [ -n "$unit" ]; then echo "$unit"; systemctl daemon-reload; fi
if ! systemctl is-enabled ${NVIDIA_UNIT} >/dev/null 2>&1; then systemctl enable ${NVIDIA_UNIT}; fi

if [ \${#load[@]} -gt 0 ]; then exit 0; fi
modprobe nvidia
nvidia-smi >/dev/null
nvidia-modprobe -u -c=0
`);
}

export function renderNvidiaUninstall(): string {
  return renderScript(`
if systemctl is-enabled ${NVIDIA_UNIT} >/dev/null 2>&1; then systemctl disable ${NVIDIA_UNIT}; fi
${removeFile(NVIDIA_UNIT_PATH)}
if command -v nvidia-uninstall >/dev/null; then nvidia-uninstall --silent; fi
${removeFile(NOUVEAU_CONF)}
update-initramfs -u -k all
`);
}

export interface NvidiaGpu {
  /** nvidia-smi's (NVML's) index: an order, not the device file. */
  index: number;
  /** The device minor: /dev/nvidia<minor> is this GPU. */
  minor: number;
  busId: string;
  name: string;
  memoryMiB: number;
}

/**
 * nvidia-smi's rows joined with the minors the driver's procfs reports (`<bus> <minor>` lines).
 * nvidia-smi prints the bus id with an 8-digit domain (00000000:02:00.0), procfs with 4.
 */
export function parseGpuRows(rows: string[], minors: string[]): { gpus: NvidiaGpu[]; driverVersion: string } {
  let driverVersion = "";
  const byBus = minors.map((l) => l.split(" ")).filter((p) => p.length === 2 && /^\d+$/.test(p[1]!));
  const gpus = rows.map((r) => {
    const [index, busId, name, memory, driver] = r.split(",").map((f) => f.trim());
    driverVersion = driver ?? driverVersion;
    const bus = (busId ?? "").toLowerCase().replace(/^0000(?=[0-9a-f]{4}:)/, "");
    const minor = byBus.find(([b]) => b === bus)?.[1];
    if (minor === undefined) throw new Error(`the NVIDIA driver reports GPU ${busId} but ${PROC_NVIDIA_GPUS}/${bus}/information gives no Device Minor; is the driver loaded?`);
    return { index: Number(index), minor: Number(minor), busId: busId ?? "", name: name ?? "", memoryMiB: Number(memory) };
  });
  return { gpus, driverVersion };
}

export interface DeviceNode {
  path: string;
  major: number;
}

/** Majors come from /proc/devices by driver name; /dev/nvidiaN and nvidiactl belong to the frontend. */
export function deviceNodes(nodes: string[], devices: string[]): DeviceNode[] {
  const majors = new Map(
    devices.map((l) => {
      const [major, name] = l.trim().split(/\s+/);
      return [name ?? "", Number(major)] as const;
    }),
  );
  const frontend = majors.get("nvidia-frontend") ?? majors.get("nvidia");
  return nodes
    .map((path) => {
      const base = path.slice(path.lastIndexOf("/") + 1);
      const major = base.startsWith("nvidia-uvm") ? majors.get("nvidia-uvm") : base.startsWith("nvidia-cap") ? majors.get("nvidia-caps") : frontend;
      return { path, major: major ?? -1 };
    })
    .filter((n) => n.major >= 0)
    .sort((a, b) => a.path.localeCompare(b.path));
}
