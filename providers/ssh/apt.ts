/**
 * The one way Phoenix's scripts run apt-get. On a node (and in a fresh guest) several installs run
 * at once (the NVIDIA driver, exporters, Alloy, sanoid, the NFS server, template layers), and
 * cloud-init's package step or unattended-upgrades may hold apt's locks: a plain apt-get fails at
 * once with "Could not get lock /var/lib/dpkg/lock-frontend". Every renderer (node, containers, VM
 * user data) uses APT_GET or aptGetUpdate, and test/render/apt-lock.test.ts fails on any other.
 * Here in providers/ssh so that providers (NVIDIA, template layers) and components share it.
 */

/** How long an apt-get waits for another apt to let go of its locks (apt 2.6.1 default for `apt-get`: 0, no wait). */
export const APT_LOCK_TIMEOUT_SECONDS = 600;

/**
 * apt-get waiting up to APT_LOCK_TIMEOUT_SECONDS for dpkg's locks. Debian/apt 2.6.1 (Debian 12, PVE 8),
 * 2.7.14 (Ubuntu 24.04) and 3.0.3 (Debian 13, PVE 9), apt-pkg/deb/debsystem.cc: debSystem::Lock reads
 * `DPkg::Lock::Timeout` (default 0) and GetLockMaybeWait retries /var/lib/dpkg/lock-frontend, then
 * /var/lib/dpkg/lock, once a second for that many seconds (apt-pkg/cachefile.cc opens the cache with
 * that lock for install, remove, upgrade and download-only). Only the `apt` binary defaults it to 120
 * (apt-private/private-cmndline.cc), never apt-get. It does not cover `apt-get update`: see aptGetUpdate.
 */
export const APT_GET = `apt-get -o DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT_SECONDS}`;

/** Seconds between tries of a command while another apt or dpkg holds the lock it needs. */
const LOCK_RETRY_SECONDS = 5;

/**
 * A subshell running `command` (in the C locale, so the message can be recognised) until it
 * succeeds, retrying only while its output says `lockMessage`, for at most APT_LOCK_TIMEOUT_SECONDS;
 * any other failure fails at once with the command's own output. One exit status in `&&` lists
 * and under `set -e`. POSIX sh. `indent` is put before every line after the first.
 */
function retryWhileLocked(comment: string, command: string, lockMessage: string, indent: string): string {
  const tries = Math.ceil(APT_LOCK_TIMEOUT_SECONDS / LOCK_RETRY_SECONDS);
  const text = `(
  # ${comment}
  for _ in $(seq ${tries}); do
    if out="$(LC_ALL=C ${command} 2>&1)"; then
      if [ -n "$out" ]; then printf '%s\\n' "$out"; fi
      exit 0
    fi
    case "$out" in *"${lockMessage}"*) sleep ${LOCK_RETRY_SECONDS} ;; *) break ;; esac
  done
  printf '%s\\n' "$out" >&2
  exit 100
)`;
  return text.replace(/\n/g, `\n${indent}`);
}

/**
 * `apt-get update <options>` that waits for the lists lock. apt-get update ignores DPkg::Lock::Timeout:
 * apt-pkg/update.cc ListUpdate takes /var/lib/apt/lists/lock through pkgAcquire::GetLock
 * (apt-pkg/acquire.cc), a single fcntl(F_SETLK) try (apt-pkg/contrib/fileutl.cc GetLock) that fails
 * with "Could not get lock …" and "Unable to lock directory /var/lib/apt/lists/" (same in apt 2.6.1,
 * 3.0.3 and 3.1.12). So it is retried while that is the failure (retryWhileLocked).
 */
export function aptGetUpdate(options = "", indent = ""): string {
  if (!/^(-[a-z]+( |$))*$/.test(options)) throw new Error(`apt-get update options ${JSON.stringify(options)}: only short flags such as -qq`);
  const update = `${APT_GET} update${options ? ` ${options}` : ""}`;
  return retryWhileLocked("apt-get update does not wait for /var/lib/apt/lists/lock (DPkg::Lock::Timeout covers dpkg's locks only)", update, "Unable to lock directory ", indent);
}

/** A Debian package name (Debian Policy 5.6.1), optionally with an architecture qualifier. */
const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$/;

/**
 * `apt-mark hold <packages>` that waits for dpkg's locks. apt-mark takes no lock and reads no
 * DPkg::Lock::Timeout: Debian/apt 2.7.14 (Ubuntu 24.04) cmdline/apt-mark.cc DoSelection saves the
 * selections through APT::StateChanges::Save (apt-pkg/statechanges.cc), which pipes them to
 * `dpkg --set-selections`, and dpkg takes /var/lib/dpkg/lock-frontend and /var/lib/dpkg/lock with a
 * single fcntl(F_SETLK) each. While another apt or dpkg (cloud-init's package step,
 * unattended-upgrades) holds them, dpkg fails at once with "dpkg frontend lock was locked by another
 * process with pid N" (or "dpkg database lock …"), and apt-mark exits 100 (seen with apt 2.6.1 and
 * dpkg 1.21.22, test/render/apt-lock.test.ts). So it is retried while that is the failure.
 */
export function aptMarkHold(packages: readonly string[], indent = ""): string {
  const bad = packages.filter((p) => !PACKAGE_NAME.test(p));
  if (packages.length === 0 || bad.length > 0) throw new Error(`apt-mark hold: ${packages.length === 0 ? "no packages" : `not package names: ${bad.map((p) => JSON.stringify(p)).join(", ")}`}`);
  return retryWhileLocked("apt-mark hold does not wait for dpkg's locks (it runs dpkg --set-selections, which tries once)", `apt-mark hold ${packages.join(" ")}`, " was locked by another process", indent);
}
