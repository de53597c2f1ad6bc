/**
 * What offline synth hands the program for every secret (stacks/engine.ts).
 * Kept apart so a renderer can recognise it without loading the Pulumi SDK.
 */
export const SECRET_PLACEHOLDER = "[secret]";

// Printable, header-safe, and free of what systemd's EnvironmentFile parser treats specially.
const MODEL_API_KEY_RE = /^[A-Za-z0-9._~+/=-]{16,512}$/;

/**
 * Refuses a phoenix:modelApiKey that could not travel in vLLM's environment file or an HTTP header
 * (components/models/vllm.render.ts, components/core/nginx.render.ts), never echoing it. The
 * placeholder is let through: offline synth shows it as it is, and it is no key.
 */
export function assertModelApiKey(key: string): void {
  if (key !== SECRET_PLACEHOLDER && !MODEL_API_KEY_RE.test(key)) {
    throw new Error("phoenix:modelApiKey must be 16–512 characters of letters, digits and . _ ~ + / = -: set a new one with pulumi config set --secret phoenix:modelApiKey");
  }
}
