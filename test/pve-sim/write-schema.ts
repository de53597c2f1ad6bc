/**
 * `npm run sim:schema -- <apidoc.js|apidoc.json> --pve <version>` writes the
 * simulator's reduced API schema for that PVE major version
 * (test/pve-sim/schema/pve<major>.json) from an official API dump. Every PVE
 * node has it at /usr/share/pve-docs/api-viewer/apidoc.js, so the simulator
 * can be brought to the exact version a node runs.
 *
 * `npm run sim:schema -- --aplinfo <aplinfo.dat>` writes the appliance
 * catalogue the simulator seeds (pveam's list, /var/lib/pve-manager/apl-info/).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { extractApiTree, reduceAplinfo, reduceApiTree } from "./reduce-schema";
import { SCHEMA_DIR, schemaFile } from "./schema";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function write(file: string, text: string, sourceBytes: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  console.log(`wrote ${path.relative(process.cwd(), file)}: ${text.length} bytes (source ${sourceBytes} bytes)`);
}

function main(): void {
  const aplinfo = arg("--aplinfo");
  if (aplinfo) {
    const text = fs.readFileSync(aplinfo, "utf8");
    write(path.join(SCHEMA_DIR, "aplinfo.dat"), reduceAplinfo(text), text.length);
    return;
  }
  const input = process.argv.slice(2).find((a, i, all) => !a.startsWith("--") && all[i - 1] !== "--pve");
  const version = arg("--pve");
  const major = /^(\d+)(\.\d+)*$/.exec(version ?? "")?.[1];
  if (!input || !major) {
    throw new Error("usage: npm run sim:schema -- <apidoc.js|apidoc.json> --pve <version, e.g. 9.1.3>\n       npm run sim:schema -- --aplinfo <aplinfo.dat>");
  }
  const text = fs.readFileSync(input, "utf8");
  const reduced = reduceApiTree(extractApiTree(text), `pve-docs ${version} api-viewer/apidoc.js`);
  write(schemaFile(Number(major)), `${JSON.stringify(reduced)}\n`, text.length);
}

try {
  main();
} catch (e) {
  console.error(`sim:schema: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
