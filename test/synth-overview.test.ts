// @vitest-environment jsdom
// Mermaid's own parser judges the overview. It runs label text through DOMPurify, which needs a
// DOM: jsdom gives it one, so this runs offline without a browser.
import fc from "fast-check";
import mermaid from "mermaid";
import { beforeAll, describe, expect, it } from "vitest";
import { mermaidText, overviewSection, renderOverview } from "../scripts/synth/overview";
import { readStackFile, validateStack } from "../stacks/load";
import type { StackConfig } from "../stacks/schema";
import { PROD_FILE } from "./stacks/fixtures";

interface Vertex {
  id: string;
  text?: string;
  link?: string;
  haveCallback?: boolean;
}
interface Parsed {
  vertices: Map<string, Vertex>;
  edges: { start: string; end: string; text: string }[];
  subgraphs: { id: string; title: string; nodes: string[] }[];
}

/** The flowchart as mermaid@11 reads it (its FlowDB after parsing). */
async function parse(text: string): Promise<Parsed> {
  const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
  const db = diagram.db as unknown as { getVertices(): Map<string, Vertex>; getEdges(): Parsed["edges"]; getSubGraphs(): Parsed["subgraphs"] };
  return { vertices: db.getVertices(), edges: db.getEdges(), subgraphs: db.getSubGraphs() };
}

/**
 * Label text as it will be drawn. mermaid@11 src/utils.ts encodeEntities keeps `#NNN;` codes
 * through parsing as `ﬂ°°NNN¶ß`, which the renderer turns into HTML character references.
 */
const drawn = (text: string | undefined) => (text ?? "").replace(/ﬂ°°(\d+)¶ß/g, (_m, code: string) => String.fromCodePoint(Number(code)));

function prod(): StackConfig {
  const result = validateStack(readStackFile(PROD_FILE), { requireSecrets: false });
  if (result.ok !== true) throw new Error(`Pulumi.prod.yaml does not validate: ${JSON.stringify(result)}`);
  return result.config;
}

beforeAll(async () => {
  // Registers the diagram types (getDiagramFromText alone does not).
  await mermaid.parse("flowchart LR\n  a --> b");
});

describe("the guest-level overview in plan.md", () => {
  it("is a flowchart Mermaid parses, with the tiers and the chains a reader looks for", async () => {
    const { text } = renderOverview(prod());
    await expect(mermaid.parse(text)).resolves.toMatchObject({ diagramType: "flowchart-v2" });
    const { vertices, edges, subgraphs } = await parse(text);
    const members = Object.fromEntries(subgraphs.map((s) => [s.id, [...s.nodes].sort()]));
    expect(members).toEqual({
      sg_templates: ["t900", "t9000", "t901", "t920"],
      sg_gpus: ["gpu0", "gpu1"],
      sg_core: ["g101", "g102", "g103"],
      sg_models: ["g801", "g802", "g914", "g917"],
      sg_docker: ["g1001", "g1002", "s1002_0", "s1002_1", "s1002_2"],
      sg_observability: ["g104"],
      sg_routes: ["r4", "r5", "r6", "r7", "r8", "r_model"],
    });
    const has = (start: string, end: string, label?: string) => expect(edges.some((e) => e.start === start && e.end === end && (label === undefined || drawn(e.text) === label)), `${start} -> ${end}`).toBe(true);
    // templates → templates → guests
    has("t900", "t901");
    has("t901", "t920");
    has("t920", "g802");
    has("t9000", "g1002");
    // CA → Traefik → gateway, and the gateway serves the routes
    has("g103", "g102", "certificates");
    has("g102", "g101", "upstream");
    has("g101", "sg_routes", "serves");
    // Portainer server → agent → stacks; the Docker hosts trust the CA
    has("g1001", "g1002", "agent");
    has("g1002", "s1002_0");
    has("g103", "g1001", "CA root");
    // GPUs → model servers
    has("gpu0", "g801");
    has("gpu1", "g917");
    // routes → the guests serving them
    for (const server of ["g801", "g802", "g914", "g917"]) has("r_model", server);
    has("r4", "g1002", "qdrant :6333");
    has("r7", "g1001", "portainer :9443");
    expect(drawn(vertices.get("g914")?.text)).toBe("914 ollama<br>Ollama (llama3.1:8b, nomic-embed-text), 10.0.0.155");
    expect(drawn(vertices.get("r7")?.text)).toBe("portainer.internal.thinkheads.ai/");
  });

  it("opens plan.md in a mermaid fence and points to graph.svg for the detail", () => {
    const section = overviewSection(prod());
    expect(section.slice(0, 3)).toEqual(["## Overview", "", "```mermaid"]);
    expect(section[3]).toMatch(/^flowchart LR\n[\s\S]*[^\n]$/);
    expect(section[4]).toBe("```");
    expect(section).toContain("Every resource and what it waits for: `graph.svg` (source `graph.dot`).");
  });

  it("says so instead of drawing a diagram Mermaid would refuse for its size", () => {
    const config = prod();
    const big = { ...config, routes: Array.from({ length: 600 }, (_, i) => ({ path: `/r${i}/`, service: "webapp", byModel: false, stripPrefix: false, websocket: false })) };
    const section = overviewSection(big).join("\n");
    expect(section).not.toContain("```mermaid");
    expect(section).toMatch(/past what Mermaid draws by default \(500 edges, 50000 characters\)/);
  });

  it("quotes any text so that Mermaid reads it back as exactly that label", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: "binary", maxLength: 40 }), async (s) => {
        const { vertices, edges } = await parse(`flowchart LR\n  a["${mermaidText(s)}"] --> b["b"]\n`);
        expect([...vertices.keys()]).toEqual(["a", "b"]);
        expect(edges).toHaveLength(1);
        // Mermaid trims labels; a label is one line, so control characters are spaces.
        expect(drawn(vertices.get("a")?.text)).toBe(s.replace(/[\p{Cc}\u2028\u2029]/gu, " ").trim());
      }),
      { numRuns: 150 },
    );
  });

  it("keeps a hostile configuration's text inside its labels", async () => {
    const inject = 'x"] --> g103\n  click g103 "javascript:alert(1)"\n  %% [y](z) `md` <img src=x onerror=alert(1)> #quot; end';
    const config = prod();
    const hostile: StackConfig = structuredClone(config);
    hostile.host.gpus[0]!.model = inject;
    const chat = hostile.guests.find((g) => g.vmid === 802)!;
    if (chat.role?.type !== "model-server" || chat.role.server.engine !== "vllm") throw new Error("802 is the vLLM chat server");
    chat.role.server.servedModelName = inject;
    hostile.routes[4]!.path = `/${inject}`;
    hostile.templates[0]!.name = inject;
    const [plain, evil] = [await parse(renderOverview(config).text), await parse(renderOverview(hostile).text)];
    expect([...evil.vertices.keys()].sort()).toEqual([...plain.vertices.keys()].sort());
    expect(evil.edges.map((e) => `${e.start}->${e.end}`)).toEqual(plain.edges.map((e) => `${e.start}->${e.end}`));
    for (const v of evil.vertices.values()) expect([v.link, v.haveCallback]).toEqual([undefined, undefined]);
    expect(drawn(evil.vertices.get("gpu0")?.text)).toBe(`GPU 0<br>${inject.replace(/\n/g, " ")}, 16 GiB`);
    expect(drawn(evil.vertices.get("r4")?.text)).toBe(`/${inject.replace(/\n/g, " ")}`);
  });
});
