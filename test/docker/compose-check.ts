/**
 * Structural validation of compose files, for want of a Docker engine or the
 * compose-spec schema package here: the subset of the compose specification
 * Phoenix writes, as a JSON Schema checked with ajv (unknown keys refused, so a
 * typo fails), after interpolating ${VAR} the way `docker compose` does.
 */
import Ajv from "ajv";
import { parse } from "yaml";

const IMAGE = "^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$";

const service = {
  type: "object",
  additionalProperties: false,
  required: ["image", "restart"],
  properties: {
    image: { type: "string", pattern: IMAGE, not: { pattern: ":latest$" } },
    container_name: { type: "string", pattern: "^[a-zA-Z0-9][a-zA-Z0-9_.-]+$" },
    restart: { enum: ["no", "always", "on-failure", "unless-stopped"] },
    user: { type: "string", pattern: "^\\d+(:\\d+)?$" },
    command: { type: "array", items: { type: "string" } },
    ports: { type: "array", items: { type: "string", pattern: "^\\d{1,5}:\\d{1,5}(/(tcp|udp))?$" } },
    volumes: { type: "array", items: { type: "string", pattern: "^[^:]+:/[^:]*(:(ro|rw))?$" } },
    environment: { type: "object", additionalProperties: { type: "string" } },
    // compose-spec schema: env_file is a string or a list (of paths, or {path, required}); Phoenix writes absolute paths.
    env_file: { type: "array", items: { type: "string", pattern: "^/" } },
  },
};

const schema = {
  type: "object",
  additionalProperties: false,
  required: ["services"],
  properties: {
    name: { type: "string", pattern: "^[a-z0-9][a-z0-9_-]*$" },
    services: { type: "object", minProperties: 1, additionalProperties: service },
    volumes: { type: "object", additionalProperties: { type: "object" } },
  },
};

const validate = new Ajv({ allErrors: true }).compile(schema);

/** ${VAR}, ${VAR:-default}, ${VAR:?error}, ${VAR?error} and $$, as compose interpolates them. */
export function interpolate(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}/g, (whole, name: string | undefined, colon: string, op: string, arg: string) => {
    if (whole === "$$") return "$";
    const value = env[name!];
    const unset = value === undefined || (colon === ":" && value === "");
    if (!unset) return value;
    if (op === "?") throw new Error(`required variable ${name} is missing: ${arg}`);
    return op === "-" ? arg : "";
  });
}

/** The validation errors of a compose file's text under env; [] when it passes. */
export function composeErrors(text: string, env: Record<string, string> = {}): string[] {
  const doc: unknown = parse(interpolate(text, env));
  return validate(doc) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? ""}`);
}
