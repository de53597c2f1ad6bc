/**
 * The configuration side of host identity: the pool's two destructive permissions, and the
 * storage the VMs' user data is written to, named rather than guessed.
 */
import { describe, expect, it } from "vitest";
import type { RawStack } from "../../stacks/load";
import { runProgram } from "../mock-program";
import { issuesOf, prodWithSecrets, validate } from "../stacks/fixtures";

// The raw stack is untyped YAML: tests reach into it the way a user edits the file.
/* eslint-disable @typescript-eslint/no-explicit-any */
const edit = (f: (v: Record<string, any>) => void): RawStack => {
  const raw = prodWithSecrets();
  f(raw.values);
  return raw;
};

describe("a pool's permissions to destroy", () => {
  it("a stack from before the split (allowDestroy alone) is refused with the flag to set", () => {
    const issues = issuesOf(validate(edit((v) => (v.host.zfs.pools[0].allowDestroy = true))));
    expect(issues).toEqual([{ path: "host.zfs.pools[0].allowDestroy", message: expect.stringMatching(/^allowDestroy now only lets Phoenix destroy the pool when you remove it .* Set wipeDisksOnCreate \(true or false\)/) }]);
  });

  it("each flag stated is accepted, and reaches the pool resource as declared", async () => {
    const raw = edit((v) => Object.assign(v.host.zfs.pools[0], { allowDestroy: true, wipeDisksOnCreate: false }));
    expect(issuesOf(validate(raw))).toEqual([]);
    expect(issuesOf(validate(edit((v) => (v.host.zfs.pools[1].wipeDisksOnCreate = true))))).toEqual([]);
    const p = await runProgram(raw);
    expect(p.byName("host-pool-quickOS").inputs).toMatchObject({ node: "phoenix", allowDestroy: true, wipeDisksOnCreate: false });
    expect(p.byName("host-pool-fastData").inputs).toMatchObject({ allowDestroy: false, wipeDisksOnCreate: false });
  });
});

describe("the storage the VMs' user data goes to", () => {
  it("is required once a Docker host VM exists, with the storages that can hold it", () => {
    const issues = issuesOf(validate(edit((v) => delete v.host.snippetStorage)));
    expect(issues.map((i) => i.path)).toEqual(["guests[7].role", "guests[8].role"]);
    // local is not among them: PVE's installer gives it no snippets content (stacks/schema.ts existingStorages).
    expect(issues[0]!.message).toMatch(/writes to the storage host.snippetStorage names: name a dir storage with snippets content \(here: fastData-iso\)/);
  });

  it("must be a dir storage with snippets content that Phoenix can write to", () => {
    expect(issuesOf(validate(edit((v) => (v.host.snippetStorage = "quickOS-vm-disks"))))).toEqual([{ path: "host.snippetStorage", message: expect.stringMatching(/storage 'quickOS-vm-disks' cannot hold the VMs' cloud-init user data/) }]);
    expect(issuesOf(validate(edit((v) => (v.host.snippetStorage = "nowhere"))))[0]?.path).toBe("host.snippetStorage");
  });

  it("does not move when another storage gains snippets content: the VMs and their user data stay", async () => {
    const before = await runProgram(prodWithSecrets());
    const more = edit((v) => {
      const first = v.host.zfs.datasets.find((d: any) => d.storage?.type === "zfspool");
      // A new dir storage ahead of every other one in the file, with snippets.
      v.host.zfs.datasets.unshift({ pool: first.pool, name: "scratch", storage: { id: "fastData-scratch", type: "dir", content: ["snippets", "iso"] } });
      v.host.existingStorages = [{ id: "local", content: ["vztmpl", "iso", "backup", "snippets", "import"] }];
    });
    expect(issuesOf(validate(more))).toEqual([]);
    const after = await runProgram(more);
    for (const vm of ["vm-1001", "vm-1002"]) {
      const id = (p: typeof before) => (p.byName(vm).inputs.initialization as { userDataFileId: string }).userDataFileId;
      expect(id(after)).toBe(id(before));
      expect(after.byName(`${vm}-user-data`).inputs.path).toBe(before.byName(`${vm}-user-data`).inputs.path);
    }
    expect((before.byName("vm-1001").inputs.initialization as { userDataFileId: string }).userDataFileId).toBe("fastData-iso:snippets/phoenix-vm-1001.yaml");
  });
});
