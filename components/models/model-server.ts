/**
 * A model server: the engine rendered from its typed settings, installed in
 * its GPU container, then a health check that must pass (its journal's tail
 * shown when it does not) before anything depending on it proceeds. Routing
 * needs no wiring here: the gateway's model map and Traefik's services are
 * rendered from the same configuration.
 */
import * as pulumi from "@pulumi/pulumi";
import type { SshConnection } from "../../providers/ssh";
import { GuestInstall } from "../guest/install";
import { renderHealthScript } from "./health.render";
import { renderModelInstallScript, renderModelServerFiles } from "./install.render";
import type { ModelServerSpec } from "./server";
import type { ChangeSnapshotPolicy } from "../guest/snapshot";

export interface ModelServerArgs {
  /** The server as its guest's role and the host's GPUs give it (modelServerSpec): its guest, engine, settings and cards. */
  spec: ModelServerSpec;
  /** SSH to the node it lives on. */
  connection: pulumi.Input<SshConnection>;
  /** phoenix:modelApiKey, for a vLLM server that requires it. */
  apiKey?: pulumi.Input<string>;
  /** The guest, configured with its GPUs and model volume. */
  dependsOn: pulumi.Input<pulumi.Resource>[];
  /** A snapshot of the guest before each re-run of its install. */
  snapshot?: ChangeSnapshotPolicy;
}

export class ModelServer extends pulumi.ComponentResource {
  /** The health check: dependents wait for a server that answers with its models. */
  readonly ready: pulumi.Resource;

  constructor(name: string, args: ModelServerArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:models:ModelServer", name, {}, opts);
    const { spec } = args;
    const key = pulumi.output(args.apiKey);
    const install = new GuestInstall(
      `${name}-install`,
      {
        connection: args.connection,
        vmid: spec.vmid,
        script: key.apply((apiKey) => renderModelInstallScript(spec, { apiKey })),
        files: key.apply((apiKey) => renderModelServerFiles(spec, apiKey)),
        check: renderHealthScript(spec),
        dependsOn: args.dependsOn,
        snapshot: args.snapshot,
      },
      { parent: this },
    );
    this.ready = install.ready;
    this.registerOutputs({});
  }
}
