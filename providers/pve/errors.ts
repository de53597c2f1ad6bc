/** PVE answered with an error status. Carries PVE's message and its per-parameter `errors`. */
export class PveApiError extends Error {
  override readonly name = "PveApiError";

  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    /** PVE's message (body `message`, or the reason phrase on servers before pve-http-server 5.2). */
    readonly pveMessage: string,
    readonly errors: Readonly<Record<string, string>> = {},
  ) {
    super(formatApiError(method, path, status, pveMessage, errors));
  }

  /** The text of PVE's answer including its per-parameter messages, for matching. */
  get detail(): string {
    return [this.pveMessage, ...Object.values(this.errors)].join("\n");
  }
}

function hint(status: number, message: string): string | undefined {
  if (status === 401) return "check the API token or the root@pam password in the stack config";
  if (status === 403 && /root@pam/.test(message)) {
    return "this setting needs a root@pam ticket: configure the root@pam password, or make the change over SSH";
  }
  if (status === 403) return "grant the token the privilege named above, or disable its privilege separation";
  if (status === 400) return "fix the parameters named above";
  return undefined;
}

function formatApiError(method: string, path: string, status: number, message: string, errors: Readonly<Record<string, string>>): string {
  const lines = [`PVE API ${method} ${path} failed with ${status}: ${message.trim() || "(no message)"}`];
  for (const [k, v] of Object.entries(errors)) lines.push(`  ${k}: ${v.trim()}`);
  const h = hint(status, message);
  if (h) lines.push(`  (${h})`);
  return lines.join("\n");
}

/** The request never got an answer (connection reset, refused, TLS failure, client timeout). */
export class PveConnectionError extends Error {
  override readonly name = "PveConnectionError";

  constructor(
    readonly method: string,
    readonly path: string,
    override readonly cause: Error & { code?: string },
  ) {
    super(
      `PVE API ${method} ${path}: no answer (${cause.code ?? cause.message})` +
        (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(cause.code ?? "")
          ? " — the server certificate is not trusted: set the PVE CA certificate in the stack config (insecure only for throwaway hosts)"
          : " — check that the endpoint is reachable"),
    );
  }
}

/** A worker task ended with an exit status other than OK / WARNINGS. */
export class PveTaskError extends Error {
  override readonly name = "PveTaskError";

  constructor(
    readonly upid: string,
    readonly exitstatus: string,
    readonly logTail: readonly string[],
  ) {
    super(
      `PVE task ${describeUpid(upid)} failed: ${exitstatus}\n` +
        (logTail.length > 0 ? `  last lines of the task log:\n${logTail.map((l) => `    ${l}`).join("\n")}\n` : "") +
        `  (full log: GET /nodes/<node>/tasks/${upid}/log)`,
    );
  }
}

/** A worker task was still running when the client stopped waiting. */
export class PveTaskTimeoutError extends Error {
  override readonly name = "PveTaskTimeoutError";

  constructor(
    readonly upid: string,
    readonly timeoutMs: number,
  ) {
    super(
      `PVE task ${describeUpid(upid)} still running after ${Math.round(timeoutMs / 1000)} s; it was left running. ` +
        `Check it in the PVE task list, then re-run, or raise the task timeout.`,
    );
  }
}

function describeUpid(upid: string): string {
  const f = upid.split(":");
  return f.length >= 9 ? `${f[5]} ${f[6]} on ${f[1]} (${upid})` : upid;
}
