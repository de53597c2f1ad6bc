/**
 * The guest-level picture that opens plan.md, as a Mermaid flowchart so that
 * it also renders in a pull request: templates → guests, CA → Traefik →
 * gateway, Portainer server → agents → Docker stacks, GPUs → model servers,
 * routes → the guests serving them. graph.svg stays the per-resource detail.
 * Pure: built from the validated configuration alone.
 */
import { ENGINE_NAMES } from "../../components/models/server";
import { guestAddress, guestDependencies, modelsOf } from "../../stacks/plan";
import type { Guest, StackConfig } from "../../stacks/schema";
import { ROLE_TIER, type Tier } from "./tiers";

/**
 * Text for a label, written between double quotes. mermaid-js/mermaid
 * packages/mermaid/src/docs/syntax/flowchart.md, "Special characters that
 * break syntax": text in quotes may hold troublesome characters; "Entity codes
 * to escape characters": `#quot;`, or a base-10 code such as `#35;` for `#`.
 * (test/synth-overview.test.ts holds this to mermaid@11.17.2's own parser.)
 * Everything but letters, digits, space and `, ( ) . _ / -` becomes such a code, so
 * no label can close its quotes, start Markdown (a backtick), carry HTML, or
 * hold the `:` and `#` that mermaid's own entity pass looks for around
 * `style`/`classDef` (mermaid src/utils.ts encodeEntities). Line breaks and
 * other control characters become spaces: a label is one line. Empty text is
 * a blank, since an empty quoted label does not parse.
 */
export function mermaidText(text: string): string {
  let out = "";
  for (const ch of text) {
    if (/^[A-Za-z0-9 ,()._/-]$/.test(ch)) out += ch;
    else if (/^\p{Cc}$|^[\u2028\u2029]$/u.test(ch)) out += " ";
    else out += `#${ch.codePointAt(0)};`;
  }
  // `[""]` is a parse error; a blank label is not.
  return out === "" ? " " : out;
}

/** A quoted label of one or more lines; the line breaks are the renderer's own markup, never the config's. */
const label = (...lines: string[]) => `"${lines.map(mermaidText).join("<br>")}"`;

/** mermaid@11.17.2 src/schemas/config.schema.yaml defaults: diagrams past these do not render (they show an error instead). */
export const MERMAID_LIMITS = { maxTextSize: 50_000, maxEdges: 500 };

const ROLE_NAMES: Record<NonNullable<Guest["role"]>["type"], string> = {
  "step-ca": "Step-CA",
  traefik: "Traefik",
  "nginx-gateway": "nginx gateway",
  "model-server": "model server",
  "portainer-server": "Portainer server",
  "portainer-agent": "Portainer agent",
  "compose-host": "compose host",
  observability: "observability",
};

const GROUPS: { tier: Tier; title: string }[] = [
  { tier: "core", title: "Core (CA, Traefik, gateway)" },
  { tier: "models", title: "Model servers" },
  { tier: "docker", title: "Docker hosts (Portainer)" },
  { tier: "observability", title: "Observability (Prometheus, Alertmanager)" },
  { tier: "guests", title: "Other guests" },
];

// Node ids are fixed prefixes and validated integers (vmids, GPU ids, indices): never config text.
const tid = (vmid: number) => `t${vmid}`;
const gid = (vmid: number) => `g${vmid}`;

function guestLines(g: Guest): string[] {
  const role = g.role;
  const what =
    role?.type === "model-server" ? `${ENGINE_NAMES[role.server.engine]} (${modelsOf(g).map((m) => m.id).join(", ")})` : role?.type === "portainer-agent" ? `${ROLE_NAMES[role.type]} (${role.environment})` : role ? ROLE_NAMES[role.type] : g.kind === "vm" ? "VM" : "container";
  return [`${g.vmid} ${g.name}`, `${what}, ${guestAddress(g) ?? "dhcp"}`];
}

export interface Overview {
  /** The flowchart's text, without the Markdown fence. */
  text: string;
  edges: number;
}

export function renderOverview(config: StackConfig): Overview {
  const lines = ["flowchart LR"];
  const edges: string[] = [];
  const node = (id: string, ...text: string[]) => `    ${id}[${label(...text)}]`;
  const group = (id: string, title: string, members: string[]) => {
    if (members.length > 0) lines.push(`  subgraph ${id}[${label(title)}]`, ...members, "  end");
  };
  const edge = (from: string, to: string, text?: string, dotted = false) => edges.push(`  ${from} ${dotted ? "-.->" : "-->"}${text === undefined ? "" : `|${label(text)}|`} ${to}`);
  const guests = new Set(config.guests.map((g) => g.vmid));
  const templates = new Set(config.templates.map((t) => t.vmid));

  group("sg_templates", "Templates", config.templates.map((t) => node(tid(t.vmid), `${t.vmid} ${t.name}`, t.kind === "lxc" ? `container template, ${t.layer} layer` : "VM template")));
  for (const t of config.templates) if (t.kind === "lxc" && "clone" in t.source && templates.has(t.source.clone)) edge(tid(t.source.clone), tid(t.vmid));
  for (const g of config.guests) if (templates.has(g.clone)) edge(tid(g.clone), gid(g.vmid));

  group("sg_gpus", "Host GPUs", config.host.gpus.map((gpu) => node(`gpu${gpu.id}`, `GPU ${gpu.id}`, `${gpu.model}, ${gpu.memoryGiB} GiB`)));
  const gpuIds = new Set(config.host.gpus.map((gpu) => gpu.id));
  for (const g of config.guests) for (const id of g.gpus) if (gpuIds.has(id)) edge(`gpu${id}`, gid(g.vmid));

  const tierOf = (g: Guest): Tier => (g.role && ROLE_TIER[g.role.type]) || "guests";
  for (const { tier, title } of GROUPS) {
    const members = config.guests.filter((g) => tierOf(g) === tier);
    group(
      `sg_${tier}`,
      title,
      members.flatMap((g) => [node(gid(g.vmid), ...guestLines(g)), ...(g.kind === "vm" ? g.dockerStacks.map((s, i) => node(`s${g.vmid}_${i}`, `stack ${s.name}`, s.compose)) : [])]),
    );
  }
  for (const g of config.guests) if (g.kind === "vm") g.dockerStacks.forEach((_, i) => edge(gid(g.vmid), `s${g.vmid}_${i}`));

  // The core chain as machine/compose.ts builds it: the first guest of each role.
  const first = (type: string) => config.guests.find((g) => g.role?.type === type);
  const [ca, traefik, gateway] = [first("step-ca"), first("traefik"), first("nginx-gateway")];
  if (ca && traefik) edge(gid(ca.vmid), gid(traefik.vmid), "certificates");
  if (traefik && gateway) edge(gid(traefik.vmid), gid(gateway.vmid), "upstream");
  // Why guests wait for each other (stacks/plan.ts): an agent for its server, a Docker host for the CA, dependsOn.
  for (const d of guestDependencies(config)) {
    if (!guests.has(d.to)) continue;
    if (d.path.endsWith(".role.server")) edge(gid(d.to), gid(d.from), "agent");
    else if (d.path.endsWith(".role")) edge(gid(d.to), gid(d.from), "CA root", true);
    else edge(gid(d.to), gid(d.from), "dependsOn", true);
  }

  const servers = config.guests.filter((g) => modelsOf(g).length > 0);
  const routeNodes: string[] = [];
  const byModel = config.routes.filter((r) => r.byModel).map((r) => `${r.host ?? ""}${r.path}`);
  if (byModel.length > 0) {
    routeNodes.push(node("r_model", "by model", ...byModel));
    for (const g of servers) edge("r_model", gid(g.vmid));
  }
  config.routes.forEach((r, i) => {
    const service = r.service === undefined ? undefined : config.services.find((s) => s.name === r.service);
    if (!service) return;
    routeNodes.push(node(`r${i}`, `${r.host ?? ""}${r.path}`));
    if (guests.has(service.guest)) edge(`r${i}`, gid(service.guest), `${service.name} :${service.port}`);
  });
  group("sg_routes", "Routes", routeNodes);
  if (gateway && routeNodes.length > 0) edge(gid(gateway.vmid), "sg_routes", "serves");

  return { text: [...lines, ...edges].join("\n") + "\n", edges: edges.length };
}

/** The overview as plan.md shows it: the diagram, or why it is left out. */
export function overviewSection(config: StackConfig): string[] {
  const { text, edges } = renderOverview(config);
  const head = ["## Overview", ""];
  const detail = "Every resource and what it waits for: `graph.svg` (source `graph.dot`).";
  if (text.length > MERMAID_LIMITS.maxTextSize || edges > MERMAID_LIMITS.maxEdges) {
    return [...head, `The overview (${edges} edges, ${text.length} characters) is past what Mermaid draws by default (${MERMAID_LIMITS.maxEdges} edges, ${MERMAID_LIMITS.maxTextSize} characters). ${detail}`, ""];
  }
  return [...head, "```mermaid", text.trimEnd(), "```", "", detail, ""];
}
