/**
 * Edits that bpg's provider answers by destroying a guest (stacks/replacement.ts), on
 * the dev stack: each is refused before any call, applied in place by Phoenix, or allowed by the
 * configuration for that guest. Destructive calls (DELETE of a guest, pct/qm destroy) are counted
 * and stay zero unless a scenario allowed one.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RawStack } from "../../stacks/load";
import { DEV_FILE } from "../stacks/fixtures";
import { changed, edited, expectNoOrphans, failuresOf, guestDestroys, loadProgram } from "./support";
import { adopted } from "./translations";
import { startWorld, type World } from "./world";

type G = Record<string, unknown>;
const guestOf = (v: { guests: G[] }, vmid: number) => v.guests.find((g) => g.vmid === vmid)!;
const rootfs = (w: World, vmid: number) => String(w.sim.state.guests.get(vmid)?.config.rootfs ?? "");

describe("dev stack: edits that would replace a guest", () => {
  let w: World;
  let current: RawStack;
  beforeAll(async () => {
    w = await startWorld({ stackFile: DEV_FILE, loadProgram, operationTimeoutMs: 30_000 });
    current = w.raw;
    const first = await w.apply();
    expect(failuresOf(first)).toEqual([]);
  }, 180_000);
  afterAll(async () => w?.stop());

  /** Applies `edit` on top of the current stack; keeps it as current only when `keep`. */
  const attempt = async (edit: (v: { guests: G[] }) => void, keep = true) => {
    w.sim.log.clear();
    w.rig.sandbox.clearCalls();
    const next = edited(current, edit as never);
    const r = await w.apply(next);
    if (keep) current = next;
    return r;
  };

  it("fresh apply: a clone has its template's disk (bpg does not resize it), and nothing was adopted", () => {
    expect(rootfs(w, 914)).toMatch(/,size=24G/);
    expect(rootfs(w, 103)).toMatch(/,size=16G/);
    expect(adopted).toEqual([]);
  });

  it("a renamed guest is updated in place, keeping its disk", async () => {
    const volume = rootfs(w, 914).split(",")[0];
    const r = await attempt((v) => void (guestOf(v, 914).name = "ollama-a"));
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r)).toContain("update ct-914");
    expect(changed(r).filter((c) => /^(replace|create|delete) ct-914/.test(c))).toEqual([]);
    expect(w.sim.state.guests.get(914)?.config.hostname).toBe("ollama-a");
    expect(rootfs(w, 914).split(",")[0]).toBe(volume);
    expect(guestDestroys(w)).toEqual([]);
  }, 90_000);

  it("a grown disk is resized by Phoenix in the same apply, and the next apply changes nothing", async () => {
    const r = await attempt((v) => void (guestOf(v, 914).diskGiB = 40));
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r)).toEqual(["update ct-914-disk", "update destroy-guard"]);
    expect(w.sim.log.mutating().map((m) => `${m.method} ${m.path}`)).toEqual([`PUT /api2/json/nodes/${w.node}/lxc/914/resize`]);
    expect(rootfs(w, 914)).toMatch(/,size=40G/);
    w.sim.log.clear();
    const again = await w.apply(current);
    expect(failuresOf(again)).toEqual([]);
    expect(changed(again)).toEqual([]);
    expect(w.sim.log.mutating()).toEqual([]);
    expect(guestDestroys(w)).toEqual([]);
  }, 90_000);

  it("a smaller disk is refused before any call, naming both sizes", async () => {
    const r = await attempt((v) => void (guestOf(v, 914).diskGiB = 30), false);
    expect(failuresOf(r).join("\n")).toContain("its disk cannot shrink from 40 GiB to 30 GiB");
    expect(w.sim.log.mutating()).toEqual([]);
    expect(guestDestroys(w)).toEqual([]);
  }, 90_000);

  it("smaller than its template is refused by validation, naming both sizes", async () => {
    await expect(attempt((v) => void (guestOf(v, 914).diskGiB = 16), false)).rejects.toThrow(/its disk is 16 GiB but template 901 \(\S+\) has 24 GiB/);
    expect(w.sim.log.mutating()).toEqual([]);
  }, 90_000);

  it("node (a migration): refused before any call", async () => {
    const r = await attempt((v) => void (guestOf(v, 914).node = "pve-other"), false).catch((e: Error) => e);
    // Either the stack refuses an undeclared node or the guard refuses the move: never a call.
    const text = r instanceof Error ? r.message : failuresOf(r).join("\n");
    expect(text).toMatch(/pve-other/);
    expect(w.sim.log.mutating()).toEqual([]);
    expect(guestDestroys(w)).toEqual([]);
  }, 90_000);

  it("storage and unprivileged: refused by validation (they must be the template's)", async () => {
    await expect(attempt((v) => void (guestOf(v, 103).storage = "tank-iso"), false)).rejects.toThrow(/linked clone shares its template's disk/);
    await expect(attempt((v) => void (guestOf(v, 103).unprivileged = false), false)).rejects.toThrow(/template 900 has true/);
    expect(w.sim.log.mutating()).toEqual([]);
  }, 90_000);

  it("vmid (renumbering): refused before any call, the old guest named", async () => {
    const r = await attempt((v) => void (guestOf(v, 103).vmid = 104), false).catch((e: Error) => e);
    const text = r instanceof Error ? r.message : failuresOf(r).join("\n");
    expect(text).toMatch(/103|104/);
    expect(w.sim.log.mutating()).toEqual([]);
    expect(guestDestroys(w)).toEqual([]);
  }, 90_000);

  it("clone: refused without allowReplace; with it the guest is deleted first and cloned anew, once", async () => {
    const refused = await attempt((v) => Object.assign(guestOf(v, 102), { clone: 901, diskGiB: 24 }), false);
    expect(failuresOf(refused).join("\n")).toContain("changing clone from 900 to 901 destroys the guest");
    expect(w.sim.log.mutating()).toEqual([]);
    const r = await attempt((v) => Object.assign(guestOf(v, 102), { clone: 901, diskGiB: 24, allowReplace: ["clone"] }));
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r)).toContain("replace ct-102");
    expect(guestDestroys(w)).toEqual([`DELETE /api2/json/nodes/${w.node}/lxc/102`]);
    expect(rootfs(w, 102)).toMatch(/base(vol)?-901-disk-0\//);
    expect(w.sim.state.guests.get(102)?.status).toBe("running");
    // Delete-first: bpg never cloned onto the live vmid and adopted it.
    expect(adopted).toEqual([]);
    await expectNoOrphans(w, expect);
  }, 120_000);
});
