import { INSTALLED_FN, readFiles, removeFile, renderScript, shellQuote, writeFileIfChanged } from "../ssh/script";

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

/**
 * Prints `kernel`, `headers yes|no`, `dkms <status line>`, `gpu <csv row>`, `unit enabled|disabled`,
 * the managed files, `dev <major> <name>` from /proc/devices, `nouveau loaded` and `node <path>`.
 */
export function renderNvidiaProbe(): string {
  return renderScript(`
k="$(uname -r)"
echo "kernel $k"
${INSTALLED_FN}
if installed "proxmox-headers-$k" || installed "pve-headers-$k"; then echo "headers yes"; else echo "headers no"; fi
dkms status -m nvidia 2>/dev/null | sed 's/^/dkms /' || true
if out="$(nvidia-smi --query-gpu=${QUERY_FIELDS} --format=csv,noheader,nounits 2>/dev/null)"; then
  printf '%s\\n' "$out" | sed 's/^/gpu /'
fi
if systemctl is-enabled ${NVIDIA_UNIT} >/dev/null 2>&1; then echo "unit enabled"; else echo "unit disabled"; fi
${readFiles([NVIDIA_UNIT_PATH, NOUVEAU_CONF])}
grep -E '^ *[0-9]+ nvidia' "$R/proc/devices" | sed 's/^ */dev /' || true
if [ -d "$R/sys/module/nouveau" ]; then echo "nouveau loaded"; fi
for n in "$R"/dev/nvidia* "$R"/dev/nvidia-caps/*; do
  if [ -e "$n" ] && [ ! -d "$n" ]; then echo "node \${n#"$R"}"; fi
done
`);
}

export interface NvidiaInstall {
  version: string;
  runfileUrl: string;
  runfileSha256?: string;
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
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "\${missing[@]}"
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
  sh "$runfile" --silent --dkms --accept-license --no-x-check --no-nouveau-check --no-opengl-files "\${load[@]}"
  echo "changed driver $v"
fi

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
  index: number;
  busId: string;
  name: string;
  memoryMiB: number;
}

export function parseGpuRows(rows: string[]): { gpus: NvidiaGpu[]; driverVersion: string } {
  let driverVersion = "";
  const gpus = rows.map((r) => {
    const [index, busId, name, memory, driver] = r.split(",").map((f) => f.trim());
    driverVersion = driver ?? driverVersion;
    return { index: Number(index), busId: busId ?? "", name: name ?? "", memoryMiB: Number(memory) };
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
