/**
 * The JSON Schema of a Pulumi.<stack>.yaml file, generated from the zod schema
 * so editors complete and check the same keys validation accepts.
 */
import { z } from "zod";
import { MACHINE_KEYS, NAMESPACE } from "./load";
import { stackSchema } from "./schema";
import { WELL_KNOWN_SECRETS } from "./secrets";

const secureValue = {
  type: "object",
  description: "A Pulumi secret, written by `pulumi config set --secret`.",
  properties: { secure: { type: "string" } },
  required: ["secure"],
  additionalProperties: false,
};

export function stackFileJsonSchema(): Record<string, unknown> {
  const machine = z.toJSONSchema(stackSchema, { io: "input", unrepresentable: "any", target: "draft-2020-12" }) as {
    properties: Record<string, unknown>;
    required?: string[];
    $defs?: Record<string, unknown>;
  };
  const config: Record<string, unknown> = {};
  for (const key of MACHINE_KEYS) config[`${NAMESPACE}:${key}`] = machine.properties[key];
  for (const [key, description] of Object.entries(WELL_KNOWN_SECRETS)) config[`${NAMESPACE}:${key}`] = { ...secureValue, description: `Secret: ${description}.` };
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    $id: "https://phoenix.invalid/schema/stack.schema.json",
    title: "Phoenix stack configuration (Pulumi.<stack>.yaml)",
    type: "object",
    properties: {
      secretsprovider: { type: "string" },
      encryptedkey: { type: "string" },
      encryptionsalt: { type: "string" },
      environment: {},
      config: {
        type: "object",
        properties: config,
        required: (machine.required ?? []).map((k) => `${NAMESPACE}:${k}`),
        // Secrets named by docker stacks' secretEnv, and other providers' namespaces.
        additionalProperties: true,
      },
    },
    required: ["config"],
    ...(machine.$defs ? { $defs: machine.$defs } : {}),
  };
}
