import { readFiles, removeFile, renderScript, shellQuote, writeFileIfChanged } from "../ssh/script";

/** Properties whose values are byte counts: `zfs get -p` prints them as plain integers. */
const SIZE_PROPERTIES = new Set(["quota", "refquota", "reservation", "refreservation", "recordsize", "volsize", "volblocksize", "special_small_blocks"]);

/** `128K` → `131072`, like zfs_nicestrtonum (binary units, fractions truncated); `none` → `0`. */
export function zfsBytes(v: string): string | undefined {
  if (v === "none") return "0";
  const m = /^(\d+(?:\.\d+)?)([KMGTPE]?)(?:i?B)?$/i.exec(v.trim());
  if (!m) return undefined;
  return String(Math.floor(Number(m[1]) * 1024 ** " KMGTPE".indexOf((m[2] || " ").toUpperCase())));
}

/** Whether a declared value and what `zfs get -p` reports mean the same setting. */
export function zfsValueEquals(property: string, declared: string, actual: string): boolean {
  if (SIZE_PROPERTIES.has(property)) {
    const d = zfsBytes(declared);
    return d !== undefined && d === actual;
  }
  return declared === actual;
}

/** Reports the actual values, kept in the declared spelling where they agree so no diff appears. */
export function reportedProperties(declared: Record<string, string>, actual: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(declared).map(([k, v]) => [k, actual[k] !== undefined && zfsValueEquals(k, v, actual[k]) ? v : (actual[k] ?? "")]));
}

export const ZFS_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;
export const ZFS_PROPERTY = /^[a-z][a-z0-9_:.]*$/;
export const BY_ID = /^\/dev\/disk\/by-id\/[^/\s]+$/;

function propertyOpts(flag: string, props: Record<string, string>): string {
  return Object.entries(props).map(([k, v]) => `${flag} ${shellQuote(`${k}=${v}`)}`).join(" ");
}

/**
 * Prints `state present|absent`, then `prop <name> <value>` for the named properties. A `zfs`
 * failure other than "does not exist" stops the script: absence must never be guessed.
 */
export function renderDatasetProbe(dataset: string, properties: string[]): string {
  const props = ["type", ...properties].join(",");
  return renderScript(`
ds=${shellQuote(dataset)}
if ! out="$(zfs list -H -o name "$ds" 2>&1)"; then
  if [[ $out == *"dataset does not exist"* ]]; then echo "state absent"; exit 0; fi
  echo "zfs list $ds: $out" >&2
  exit 1
fi
echo "state present"
zfs get -H -p -o property,value ${shellQuote(props)} "$ds" | while IFS=$'\\t' read -r k v; do printf 'prop %s %s\\n' "$k" "$v"; done
`);
}

export function renderDatasetCreate(dataset: string, properties: Record<string, string>): string {
  return renderScript(["zfs create", propertyOpts("-o", properties), shellQuote(dataset)].filter(Boolean).join(" "));
}

function zfsSet(dataset: string, properties: Record<string, string>): string {
  return `zfs set ${Object.entries(properties).map(([k, v]) => shellQuote(`${k}=${v}`)).join(" ")} ${shellQuote(dataset)}`;
}

export function renderDatasetSet(dataset: string, properties: Record<string, string>): string {
  return renderScript(zfsSet(dataset, properties));
}

export function renderDatasetDestroy(dataset: string): string {
  return renderScript(`
ds=${shellQuote(dataset)}
if zfs list -H -o name "$ds" >/dev/null 2>&1; then zfs destroy "$ds"; fi
`);
}

/**
 * Prints `pool absent|present` (then `zpool status -P` lines prefixed `status `, and the named
 * pool properties as `poolprop <name> <value>` and root file system properties as `fsprop …`);
 * `link <by-id path> <device>` for every whole-disk /dev/disk/by-id link, so aliases of one disk
 * compare equal; and, per disk, `disk <path> missing|present`, `sig <path> <type>` and
 * `part <path> <name>`.
 */
export function renderPoolProbe(pool: string, disks: string[], props: { pool: string[]; fs: string[] } = { pool: [], fs: [] }): string {
  const get = (tool: string, key: string, names: string[]) =>
    names.length ? `  ${tool} get -H -p -o property,value ${shellQuote(names.join(","))} "$pool" | while IFS=$'\\t' read -r k v; do printf '${key} %s %s\\n' "$k" "$v"; done` : "";
  return renderScript(`
pool=${shellQuote(pool)}
if zpool list -H -o name "$pool" >/dev/null 2>&1; then
  echo "pool present"
  zpool status -P "$pool" | sed 's/^/status /'
${get("zpool", "poolprop", props.pool)}
${get("zfs", "fsprop", props.fs)}
else
  echo "pool absent"
fi
for link in "$R"/dev/disk/by-id/*; do
  case $link in *-part[0-9]*) continue ;; esac
  [ -e "$link" ] || continue
  dev="$(readlink -f "$link")"
  printf 'link %s %s\\n' "\${link#"$R"}" "\${dev#"$R"}"
done
disks=(${disks.map(shellQuote).join(" ")})
for disk in "\${disks[@]}"; do
  if [ ! -e "$R$disk" ]; then echo "disk $disk missing"; continue; fi
  echo "disk $disk present"
  wipefs -n -i -O TYPE "$disk" | sed "s|^|sig $disk |"
  lsblk -n -r -o NAME "$disk" | tail -n +2 | sed "s|^|part $disk |"
done
`);
}

export interface PoolCreateSpec {
  pool: string;
  vdevType: string;
  disks: string[];
  poolOptions: Record<string, string>;
  filesystemProperties: Record<string, string>;
  wipeDisksOnCreate: boolean;
}

/**
 * Creates the pool, checking each disk again right before: empty, or wiped only when the pool
 * says so, and never while a device of it belongs to an imported pool, whatever the pool says
 * (a pool renamed in the configuration must not wipe the pool it was). The check lives in the
 * same script as `zpool create` so nothing can land on a disk between the check and the create.
 */
export function renderPoolCreate(spec: PoolCreateSpec): string {
  const layout = spec.vdevType === "single" || spec.vdevType === "stripe" ? "" : spec.vdevType;
  return renderScript(`
wipe=${spec.wipeDisksOnCreate ? 1 : 0}
force=()
# The kernel names of every device an imported pool uses.
in_use="$(zpool status -P | awk '$1 ~ /^\\// { print $1 }' | while read -r leaf; do basename "$(readlink -f "$R$leaf")"; done)"
disks=(${spec.disks.map(shellQuote).join(" ")})
for disk in "\${disks[@]}"; do
  if [ ! -e "$R$disk" ]; then echo "disk $disk does not exist; check the by-id name with ls -l /dev/disk/by-id/" >&2; exit 1; fi
  sigs="$(wipefs -n -i -O TYPE "$disk" | tr '\\n' ' ')"
  parts="$(lsblk -n -r -o NAME "$disk" | tail -n +2 | tr '\\n' ' ')"
  if [ -n "$sigs$parts" ]; then
    for name in $(lsblk -n -r -o NAME "$disk"); do
      if [ -n "$in_use" ] && grep -qxF "$name" <<<"$in_use"; then
        echo "disk $disk is in use by an imported ZFS pool ($name is listed by zpool status -P); refusing to create pool ${spec.pool} on it" >&2
        exit 1
      fi
    done
    if [ "$wipe" != 1 ]; then
      echo "disk $disk is not empty (signatures: \${sigs:-none}; partitions: \${parts:-none}); refusing to create pool ${spec.pool} on it. Wipe it yourself or set wipeDisksOnCreate: true on this pool" >&2
      exit 1
    fi
    wipefs -a "$disk"
    force=(-f)
  fi
done
${["zpool create", '"${force[@]}"', propertyOpts("-o", spec.poolOptions), propertyOpts("-O", spec.filesystemProperties), shellQuote(spec.pool), layout, ...spec.disks.map(shellQuote)].filter(Boolean).join(" ")}
`);
}

/**
 * One `zpool set` per pool property (zfs-2.3.4 man/man8/zpool-set.8: `zpool set property=value
 * pool`, one at a time), then one `zfs set` for the root file system's.
 */
export function renderPoolSet(pool: string, poolProps: Record<string, string>, fsProps: Record<string, string>): string {
  const lines = Object.entries(poolProps).map(([k, v]) => `zpool set ${shellQuote(`${k}=${v}`)} ${shellQuote(pool)}`);
  if (Object.keys(fsProps).length) lines.push(zfsSet(pool, fsProps));
  return renderScript(lines.join("\n"));
}

export function renderPoolDestroy(pool: string): string {
  return renderScript(`
pool=${shellQuote(pool)}
if zpool list -H -o name "$pool" >/dev/null 2>&1; then zpool destroy "$pool"; fi
`);
}

export interface PoolTopology {
  vdevType: string;
  disks: string[];
}

/**
 * Reads the data vdevs from `zpool status -P`: two spaces of indent per level below the pool;
 * a whole disk shows as its `-part1` partition, which we map back to the disk ZFS was given.
 */
export function parsePoolStatus(lines: string[]): PoolTopology {
  const header = lines.findIndex((l) => /^\s*NAME\s+STATE/.test(l));
  const kinds = new Set<string>();
  const disks: string[] = [];
  for (const line of lines.slice(header + 2)) {
    if (line.trim() === "") break;
    const m = /^\t( *)(\S+)/.exec(line);
    if (!m) break;
    const depth = m[1]!.length / 2;
    const name = m[2]!;
    if (depth === 0) break;
    if (depth === 1 && !name.startsWith("/")) kinds.add(name.replace(/-\d+$/, ""));
    else if (name.startsWith("/")) {
      if (depth === 1) kinds.add("disk");
      disks.push(name.replace(/-part\d+$/, ""));
    }
  }
  const only = [...kinds];
  const vdevType = only.length === 1 && only[0] === "disk" ? (disks.length === 1 ? "single" : "stripe") : only.sort().join("+");
  return { vdevType, disks: disks.sort() };
}

/** Sets `param=value` in the module's options lines, keeping every other line and parameter. */
export function mergeModprobeOption(conf: string, module: string, param: string, value: string | undefined): string {
  const lines = conf === "" ? [] : conf.replace(/\n$/, "").split("\n");
  let placed = value === undefined;
  const out: string[] = [];
  for (const line of lines) {
    const m = /^(\s*options\s+)(\S+)(.*)$/.exec(line);
    if (!m || m[2] !== module) {
      out.push(line);
      continue;
    }
    const words = m[3]!.trim().split(/\s+/).filter((w) => w !== "" && !w.startsWith(`${param}=`));
    if (!placed) {
      words.push(`${param}=${value}`);
      placed = true;
    }
    if (words.length > 0) out.push(`${m[1]}${module} ${words.join(" ")}`);
  }
  if (!placed) out.push(`options ${module} ${param}=${value}`);
  return out.length ? out.join("\n") + "\n" : "";
}

/** The value modprobe would use: the last occurrence wins. */
export function readModprobeOption(conf: string, module: string, param: string): string | undefined {
  let found: string | undefined;
  for (const line of conf.split("\n")) {
    const m = /^\s*options\s+(\S+)\s+(.*)$/.exec(line);
    if (!m || m[1] !== module) continue;
    for (const w of m[2]!.split(/\s+/)) if (w.startsWith(`${param}=`)) found = w.slice(param.length + 1);
  }
  return found;
}

export const ZFS_MODPROBE_CONF = "/etc/modprobe.d/zfs.conf";
const ARC_PARAM = (p: "zfs_arc_max" | "zfs_arc_min") => `/sys/module/zfs/parameters/${p}`;

/** Prints the current zfs.conf (`file` line), `runtime <bytes>`, `runtimemin <bytes>`, `memkb <MemTotal>` and `zfsroot yes|no`. */
export function renderArcProbe(): string {
  return renderScript(`
${readFiles([ZFS_MODPROBE_CONF])}
if [ ! -r "$R${ARC_PARAM("zfs_arc_max")}" ]; then echo "the zfs module is not loaded ($R${ARC_PARAM("zfs_arc_max")} missing); install zfsutils-linux or load zfs" >&2; exit 1; fi
echo "runtime $(cat "$R${ARC_PARAM("zfs_arc_max")}")"
echo "runtimemin $(cat "$R${ARC_PARAM("zfs_arc_min")}")"
echo "memkb $(awk '/^MemTotal:/ {print $2; exit}' "$R/proc/meminfo")"
if grep -q 'root=ZFS=' "$R/proc/cmdline"; then echo "zfsroot yes"; else echo "zfsroot no"; fi
`);
}

/**
 * Writes the merged zfs.conf and the runtime limits. With root on ZFS the module loads from the
 * initramfs, so the persisted value only takes effect at boot after the initramfs is rebuilt.
 * At runtime every write re-runs arc_tuning_update, which ignores a zfs_arc_min above the current
 * maximum and a zfs_arc_max not above the current minimum (openzfs zfs-2.3.4 module/zfs/arc.c,
 * arc_tuning_update): the minimum goes first (pve-docs local-zfs.adoc writes zfs_arc_min, then
 * zfs_arc_max), and once more after the maximum in case it was above the old maximum.
 */
export function renderArcApply(conf: string, runtime: { maxBytes: number; minBytes: number }, zfsRoot: boolean): string {
  const min = runtime.minBytes > 0 ? `echo ${runtime.minBytes} > "$R${ARC_PARAM("zfs_arc_min")}"` : ":";
  return renderScript(`
changes="$(
${conf === "" ? removeFile(ZFS_MODPROBE_CONF) : writeFileIfChanged(ZFS_MODPROBE_CONF, conf)}
)"
if [ -n "$changes" ]; then echo "$changes"; fi
${zfsRoot ? 'if [ -n "$changes" ]; then update-initramfs -u -k all; fi' : ""}
if [ "$(cat "$R${ARC_PARAM("zfs_arc_max")}")" != ${runtime.maxBytes} ]${runtime.minBytes > 0 ? ` || [ "$(cat "$R${ARC_PARAM("zfs_arc_min")}")" != ${runtime.minBytes} ]` : ""}; then
  ${min}
  echo ${runtime.maxBytes} > "$R${ARC_PARAM("zfs_arc_max")}"
  ${min}
  echo "changed runtime"
fi
`);
}
