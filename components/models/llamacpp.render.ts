/**
 * llama.cpp's unit: llama-server built with CUDA from the pinned release tag,
 * serving one GGUF file from the shared model volume.
 */
import { fileList, type RenderedFile } from "../render/files";
import { assertListed, flagsOf, settingsToArgs } from "./args";
import { optionListFor } from "../../stacks/options/option-list";
import { gpuEnvironment } from "./gpu";
import { LLAMACPP_OPTION_LISTS } from "../../stacks/options/llamacpp";
import type { LlamaCppSpec } from "./server";
import { renderServiceUnit } from "./systemd";

/** Each tag is built into its own directory, so an upgrade is a new path and the old build stays until removed. */
export function llamaCppHome(tag: string): string {
  return `/opt/llama.cpp/${tag}`;
}

export function llamaServerBin(tag: string): string {
  return `${llamaCppHome(tag)}/bin/llama-server`;
}

const NOT_OPTIONS = new Set(["engine", "version", "commit", "cudaArchitectures", "kind", "vramGiB"]);
const RENAMED = { servedModelName: "--alias", contextSize: "--ctx-size", gpuLayers: "--n-gpu-layers" };

export function llamaServerArgv(spec: LlamaCppSpec): string[] {
  const s = spec.server;
  const list = optionListFor(LLAMACPP_OPTION_LISTS, "llama.cpp", spec.version);
  const argv = [
    llamaServerBin(spec.version),
    ...settingsToArgs(s, { skip: NOT_OPTIONS, rename: RENAMED }),
    // The guest firewall admits only Traefik; inside the guest every address may answer.
    "--host",
    "0.0.0.0",
    ...(s.kind === "embedding" ? ["--embedding"] : []),
  ];
  assertListed(flagsOf(argv), list);
  return argv;
}

export function renderLlamaCppFiles(spec: LlamaCppSpec): RenderedFile[] {
  return fileList([
    {
      path: spec.unitFile,
      content: renderServiceUnit({
        description: `llama.cpp ${spec.version} serving ${spec.server.servedModelName} (Phoenix model server ${spec.vmid})`,
        user: spec.user.name,
        group: spec.user.name,
        workingDirectory: spec.user.home,
        argv: llamaServerArgv(spec),
        environment: gpuEnvironment(spec),
      }),
    },
  ]);
}
