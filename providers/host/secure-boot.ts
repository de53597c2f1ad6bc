/**
 * UEFI Secure Boot as the host tools report it. With Secure Boot on, the kernel loads only modules
 * signed by a trusted key; modules built by DKMS are signed with DKMS's own key, which must be
 * enrolled as a Machine Owner Key (pve-docs 9.1.3 system-booting.adoc, "Using DKMS/Third Party
 * Modules With Secure Boot").
 */

/** The certificate `dkms` generates and signs its modules with (pve-docs system-booting.adoc). */
export const DKMS_MOK = "/var/lib/dkms/mok.pub";

/**
 * Prints `secureboot <first line of mokutil --sb-state>`. mokutil (src/mokutil.c, print_sb_state)
 * prints "SecureBoot enabled" or "SecureBoot disabled" and exits 1 when disabled, so the status is
 * not the verdict; no mokutil (or no EFI) prints nothing after the key.
 */
export const SECURE_BOOT_PROBE = `echo "secureboot $(mokutil --sb-state 2>/dev/null | head -n 1 || true)"`;

/**
 * Prints `mok missing`, or `mok <mokutil --test-key output>`. mokutil's test_key prints
 * "<file> is already enrolled" (exit 1) or "<file> is not enrolled" (exit 0); a key waiting in
 * MokNew for the next boot's MOKManager also counts as "already enrolled".
 */
export const DKMS_MOK_PROBE = `if [ -e "$R${DKMS_MOK}" ]; then echo "mok $(mokutil --test-key "$R${DKMS_MOK}" 2>&1 || true)"; else echo "mok missing"; fi`;

export function secureBootEnabled(line: string | undefined): boolean {
  return (line ?? "").trim() === "SecureBoot enabled";
}

export type MokState = "enrolled" | "not-enrolled" | "missing";

export function mokState(line: string | undefined): MokState {
  if (line === undefined || line === "missing") return "missing";
  return /\bis already enrolled\s*$/.test(line.trim()) ? "enrolled" : "not-enrolled";
}

/** Why a DKMS module would not load under Secure Boot, and the procedure (pve-docs system-booting.adoc). */
export function mokRefusal(host: string, what: string, mok: MokState): string {
  const first = mok === "missing" ? `DKMS has no signing key yet (${DKMS_MOK} is missing)` : `DKMS's signing key ${DKMS_MOK} is not enrolled`;
  return (
    `${host}: Secure Boot is on and ${first}, so the kernel would refuse ${what}. Refusing to install it. ` +
    (mok === "missing" ? "Create the key with dkms generate_mok, then enroll it: " : "Enroll the key: ") +
    `mokutil --import ${DKMS_MOK} (choose a one-time password), reboot, confirm the key in MOKManager with that password, then run pulumi up again`
  );
}
