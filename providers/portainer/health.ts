/**
 * ServiceHealth: an HTTPS health endpoint that must answer before what
 * depends on it proceeds (Portainer's /api/system/status before the admin is
 * initialised; Qdrant's /healthz through the gateway's /qdrant/ route after
 * its stack is deployed). `create` waits, bounded, for the expected answer;
 * `read` reports the current answer, so `pulumi refresh` shows a service that
 * stopped answering. Creates nothing.
 */
import * as https from "node:https";
import * as pulumi from "@pulumi/pulumi";
import { Checker, diffResult, isUnknown, same } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";

export interface ServiceHealthInputs {
  url: string;
  /** Connect to this address instead of resolving the URL's host (which still names TLS and Host): the gateway, without internal DNS. */
  address?: string;
  /** CA root that signed the service's certificate (Step-CA). */
  caPem?: string;
  /** Status that means healthy (default 200). */
  expectStatus: number;
  /** Text the body must contain, e.g. Qdrant's "healthz check passed". */
  bodyIncludes?: string;
  /** How long create waits for the service (default 600 s). */
  timeoutSeconds: number;
  /** Time between tries (default 5000 ms). */
  intervalMs: number;
}

export interface ServiceHealthOutputs extends ServiceHealthInputs {
  healthy: boolean;
  /** What the last try saw: an HTTP status or a connection error. */
  lastAnswer: string;
}

export interface ServiceHealthArgs {
  /** The health URL, e.g. https://internal.thinkheads.ai/qdrant/healthz. */
  url: pulumi.Input<string>;
  /** Connect here instead of resolving the URL's host, e.g. the gateway's IP. */
  address?: pulumi.Input<string>;
  /** CA root that signed the service's certificate. */
  caPem?: pulumi.Input<string>;
  /** Status that means healthy; default 200. */
  expectStatus?: pulumi.Input<number>;
  /** Text the body must contain. */
  bodyIncludes?: pulumi.Input<string>;
  /** How long `up` waits; default 600 s (a VM's first boot installs Docker). */
  timeoutSeconds?: pulumi.Input<number>;
  /** Time between tries; default 5000 ms. */
  intervalMs?: pulumi.Input<number>;
}

export const serviceHealthProvider = dynamicProvider<ServiceHealthInputs, ServiceHealthOutputs>("portainer/health");

export class ServiceHealth extends DynamicResource {
  declare readonly healthy: pulumi.Output<boolean>;
  declare readonly lastAnswer: pulumi.Output<string>;

  constructor(name: string, args: ServiceHealthArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      serviceHealthProvider,
      name,
      { healthy: undefined, lastAnswer: undefined, ...args, expectStatus: args.expectStatus ?? 200, timeoutSeconds: args.timeoutSeconds ?? 600, intervalMs: args.intervalMs ?? 5000 },
      opts,
      "phoenix/portainer",
      "ServiceHealth",
    );
  }
}

/** One try: healthy, and what was seen. Connection failures are answers too, not exceptions. */
export async function probe(i: Pick<ServiceHealthInputs, "url" | "address" | "caPem" | "expectStatus" | "bodyIncludes">): Promise<{ healthy: boolean; answer: string }> {
  const target = new URL(i.url);
  const pinned = i.address ? { hostname: i.address, servername: target.hostname, headers: { host: target.host } } : {};
  return new Promise((resolve) => {
    const req = https.get(i.url, { ca: i.caPem, timeout: 10_000, ...pinned }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        const bodyOk = i.bodyIncludes === undefined || body.includes(i.bodyIncludes);
        resolve({ healthy: res.statusCode === i.expectStatus && bodyOk, answer: `HTTP ${res.statusCode}${bodyOk ? "" : ` without "${i.bodyIncludes}"`}` });
      });
    });
    req.on("timeout", () => req.destroy(new Error("no answer within 10 s")));
    req.on("error", (e) => resolve({ healthy: false, answer: e.message }));
  });
}

async function waitHealthy(i: ServiceHealthInputs): Promise<ServiceHealthOutputs> {
  const deadline = Date.now() + i.timeoutSeconds * 1000;
  for (;;) {
    const { healthy, answer } = await probe(i);
    if (healthy) return { ...i, healthy, lastAnswer: answer };
    if (Date.now() + i.intervalMs > deadline) {
      throw new Error(`${i.url} did not answer HTTP ${i.expectStatus}${i.bodyIncludes ? ` with "${i.bodyIncludes}"` : ""} within ${i.timeoutSeconds} s; last answer: ${answer}`);
    }
    await new Promise((r) => setTimeout(r, i.intervalMs));
  }
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`health check ${String(news.url)}`);
    c.string("url", news.url, /^https:\/\/\S+$/, "an https:// URL");
    for (const [k, min, max] of [["expectStatus", 100, 599], ["timeoutSeconds", 1, 3600], ["intervalMs", 10, 600_000]] as const) {
      const v = news[k];
      if (!isUnknown(v)) c.require(k, Number.isInteger(v) && (v as number) >= min && (v as number) <= max, `${k} must be a whole number from ${min} to ${max}`);
    }
    return { inputs: news, failures: c.failures };
  },
  async diff(_id: string, olds: ServiceHealthOutputs, news: ServiceHealthInputs) {
    const changed = ["url", "address", "caPem", "expectStatus", "bodyIncludes"].filter((k) => !same((olds as unknown as Record<string, unknown>)[k], (news as unknown as Record<string, unknown>)[k]));
    return diffResult(changed, []);
  },
  async create(inputs: ServiceHealthInputs) {
    return { id: inputs.url, outs: await waitHealthy(inputs) };
  },
  async read(id: string, props: ServiceHealthOutputs) {
    const { healthy, answer } = await probe(props);
    return { id, props: { ...props, healthy, lastAnswer: answer } };
  },
  async update(_id: string, _olds: ServiceHealthOutputs, news: ServiceHealthInputs) {
    return { outs: await waitHealthy(news) };
  },
  async delete() {
    // Nothing was created.
  },
};
