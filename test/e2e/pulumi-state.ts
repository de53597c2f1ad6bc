/**
 * The e2e engine's state as the Pulumi CLI keeps it, for scripts that go through `pulumi stack
 * export`/`import` (scripts/move.ts): the stand-in CLI (pulumi-standin.ts) on PATH, and the
 * conversion of EngineState to and from a deployment.
 *
 * A deployment (pulumi v3.248.0 sdk/go/common/apitype/core.go UntypedDeployment, DeploymentV3,
 * ResourceV3): `{version: 3, deployment: {manifest, secrets_providers, resources}}`, each resource
 * with `urn`, `custom`, `id`, `type`, `inputs`, `outputs`, `parent`, `dependencies`, `protect`.
 * URNs are `urn:pulumi:<stack>::<project>::<type>::<name>` (sdk/go/common/resource/urn.go); the
 * engine's keys carry no parent types, so the URNs here have none. A value that holds a secret is
 * stored as ciphertext, `{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
 * "ciphertext": …}` (sdk/go/common/resource/sig/sig.go, pkg/resource/stack/deployment.go
 * SerializePropertyValue), here an opaque token the test maps back.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as ts from "typescript";
import type { EngineState } from "./engine";

const SIG_KEY = "4dabf18193072939515e22adb298388d";
const SIG_SECRET = "1b47061264138c4ac30d75fd1eb44270";
const PROJECT = "phoenix";

export interface StandIn {
  dir: string;
  /** Every argv the stand-in was called with, in order. */
  calls(): string[][];
  stateFile(stack: string): string;
  /** Puts PATH and the environment back. */
  restore(): void;
}

/** The stand-in `pulumi` first on this process's PATH, serving a new folder. */
export function startPulumiStandIn(): StandIn {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-pulumi-"));
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin);
  const script = path.join(dir, "pulumi-standin.cjs");
  const source = fs.readFileSync(path.join(__dirname, "pulumi-standin.ts"), "utf8");
  fs.writeFileSync(script, ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText);
  fs.writeFileSync(path.join(bin, "pulumi"), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(script)} "$@"\n`, { mode: 0o755 });
  const saved = { PATH: process.env.PATH, PHOENIX_PULUMI_DIR: process.env.PHOENIX_PULUMI_DIR };
  process.env.PATH = `${bin}${path.delimiter}${process.env.PATH ?? ""}`;
  process.env.PHOENIX_PULUMI_DIR = dir;
  const log = path.join(dir, "calls.log");
  return {
    dir,
    calls: () => (fs.existsSync(log) ? fs.readFileSync(log, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as string[]) : []),
    stateFile: (stack) => path.join(dir, `${stack}.state.json`),
    restore: () => {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Values the export turned into ciphertext, by ciphertext. */
export type Ciphertexts = Map<string, unknown>;

const keyOfUrn = (urn: string) => urn.slice(urn.indexOf(`::${PROJECT}::`) + PROJECT.length + 4);

/** The engine's state as a deployment; a top-level property whose value holds one of `secrets` becomes ciphertext. */
export function toDeployment(state: EngineState, stack: string, secrets: readonly string[]): { deployment: unknown; ciphertexts: Ciphertexts } {
  const ciphertexts: Ciphertexts = new Map();
  const urn = (key: string) => `urn:pulumi:${stack}::${PROJECT}::${key}`;
  const seal = (props: Record<string, unknown>) =>
    Object.fromEntries(
      Object.entries(props).map(([k, v]) => {
        const text = JSON.stringify(v) ?? "";
        if (!secrets.some((s) => text.includes(s))) return [k, v];
        const ciphertext = `v1:${crypto.randomBytes(12).toString("base64")}:${crypto.randomBytes(24).toString("base64")}`;
        ciphertexts.set(ciphertext, v);
        return [k, { [SIG_KEY]: SIG_SECRET, ciphertext }];
      }),
    );
  const resources = [...state.resources].map(([key, e]) => ({
    urn: urn(key),
    custom: true,
    id: e.id,
    type: e.type,
    inputs: seal(e.inputs),
    outputs: seal(e.outputs),
    dependencies: e.dependencies.map(urn),
    ...(e.protect ? { protect: true } : {}),
    ...(e.retainOnDelete ? { retainOnDelete: true } : {}),
  }));
  const deployment = { version: 3, deployment: { manifest: { time: new Date(0).toISOString(), magic: "", version: "v3.248.0" }, secrets_providers: { type: "passphrase", state: { salt: "v1:stand-in" } }, resources } };
  return { deployment, ciphertexts };
}

/** Reads a deployment back into the engine's state: every resource must be one the state has, and its ciphertext one the export made. */
export function fromDeployment(state: EngineState, deployment: unknown, ciphertexts: Ciphertexts): void {
  const open = (props: Record<string, unknown> = {}) =>
    Object.fromEntries(
      Object.entries(props).map(([k, v]) => {
        const sealed = v as Record<string, unknown> | null;
        if (sealed === null || typeof sealed !== "object" || sealed[SIG_KEY] !== SIG_SECRET) return [k, v];
        if (!ciphertexts.has(String(sealed.ciphertext))) throw new Error(`a ciphertext the export did not make, at ${k}`);
        return [k, ciphertexts.get(String(sealed.ciphertext))];
      }),
    );
  const resources = (deployment as { deployment: { resources: Array<{ urn: string; inputs?: Record<string, unknown>; outputs?: Record<string, unknown> }> } }).deployment.resources;
  if (resources.length !== state.resources.size) throw new Error(`the deployment has ${resources.length} resources, the state ${state.resources.size}`);
  for (const r of resources) {
    const entry = state.resources.get(keyOfUrn(r.urn));
    if (!entry) throw new Error(`the deployment has ${r.urn}, which the state does not`);
    entry.inputs = open(r.inputs);
    entry.outputs = open(r.outputs);
  }
}
