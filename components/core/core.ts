/**
 * The core tier, ordered by data alone: Traefik takes the CA's root and ACME
 * directory; the gateway takes Traefik's address and the CA's root and URL.
 * Each installs its rendered files through GuestInstall in its container.
 */
import * as pulumi from "@pulumi/pulumi";
import type { SshConnection } from "../../providers/ssh";
import type { StackConfig } from "../../stacks/schema";
import { GuestInstall } from "../guest/install";
import { GATEWAY_LAYOUT, renderGatewayCertFiles, renderGatewayConfig, renderGatewayInstallScript } from "./nginx.render";
import { gatewayHost, guestIp, guestOfRole } from "../../stacks/routing";
import { parseStepCaOutput, renderStepCaFiles, renderStepCaInitScript, stepCaEndpoints, stepCliRelease } from "./step-ca.render";
import { renderTraefikFiles, renderTraefikInstallScript, TRAEFIK_HTTPS_PORT } from "./traefik.render";

interface TierArgs {
  /** The validated stack. */
  config: StackConfig;
  /** SSH to the node the guest lives on. */
  connection: pulumi.Input<SshConnection>;
  /** The guest's own resources, to install only once it is configured. */
  dependsOn: pulumi.Input<pulumi.Resource>[];
}

export interface StepCaArgs extends TierArgs {
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
    const guest = guestOfRole(args.config, "step-ca");
    this.install = new GuestInstall(
      `${name}-install`,
      {
        connection: args.connection,
        vmid: guest.vmid,
        script: pulumi.output(args.password).apply((pw) => renderStepCaInitScript(args.config, {}, pw)),
        files: renderStepCaFiles(args.config),
        dependsOn: args.dependsOn,
      },
      { parent: this },
    );
    const parsed = this.install.stdout.apply(parseStepCaOutput);
    this.rootPem = parsed.apply((o) => o.rootPem);
    this.fingerprint = parsed.apply((o) => o.fingerprint);
    const endpoints = stepCaEndpoints(args.config);
    this.caUrl = endpoints.caUrl;
    this.acmeDirectoryUrl = endpoints.acmeDirectoryUrl;
    this.registerOutputs({ rootPem: this.rootPem, fingerprint: this.fingerprint });
  }
}

export interface TraefikArgs extends TierArgs {
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
    const guest = guestOfRole(args.config, "traefik");
    const inputs = pulumi
      .all([args.caRootPem, args.acmeDirectoryUrl, args.dashboardPassword])
      .apply(([caRootPem, acmeDirectoryUrl, dashboardPassword]) => ({ caRootPem, acmeDirectoryUrl, ...(dashboardPassword === undefined ? {} : { dashboardPassword }) }));
    this.install = new GuestInstall(
      `${name}-install`,
      {
        connection: args.connection,
        vmid: guest.vmid,
        script: inputs.apply((i) => renderTraefikInstallScript(args.config, i)),
        files: inputs.apply((i) => renderTraefikFiles(args.config, i)),
        dependsOn: args.dependsOn,
      },
      { parent: this },
    );
    this.address = { address: guestIp(guest), port: TRAEFIK_HTTPS_PORT };
    this.registerOutputs({});
  }
}

export interface NginxGatewayArgs extends TierArgs {
  /** The CA's root certificate, to verify Traefik. */
  caRootPem: pulumi.Input<string>;
  /** The CA's URL, for the gateway's own certificate. */
  caUrl: string;
  /** Traefik's HTTPS entry point. */
  traefik: { address: string; port: number };
  /** Traefik's installation: the gateway only proxies to a configured router. */
  traefikInstall: pulumi.Resource;
}

/** The TLS entry point every user touches. */
export class NginxGateway extends pulumi.ComponentResource {
  readonly url: string;
  readonly install: GuestInstall;

  constructor(name: string, args: NginxGatewayArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:core:NginxGateway", name, {}, opts);
    const guest = guestOfRole(args.config, "nginx-gateway");
    const cert = { caUrl: args.caUrl, stepCli: stepCliRelease(args.config) };
    const inputs = pulumi.output(args.caRootPem).apply((caRootPem) => ({ traefik: args.traefik, caRootPem }));
    this.install = new GuestInstall(
      `${name}-install`,
      {
        connection: args.connection,
        vmid: guest.vmid,
        script: inputs.apply((i) => renderGatewayInstallScript(args.config, i, cert)),
        files: inputs.apply((i) => [...renderGatewayConfig(args.config, i), ...renderGatewayCertFiles(args.config, cert, GATEWAY_LAYOUT)]),
        dependsOn: [...args.dependsOn, args.traefikInstall],
      },
      { parent: this },
    );
    this.url = `https://${gatewayHost(args.config)}`;
    this.registerOutputs({});
  }
}
