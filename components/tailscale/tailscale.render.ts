/**
 * The script that installs Tailscale from its own apt repository at a pinned version and joins
 * the tailnet with a pre-auth key. It runs inside a guest through the node (pct exec for a
 * container, the QEMU guest agent for a VM) with the script on stdin, never in user data: the key
 * is part of stdin only, written to a root-only file for `tailscale up --auth-key=file:` and
 * removed. Every value is shell-quoted.
 *
 * Upstream, read at tailscale v1.88.3 (the stack's pin):
 * - the key at https://pkgs.tailscale.com/stable/<distro>/<codename>.noarmor.gpg, installed as
 *   /usr/share/keyrings/tailscale-archive-keyring.gpg (scripts/installer.sh, apt "keyring" case, with
 *   OS=ubuntu|debian and VERSION=$VERSION_CODENAME). The list line
 *   `deb [signed-by=…] https://pkgs.tailscale.com/stable/<distro> <codename> main` is the one users
 *   quote from the `.tailscale-keyring.list` the installer fetches (unverified: that file is not in the repository).
 * - the key's fingerprint: Tailscale publishes none (tailscale/tailscale#13284 asks for it); this is the
 *   "Tailscale Inc. (Package repository signing key)" fingerprint dnf shows in that issue and public
 *   configurations pin. unverified against a vendor page, so a rotated key stops the join, never a foreign one.
 * - `--auth-key=file:<path>`: cmd/tailscale/cli/up.go upArgsT.getAuthKey reads the file and trims
 *   whitespace; `--reset` resets unspecified settings; tags are checked by tailcfg.CheckTag.
 * - the package's unit runs `tailscaled … --port=${PORT} $FLAGS` from EnvironmentFile /etc/default/tailscaled
 *   (cmd/tailscaled/tailscaled.service, tailscaled.defaults), and `--tun=userspace-networking` runs without
 *   TUN (cmd/tailscaled/tailscaled.go). The defaults file is a conffile (release/dist/unixpkgs/pkgs.go
 *   TypeConfigNoReplace) unchanged upstream since 2020.
 */
import { shellQuote } from "../../providers/ssh/script";
import { APT_GET, aptGetUpdate } from "../../providers/ssh/apt";
import { SECRET_PLACEHOLDER } from "../../stacks/engine";

export const TAILSCALE_APT_KEY_FINGERPRINT = "2596A99EAAB33821893C0A79458CA832957F5868";
const KEYRING = "/usr/share/keyrings/tailscale-archive-keyring.gpg";
/** How long `tailscale up` waits for the node to be Running before it fails. */
const UP_TIMEOUT = "300s";
/** Tailscale pre-auth keys: `tskey-auth-…`; refused otherwise, so the key is safe inside a quoted heredoc. */
export const TAILSCALE_KEY_RE = /^tskey-[A-Za-z0-9_-]+$/;

export interface TailscaleJoin {
  /** apt version of the tailscale package. */
  version: string;
  /** ubuntu or debian, and the release code name (noble, bookworm). */
  distro: "ubuntu" | "debian";
  codename: string;
  hostname: string;
  tags: string[];
  /**
   * tailscaled without a TUN device (`--tun=userspace-networking`), for an unprivileged container,
   * which has no /dev/net/tun; set through /etc/default/tailscaled, whose FLAGS the package's unit
   * passes to tailscaled (above).
   */
  userspace: boolean;
  /** Wait for cloud-init first (a VM's first boot installs its packages meanwhile). */
  waitForCloudInit: boolean;
}

export function renderTailscaleJoin(j: TailscaleJoin, authKey: string): string {
  if (!TAILSCALE_KEY_RE.test(authKey) && authKey !== SECRET_PLACEHOLDER) throw new Error("phoenix:tailscaleAuthKey must be a Tailscale pre-auth key (tskey-auth-…)");
  if (!/^[a-z]+$/.test(j.codename)) throw new Error(`tailscale: release code name ${JSON.stringify(j.codename)} must be lower-case letters`);
  const base = `https://pkgs.tailscale.com/stable/${j.distro}`;
  const tags = j.tags.map((t) => `tag:${t}`).join(",");
  // `--timeout`: without it `tailscale up` waits for the Running state forever (up.go: "default (0s) blocks
  // forever"), e.g. when the control server wants a new login after a tag change; a failed join beats a hung apply.
  const upArgs = `--hostname=${shellQuote(j.hostname)} --advertise-tags=${shellQuote(tags)} --timeout=${UP_TIMEOUT}`;
  return `#!/usr/bin/env bash
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
${j.waitForCloudInit ? "cloud-init status --wait >/dev/null || true\n" : ""}if ! command -v gpg >/dev/null; then ${aptGetUpdate("-q")} && ${APT_GET} install -y -q gpg curl ca-certificates; fi
key=$(mktemp)
curl -fsSL -o "$key" ${shellQuote(`${base}/${j.codename}.noarmor.gpg`)}
fpr=$(gpg --show-keys --with-colons "$key" | awk -F: '$1 == "fpr" { print $10; exit }')
if [ "$fpr" != ${shellQuote(TAILSCALE_APT_KEY_FINGERPRINT)} ]; then echo "tailscale: repository key $fpr is not the pinned one" >&2; rm -f "$key"; exit 1; fi
install -m 0644 "$key" ${KEYRING}
rm -f "$key"
printf '%s\\n' ${shellQuote(`deb [signed-by=${KEYRING}] ${base} ${j.codename} main`)} > /etc/apt/sources.list.d/tailscale.list
if [ "$(dpkg-query -W -f='\${Version}' tailscale 2>/dev/null || true)" != ${shellQuote(j.version)} ]; then
  ${aptGetUpdate("-q", "  ")}
  ${APT_GET} install -y -q --allow-change-held-packages tailscale=${shellQuote(j.version)}
  apt-mark hold tailscale
fi
${j.userspace ? `printf '%s\\n' 'PORT="41641"' 'FLAGS="--tun=userspace-networking"' > /etc/default/tailscaled\n` : ""}systemctl enable tailscaled
systemctl restart tailscaled
if tailscale status --json 2>/dev/null | grep -q '"BackendState": *"Running"'; then
  tailscale up --reset ${upArgs}
else
  umask 077
  keyfile=$(mktemp /run/phoenix-tailscale-key.XXXXXX)
  trap 'rm -f "$keyfile"' EXIT
  cat > "$keyfile" <<'PHOENIX_TAILSCALE_KEY'
${authKey}
PHOENIX_TAILSCALE_KEY
  tailscale up --auth-key="file:$keyfile" ${upArgs}
fi
`;
}
