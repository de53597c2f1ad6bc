/**
 * Step-CA's files (LXC 103): the internal PKI. The root and intermediate are
 * created once inside the guest and never re-created; their keys and the admin
 * provisioner's password never leave it. Pure: typed config in, text out.
 */
import * as crypto from "node:crypto";
import type { StackConfig } from "../../stacks/schema";
import { renderHostsBlock } from "../render/hosts";
import { sandboxLines } from "../render/systemd-sandbox";
import { fileList, shQuote, type RenderedFile } from "../render/files";
import { renderAptEnsure, renderInstallScript, renderReleaseInstalls, type PinnedRelease } from "../render/install-script";
import { caDnsNames, guestIp, guestOfRole, internalHosts } from "./routing";

/** STEPPATH: the guest's mount of the secret step-ca dataset. */
export const STEP_PATH = "/etc/step-ca";
/** Where the installer writes phoenix:stepCaPassword (0600, the CA user's) before running the init script. */
export const STEP_CA_PASSWORD_FILE = `${STEP_PATH}/secrets/password`;
const MARKER = `${STEP_PATH}/.phoenix-initialised`;
const ROOT_CERT = `${STEP_PATH}/certs/root_ca.crt`;
const UNIT = "/etc/systemd/system/step-ca.service";
/** The ACME provisioner `step ca init --acme` creates. */
const ACME_PROVISIONER = "acme";
/** The line the CA's install prints before its outputs. */
export const STEP_CA_OUTPUT_BEGIN = "----- phoenix step-ca outputs -----";
const OUTPUT_BEGIN = STEP_CA_OUTPUT_BEGIN;
const OUTPUT_END = "----- end phoenix step-ca outputs -----";

function caGuest(config: StackConfig) {
  return guestOfRole(config, "step-ca");
}

/** The CA's service user: the owner the stack gives the mount holding its keys. */
function serviceUser(config: StackConfig): { uid: number; gid: number } {
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
   * request's Host (smallstep/certificates v0.28.4 acme/linker.go, baseURLFromRequest), so
   * the whole ACME exchange stays on the address.
   */
  caUrlByAddress: string;
  acmeDirectoryUrl: string;
  /** Names and address the CA's own certificate covers. */
  dnsNames: string[];
  address: string;
}

export function stepCaEndpoints(config: StackConfig): StepCaEndpoints {
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

export function stepCaRelease(config: StackConfig, sha256?: string): PinnedRelease {
  const v = caGuest(config).role.version;
  const base = `https://github.com/smallstep/certificates/releases/download/v${v}`;
  return { name: "step-ca", version: v, url: `${base}/step-ca_linux_${v}_amd64.tar.gz`, ...(sha256 ? { sha256 } : { checksumsUrl: `${base}/checksums.txt` }), binary: "step-ca", installAs: "/usr/local/bin/step-ca" };
}

/** The step CLI, at the version the CA role pins: the CA guest and the gateway both use it. */
export function stepCliRelease(config: StackConfig, sha256?: string): PinnedRelease {
  const v = caGuest(config).role.cliVersion;
  const base = `https://github.com/smallstep/cli/releases/download/v${v}`;
  return { name: "step-cli", version: v, url: `${base}/step_linux_${v}_amd64.tar.gz`, ...(sha256 ? { sha256 } : { checksumsUrl: `${base}/checksums.txt` }), binary: "step", installAs: "/usr/local/bin/step" };
}

export function renderStepCaUnit(config: StackConfig): RenderedFile {
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

export function renderStepCaFiles(config: StackConfig): RenderedFile[] {
  return fileList([renderStepCaUnit(config)]);
}

/**
 * Installs the pinned binaries, initialises the PKI when (and only when) none
 * exists, installs the unit, and prints the root certificate and its SHA-256
 * fingerprint between markers for parseStepCaOutput.
 */
export function renderStepCaInitScript(config: StackConfig, digests: StepReleaseDigests = {}, password?: string): string {
  const role = caGuest(config).role;
  const ep = stepCaEndpoints(config);
  const user = serviceUser(config);
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
    prepare: `${renderAptEnsure(["curl", "ca-certificates"])}
${renderHostsBlock(internalHosts(config, "step-ca"))}
if ! getent group step >/dev/null; then groupadd --gid ${user.gid} step; fi
if ! id step >/dev/null 2>&1; then
  useradd --uid ${user.uid} --gid ${user.gid} --home-dir ${STEP_PATH} --no-create-home --shell /usr/sbin/nologin step
fi
${renderReleaseInstalls([stepCaRelease(config, digests.stepCa), stepCliRelease(config, digests.stepCli)])}
install -d -m 0700 -o step -g step ${STEP_PATH} ${STEP_PATH}/secrets
${password === undefined ? "" : `${renderStepCaPasswordFile(password)}
`}if [ ! -s ${STEP_CA_PASSWORD_FILE} ]; then
  echo "step-ca: ${STEP_CA_PASSWORD_FILE} is missing; the installer writes phoenix:stepCaPassword there before this script runs" >&2
  exit 1
fi
chown step:step ${STEP_CA_PASSWORD_FILE}
chmod 0600 ${STEP_CA_PASSWORD_FILE}
${init}`,
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
 * Writes the provisioner password where only root can read it until the lines
 * after it hand it to the step user. It travels on the script's stdin, never
 * as a command-line argument.
 */
function renderStepCaPasswordFile(password: string): string {
  if (password.split("\n").includes("PHOENIX_PASSWORD")) throw new Error("phoenix:stepCaPassword contains the line PHOENIX_PASSWORD, which the installer uses as its delimiter; choose another password");
  return `(umask 077 && cat > ${STEP_CA_PASSWORD_FILE} <<'PHOENIX_PASSWORD'
${password}
PHOENIX_PASSWORD
)`;
}
