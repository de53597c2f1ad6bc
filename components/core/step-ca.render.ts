/**
 * Step-CA's files (LXC 103): the internal PKI. The root and intermediate are
 * created once inside the guest and never re-created; their keys and the admin
 * provisioner's password never leave it. Pure: typed config in, text out.
 */
import * as crypto from "node:crypto";
import { renderHostsBlock } from "../render/hosts";
import { sandboxLines } from "../render/systemd-sandbox";
import { fileList, shQuote, type RenderedFile } from "../render/files";
import { renderAptEnsure, renderInstallScript, renderReleaseInstalls, type PinnedRelease } from "../render/install-script";
import { acmeNames, caDnsNames, guestIp, guestOfRole, internalHosts, ownCertificateName, type RoutingConfig } from "../../stacks/routing";

/** STEPPATH: the guest's mount of the secret step-ca dataset. */
export const STEP_PATH = "/etc/step-ca";
/** The password the CA's keys are encrypted with (0600, the CA user's): phoenix:stepCaPassword once the install has run. */
export const STEP_CA_PASSWORD_FILE = `${STEP_PATH}/secrets/password`;
/** Where the install script first writes phoenix:stepCaPassword, to compare it with the one the keys have. */
export const STEP_CA_NEW_PASSWORD_FILE = `${STEP_PATH}/secrets/password.new`;
/** The CA's private keys, encrypted with the password. */
const CA_KEYS = [`${STEP_PATH}/secrets/root_ca_key`, `${STEP_PATH}/secrets/intermediate_ca_key`] as const;
const MARKER = `${STEP_PATH}/.phoenix-initialised`;
const ROOT_CERT = `${STEP_PATH}/certs/root_ca.crt`;
const UNIT = "/etc/systemd/system/step-ca.service";
/** The ACME provisioner `step ca init --acme` creates. */
const ACME_PROVISIONER = "acme";
/** The line the CA's install prints before its outputs. */
export const STEP_CA_OUTPUT_BEGIN = "----- phoenix step-ca outputs -----";
const OUTPUT_BEGIN = STEP_CA_OUTPUT_BEGIN;
const OUTPUT_END = "----- end phoenix step-ca outputs -----";

function caGuest(config: RoutingConfig) {
  return guestOfRole(config, "step-ca");
}

/** The CA's service user: the owner the stack gives the mount holding its keys. */
function serviceUser(config: RoutingConfig): { uid: number; gid: number } {
  const guest = caGuest(config);
  const mount = guest.kind === "lxc" ? guest.mounts.find((m) => m.path === STEP_PATH) : undefined;
  return { uid: mount?.uid ?? 1000, gid: mount?.gid ?? 1000 };
}

export interface StepCaEndpoints {
  caUrl: string;
  /**
   * The CA by its address, which its certificate carries (step ca init --dns <ip>): for guests
   * that have no /etc/hosts entry for its name (the Docker VMs, whose /etc/hosts cloud-init's
   * manage_etc_hosts rewrites at boot) and cannot count on LAN DNS. ACME links follow the
   * request's Host (smallstep/certificates v0.28.4 acme/linker.go: newBaseURLContext takes
   * https://<r.Host>, and GetLink uses it before the CA's own name), so
   * the whole ACME exchange stays on the address.
   */
  caUrlByAddress: string;
  acmeDirectoryUrl: string;
  /** Names and address the CA's own certificate covers. */
  dnsNames: string[];
  address: string;
}

export function stepCaEndpoints(config: RoutingConfig): StepCaEndpoints {
  const guest = caGuest(config);
  const names = caDnsNames(config, guest.role);
  const caUrl = `https://${names[0]}:${guest.role.port}`;
  const address = guestIp(guest);
  return { caUrl, caUrlByAddress: `https://${address}:${guest.role.port}`, acmeDirectoryUrl: `${caUrl}/acme/${ACME_PROVISIONER}/directory`, dnsNames: [...names, address], address };
}

/** SHA-256 digests of the release archives; without them the releases' published checksums files are the reference. */
export interface StepReleaseDigests {
  stepCa?: string;
  stepCli?: string;
}

export function stepCaRelease(config: RoutingConfig, sha256?: string): PinnedRelease {
  const v = caGuest(config).role.version;
  const base = `https://github.com/smallstep/certificates/releases/download/v${v}`;
  return { name: "step-ca", version: v, url: `${base}/step-ca_linux_${v}_amd64.tar.gz`, ...(sha256 ? { sha256 } : { checksumsUrl: `${base}/checksums.txt` }), binary: "step-ca", installAs: "/usr/local/bin/step-ca" };
}

/** The step CLI, at the version the CA role pins: the CA guest and the gateway both use it. */
export function stepCliRelease(config: RoutingConfig, sha256?: string): PinnedRelease {
  const v = caGuest(config).role.cliVersion;
  const base = `https://github.com/smallstep/cli/releases/download/v${v}`;
  return { name: "step-cli", version: v, url: `${base}/step_linux_${v}_amd64.tar.gz`, ...(sha256 ? { sha256 } : { checksumsUrl: `${base}/checksums.txt` }), binary: "step", installAs: "/usr/local/bin/step" };
}

export function renderStepCaUnit(config: RoutingConfig): RenderedFile {
  const role = caGuest(config).role;
  const privileged = role.port < 1024;
  return {
    path: UNIT,
    // The version is in the unit so that a new release restarts the service.
    content: `[Unit]
Description=step-ca ${role.version} (Phoenix internal CA)
After=network-online.target
Wants=network-online.target
ConditionPathExists=${MARKER}

[Service]
User=step
Group=step
Environment=STEPPATH=${STEP_PATH}
ExecStart=/usr/local/bin/step-ca ${STEP_PATH}/config/ca.json --password-file ${STEP_CA_PASSWORD_FILE}
Restart=on-failure
RestartSec=5s
${privileged ? "AmbientCapabilities=CAP_NET_BIND_SERVICE\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE" : "CapabilityBoundingSet="}
NoNewPrivileges=true
${sandboxLines(caGuest(config), { readWritePaths: [`${STEP_PATH}/db`] }).map((l) => `${l}\n`).join("")}
[Install]
WantedBy=multi-user.target
`,
  };
}

/**
 * The CA's service user, with the uid and gid its key mount is owned by. Either may already
 * be taken in the template (Ubuntu images since 23.04 have a user `ubuntu` with uid 1000 — unverified
 * for Proxmox's ubuntu-24.04-standard template, so the script checks rather than assumes), and a
 * `step` made earlier with other ids would not own the keys: both are refused with the fix
 * rather than failing inside groupadd or running the CA as the wrong owner.
 */
export function renderStepUser(config: RoutingConfig): string {
  const { uid, gid } = serviceUser(config);
  const fix = `set the uid/gid of the guest's ${STEP_PATH} mount to free ones`;
  return `if ! getent group step >/dev/null; then
  if taken=$(getent group ${gid}); then echo "step-ca: gid ${gid} is already group \${taken%%:*} in the guest; ${fix}" >&2; exit 1; fi
  groupadd --gid ${gid} step
fi
if ! id step >/dev/null 2>&1; then
  if taken=$(getent passwd ${uid}); then echo "step-ca: uid ${uid} is already user \${taken%%:*} in the guest; ${fix}" >&2; exit 1; fi
  useradd --uid ${uid} --gid ${gid} --home-dir ${STEP_PATH} --no-create-home --shell /usr/sbin/nologin step
fi
if [ "$(id -u step)" != ${uid} ] || [ "$(getent group step | cut -d: -f3)" != ${gid} ]; then
  echo "step-ca: the guest's user step is not uid ${uid} / gid ${gid}, which own ${STEP_PATH}; fix the user or the mount's uid/gid" >&2
  exit 1
fi`;
}

export function renderStepCaFiles(config: RoutingConfig): RenderedFile[] {
  return fileList([renderStepCaUnit(config)]);
}

/**
 * Installs the pinned binaries, initialises the PKI when (and only when) none
 * exists, installs the unit, and prints the root certificate and its SHA-256
 * fingerprint between markers for parseStepCaOutput.
 */
export function renderStepCaInitScript(config: RoutingConfig, digests: StepReleaseDigests = {}, password?: string): string {
  const role = caGuest(config).role;
  const ep = stepCaEndpoints(config);
  const asStep = "runuser -u step -- env STEPPATH=" + STEP_PATH;
  const init = `# The PKI is created once. A half-made one (keys without the marker) is left for a human to look at, never overwritten.
if [ ! -e ${MARKER} ]; then
  if [ -e ${ROOT_CERT} ] || [ -e ${STEP_PATH}/config/ca.json ]; then
    echo "step-ca: ${STEP_PATH} holds a PKI that Phoenix did not finish initialising; inspect it, and remove it only if nothing was issued from it" >&2
    exit 1
  fi
  cd ${STEP_PATH}
  ${asStep} step ca init --deployment-type standalone --name ${shQuote(role.rootName)} \\
    ${ep.dnsNames.map((d) => `--dns ${shQuote(d)}`).join(" ")} --address ${shQuote(`:${role.port}`)} \\
    --provisioner ${shQuote(role.provisioner)} --password-file ${STEP_CA_PASSWORD_FILE} --provisioner-password-file ${STEP_CA_PASSWORD_FILE} --acme
  # step ca init derives both CA names from --name; Phoenix names them from the config, so they are replaced before first use.
  ${asStep} step certificate create ${shQuote(role.rootName)} certs/root_ca.crt secrets/root_ca_key \\
    --profile root-ca --not-after 87600h --password-file ${STEP_CA_PASSWORD_FILE} --force
  ${asStep} step certificate create ${shQuote(role.intermediateName)} certs/intermediate_ca.crt secrets/intermediate_ca_key \\
    --profile intermediate-ca --not-after 43800h --ca certs/root_ca.crt --ca-key secrets/root_ca_key \\
    --ca-password-file ${STEP_CA_PASSWORD_FILE} --password-file ${STEP_CA_PASSWORD_FILE} --force
  fingerprint=$(step certificate fingerprint certs/root_ca.crt)
  printf '{\\n  "ca-url": "%s",\\n  "ca-config": "%s",\\n  "fingerprint": "%s",\\n  "root": "%s"\\n}\\n' \\
    ${shQuote(ep.caUrl)} ${STEP_PATH}/config/ca.json "$fingerprint" ${ROOT_CERT} >config/defaults.json
  chown step:step config/defaults.json
  chmod -R go-rwx ${STEP_PATH}/secrets
  touch ${MARKER}
  cd /
fi`;

  return renderInstallScript({
    name: "step-ca",
    description: "Step-CA: pinned binaries, one-time PKI initialisation, systemd unit, root certificate output",
    prepare: `${renderAptEnsure(["curl", "ca-certificates", "jq"])}
${renderHostsBlock(internalHosts(config, "step-ca"))}
${renderStepUser(config)}
${renderReleaseInstalls([stepCaRelease(config, digests.stepCa), stepCliRelease(config, digests.stepCli)])}
install -d -m 0700 -o step -g step ${STEP_PATH} ${STEP_PATH}/secrets
${password === undefined ? "" : `${renderStepCaPasswordFile(password)}
`}${renderStepCaPasswordRotation(config)}
if [ ! -s ${STEP_CA_PASSWORD_FILE} ]; then
  echo "step-ca: ${STEP_CA_PASSWORD_FILE} is missing; the installer writes phoenix:stepCaPassword there before this script runs" >&2
  exit 1
fi
chown step:step ${STEP_CA_PASSWORD_FILE}
chmod 0600 ${STEP_CA_PASSWORD_FILE}
${init}
${renderStepCaPolicy(config)}`,
    files: renderStepCaFiles(config),
    reload: `systemctl daemon-reload
systemctl enable --quiet step-ca
systemctl restart step-ca`,
    verify: `curl -fsS --max-time 3 --cacert ${ROOT_CERT} --resolve ${ep.dnsNames[0]}:${role.port}:127.0.0.1 https://${ep.dnsNames[0]}:${role.port}/health >/dev/null`,
    finish: `systemctl enable --now --quiet step-ca
echo ${shQuote(OUTPUT_BEGIN)}
echo "fingerprint=$(step certificate fingerprint ${ROOT_CERT})"
cat ${ROOT_CERT}
echo ${shQuote(OUTPUT_END)}`,
  });
}

export interface StepCaOutputs {
  rootPem: string;
  /** SHA-256 of the root certificate's DER, lower-case hex. */
  fingerprint: string;
}

/** The block the init script prints, as `parseStepCaOutput` reads it: for stand-ins of the CA guest (offline synth, tests). */
export function formatStepCaOutput(rootPem: string): string {
  const fingerprint = new crypto.X509Certificate(rootPem).fingerprint256.replace(/:/g, "").toLowerCase();
  return `${OUTPUT_BEGIN}\nfingerprint=${fingerprint}\n${rootPem.endsWith("\n") ? rootPem : `${rootPem}\n`}${OUTPUT_END}\n`;
}

/** Reads the outputs the init script printed; refuses a fingerprint that does not belong to the certificate. */
export function parseStepCaOutput(stdout: string): StepCaOutputs {
  const start = stdout.lastIndexOf(OUTPUT_BEGIN);
  const end = stdout.indexOf(OUTPUT_END, start);
  if (start < 0 || end < 0) throw new Error("the step-ca init script printed no outputs: check its log in the guest");
  const block = stdout.slice(start + OUTPUT_BEGIN.length, end);
  const fp = /^fingerprint=([0-9a-f]{64})$/m.exec(block)?.[1];
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(block)?.[0];
  if (!fp || !pem) throw new Error("the step-ca outputs lack the root fingerprint or certificate");
  const actual = new crypto.X509Certificate(pem).fingerprint256.replace(/:/g, "").toLowerCase();
  if (actual !== fp) throw new Error(`the printed root fingerprint ${fp} is not that of the printed certificate (${actual})`);
  return { rootPem: `${pem}\n`, fingerprint: fp };
}

/**
 * Writes phoenix:stepCaPassword where only root can read it, beside the password the keys
 * have, for renderStepCaPasswordRotation to compare. It travels on the script's stdin, never
 * as a command-line argument.
 */
function renderStepCaPasswordFile(password: string): string {
  if (password.split("\n").includes("PHOENIX_PASSWORD")) throw new Error("phoenix:stepCaPassword contains the line PHOENIX_PASSWORD, which the installer uses as its delimiter; choose another password");
  return `(umask 077 && cat > ${STEP_CA_NEW_PASSWORD_FILE} <<'PHOENIX_PASSWORD'
${password}
PHOENIX_PASSWORD
)`;
}

/**
 * The CA's issuance policy (ca.json authority.policy, smallstep/certificates v0.28.4
 * authority/config/config.go AuthConfig.Policy, authority/policy/options.go): x509 certificates
 * only for exactly the names Phoenix's guests ask for and the addresses their certificates
 * carry. Once any name is allowed, every other name is refused, the subject's common name
 * included (authority/policy/policy.go enables common-name verification; policy/validate.go).
 * DNS entries are exact names: a domain constraint matches its own label count only (a
 * leading "." or "*." one label more; policy/validate.go matchDomainConstraint). ACME, JWK and
 * renewals all pass through it. No ssh section: the CA issues no SSH certificates.
 */
export function stepCaPolicy(config: RoutingConfig): { x509: { allow: { dns: string[]; ip: string[] } } } {
  const ep = stepCaEndpoints(config);
  const dns = new Set([...caDnsNames(config, caGuest(config).role), ...acmeNames(config).map((n) => n.name)].map((n) => n.toLowerCase()));
  const ip = new Set([`${ep.address}/32`, ...config.guests.filter((g) => ownCertificateName(config, g) !== undefined).map((g) => `${guestIp(g)}/32`)]);
  return { x509: { allow: { dns: [...dns].sort(), ip: [...ip].sort() } } };
}

/**
 * Puts the policy into ca.json on every install (routes and services come and go), and
 * restarts a running step-ca when it changed: the CA reads ca.json at start.
 */
export function renderStepCaPolicy(config: RoutingConfig): string {
  const ca = `${STEP_PATH}/config/ca.json`;
  return `policy=${shQuote(JSON.stringify(stepCaPolicy(config)))}
jq --argjson policy "$policy" '.authority.policy = $policy' ${ca} >${ca}.phoenix
if cmp -s ${ca}.phoenix ${ca}; then
  rm -f ${ca}.phoenix
else
  chown step:step ${ca}.phoenix
  chmod 0600 ${ca}.phoenix
  mv -f ${ca}.phoenix ${ca}
  echo "step-ca: issuance policy updated"
  systemctl try-restart step-ca
fi`;
}

/**
 * A changed phoenix:stepCaPassword re-encrypts the CA's keys instead of locking step-ca out of
 * them: step-ca decrypts the intermediate key with --password-file at every start
 * (smallstep/certificates v0.28.4 authority/authority.go), so a new password file beside keys
 * still under the old one fails the next restart. The old password is the one in the guest's
 * password file (Pulumi keeps no earlier value a script could read). Each key is re-encrypted
 * with `step crypto change-pass <key> --password-file <old> --new-password-file <new> --out <file>`
 * (smallstep/cli v0.28.7 command/crypto/change-pass.go; it writes a PEM key 0644, hence the chmod,
 * and prompts when a flag is missing, hence stdin from /dev/null), then moved into place; a key
 * the new password already opens was done by an interrupted run. The admin (JWK) provisioner gets
 * a new key pair under the new password (`step ca provisioner update --create`, command/ca/provisioner/update.go,
 * ca.json edited in place since the admin API is off); nothing Phoenix runs signs with it. The
 * password file is replaced last. When neither password opens a key, nothing changes and the
 * script stops with the procedure.
 */
export function renderStepCaPasswordRotation(config: RoutingConfig): string {
  const role = caGuest(config).role;
  const asStep = `runuser -u step -- env STEPPATH=${STEP_PATH}`;
  const changePass = (from: string) => `${asStep} step crypto change-pass "$key" --password-file ${from} --new-password-file ${STEP_CA_NEW_PASSWORD_FILE} --out "$key.rotated" </dev/null >/dev/null 2>&1`;
  return `if [ -e ${STEP_CA_NEW_PASSWORD_FILE} ]; then
  chown step:step ${STEP_CA_NEW_PASSWORD_FILE}
  if [ ! -e ${MARKER} ]; then
    mv -f ${STEP_CA_NEW_PASSWORD_FILE} ${STEP_CA_PASSWORD_FILE}
  elif cmp -s ${STEP_CA_NEW_PASSWORD_FILE} ${STEP_CA_PASSWORD_FILE}; then
    rm -f ${STEP_CA_NEW_PASSWORD_FILE}
  else
    echo "step-ca: phoenix:stepCaPassword changed; re-encrypting the CA's keys with it"
    for key in ${CA_KEYS.join(" ")}; do
      rm -f "$key.rotated"
      if { [ -s ${STEP_CA_PASSWORD_FILE} ] && ${changePass(STEP_CA_PASSWORD_FILE)}; } || ${changePass(STEP_CA_NEW_PASSWORD_FILE)}; then
        chmod 0600 "$key.rotated"
      else
        rm -f "$key.rotated" ${STEP_CA_NEW_PASSWORD_FILE}
        echo "step-ca: neither the password in ${STEP_CA_PASSWORD_FILE} nor phoenix:stepCaPassword decrypts $key; nothing was changed. Set phoenix:stepCaPassword back to the password the CA's keys are encrypted with and run pulumi up; then set the new one and run pulumi up again, which re-encrypts them" >&2
        exit 1
      fi
    done
    for key in ${CA_KEYS.join(" ")}; do mv -f "$key.rotated" "$key"; done
    ${asStep} step ca provisioner update ${shQuote(role.provisioner)} --create --password-file ${STEP_CA_NEW_PASSWORD_FILE} --ca-config ${STEP_PATH}/config/ca.json </dev/null >/dev/null
    mv -f ${STEP_CA_NEW_PASSWORD_FILE} ${STEP_CA_PASSWORD_FILE}
    # step-ca holds the old key in memory; restarting now proves the new password opens it.
    systemctl try-restart step-ca
  fi
fi`;
}
