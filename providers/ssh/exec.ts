import { createHash } from "crypto";
import type { Client, ClientChannel, ConnectConfig } from "ssh2";
import { fingerprintOf, hostKeyMatches, keyTypeOf, parseHostKey } from "./hostKey";
import { shellQuote } from "./script";

/** How to reach a node over SSH. Plain data, so it can travel through dynamic-provider state. */
export interface SshConnection {
  host: string;
  port?: number;
  username: string;
  /** OpenSSH private key (PEM/OpenSSH text). */
  privateKey: string;
  /** The host's public key line (`ssh-ed25519 AAAA…`) or its `SHA256:` fingerprint; anything else is refused. */
  hostKey: string;
}

export interface RunOptions {
  /** Sent to the remote command's stdin, then stdin is closed. */
  stdin?: string | Buffer;
  /** Whole-attempt limit, connection included. */
  timeoutMs?: number;
  /** Extra attempts after a lost connection; a non-zero exit is never retried. */
  retries?: number;
  retryDelayMs?: number;
}

export interface RunResult {
  /** Exit status; null when the command died from a signal. */
  code: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
  /** Connection attempts used, for observability of retries. */
  attempts: number;
}

export class SshHostKeyError extends Error {
  override readonly name = "SshHostKeyError";
}
export class SshTimeoutError extends Error {
  override readonly name = "SshTimeoutError";
}
/** Authentication or algorithm negotiation failed: retrying would fail the same way. */
export class SshAuthError extends Error {
  override readonly name = "SshAuthError";
}
/** The transport broke (refused, reset, closed before the command exited): worth a retry. */
export class SshConnectionLostError extends Error {
  override readonly name = "SshConnectionLostError";
  constructor(
    message: string,
    /** Whether the command had started: it may have run partly. */
    readonly started: boolean,
  ) {
    super(message);
  }
}
export class SshCommandError extends Error {
  override readonly name = "SshCommandError";
  constructor(
    message: string,
    readonly result: RunResult,
  ) {
    super(message);
  }
}

export function describeTarget(conn: SshConnection): string {
  return `${conn.username}@${conn.host}:${conn.port ?? 22}`;
}

/** An authenticated connection, kept for reuse for a short while after each command. */
interface Pooled {
  client: Client;
  key: string;
  idleTimer?: NodeJS.Timeout;
}

/**
 * Idle connections per target. Reusing one saves a handshake per command and keeps the number
 * of concurrent logins low when Pulumi works on many resources of one node at once (sshd drops
 * connections beyond MaxStartups). A connection is handed to one command at a time.
 */
const idle = new Map<string, Pooled[]>();
const IDLE_MS = 2000;

function poolKey(conn: SshConnection): string {
  return createHash("sha256").update(JSON.stringify([conn.host, conn.port ?? 22, conn.username, conn.hostKey, conn.privateKey])).digest("hex");
}

function takeIdle(key: string): Pooled | undefined {
  const p = idle.get(key)?.pop();
  if (p) clearTimeout(p.idleTimer);
  return p;
}

function discard(p: Pooled): void {
  clearTimeout(p.idleTimer);
  const list = idle.get(p.key);
  if (list) idle.set(p.key, list.filter((x) => x !== p));
  p.client.end();
}

function putIdle(p: Pooled): void {
  idle.set(p.key, [...(idle.get(p.key) ?? []), p]);
  p.idleTimer = setTimeout(() => discard(p), IDLE_MS);
}

function connect(conn: SshConnection, timeoutMs: number): Promise<Pooled> {
  const pinned = parseHostKey(conn.hostKey);
  const target = describeTarget(conn);
  return new Promise((resolve, reject) => {
    // ssh2 is loaded on the first connection, not with the program: the program only declares
    // resources (index.ts imports this file through providers/common.ts) and never connects, and
    // loading ssh2 was a twentieth of its cold start (issue #22).
    const client = new (require("ssh2") as typeof import("ssh2")).Client();
    const p: Pooled = { client, key: poolKey(conn) };
    let hostKeyProblem: string | undefined;
    const fail = (err: Error) => {
      client.end();
      reject(err);
    };
    const onError = (err: Error & { level?: string }) => {
      if (hostKeyProblem) return fail(new SshHostKeyError(hostKeyProblem));
      if (err.level === "client-authentication") {
        return fail(new SshAuthError(`ssh ${target}: public key authentication failed; check username and privateKey, and that the key is in the user's authorized_keys`));
      }
      if (err.level === "handshake") {
        // Retrying cannot help: the two sides share no algorithm, typically no host key of the pinned type.
        return fail(new SshAuthError(`ssh ${target}: handshake failed (${err.message}); the server must offer a ${pinned.kind === "key" ? pinned.type : "supported"} host key`));
      }
      fail(new SshConnectionLostError(`ssh ${target}: connection failed: ${err.message}`, false));
    };
    client.on("error", onError);
    client.once("close", () => fail(new SshConnectionLostError(hostKeyProblem ?? `ssh ${target}: connection closed during login`, false)));
    client.once("ready", () => {
      // From here on errors surface through "close" to whoever is using the connection.
      client.removeListener("error", onError);
      client.on("error", () => undefined);
      client.once("close", () => discard(p));
      resolve(p);
    });
    const config: ConnectConfig = {
      host: conn.host,
      port: conn.port ?? 22,
      username: conn.username,
      privateKey: conn.privateKey,
      readyTimeout: Math.max(1, Math.min(timeoutMs, 20_000)),
      // Only public-key auth: a password prompt would hang an unattended run.
      authHandler: ["publickey"],
      hostVerifier: (key: Buffer) => {
        if (hostKeyMatches(pinned, key)) return true;
        hostKeyProblem =
          `ssh ${target}: host key mismatch: the server presented ${keyTypeOf(key)} ${fingerprintOf(key)}, ` +
          `the configuration pins ${pinned.fingerprint}. Refusing to connect. If the host was reinstalled, ` +
          "verify the new key out of band (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on its console) and update hostKey";
        return false;
      },
    };
    // Ask for the pinned key's type, or a server holding several host keys may show another one and fail the pin.
    if (pinned.kind === "key") config.algorithms = { serverHostKey: [pinned.type as never] };
    client.connect(config);
  });
}

function execOn(p: Pooled, target: string, command: string, stdin: string | Buffer | undefined, remainingMs: number, timeoutMs: number): Promise<Omit<RunResult, "attempts">> {
  return new Promise((resolve, reject) => {
    let started = false;
    let settled = false;
    const finish = (err: Error | undefined, value?: Omit<RunResult, "attempts">) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      p.client.removeListener("close", onClose);
      if (err) reject(err);
      else resolve(value!);
    };
    const onClose = () => finish(new SshConnectionLostError(`ssh ${target}: connection closed before "${firstLine(command)}" exited`, started));
    p.client.once("close", onClose);
    const timer = setTimeout(
      () => finish(new SshTimeoutError(`ssh ${target}: "${firstLine(command)}" did not finish within ${timeoutMs} ms; raise the timeout or check the host`)),
      Math.max(1, remainingMs),
    );
    p.client.exec(command, (err: Error | undefined, stream: ClientChannel) => {
      if (err) return finish(new SshConnectionLostError(`ssh ${target}: could not start "${firstLine(command)}": ${err.message}`, false));
      started = true;
      const out: Buffer[] = [];
      const errOut: Buffer[] = [];
      let exit: { code: number | null; signal?: string } | undefined;
      stream.on("data", (d: Buffer) => out.push(d));
      stream.stderr.on("data", (d: Buffer) => errOut.push(d));
      stream.on("exit", (code: number | null, signal?: string) => {
        exit = signal ? { code, signal } : { code };
      });
      stream.on("close", () => {
        if (!exit) return finish(new SshConnectionLostError(`ssh ${target}: channel closed before "${firstLine(command)}" reported an exit status`, true));
        finish(undefined, { ...exit, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(errOut).toString("utf8") });
      });
      stream.end(stdin ?? "");
    });
  });
}

async function attempt(conn: SshConnection, command: string, opts: RunOptions): Promise<Omit<RunResult, "attempts">> {
  const target = describeTarget(conn);
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const deadline = Date.now() + timeoutMs;
  const runOn = async (p: Pooled) => {
    try {
      const result = await execOn(p, target, command, opts.stdin, deadline - Date.now(), timeoutMs);
      putIdle(p);
      return result;
    } catch (err) {
      discard(p);
      throw err;
    }
  };
  const kept = takeIdle(poolKey(conn));
  if (kept) {
    try {
      return await runOn(kept);
    } catch (err) {
      // A kept connection the server has since dropped is no failure of the command: use a fresh one.
      if (!(err instanceof SshConnectionLostError) || err.started) throw err;
    }
  }
  return runOn(await connect(conn, deadline - Date.now()));
}

function firstLine(s: string): string {
  const line = s.split("\n", 1)[0] ?? "";
  return line.length > 80 ? line.slice(0, 77) + "..." : line;
}

/**
 * Runs one command. A lost connection is retried (bounded), so the command must be safe to
 * run again; every script Phoenix renders is idempotent for that reason.
 */
export async function runCommand(conn: SshConnection, command: string, opts: RunOptions = {}): Promise<RunResult> {
  const retries = opts.retries ?? 2;
  for (let n = 1; ; n++) {
    try {
      return { ...(await attempt(conn, command, opts)), attempts: n };
    } catch (err) {
      if (!(err instanceof SshConnectionLostError) || n > retries) throw err;
      await new Promise((r) => setTimeout(r, (opts.retryDelayMs ?? 1000) * n));
    }
  }
}

/**
 * Runs a bash script fed on stdin (so it never shows in the host's process list); `args`
 * become `$1…`. The script is wrapped in a function: bash then reads all of it before running
 * any of it, and its commands get /dev/null as stdin, so a tool that reads stdin (apt, an
 * installer) cannot swallow the rest of the script.
 */
export function runScript(conn: SshConnection, script: string, opts: Omit<RunOptions, "stdin"> & { args?: string[] } = {}): Promise<RunResult> {
  const args = (opts.args ?? []).map(shellQuote).join(" ");
  const wrapped = `phoenix_main() {\n${script}\n}\nphoenix_main "$@" </dev/null\n`;
  return runCommand(conn, `bash -s -- ${args}`.trimEnd(), { ...opts, stdin: wrapped });
}

/** Like runScript, but a non-zero exit is an error that names the step, the host and the script's stderr. */
export async function runScriptChecked(conn: SshConnection, what: string, script: string, opts: Omit<RunOptions, "stdin"> & { args?: string[] } = {}): Promise<RunResult> {
  const res = await runScript(conn, script, opts);
  if (res.code !== 0) {
    const tail = res.stderr.trim().split("\n").slice(-15).join("\n");
    throw new SshCommandError(`${what} on ${describeTarget(conn)} failed (exit ${res.code ?? res.signal}):\n${tail}`, res);
  }
  return res;
}
