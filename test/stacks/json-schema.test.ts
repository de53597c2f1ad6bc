import * as fs from "node:fs";
import Ajv2020 from "ajv/dist/2020";
import addFormats from "ajv-formats";
import { parse as parseYaml } from "yaml";
import { describe, expect, it } from "vitest";
import { renderSchemaFile, SCHEMA_FILE } from "../../stacks/write-schema";
import { DEV_FILE, PROD_FILE } from "./fixtures";

function compile() {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormats(ajv);
  return ajv.compile(JSON.parse(fs.readFileSync(SCHEMA_FILE, "utf8")));
}

describe("the editor JSON Schema", () => {
  it("is committed up to date with the zod schema (run `npm run schema` after changing stacks/schema.ts)", () => {
    expect(fs.readFileSync(SCHEMA_FILE, "utf8")).toBe(renderSchemaFile());
  });

  it.each([PROD_FILE, DEV_FILE])("accepts %s, which names it in its modeline", (file) => {
    const text = fs.readFileSync(file, "utf8");
    expect(text.split("\n")[0]).toBe("# yaml-language-server: $schema=./schema/stack.schema.json");
    const validate = compile();
    const ok = validate(parseYaml(text));
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
  });

  it("flags the same typos validation rejects, so editors show them while typing", () => {
    const doc = parseYaml(fs.readFileSync(PROD_FILE, "utf8"));
    doc.config["phoenix:guests"][0].memroyMiB = 1024;
    doc.config["phoenix:guests"][1].network.ip = "10.0.0.12";
    const validate = compile();
    expect(validate(doc)).toBe(false);
    const paths = (validate.errors ?? []).map((e) => `${e.instancePath} ${e.keyword}`);
    expect(paths).toContain("/config/phoenix:guests/0 additionalProperties");
    expect(paths.some((p) => p.startsWith("/config/phoenix:guests/1/network/ip"))).toBe(true);
  });

  it("describes secrets as Pulumi secure values", () => {
    const validate = compile();
    const doc = parseYaml(fs.readFileSync(PROD_FILE, "utf8"));
    doc.config["phoenix:proxmoxTokenSecret"] = "plain";
    expect(validate(doc)).toBe(false);
    doc.config["phoenix:proxmoxTokenSecret"] = { secure: "v1:abc" };
    expect(validate(doc)).toBe(true);
  });
});
