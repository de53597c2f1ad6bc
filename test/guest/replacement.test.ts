/**
 * What destroys a guest: the destroy guard's comparison of the last apply's guests with the
 * declared ones, and the validation rules of linked clones (disk, privilege, storage).
 */
import { describe, expect, it } from "vitest";
import { destructiveChanges, guardedGuests, type GuardedGuest } from "../../stacks/replacement";
import { implementation as guard } from "../../providers/guest/destroy-guard";
import { volumeSizeGiB } from "../../providers/guest/guest-disk";
import { readStackFile } from "../../stacks/load";
import { DEV_FILE, issuesOf, prodWithSecrets, validate } from "../stacks/fixtures";

/* eslint-disable @typescript-eslint/no-explicit-any */
const ct = (over: Partial<GuardedGuest> = {}): GuardedGuest => ({
  vmid: 801, kind: "lxc", name: "vllm-embed", path: "guests[3]", node: "pve", clone: 920, storage: "quickOS-lxc-disks", unprivileged: true, diskGiB: 64, allowDestroy: false, allowReplace: [], ...over,
});

describe("destructiveChanges: each bpg ForceNew input of a guest, one at a time", () => {
  it("an unchanged guest, a grown disk, a renamed guest and a new guest destroy nothing", () => {
    expect(destructiveChanges([ct()], [ct()])).toEqual([]);
    expect(destructiveChanges([ct()], [ct({ diskGiB: 80 })])).toEqual([]);
    expect(destructiveChanges([ct()], [ct({ name: "embed" })])).toEqual([]);
    expect(destructiveChanges([ct()], [ct(), ct({ vmid: 805, name: "other" })])).toEqual([]);
  });

  it("a node change: a VM on shared storage migrates (bpg `migrate`); a container never follows it, refused with the procedure", () => {
    const vm = (over: Partial<GuardedGuest> = {}) => ct({ kind: "vm", ...over });
    expect(destructiveChanges([vm()], [vm({ node: "pve2", localStorage: false })])).toEqual([]);
    expect(destructiveChanges([vm()], [vm({ node: "pve2", localStorage: true })])).toEqual([{ path: "guests[3].node", message: expect.stringMatching(/VM 801 vllm-embed: cannot move from node pve to pve2: .*linked clone.*vzdump 801.*qmrestore 801.*Put node pve back/) }]);
    // A container on shared storage: `npm run move` (PVE's restart migration, then the state).
    expect(destructiveChanges([ct()], [ct({ node: "pve2", localStorage: false })])).toEqual([
      { path: "guests[3].node", message: expect.stringMatching(/CT 801 vllm-embed: .*cannot move a container.*Run `npm run move -- <stack> 801 pve2`: it migrates the container with PVE \(restart mode\) and points the state at pve2.*pulumi refresh/) },
    ]);
    // On the stack's own (local) storage, PVE cannot migrate the linked clone: backup and restore, for a container too.
    expect(destructiveChanges([ct()], [ct({ node: "pve2", localStorage: true })])).toEqual([{ path: "guests[3].node", message: expect.stringMatching(/CT 801 vllm-embed: cannot move from node pve to pve2: its disk is on quickOS-lxc-disks, local to pve.*vzdump 801.*pct restore 801.*Put node pve back/) }]);
    // allowReplace does not lift it: the field is not replaceable.
    expect(destructiveChanges([ct()], [ct({ node: "pve2", allowReplace: ["clone", "storage", "unprivileged"] })])).toHaveLength(1);
  });

  it("a smaller disk is refused, naming both sizes", () => {
    expect(destructiveChanges([ct()], [ct({ diskGiB: 32 })])).toEqual([{ path: "guests[3].diskGiB", message: expect.stringContaining("from 64 GiB to 32 GiB") }]);
  });

  it.each([
    ["clone", { clone: 901 }],
    ["storage", { storage: "other-disks" }],
    ["unprivileged", { unprivileged: false }],
  ] as const)("%s: refused without allowReplace, allowed with it", (field, change) => {
    const refused = destructiveChanges([ct()], [ct(change)]);
    expect(refused).toEqual([{ path: `guests[3].${field}`, message: expect.stringContaining(`add allowReplace: [${field}]`) }]);
    expect(destructiveChanges([ct()], [ct({ ...change, allowReplace: [field] })])).toEqual([]);
  });

  it("a removed guest is refused unless it was applied with allowDestroy; a renumbered one is named", () => {
    expect(destructiveChanges([ct()], [])).toEqual([{ path: "guests", message: expect.stringContaining("set allowDestroy: true on it, apply, then remove it") }]);
    expect(destructiveChanges([ct({ allowDestroy: true })], [])).toEqual([]);
    expect(destructiveChanges([ct()], [ct({ vmid: 806 })])[0]?.message).toContain("guests[3] (vmid 806) is a new guest; put vmid 801 back");
  });

  it("all problems are reported together, and the guard's check turns them into failures by config path", async () => {
    const news = [ct({ node: "pve2", diskGiB: 8, storage: "x" })];
    expect(destructiveChanges([ct()], news).map((c) => c.path)).toEqual(["guests[3].node", "guests[3].diskGiB", "guests[3].storage"]);
    const checked = await guard.check({ guests: [ct()] }, { guests: news });
    expect(checked.failures?.map((f) => f.property)).toEqual(["guests[3].node", "guests[3].diskGiB", "guests[3].storage"]);
    // The first apply has nothing to compare with.
    expect((await guard.check({}, { guests: news })).failures).toEqual([]);
  });
});

describe("linked clones in validation", () => {
  const prod = () => prodWithSecrets();
  const guest = (raw: ReturnType<typeof prod>, vmid: number) => (raw.values.guests as any[]).find((g) => g.vmid === vmid);

  it("the shipped stacks validate with the disk rules, and their guests are guarded as declared", () => {
    const p = validate(prod());
    expect(issuesOf(p).filter((i) => /diskGiB|unprivileged|link/.test(i.path + i.message))).toEqual([]);
    const d = validate(readStackFile(DEV_FILE), false);
    expect(issuesOf(d).filter((i) => /diskGiB|unprivileged|link/.test(i.path + i.message))).toEqual([]);
    if (p.ok !== true) return;
    const guarded = guardedGuests(p.config);
    expect(guarded.find((g) => g.vmid === 801)).toMatchObject({ clone: 920, diskGiB: 64, unprivileged: true, allowDestroy: false, allowReplace: [] });
  });

  it("a guest smaller than its template is refused with both sizes (the issue's 801 from 920)", () => {
    const raw = prod();
    guest(raw, 801).diskGiB = 32;
    expect(issuesOf(validate(raw))).toContainEqual({ path: "guests[3].diskGiB", message: expect.stringMatching(/its disk is 32 GiB but template 920 \(tpl-vllm\) has 64 GiB.*set diskGiB to 64 or more/) });
  });

  it("a template smaller than its source, or of another privilege, is refused", () => {
    const raw = prod();
    const t920 = (raw.values.templates as any[]).find((t) => t.vmid === 920);
    t920.diskGiB = 16;
    t920.unprivileged = false;
    const paths = issuesOf(validate(raw)).map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(["templates[2].diskGiB", "templates[2].unprivileged"]));
  });

  it("a container of another privilege than its template is refused; allowReplace: [unprivileged] on a VM is refused", () => {
    const raw = prod();
    guest(raw, 801).unprivileged = false;
    guest(raw, 1001).allowReplace = ["unprivileged"];
    const issues = issuesOf(validate(raw));
    expect(issues).toContainEqual({ path: "guests[3].unprivileged", message: expect.stringContaining("template 920 has true") });
    expect(issues).toContainEqual({ path: "guests[7].allowReplace", message: expect.stringContaining("a VM has no unprivileged setting") });
  });

  it("a container template on a storage that cannot link-clone (dir) is refused", () => {
    const raw = prod();
    const ds = (raw.values.host as any).zfs.datasets.find((d: any) => d.storage?.id === "quickOS-lxc-disks");
    ds.storage.type = "dir";
    expect(issuesOf(validate(raw)).filter((i) => i.path.startsWith("templates[") && i.path.endsWith(".storage")).map((i) => i.message)).toEqual(
      expect.arrayContaining([expect.stringContaining("storage quickOS-lxc-disks is of type dir, which cannot make linked clones")]),
    );
  });
});

describe("volumeSizeGiB", () => {
  it("reads PVE's size= in any unit", () => {
    expect(volumeSizeGiB("tank:subvol-801-disk-0,size=64G")).toBe(64);
    expect(volumeSizeGiB("tank:base-900-disk-0/vm-1001-disk-0,size=2048M,discard=on")).toBe(2);
    expect(volumeSizeGiB("tank:x,size=1T")).toBe(1024);
    expect(volumeSizeGiB(undefined)).toBe(0);
  });
});
