/**
 * The stack-output contract: what other projects read from a Phoenix stack
 * through StackReference. index.ts exports exactly these keys, checked by the
 * compiler; nothing here is secret (the CA's key never leaves its guest).
 *
 *   import type { PhoenixOutputs } from "phoenix/stacks/outputs";
 *   import { phoenixOutput } from "phoenix/stacks/outputs";
 *   const phoenix = new pulumi.StackReference("acme/phoenix/prod");
 *   const baseUrl = phoenixOutput(phoenix, "openaiBaseUrl"); // Output<string>
 */
import * as pulumi from "@pulumi/pulumi";
import type { GpuAllocation, ModelOutput } from "./plan";
import type { StackConfig } from "./schema";

export interface GuestOutput {
  name: string;
  kind: "lxc" | "vm";
  ip: string;
  role: string;
}

/** Optional keys are absent when the stack declares no guest with the role behind them. */
export interface PhoenixOutputs {
  /** The gateway, where every service is reached: https://<domain>. */
  gatewayUrl?: string;
  /** Step-CA's URL and ACME directory, for clients that want certificates. */
  caUrl?: string;
  acmeDirectoryUrl?: string;
  /** The internal root certificate (PEM) to trust, and its SHA-256 fingerprint. */
  caRootPem?: string;
  caFingerprint?: string;
  /** Every routed service by name, as reached through the gateway. */
  serviceUrls: Record<string, string>;
  /** OpenAI-compatible base URL: requests are routed by their "model". */
  openaiBaseUrl?: string;
  /** The models served, by the ids clients send. */
  models: ModelOutput[];
  qdrantUrl?: string;
  portainerUrl?: string;
  /** Guests by vmid. */
  guests: Record<string, GuestOutput>;
  /** Per-GPU memory allocation of the model servers. */
  gpuAllocation: GpuAllocation[];
}

export const PHOENIX_OUTPUT_KEYS = [
  "gatewayUrl",
  "caUrl",
  "acmeDirectoryUrl",
  "caRootPem",
  "caFingerprint",
  "serviceUrls",
  "openaiBaseUrl",
  "models",
  "qdrantUrl",
  "portainerUrl",
  "guests",
  "gpuAllocation",
] as const satisfies readonly (keyof PhoenixOutputs)[];

/** What the program exports for each key: the value, or an Output of it. */
export type PhoenixExports = { [K in keyof Required<PhoenixOutputs>]: pulumi.Input<NonNullable<PhoenixOutputs[K]>> | undefined };

/** One output of a Phoenix stack, typed by the contract. */
export function phoenixOutput<K extends keyof PhoenixOutputs>(ref: pulumi.StackReference, key: K): pulumi.Output<PhoenixOutputs[K]> {
  return ref.getOutput(key) as pulumi.Output<PhoenixOutputs[K]>;
}

/** The gateway URLs of the routed services: https://<route host or domain><path>. */
export function serviceUrls(config: StackConfig): Record<string, string> {
  const urls: Record<string, string> = {};
  for (const r of config.routes) {
    if (r.service !== undefined && !(r.service in urls)) urls[r.service] = `https://${r.host ?? config.host.domain}${r.path}`;
  }
  return urls;
}

export function openaiBaseUrl(config: StackConfig): string | undefined {
  return config.routes.some((r) => r.byModel && r.path.startsWith("/v1/")) ? `https://${config.host.domain}/v1` : undefined;
}
