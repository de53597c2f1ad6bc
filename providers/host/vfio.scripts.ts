import { readFiles, removeFile, renderScript, writeFileIfChanged } from "../ssh/script";
import { SECURE_BOOT_PROBE } from "./secure-boot";

export const FILES = {
  kernelCmdline: "/etc/kernel/cmdline",
  grub: "/etc/default/grub",
  vfio: "/etc/modprobe.d/vfio.conf",
  modules: "/etc/modules-load.d/vfio.conf",
};

export type BootLoader = "systemd-boot" | "grub-proxmox-boot-tool" | "grub";

/**
 * Prints the facts the plan needs: `cpu`, `kernel`, `boot`, `secureboot`, `running` (the booted
 * command line), the managed files, `blacklist <file>:<line>` for nvidia blacklists and
 * `pci <addr> <id> <driver>`. systemd-boot is what a ZFS-root UEFI install uses; proxmox-boot-tool
 * can also manage GRUB on legacy-BIOS ZFS installs; anything else is plain GRUB. With Secure Boot
 * on, GRUB boots even where systemd-boot stays on the ESP (pve-docs system-booting.adoc: "For EFI
 * systems with Secure Boot enabled, GRUB is used"; "The old systemd-boot bootloader will be kept,
 * but GRUB will be preferred"): the plan then writes /etc/default/grub.
 */
export function renderVfioProbe(): string {
  return renderScript(`
echo "cpu $(awk -F': ' '/^vendor_id/ {print $2; exit}' "$R/proc/cpuinfo")"
echo "kernel $(uname -r)"
boot=grub
if [ -f "$R/etc/kernel/proxmox-boot-uuids" ] && command -v proxmox-boot-tool >/dev/null; then
  if status="$(proxmox-boot-tool status 2>/dev/null)"; then
    if grep -q 'configured with: uefi' <<<"$status" && [ -d "$R/sys/firmware/efi" ]; then boot=systemd-boot; else boot=grub-proxmox-boot-tool; fi
  fi
fi
echo "boot $boot"
${SECURE_BOOT_PROBE}
echo "running $(cat "$R/proc/cmdline")"
${readFiles(Object.values(FILES))}
for f in "$R"/etc/modprobe.d/*.conf; do
  [ -f "$f" ] || continue
  grep -n -E '^[[:space:]]*blacklist[[:space:]]+nvidia' "$f" | sed "s|^|blacklist \${f#"$R"}:|" || true
done
lspci -Dn | while read -r addr _class id _rest; do
  driver=-
  if [ -L "$R/sys/bus/pci/devices/$addr/driver" ]; then driver="$(basename "$(readlink "$R/sys/bus/pci/devices/$addr/driver")")"; fi
  echo "pci $addr $id $driver"
done
`);
}

export interface VfioApply {
  boot: BootLoader;
  /** New content per managed file; undefined removes the file. Only files that differ are given. */
  files: Partial<Record<keyof typeof FILES, string | undefined>>;
}

/** Writes the files, then rebuilds the initramfs (modules, vfio ids) and the boot entries (command line). */
export function renderVfioApply(plan: VfioApply): string {
  const write = (key: keyof typeof FILES) => {
    if (!(key in plan.files)) return ":";
    const content = plan.files[key];
    return content === undefined ? removeFile(FILES[key]) : writeFileIfChanged(FILES[key], content);
  };
  const refresh = plan.boot === "grub" ? "update-grub" : "proxmox-boot-tool refresh";
  return renderScript(`
initramfs="$(
${write("vfio")}
${write("modules")}
)"
cmdline="$(
${write(plan.boot === "systemd-boot" ? "kernelCmdline" : "grub")}
)"
if [ -n "$initramfs" ]; then echo "$initramfs"; update-initramfs -u -k all; fi
if [ -n "$cmdline" ]; then echo "$cmdline"; ${refresh}; fi
`);
}
