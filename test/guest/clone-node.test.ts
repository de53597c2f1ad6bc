/**
 * The clone block of the bridged guests: on a single node it is what it always was, `{ vmId, full:
 * false }` with no source node, so existing stacks see no diff (clone.* is ForceNew in bpg
 * v0.111.1); clone.nodeName only on a guest whose template is on another node (e2e: cluster.test.ts).
 */
import { describe, expect, it } from "vitest";
import { runProgram } from "../mock-program";
import { prodWithSecrets } from "../stacks/fixtures";

describe("guest clone inputs", () => {
  it("prod (one node): every guest clones its template with no clone.nodeName", async () => {
    const program = await runProgram(prodWithSecrets());
    const guests = [...program.ofType("proxmoxve:index/containerLegacy:ContainerLegacy"), ...program.ofType("proxmoxve:index/vmLegacy:VmLegacy")].filter((r) => r.inputs.clone !== undefined);
    expect(guests.length).toBeGreaterThan(5);
    for (const g of guests) expect(Object.keys(g.inputs.clone as object).sort(), g.name).toEqual(["full", "vmId"]);
  }, 60_000);
});
