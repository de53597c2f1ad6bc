/** The simulator's own schema files: what `npm run sim:schema` keeps from an apidoc.js, and what it drops. */
import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import { extractApiTree, reduceAplinfo, reduceApiTree } from "./reduce-schema";
import { ApiSchema, loadApiSchema, schemaFile } from "./schema";

/** A slice of pve-docs' apidoc.js as a node ships it: the tree, then the viewer's code. */
const APIDOC = `const apiSchema = [
  {"path": "/nodes", "text": "nodes", "leaf": 0, "info": {"GET": {"name": "index", "method": "GET", "description": "Cluster node index.", "permissions": {"user": "all"}, "allowtoken": 1,
    "parameters": {"additionalProperties": 0}, "returns": {"type": "array", "items": {"type": "object", "properties": {"node": {"type": "string", "description": "The cluster node name."}}}}}},
   "children": [{"path": "/nodes/{node}/lxc", "text": "lxc", "leaf": 0, "info": {"POST": {"name": "create_vm", "method": "POST", "protected": 1, "proxyto": "node", "description": "Create or restore a container.",
     "parameters": {"additionalProperties": 0, "properties": {
       "node": {"type": "string", "format": "pve-node", "description": "The cluster node name.", "typetext": "<string>"},
       "net[n]": {"type": "string", "optional": 1, "description": "Network interface.", "typetext": "name=<string>", "format": {"name": {"type": "string", "pattern": "[-_.\\\\w\\\\d]+", "description": "Name \\"inside\\" the container.", "format_description": "string"}}},
       "cores": {"type": "integer", "minimum": 1, "maximum": 8192, "optional": 1, "title": "Cores", "verbose_description": "long text"}}},
     "returns": {"type": "string", "description": "UPID"}}}}]}
];
let method2cmd = { GET: "get" };
`;

describe("sim:schema reduction", () => {
  const reduced = reduceApiTree(extractApiTree(APIDOC), "pve-docs 9.1.3 api-viewer/apidoc.js");
  const text = JSON.stringify(reduced);

  it("drops every description, title and verbose text, and the permission prose", () => {
    expect(text).not.toMatch(/description|Cores|long text|"permissions"|proxyto/);
    // A typetext is kept only where the simulator reads it: a named format it may not define.
    expect(text).not.toContain("name=<string>");
    expect(text).toContain('"typetext":"<string>"');
  });

  it("keeps paths, methods, parameter names, types, formats, ranges, optional flags and token facts", () => {
    const schema = new ApiSchema(9, [JSON.parse(JSON.stringify(extractApiTree(APIDOC)))[0]]);
    const route = schema.find("POST", "/nodes/{node}/lxc");
    expect(route?.info.protected).toBe(1);
    const create = (reduced.tree[0] as { children: Array<{ info: { POST: { protected: number; parameters: { properties: Record<string, number> } } } }> }).children[0]?.info.POST;
    expect(create?.protected).toBe(1);
    const params = create?.parameters.properties ?? {};
    expect(Object.keys(params).sort()).toEqual(["cores", "net[n]", "node"]);
    expect(reduced.params[params.cores as number]).toEqual({ type: "integer", minimum: 1, maximum: 8192, optional: 1 });
    expect(reduced.params[params["net[n]"] as number]).toEqual({ type: "string", optional: 1, format: { name: { type: "string", pattern: "[-_.\\w\\d]+" } } });
    expect((reduced.tree[0] as { info: { GET: { allowtoken: number; returns: unknown } } }).info.GET).toMatchObject({ allowtoken: 1, returns: { type: "array" } });
  });

  it("stores a schema repeated across endpoints once", () => {
    const twice = JSON.parse(JSON.stringify(extractApiTree(APIDOC)));
    twice[0].children.push({ ...twice[0].children[0], path: "/nodes/{node}/lxc/{vmid}/config" });
    const r = reduceApiTree(twice, "test");
    expect(r.params).toHaveLength(reduced.params.length);
  });

  it("refuses a file that holds no API tree, saying what to pass", () => {
    expect(() => extractApiTree("let x = 1;")).toThrow(/apiSchema = \[.*apidoc\.js/);
    expect(() => extractApiTree("const apiSchema = [{")).toThrow(/never closes/);
    expect(() => reduceApiTree({ path: "/" }, "x")).toThrow(/not a tree/);
  });

  it("keeps the appliance entries' facts and drops their prose and the web news", () => {
    const apl = reduceAplinfo(
      "Package: pve-web-news\nDescription: News\n  <b>Welcome</b>\n\nPackage: debian-12-standard\nVersion: 12.7-1\nType: lxc\nOS: debian-12\nSection: system\nMaintainer: Someone <x@y>\nArchitecture: amd64\nLocation: system/debian-12-standard_12.7-1_amd64.tar.zst\nmd5sum: 0\nsha512sum: abc\nInfopage: https://x\nDescription: Debian 12 Bookworm (standard)\n  A small Debian Bookworm system.\n",
    );
    expect(apl).toBe("Package: debian-12-standard\nVersion: 12.7-1\nType: lxc\nOS: debian-12\nSection: system\nArchitecture: amd64\nLocation: system/debian-12-standard_12.7-1_amd64.tar.zst\nsha512sum: abc\n");
  });
});

describe("the committed schema files", () => {
  for (const [major, methods] of [
    [9, 649],
    [8, 605],
  ] as const) {
    it(`pve${major}.json holds every method of the official dump without its prose, in under a quarter of its size`, () => {
      const file = fs.readFileSync(schemaFile(major), "utf8");
      // A key named `description` may remain where it is a parameter (mappings have one); prose is a string value.
      expect(file).not.toMatch(/"(description|verbose_description|title|format_description)":"/);
      expect(file).not.toContain('"permissions":{');
      // The official dumps are 1.2 MB (9.1.3) and 1.1 MB (8.4.2).
      expect(file.length).toBeLessThan(300_000);
      const schema = loadApiSchema(major);
      expect(schema.routes).toHaveLength(methods);
      const create = schema.find("POST", "/nodes/{node}/lxc");
      expect(create?.params.net0?.format).toMatchObject({ name: { type: "string" } });
      expect(create?.params.net31).toBeDefined();
    });
  }
});
