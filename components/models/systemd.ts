/**
 * systemd unit text for the model servers. Command lines follow systemd's own
 * quoting (systemd.service(5), "Command lines"), not a shell's: there is no
 * shell between systemd and the engine, and `%` and `$` mean something to
 * systemd even inside quotes.
 */

// Characters systemd passes through unquoted and unexpanded in ExecStart.
const PLAIN_ARG_RE = /^[A-Za-z0-9_@+=:,./-]+$/;

/** One argv element, written so systemd hands the engine exactly `arg`. */
export function systemdQuote(arg: string): string {
  if (PLAIN_ARG_RE.test(arg)) return arg;
  const escaped = arg
    .replace(/\\/g, "\\\\")
    .replace(/"/g, '\\"')
    .replace(/\n/g, "\\n")
    .replace(/\t/g, "\\t")
    // Specifiers are expanded inside quotes too; variable references as well.
    .replace(/%/g, "%%")
    .replace(/\$/g, "$$$$");
  return `"${escaped}"`;
}

export function execLine(argv: readonly string[]): string {
  const [binary] = argv;
  if (binary === undefined || !binary.startsWith("/")) throw new Error(`ExecStart needs an absolute binary path, got ${binary ?? "nothing"}`);
  return argv.map(systemdQuote).join(" ");
}

export interface ServiceUnit {
  description: string;
  /** The dedicated user the engine runs as. */
  user: string;
  group: string;
  argv: readonly string[];
  /** Non-secret environment, in the unit itself. */
  environment?: Readonly<Record<string, string>>;
  /** Root-only file holding the secret environment (systemd reads it before dropping privileges). */
  environmentFile?: string;
  workingDirectory?: string;
}

const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function renderServiceUnit(unit: ServiceUnit): string {
  const env = Object.entries(unit.environment ?? {}).map(([name, value]) => {
    if (!ENV_NAME_RE.test(name)) throw new Error(`environment variable name '${name}' is not valid`);
    return `Environment=${systemdQuote(`${name}=${value}`)}`;
  });
  const lines = [
    "[Unit]",
    `Description=${unit.description}`,
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    `User=${unit.user}`,
    `Group=${unit.group}`,
    ...(unit.workingDirectory ? [`WorkingDirectory=${unit.workingDirectory}`] : []),
    ...env,
    ...(unit.environmentFile ? [`EnvironmentFile=${unit.environmentFile}`] : []),
    `ExecStart=${execLine(unit.argv)}`,
    "Restart=on-failure",
    "RestartSec=10s",
    // Model servers hold many files and sockets open; the default 1024 is too low under load.
    "LimitNOFILE=65536",
    // No ProtectSystem/PrivateTmp/PrivateDevices: they need mount namespaces, which an unprivileged
    // container without nesting cannot create (the unit would fail with 226/NAMESPACE), and
    // PrivateDevices would hide /dev/nvidia*. The container is the sandbox.
    "NoNewPrivileges=true",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ];
  return lines.join("\n");
}
