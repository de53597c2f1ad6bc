import { spawn, execFileSync, type ChildProcess } from "child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, mkdirSync } from "fs";
import { connect } from "net";
import { tmpdir, userInfo } from "os";
import { join } from "path";
import type { SshConnection } from "../../providers/ssh";
import { freePort } from "./ports";
import { createSandbox, type Sandbox } from "./sandbox";

export interface SshRig {
  /** Ready-to-use connection options for the providers under test. */
  connection: SshConnection;
  /** The host key line and its fingerprint, for pinning tests. */
  hostKeyLine: string;
  hostKeyFingerprint: string;
  port: number;
  /** The stand-in machine that sessions see (PATH and PHOENIX_ROOT point into it). */
  sandbox: Sandbox;
  dir: string;
  stop(): Promise<void>;
}

async function waitForPort(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`sshd exited with ${child.exitCode}: ${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("data", () => (s.destroy(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`sshd did not accept connections on 127.0.0.1:${port} within 10 s: ${log()}`);
}

/**
 * Starts a real OpenSSH server on 127.0.0.1 for the current user, with throwaway keys and
 * a sandbox root. One per test file: starting sshd and transpiling the stand-ins costs ~1 s.
 */
export async function startSshd(opts: { port?: number } = {}): Promise<SshRig> {
  const dir = mkdtempSync(join(tmpdir(), "phoenix-sshd-"));
  // Traversable (not listable) by every uid, as a node's / is: scripts run tools as a service's uid
  // (setpriv) under the sandbox root. The keys inside stay 0600.
  chmodSync(dir, 0o711);
  const sandbox = createSandbox(join(dir, "sandbox"));
  for (const name of ["host_ed25519", "client_ed25519"]) {
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `phoenix-test-${name}`, "-f", join(dir, name)]);
  }
  writeFileSync(join(dir, "authorized_keys"), readFileSync(join(dir, "client_ed25519.pub")));
  const port = opts.port ?? (await freePort());
  const user = userInfo().username;
  writeFileSync(
    join(dir, "sshd_config"),
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${join(dir, "host_ed25519")}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "PubkeyAuthentication yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "StrictModes no",
      "PermitRootLogin prohibit-password",
      `AllowUsers ${user}`,
      "MaxStartups 50",
      "LogLevel ERROR",
      // Sessions find only the sandbox's tools and root: a script that forgets "$R" or calls
      // an unexpected tool fails instead of changing this machine. SHLVL=1 stops bash from
      // sourcing the user's ~/.bashrc for ssh commands, which could put other tools first on PATH.
      `SetEnv PATH=${sandbox.binDir} PHOENIX_ROOT=${sandbox.root} SHLVL=1`,
      "",
    ].join("\n"),
  );
  // As root, OpenSSH insists on its privilege-separation directory, which Debian only creates
  // when the ssh service starts (never, in a container).
  if (process.getuid?.() === 0 && !existsSync("/run/sshd")) mkdirSync("/run/sshd", { mode: 0o755 });
  const child = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", join(dir, "sshd_config")], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  await waitForPort(port, child, () => stderr);

  const hostKeyLine = readFileSync(join(dir, "host_ed25519.pub"), "utf8").trim();
  const hostKeyFingerprint = execFileSync("ssh-keygen", ["-l", "-f", join(dir, "host_ed25519.pub")], { encoding: "utf8" }).split(" ")[1] ?? "";
  return {
    connection: { host: "127.0.0.1", port, username: user, privateKey: readFileSync(join(dir, "client_ed25519"), "utf8"), hostKey: hostKeyLine },
    hostKeyLine,
    hostKeyFingerprint,
    port,
    sandbox,
    dir,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
