/**
 * vLLM's files on a model server cloned from the vLLM template: a systemd
 * unit whose command line is rendered from the typed engine settings, and,
 * when the server requires an API key, the root-only environment file that
 * holds it (the key never appears on a command line, where `ps` shows it).
 */
import { VLLM_VENV } from "../../providers/template/layers";
import { fileList, type RenderedFile } from "../render/files";
import { assertListed, flagsOf, optionListFor, settingsToArgs } from "./args";
import type { VllmSpec } from "./server";
import { renderServiceUnit } from "./systemd";
import { VLLM_OPTION_LISTS } from "./vllm.options";

/** Where the vLLM template layer installs its virtualenv: a contract with that layer. */
/** The golden vLLM template's virtualenv, where its layer installed vLLM. */
export const VLLM_HOME = VLLM_VENV;
export const VLLM_BIN = `${VLLM_HOME}/bin/vllm`;
export const VLLM_ENV_FILE = "/etc/phoenix/vllm.env";
/** vLLM reads the key from here when --api-key is not given (vllm/entrypoints/openai/api_server.py). */
export const VLLM_API_KEY_VAR = "VLLM_API_KEY";

// Settings that are not `vllm serve` options of the same name: the renderer places them itself.
const NOT_OPTIONS = new Set(["engine", "version", "model", "task", "requireApiKey"]);
// Printable, header-safe, and free of what systemd's EnvironmentFile parser treats specially.
const API_KEY_RE = /^[A-Za-z0-9._~+/=-]{16,512}$/;

export function vllmArgv(spec: VllmSpec): string[] {
  const s = spec.server;
  const list = optionListFor(VLLM_OPTION_LISTS, "vLLM", spec.version);
  const argv = [
    VLLM_BIN,
    "serve",
    s.model,
    // The guest firewall admits only Traefik; inside the guest every address may answer.
    "--host",
    "0.0.0.0",
    ...settingsToArgs(s, { skip: NOT_OPTIONS }),
    ...(s.task === "embed" ? ["--runner", "pooling", "--convert", "embed"] : ["--runner", "generate"]),
  ];
  assertListed(flagsOf(argv), list);
  return argv;
}

/** The unit, and the key's environment file when the server requires one; apiKey is phoenix:modelApiKey. */
export function renderVllmFiles(spec: VllmSpec, apiKey?: string): RenderedFile[] {
  const s = spec.server;
  if (s.requireApiKey && apiKey === undefined) throw new Error(`guest ${spec.vmid} (${spec.guestName}) requires an API key: pass phoenix:modelApiKey to the renderer`);
  if (apiKey !== undefined && !API_KEY_RE.test(apiKey)) {
    throw new Error(`phoenix:modelApiKey must be 16–512 characters of letters, digits and . _ ~ + / = -: set a new one with pulumi config set --secret phoenix:modelApiKey`);
  }
  const withKey = s.requireApiKey && apiKey !== undefined;
  const unit: RenderedFile = {
    path: spec.unitFile,
    // The version is in the unit so that a new template release restarts the service.
    content: renderServiceUnit({
      description: `vLLM ${spec.version} serving ${s.servedModelName} (Phoenix model server ${spec.vmid})`,
      user: spec.user.name,
      group: spec.user.name,
      workingDirectory: spec.user.home,
      argv: vllmArgv(spec),
      ...(withKey ? { environmentFile: VLLM_ENV_FILE } : {}),
    }),
  };
  if (!withKey) return fileList([unit]);
  return fileList([unit, { path: VLLM_ENV_FILE, content: `${VLLM_API_KEY_VAR}=${apiKey}\n`, mode: "0600", owner: "root:root" }]);
}
