/**
 * systemd unit text for the model servers. Command lines follow systemd's own
 * quoting (systemd.service(5), "Command lines"), not a shell's: there is no
 * shell between systemd and the engine, and `%` and `$` mean something to
 * systemd even inside quotes.
 */

import { CONTROL_CHARS } from "../../stacks/patterns";

// Characters systemd passes through unquoted and unexpanded in ExecStart and Environment=.
const PLAIN_ARG_RE = /^[A-Za-z0-9_@+=:,./-]+$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The inside of a double-quoted systemd word: backslash and quote escaped,
 * control characters as C escapes (systemd.syntax(7): "C-style escapes" in
 * quoted words; the parser is extract_first_word() with EXTRACT_CUNESCAPE), so
 * no value can end the line or the word.
 */
function cEscape(value: string): string {
  // Arguments and environment entries are C strings: a NUL cannot be in one (systemd's cunescape refuses \x00 too).
  if (value.includes("\u0000")) throw new Error(`${JSON.stringify(value)} holds a NUL character, which no argument or variable can hold`);
  return value
    .replace(/\\/g, "\\\\")
    .replace(/"/g, '\\"')
    .replace(/\n/g, "\\n")
    .replace(/\t/g, "\\t")
    // eslint-disable-next-line no-control-regex -- the point is to find them
    .replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** One argv element, written so systemd hands the engine exactly `arg`. */
export function systemdQuote(arg: string): string {
  if (PLAIN_ARG_RE.test(arg)) return arg;
  // Specifiers are expanded inside quotes too; in Exec* lines so are variable references ($$ is a literal $).
  return `"${cEscape(arg).replace(/%/g, "%%").replace(/\$/g, "$$$$")}"`;
}

/**
 * One Environment= assignment. Unlike Exec* lines, "variable expansion is not
 * performed inside the strings, and $ has no special meaning" (systemd.exec(5),
 * Environment=; src/core/load-fragment.c config_parse_environ: extract_first_word
 * with EXTRACT_CUNESCAPE|EXTRACT_UNQUOTE, then specifier expansion only), so
 * only % is doubled: escaping $ as in ExecStart would hand the engine "$$".
 */
export function environmentAssignment(name: string, value: string): string {
  if (!ENV_NAME_RE.test(name)) throw new Error(`environment variable name '${name}' is not valid`);
  const assignment = `${name}=${value}`;
  return PLAIN_ARG_RE.test(assignment) ? assignment : `"${cEscape(assignment).replace(/%/g, "%%")}"`;
}

/**
 * A unit setting that takes free text, such as Description=: one line (a
 * newline would start a new setting or a [Section], and a trailing backslash
 * joins the next line, systemd.syntax(7)), with % doubled because specifiers
 * are expanded there (checked with systemd-analyze verify: %n in Description=
 * becomes the unit name).
 */
export function systemdText(value: string): string {
  if (CONTROL_CHARS.test(value)) throw new Error(`unit text ${JSON.stringify(value)} holds a control character or line break`);
  if (value.endsWith("\\")) throw new Error(`unit text ${JSON.stringify(value)} ends in a backslash, which would join the next line`);
  return value.replace(/%/g, "%%");
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

export function renderServiceUnit(unit: ServiceUnit): string {
  const env = Object.entries(unit.environment ?? {}).map(([name, value]) => `Environment=${environmentAssignment(name, value)}`);
  const lines = [
    "[Unit]",
    `Description=${systemdText(unit.description)}`,
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
