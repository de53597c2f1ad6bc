/**
 * Runs a plan's checks through the injected channels and collects their results
 * as findings, in plan order. Checks run concurrently, bounded so that a node's
 * sshd (MaxStartups) is not flooded with logins.
 */
import type { X509Certificate } from "node:crypto";
import { KeyedSemaphore } from "../../providers/pve/concurrency";
import type { GuestExec, NodeExec } from "./channels";
import type { Finding } from "./diagnose";
import { GATEWAY_CA_FILE, type Address, type Check, type PlannedCheck } from "./plan";
import { curlCommand, gatewayResults, guestResults, guestScript, hostResults, httpsGet, parseCurl, traefikResults, type Result } from "./probes";

export interface Channels {
  node: NodeExec;
  guest: GuestExec;
}

export interface RunOptions {
  /** Where an address is really reached: tests map guest addresses to local servers. */
  resolve: (a: Address) => Address;
  /** The CA root certificates must chain to; without it the chain is reported, not judged. */
  caRoot?: X509Certificate;
  now: Date;
  concurrency?: number;
}

function firewallResults(check: Extract<Check, { layer: "firewall" }>): Result[] {
  return check.hops.map(({ from, to, admission }) => ({
    check: `${from} → ${to}`,
    status: admission.verdict === "admitted" ? "ok" : admission.verdict === "blocked" ? "fail" : "warn",
    detail: admission.why,
    ...(admission.verdict === "blocked" ? { failure: "firewall-blocks" as const } : {}),
  }));
}

async function runCheck(check: Check, channels: Channels, opts: RunOptions): Promise<Result[]> {
  switch (check.layer) {
    case "guest":
      return guestResults(check, await channels.guest.run(check.guest, guestScript(check)));
    case "firewall":
      return firewallResults(check);
    case "host": {
      const to = opts.resolve(check.target);
      return hostResults(check, parseCurl(await channels.node.run(curlCommand({ url: `${check.scheme}://${to.host}:${to.port}${check.path}` }))));
    }
    case "traefik": {
      const to = opts.resolve(check.traefik);
      const connectTo = `${check.host}:${check.traefik.port}:${to.host}:${to.port}`;
      const command = curlCommand({ url: `https://${check.host}:${check.traefik.port}${check.path}`, connectTo, caFile: GATEWAY_CA_FILE });
      return traefikResults(check, parseCurl(await channels.guest.run(check.from, command)));
    }
    case "gateway":
      return gatewayResults(check, await httpsGet(opts.resolve(check.gateway), check.host, check.path), opts.caRoot, opts.now);
  }
}

export async function runChecks(checks: readonly PlannedCheck[], channels: Channels, opts: RunOptions): Promise<Finding[]> {
  const limit = new KeyedSemaphore(opts.concurrency ?? 6);
  const results = await Promise.all(
    checks.map(({ service, check }) =>
      limit.run("all", async () => {
        try {
          return (await runCheck(check, channels, opts)).map((r): Finding => ({ service, layer: check.layer, ...r }));
        } catch (err) {
          return [{ service, layer: check.layer, check: "probe", status: "fail", failure: "probe-error", detail: err instanceof Error ? err.message : String(err) } satisfies Finding];
        }
      }),
    ),
  );
  return results.flat();
}
