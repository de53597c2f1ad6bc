/** plan.md's "What may destroy data": the permissions a stack gives Phoenix over what holds data. */
import { describe, expect, it } from "vitest";
import { dataSafetySection } from "../scripts/synth/plan";
import { loadStack } from "./support";

describe("plan.md: what may destroy data", () => {
  const prod = loadStack("Pulumi.prod.yaml");

  it("says, for the prod stack as shipped, that nothing is destroyed by removal or replaced by an edit", () => {
    const text = dataSafetySection(prod).join("\n");
    expect(text).not.toContain("**destroyed**");
    expect(text).not.toContain("**replaced**");
    for (const p of prod.host.zfs.pools) expect(text).toContain(`| pool \`${p.name}\` | kept on the host | never: disk, layout and ashift edits are refused`);
    for (const g of prod.guests) expect(text).toMatch(new RegExp(`\\| (CT|VM) ${g.vmid} \`[^|]+\` \\| refused: the guest is protected \\| refused: every replacing edit is named at preview \\|`));
  });

  it("names every permission a stack grants: a pool's destruction and disk wipe, a dataset's, a guest's removal and replacement", () => {
    const edited = structuredClone(prod);
    const pool = edited.host.zfs.pools[0]!;
    pool.allowDestroy = true;
    pool.wipeDisksOnCreate = true;
    edited.host.zfs.datasets[0]!.allowDestroy = true;
    edited.guests[0]!.allowDestroy = true;
    edited.guests[1]!.allowReplace = ["clone", "storage"];
    const text = dataSafetySection(edited).join("\n");
    expect(text).toContain(`| pool \`${pool.name}\` | **destroyed**, with every dataset in it (allowDestroy) | never: disk, layout and ashift edits are refused with the manual steps; may wipe non-empty disks when first created (wipeDisksOnCreate) |`);
    const d = edited.host.zfs.datasets[0]!;
    expect(text).toContain(`| dataset \`${d.pool}/${d.name}\` | **destroyed** (allowDestroy)`);
    expect(text).toContain(`${edited.guests[0]!.vmid} \`${edited.guests[0]!.name}\` | **destroyed** with its disks (allowDestroy)`);
    expect(text).toContain(`${edited.guests[1]!.vmid} \`${edited.guests[1]!.name}\` | refused: the guest is protected | **replaced**, disk lost, on a change of clone, storage (allowReplace) |`);
  });
});
