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

/** Seconds between tries of `apt-get update` while another apt holds the lists lock. */
const UPDATE_RETRY_SECONDS = 5;

/**
 * `apt-get update <options>` that waits for the lists lock. apt-get update ignores DPkg::Lock::Timeout:
 * apt-pkg/update.cc ListUpdate takes /var/lib/apt/lists/lock through pkgAcquire::GetLock
 * (apt-pkg/acquire.cc), a single fcntl(F_SETLK) try (apt-pkg/contrib/fileutl.cc GetLock) that fails
 * with "Could not get lock …" and "Unable to lock directory /var/lib/apt/lists/" (same in apt 2.6.1,
 * 3.0.3 and 3.1.12). So it is retried, in the C locale so the message can be recognised, only while
 * that is the failure and for at most APT_LOCK_TIMEOUT_SECONDS; any other failure fails at once with
 * apt-get's own output. A subshell, so it has one exit status in `&&` lists and under `set -e`.
 * `indent` is put before every line after the first, for nesting in a block.
 */
export function aptGetUpdate(options = "", indent = ""): string {
  if (!/^(-[a-z]+( |$))*$/.test(options)) throw new Error(`apt-get update options ${JSON.stringify(options)}: only short flags such as -qq`);
  const tries = Math.ceil(APT_LOCK_TIMEOUT_SECONDS / UPDATE_RETRY_SECONDS);
  const update = `${APT_GET} update${options ? ` ${options}` : ""}`;
  const text = `(
  # apt-get update does not wait for /var/lib/apt/lists/lock (DPkg::Lock::Timeout covers dpkg's locks only)
  for _ in $(seq ${tries}); do
    if out="$(LC_ALL=C ${update} 2>&1)"; then
      if [ -n "$out" ]; then printf '%s\\n' "$out"; fi
      exit 0
    fi
    case "$out" in *"Unable to lock directory "*) sleep ${UPDATE_RETRY_SECONDS} ;; *) break ;; esac
  done
  printf '%s\\n' "$out" >&2
  exit 100
)`;
  return text.replace(/\n/g, `\n${indent}`);
}
