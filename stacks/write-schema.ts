/** `npm run schema`: regenerates schema/stack.schema.json from the zod schema. */
import * as fs from "node:fs";
import * as path from "node:path";
import { stackFileJsonSchema } from "./json-schema";

export const SCHEMA_FILE = path.join(__dirname, "..", "schema", "stack.schema.json");

export function renderSchemaFile(): string {
  return `${JSON.stringify(stackFileJsonSchema(), null, 2)}\n`;
}

if (require.main === module) {
  fs.writeFileSync(SCHEMA_FILE, renderSchemaFile());
  console.log(`wrote ${path.relative(process.cwd(), SCHEMA_FILE)}`);
}
