/**
 * The machine's tree (machine/machine.ts) and the state of stacks applied
 * before it. pre-tree-urns.json holds the URNs the dev and prod stacks had
 * with every tier at the top (recorded from commit 3f01683, the last layout
 * without the tree, by running that commit's program as below): a fact about
 * existing state, so it is not rewritten by UPDATE_GOLDEN. A resource removed
 * from the program on purpose is removed from it by hand.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { Registered } from "../../scripts/offline-program";
import { adoptions, type Adoption } from "./engine-urns";
import { registrationsOf } from "./registrations";

const PRE_TREE: Record<"dev" | "prod", string[]> = JSON.parse(fs.readFileSync(path.join(__dirname, "pre-tree-urns.json"), "utf8"));
const STACKS = ["dev", "prod"] as const;
const run: Partial<Record<(typeof STACKS)[number], { resources: Registered[]; adopted: Adoption[] }>> = {};

beforeAll(async () => {
  for (const stack of STACKS) {
    const resources = await registrationsOf(stack);
    run[stack] = { resources, adopted: adoptions(resources, new Set(PRE_TREE[stack]), stack, "phoenix") };
  }
}, 60_000);

describe.each(STACKS)("the %s stack", (stack) => {
  it("adopts every URN of its state from before the tree: nothing is created anew or deleted", () => {
    const { adopted } = run[stack]!;
    const byOld = new Map(adopted.filter((a) => a.adopted !== undefined).map((a) => [a.adopted!, a]));
    const orphaned = PRE_TREE[stack].filter((urn) => !byOld.has(urn));
    expect(orphaned, "old URNs no resource adopts: the engine would delete them and create their successors").toEqual([]);
    // Each adopter is the same resource: same type and name, only its place in the tree changed.
    for (const [old, a] of byOld) expect(old.endsWith(`${a.type}::${a.name}`), `${a.urn} adopts ${old}`).toBe(true);
    // The tree moved them: their URNs changed and the aliases carried them over.
    const moved = adopted.filter((a) => a.adopted !== undefined && a.adopted !== a.urn);
    expect(moved.length).toBe(PRE_TREE[stack].length - 1);
  });

  it("aliases only the tiers and guests it moved; their parts inherit through the engine", () => {
    const { resources, adopted } = run[stack]!;
    const explicit = new Map(resources.map((r) => [r.name, r.aliases]));
    const movedTop = adopted.filter((a) => a.adopted !== undefined && !a.adopted.split("::")[2]!.includes("$") && a.adopted !== a.urn);
    for (const a of movedTop) expect(explicit.get(a.name), a.name).toContainEqual(expect.objectContaining({ noParent: true }));
    // A guest's container sends no parent alias of its own; the engine derives its old URN from its guest's.
    const container = adopted.find((a) => a.type === "proxmoxve:index/containerLegacy:ContainerLegacy")!;
    expect(explicit.get(container.name)!.some((s) => "noParent" in s && s.noParent)).toBe(false);
    expect(container.adopted).toMatch(/::phoenix:guest:LxcGuest\$proxmoxve:index\/containerLegacy:ContainerLegacy::ct-\d+$/);
    expect(container.urn).toContain("phoenix:index:Machine$phoenix:index:Guests$phoenix:guest:LxcGuest$");
  });

  it("registers one root, the tiers under it, and the guests and their parts under the tiers", () => {
    const { resources } = run[stack]!;
    const roots = resources.filter((r) => r.parent === undefined && !r.type.startsWith("pulumi:providers:"));
    expect(roots.map((r) => `${r.type}::${r.name}`)).toEqual(["phoenix:index:Machine::phoenix"]);
    const tiers = resources.filter((r) => r.parent === "phoenix").map((r) => r.type);
    expect(tiers).toEqual(
      expect.arrayContaining([
        "phoenix:host:HostPrep",
        "phoenix:template:Templates",
        "phoenix:firewall:ClusterFirewall",
        "pulumi-nodejs:dynamic/phoenix/guest:DestroyGuard",
        "phoenix:index:Guests",
        "phoenix:index:Core",
        "phoenix:index:Models",
        "phoenix:index:Docker",
        "phoenix:observability:Observability",
      ]),
    );
    const parentOf = new Map(resources.map((r) => [r.name, r.parent]));
    const guests = resources.filter((r) => r.type === "phoenix:guest:LxcGuest" || r.type === "phoenix:guest:VmGuest");
    expect(guests.length).toBeGreaterThan(3);
    for (const g of guests) expect(parentOf.get(g.name), g.name).toBe("guests");
    for (const r of resources.filter((x) => x.type === "phoenix:models:ModelServer")) expect(parentOf.get(r.name)).toBe("models");
    for (const name of ["step-ca", "traefik", "gateway"]) expect(parentOf.get(name)).toBe("core");
    // Every resource but the provider descends from the root.
    const rootOf = (name: string): string => (parentOf.get(name) === undefined ? name : rootOf(parentOf.get(name)!));
    expect(resources.filter((r) => !r.type.startsWith("pulumi:providers:") && rootOf(r.name) !== "phoenix").map((r) => r.name)).toEqual([]);
  });
});
