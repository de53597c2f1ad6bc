/**
 * PortainerAdmin: the Portainer administrator and Phoenix's API token.
 * The administrator is created only when GET /api/users/admin/check answers
 * 404 (none exists); any other answer but 204 is an error, so a failed probe
 * never skips nor repeats the initialisation. The token is minted with the
 * admin's JWT and kept as a secret output.
 */
import * as pulumi from "@pulumi/pulumi";
import { Checker, diffResult, isUnknown, same } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { runScriptChecked, type SshConnection } from "../ssh";
import { renderScript } from "../ssh/script";
import { isAdminInitTimeout, PortainerApiError, PortainerClient, type PortainerAccess } from "./client";
import { checkAccess, portainerReplaces } from "./common";
import { guestExecEnd, parseGuestExec, renderGuestExec } from "./guest-exec";

export interface PortainerAdminInputs {
  access: PortainerAccess;
  username: string;
  password: string;
  /** Names Phoenix's token in Portainer; one token per description. */
  tokenDescription: string;
  /** How to restart Portainer when it has disabled itself (the admin-initialisation timeout); without it, Phoenix says how. */
  restart?: PortainerRestart;
}

/** The Portainer server's VM, restarted through the node: `qm guest exec` runs the command through the VM's QEMU guest agent (guest-exec.ts). */
export interface PortainerRestart {
  /** SSH to the Proxmox node the VM runs on. */
  connection: SshConnection;
  vmid: number;
  /** The container's name (components/docker/portainer.ts: container_name). */
  container: string;
}

export interface PortainerAdminOutputs extends PortainerAdminInputs {
  userId: number;
  tokenId: number;
  apiToken: string;
  /** Whether Phoenix created the administrator (false: it found one and logged in). */
  initializedByPhoenix: boolean;
}

export interface PortainerAdminArgs {
  /** Portainer's API and the CA that signed its certificate. */
  access: pulumi.Input<PortainerAccess>;
  /** The administrator's user name. */
  username: pulumi.Input<string>;
  /** The administrator's password: the Pulumi secret portainerAdminPassword. */
  password: pulumi.Input<string>;
  /** Description of Phoenix's API token, e.g. phoenix-prod; Portainer shows it in the user's token list. */
  tokenDescription: pulumi.Input<string>;
  /** The server VM, for a restart after Portainer's admin-initialisation timeout. */
  restart?: pulumi.Input<PortainerRestart>;
}

export const portainerAdminProvider = dynamicProvider<PortainerAdminInputs, PortainerAdminOutputs>("portainer/admin");

export class PortainerAdmin extends DynamicResource {
  declare readonly apiToken: pulumi.Output<string>;
  declare readonly userId: pulumi.Output<number>;
  declare readonly tokenId: pulumi.Output<number>;
  declare readonly initializedByPhoenix: pulumi.Output<boolean>;

  constructor(name: string, args: PortainerAdminArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      portainerAdminProvider,
      name,
      { apiToken: undefined, userId: undefined, tokenId: undefined, initializedByPhoenix: undefined, ...args, password: pulumi.secret(args.password), ...(args.restart ? { restart: pulumi.secret(args.restart) } : {}) },
      pulumi.mergeOptions(opts, { additionalSecretOutputs: ["password", "apiToken", "restart"] }),
      "phoenix/portainer",
      "PortainerAdmin",
    );
  }
}

/** Portainer's default minimum length for internal passwords (InternalAuthSettings.RequiredPasswordLength). */
export const MIN_PASSWORD_LENGTH = 12;

async function login(c: PortainerClient, i: PortainerAdminInputs): Promise<{ jwt: string; userId: number }> {
  try {
    return await c.login(i.username, i.password);
  } catch (err) {
    if (err instanceof PortainerApiError && err.status === 422) {
      throw new Error(
        `Portainer at ${i.access.url} already has an administrator, and ${i.username} cannot log in with the password in phoenix:portainerAdminPassword. ` +
          `Phoenix never re-initialises an existing Portainer: set the secret to the current password (pulumi config set --secret phoenix:portainerAdminPassword <value>), ` +
          `or change the password in Portainer to the configured one, then run pulumi up again`,
        { cause: err },
      );
    }
    throw err;
  }
}

/** Replaces any token of ours left by an interrupted run: a raw key can never be read back. */
async function mintToken(c: PortainerClient, i: PortainerAdminInputs, jwt: string, userId: number): Promise<{ tokenId: number; apiToken: string }> {
  const authed = c.withAuth({ kind: "jwt", jwt });
  for (const stale of (await authed.apiKeys(userId)).filter((k) => k.description === i.tokenDescription)) await authed.deleteApiKey(userId, stale.id);
  const { raw, key } = await authed.createApiKey(userId, i.tokenDescription, i.password);
  return { tokenId: key.id, apiToken: raw };
}

/** Seconds qm waits for `docker restart` in the Portainer VM. */
const RESTART_TIMEOUT_SECONDS = 120;

/** The node-side script that restarts Portainer inside its VM, through the VM's guest agent (guest-exec.ts). */
export function renderPortainerRestart(r: PortainerRestart): string {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(r.container)) throw new Error(`container name ${JSON.stringify(r.container)} is not a Docker container name`);
  return renderScript(renderGuestExec(Math.trunc(r.vmid), ["docker", "restart", r.container], { timeoutSeconds: RESTART_TIMEOUT_SECONDS }));
}

async function restartPortainer(c: PortainerClient, i: PortainerAdminInputs): Promise<void> {
  const why =
    `Portainer at ${i.access.url} disabled its API: nobody initialised an administrator within 5 minutes of its start ` +
    `(an earlier run stopped before it did). Portainer only recovers by restarting`;
  if (!i.restart) {
    throw new Error(`${why}: on the Portainer VM run \`docker restart portainer\`, then run pulumi up within 5 minutes`);
  }
  const out = await runScriptChecked(i.restart.connection, `restart Portainer in VM ${i.restart.vmid}`, renderPortainerRestart(i.restart), { timeoutMs: 180_000 });
  const r = parseGuestExec(out.stdout);
  if (r.exitcode !== 0) throw new Error(`${why}, and \`docker restart ${i.restart.container}\` in VM ${i.restart.vmid} did not succeed (${guestExecEnd(r, RESTART_TIMEOUT_SECONDS)}): restart it by hand, then run pulumi up`);
  // Portainer answers again within seconds of its restart; until then connections fail.
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      await c.adminExists();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${why}; it was restarted but did not answer within 120 s`, { cause: err });
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

/** Whether an administrator exists; a Portainer that timed out waiting for one is restarted first (isAdminInitTimeout). */
async function adminExists(c: PortainerClient, i: PortainerAdminInputs): Promise<boolean> {
  try {
    return await c.adminExists();
  } catch (err) {
    if (!isAdminInitTimeout(err)) throw err;
    await restartPortainer(c, i);
    return c.adminExists();
  }
}

async function withClient<T>(access: PortainerAccess, run: (c: PortainerClient) => Promise<T>): Promise<T> {
  const c = new PortainerClient(access);
  try {
    return await run(c);
  } finally {
    c.close();
  }
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker("Portainer admin");
    checkAccess(c, "access", news.access);
    c.string("username", news.username, /^\S+$/, "a user name without whitespace (Portainer refuses whitespace)");
    if (!isUnknown(news.password)) {
      c.require("password", typeof news.password === "string" && news.password.length >= MIN_PASSWORD_LENGTH, `password must have at least ${MIN_PASSWORD_LENGTH} characters, Portainer's minimum`);
    }
    c.string("tokenDescription", news.tokenDescription, /^(?=.*\S).{1,128}$/, "1–128 characters, not only spaces");
    return { inputs: news, failures: c.failures };
  },

  async diff(_id: string, olds: PortainerAdminOutputs, news: PortainerAdminInputs) {
    const replaces = [...portainerReplaces("access", olds.access, news.access), ...(same(olds.username, news.username) ? [] : ["username"])];
    const changed = ["access", "password", "tokenDescription"].filter((k) => !same((olds as unknown as Record<string, unknown>)[k], (news as unknown as Record<string, unknown>)[k]));
    return diffResult(changed, replaces);
  },

  async create(inputs: PortainerAdminInputs) {
    return withClient(inputs.access, async (c) => {
      let initializedByPhoenix = false;
      if (!(await adminExists(c, inputs))) {
        try {
          await c.initAdmin(inputs.username, inputs.password);
          initializedByPhoenix = true;
        } catch (err) {
          // Someone initialised it between the probe and now: log in like for any existing admin.
          if (!(err instanceof PortainerApiError && err.status === 409)) throw err;
        }
      }
      const { jwt, userId } = await login(c, inputs);
      const token = await mintToken(c, inputs, jwt, userId);
      return { id: `${new URL(inputs.access.url).origin}/users/${userId}`, outs: { ...inputs, userId, ...token, initializedByPhoenix } };
    });
  },

  async read(id: string, props: PortainerAdminOutputs) {
    return withClient(props.access, async (c) => {
      // A Portainer whose data was wiped has no admin: the resource is gone and `up` initialises again.
      // One that timed out waiting for an admin has none either (the monitor only fires without one).
      let exists: boolean;
      try {
        exists = await c.adminExists();
      } catch (err) {
        if (!isAdminInitTimeout(err)) throw err;
        exists = false;
      }
      if (!exists) return { id: "", props: {} };
      try {
        const keys = await c.withAuth({ kind: "apiKey", key: props.apiToken }).apiKeys(props.userId);
        return keys.some((k) => k.id === props.tokenId) ? { id, props } : { id: "", props: {} };
      } catch (err) {
        if (err instanceof PortainerApiError && err.status === 401) return { id: "", props: {} };
        throw err;
      }
    });
  },

  async update(_id: string, olds: PortainerAdminOutputs, news: PortainerAdminInputs) {
    return withClient(news.access, async (c) => {
      // Proves the configured password is Portainer's; a changed description gets a fresh token.
      const { jwt, userId } = await login(c, news);
      if (news.tokenDescription === olds.tokenDescription) return { outs: { ...olds, ...news } };
      await c.withAuth({ kind: "jwt", jwt }).deleteApiKey(userId, olds.tokenId);
      return { outs: { ...news, userId, ...(await mintToken(c, news, jwt, userId)), initializedByPhoenix: olds.initializedByPhoenix } };
    });
  },

  async delete(_id: string, props: PortainerAdminOutputs) {
    // Only the token goes: the administrator stays, or the next up would find a Portainer nobody can log in to.
    await withClient(props.access, async (c) => {
      try {
        await c.withAuth({ kind: "apiKey", key: props.apiToken }).deleteApiKey(props.userId, props.tokenId);
      } catch (err) {
        if (!(err instanceof PortainerApiError && err.status === 401)) throw err;
      }
    });
  },
};
