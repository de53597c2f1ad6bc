/**
 * How the Pulumi CLI hands a stack's configuration to the program, and the limit that puts on a
 * stack's size.
 *
 * The nodejs language host passes the whole configuration in one environment variable
 * (pulumi/pulumi v3.248.0 sdk/nodejs/cmd/pulumi-language-nodejs/main.go: `execRuntime` appends
 * `PULUMI_CONFIG=<constructConfig(req)>`; `constructConfig` json.Marshals a map from
 * `<namespace>:config:<name>` to the value's text; sdk/go/common/resource/config/plaintext.go
 * `marshalText`: an object value's text is its json.Marshal). The SDK reads it from there only
 * (sdk/nodejs/runtime/config.ts `configEnvKey`). Linux refuses to start a process with one
 * environment string over MAX_ARG_STRLEN, 32 pages = 128 KiB with its NUL (include/uapi/linux/
 * binfmts.h; fs/exec.c copy_strings returns E2BIG), so a configuration past that cannot run
 * under the CLI at all: `pulumi up` fails before the program starts. Checked on this machine by
 * spawning node with `PULUMI_CONFIG` of 131057 bytes (starts) and 131058 (E2BIG).
 */
import type { RawStack } from "./load";

/** One environment string: `PULUMI_CONFIG=`, the value and its NUL, within 32 pages of 4 KiB. */
export const MAX_ARG_STRLEN = 32 * 4096;
const ENV_NAME = "PULUMI_CONFIG";
/** The longest `PULUMI_CONFIG` value Linux starts a process with. */
export const MAX_ENGINE_CONFIG_BYTES = MAX_ARG_STRLEN - `${ENV_NAME}=`.length - 1;

/** Go's encoding/json: JSON.stringify's text with <, >, & and U+2028/9 escaped as \uXXXX (json.Marshal's HTML-safe default). */
function goJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** The `PULUMI_CONFIG` value the language host builds for these values (secrets as given: offline, their placeholders). */
export function engineConfigJson(values: Readonly<Record<string, unknown>>, namespace: string): string {
  const config: Record<string, string> = {};
  for (const [key, value] of Object.entries(values)) config[`${namespace}:config:${key}`] = typeof value === "string" ? value : goJson(value);
  return goJson(config);
}

export interface EngineConfigSize {
  bytes: number;
  /** The key whose value takes the most room. */
  largest: string;
}

/** The size of the configuration as the language host passes it, when over what Linux starts a process with. */
export function engineConfigOverflow(raw: RawStack, namespace: string): EngineConfigSize | undefined {
  const bytes = Buffer.byteLength(engineConfigJson(raw.values, namespace));
  if (bytes <= MAX_ENGINE_CONFIG_BYTES) return undefined;
  const sizes = Object.entries(raw.values).map(([k, v]) => [k, Buffer.byteLength(engineConfigJson({ [k]: v }, namespace))] as const);
  const largest = sizes.reduce((a, b) => (b[1] > a[1] ? b : a))[0];
  return { bytes, largest };
}

/** The validation message for a configuration over the limit. */
export function engineConfigOverflowMessage(size: EngineConfigSize): string {
  return (
    `the stack's configuration is ${size.bytes} bytes as the Pulumi CLI passes it to the program (one environment variable, PULUMI_CONFIG), ` +
    `over the ${MAX_ENGINE_CONFIG_BYTES} bytes Linux allows one (MAX_ARG_STRLEN, 128 KiB): pulumi preview and up would fail to start the program (E2BIG); ` +
    `this setting takes the most room`
  );
}
