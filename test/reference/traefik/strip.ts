/**
 * `npx tsx test/reference/traefik/strip.ts <in.json> <out.json>`: a JSON Schema
 * without its prose (description, markdownDescription, title, examples,
 * $comment); entries of "properties" and the definition tables keep their names.
 */
import * as fs from "node:fs";

const PROSE = new Set(["description", "markdownDescription", "title", "examples", "$comment"]);
const TABLES = new Set(["properties", "patternProperties", "definitions", "$defs"]);

function strip(v: unknown, isTable: boolean): unknown {
  if (Array.isArray(v)) return v.map((x) => strip(x, false));
  if (!v || typeof v !== "object") return v;
  return Object.fromEntries(
    Object.entries(v)
      .filter(([k]) => isTable || !PROSE.has(k))
      .map(([k, x]) => [k, strip(x, !isTable && TABLES.has(k))]),
  );
}

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error("usage: npx tsx test/reference/traefik/strip.ts <in.json> <out.json>");
  process.exit(1);
}
fs.writeFileSync(output, `${JSON.stringify(strip(JSON.parse(fs.readFileSync(input, "utf8")), false))}\n`);
