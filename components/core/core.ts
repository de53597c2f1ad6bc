/**
 * The core tier, ordered by data alone: Traefik takes the CA's root and ACME
 * directory; the gateway takes Traefik's address and the CA's root and URL.
 * Each installs its rendered files through GuestInstall in its container.
 */
import * as pulumi from "@pulumi/pulumi";
import type { SshConnection } from "../../providers/ssh";
import { GuestInstall } from "../guest/install";
import type { ChangeSnapshotPolicy } from "../guest/snapshot";
import { GATEWAY_LAYOUT, renderGatewayCertFiles, renderGatewayConfig, renderGatewayInstallScript } from "./nginx.render";
import { gatewayHost, guestIp, type GuestOfRole, type RoutingConfig } from "../../stacks/routing";
import { parseStepCaOutput, renderStepCaFiles, renderStepCaInitScript, stepCaEndpoints, stepCliRelease } from "./step-ca.render";
import { renderTraefikFiles, renderTraefikInstallScript, TRAEFIK_HTTPS_PORT } from "./traefik.render";

interface TierArgs<T extends "step-ca" | "traefik" | "nginx-gateway"> {
  /** The guest with the role. */
  guest: GuestOfRole<T>;
  /** The routing tables the renderers read (stacks/routing.ts RoutingConfig says why they take them whole). */
  routing: RoutingConfig;
  /** SSH to the node the guest lives on. */
  connection: pulumi.Input<SshConnection>;
  /** The guest's own resources, to install only once it is configured. */
  dependsOn: pulumi.Input<pulumi.Resource>[];
  /** A snapshot of the guest before each re-run of its install. */
  snapshot?: ChangeSnapshotPolicy;
}

export interface StepCaArgs extends TierArgs<"step-ca"> {
  /** The admin provisioner's password (phoenix:stepCaPassword). */
  password: pulumi.Input<string>;
}

/** The internal PKI: initialised once inside its guest; the root key never leaves it. */
export class StepCa extends pulumi.ComponentResource {
  readonly rootPem: pulumi.Output<string>;
  /** SHA-256 fingerprint of the root certificate. */
  readonly fingerprint: pulumi.Output<string>;
  readonly caUrl: string;
  readonly acmeDirectoryUrl: string;
  readonly install: GuestInstall;

  constructor(name: string, args: StepCaArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:core:StepCa", name, {}, opts);
    const { guest } = args;
    this.install = new GuestInstall(
      `${name}-install`,
      {
        connection: args.connection,
        vmid: guest.vmid,
        script: pulumi.output(args.password).apply((pw) => renderStepCaInitScript(args.routing, {}, pw)),
        files: renderStepCaFiles(args.routing),
        dependsOn: args.dependsOn,
        snapshot: args.snapshot,
      },
      { parent: this },
    );
    const parsed = this.install.stdout.apply(parseStepCaOutput);
    this.rootPem = parsed.apply((o) => o.rootPem);
    this.fingerprint = parsed.apply((o) => o.fingerprint);
    const endpoints = stepCaEndpoints(args.routing);
    this.caUrl = endpoints.caUrl;
    this.acmeDirectoryUrl = endpoints.acmeDirectoryUrl;
    this.registerOutputs({ rootPem: this.rootPem, fingerprint: this.fingerprint });
  }
}

export interface TraefikArgs extends TierArgs<"traefik"> {
  /** The CA's root certificate, trusted for ACME and HTTPS backends. */
  caRootPem: pulumi.Input<string>;
  /** The CA's ACME directory. */
  acmeDirectoryUrl: pulumi.Input<string>;
  /** phoenix:traefikDashboardPassword, while the dashboard is served. */
  dashboardPassword?: pulumi.Input<string>;
}

/** The internal router: a router and service per declared service, HTTPS backends verified against the CA. */
export class Traefik extends pulumi.ComponentResource {
  /** Where the gateway reaches it. */
  readonly address: { address: string; port: number };
  readonly install: GuestInstall;

  constructor(name: string, args: TraefikArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:core:Traefik", name, {}, opts);
    const { guest } = args;
    const inputs = pulumi
      .all([args.caRootPem, args.acmeDirectoryUrl, args.dashboardPassword])
      .apply(([caRootPem, acmeDirectoryUrl, dashboardPassword]) => ({ caRootPem, acmeDirectoryUrl, ...(dashboardPassword === undefined ? {} : { dashboardPassword }) }));
    this.install = new GuestInstall(
      `${name}-install`,
      {
        connection: args.connection,
        vmid: guest.vmid,
        script: inputs.apply((i) => renderTraefikInstallScript(args.routing, i)),
        files: inputs.apply((i) => renderTraefikFiles(args.routing, i)),
        dependsOn: args.dependsOn,
        snapshot: args.snapshot,
      },
      { parent: this },
    );
    this.address = { address: guestIp(guest), port: TRAEFIK_HTTPS_PORT };
    this.registerOutputs({});
  }
}

export interface NginxGatewayArgs extends TierArgs<"nginx-gateway"> {
  /** The CA's root certificate, to verify Traefik. */
  caRootPem: pulumi.Input<string>;
  /** The CA's URL, for the gateway's own certificate. */
  caUrl: string;
  /** Traefik's HTTPS entry point. */
  traefik: { address: string; port: number };
  /** Traefik's installation: the gateway only proxies to a configured router. */
  traefikInstall: pulumi.Resource;
  /** Each API client's key (phoenix:gatewayApiKey-<client>) while the role's apiKeys are on; only their SHA-256 reaches the gateway, inside the secret install. */
  apiKeys?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** phoenix:modelApiKey, when the gateway checks API keys and a vLLM server behind it requires its own (keyedModelServices). */
  modelApiKey?: pulumi.Input<string>;
}

/** The TLS entry point every user touches. */
export class NginxGateway extends pulumi.ComponentResource {
  readonly url: string;
  readonly install: GuestInstall;

  constructor(name: string, args: NginxGatewayArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:core:NginxGateway", name, {}, opts);
    const { guest } = args;
    const cert = { caUrl: args.caUrl, stepCli: stepCliRelease(args.routing) };
    // With the keys in, inputs is a secret Output: so are the script and the files made from it.
    const inputs = pulumi
      .all([args.caRootPem, args.apiKeys, args.modelApiKey])
      .apply(([caRootPem, apiKeys, modelApiKey]) => ({ traefik: args.traefik, caRootPem, ...(apiKeys === undefined ? {} : { apiKeys }), ...(modelApiKey === undefined ? {} : { modelApiKey }) }));
    this.install = new GuestInstall(
      `${name}-install`,
      {
        connection: args.connection,
        vmid: guest.vmid,
        script: inputs.apply((i) => renderGatewayInstallScript(args.routing, i, cert)),
        files: inputs.apply((i) => [...renderGatewayConfig(args.routing, i), ...renderGatewayCertFiles(args.routing, cert, GATEWAY_LAYOUT)]),
        dependsOn: [...args.dependsOn, args.traefikInstall],
        snapshot: args.snapshot,
      },
      { parent: this },
    );
    this.url = `https://${gatewayHost(args.routing)}`;
    this.registerOutputs({});
  }
}
