/**
 * The vrooli stack's declared policy, proved and refused: east-west isolation over PVE's rule
 * order, the hardening checklist, the tailnet policy (parsed as HuJSON/JSONC), and the IOMMU-group
 * refusal of a passthrough GPU that shares its group.
 */
import * as path from "node:path";
import { parse, type ParseError } from "jsonc-parser";
import { describe, expect, it } from "vitest";
import { gpuCards } from "../../providers/hardware/gpu-functions";
import type { PciDevice } from "../../providers/pve";
import { hardeningIssues, isolationIssues, reach } from "../../stacks/isolation";
import { MACHINE_KEYS, readStackFile, validateStack } from "../../stacks/load";
import { stackSchema, type StackConfig } from "../../stacks/schema";
import { renderTailscalePolicy, tailscaleIssues } from "../../stacks/tailscale";
import { ROOT } from "../stacks/fixtures";

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- stack values edited by hand, as the stack file holds them
type Values = Record<string, any>;

const RAW = readStackFile(path.join(ROOT, "Pulumi.vrooli.yaml"));

function load(edit: (v: Values) => void = () => undefined): StackConfig {
  // The schema alone: cross-field validation would refuse the leaking variants these tests build.
  const values = structuredClone(RAW.values) as Values;
  edit(values);
  return stackSchema.parse(Object.fromEntries(MACHINE_KEYS.filter((k) => k in values).map((k) => [k, values[k]])));
}
const guest = (c: StackConfig, vmid: number) => c.guests.find((g) => g.vmid === vmid)!;
const projects = (v: Values) => v.firewall.groups.find((g: { name: string }) => g.name === "projects");

describe("east-west isolation", () => {
  it("the shipped stack validates as a whole", () => {
    expect(validateStack({ values: RAW.values, secretKeys: RAW.secretKeys }, { requireSecrets: false })).toMatchObject({ ok: true });
  });

  it("proves the shipped projects cannot reach each other, yet reach the HQ's message bus", () => {
    const c = load();
    expect(isolationIssues(c)).toEqual([]);
    for (const a of [201, 202, 203]) for (const b of [201, 202, 203]) if (a !== b) expect(reach(c, guest(c, a), guest(c, b))).toBeUndefined();
    expect(reach(c, guest(c, 201), guest(c, 110))).toMatchObject({ proto: "tcp", port: 4222 });
  });

  it("refuses a rule set that leaks: an inbound ACCEPT from the subnet lets proj-x in from its peers", () => {
    const leaking = (v: Values) => {
      // Without the outbound DROP, and with an inbound ACCEPT for the whole subnet, peers reach each other on 8080.
      projects(v).rules = projects(v).rules.filter((r: { action: string }) => r.action !== "DROP");
      projects(v).rules.push({ type: "in", action: "ACCEPT", proto: "tcp", dport: 8080, source: "10.20.0.0/24" });
    };
    const issues = isolationIssues(load(leaking));
    expect(issues.length).toBe(6);
    expect(issues[0]!.message).toMatch(/CT 201 proj-x can reach CT 202 proj-y \(tcp\/8080\).*firewall\.groups\[0\]\.rules\[\d\] \(group projects\) accepts it/);
  });

  it("refuses a member without ipfilter when a peer admits another guest's address: it could send from that address", () => {
    // Without the group's outbound DROP, only proj-y's own rule (SSH from the HQ) stands between the peers.
    const variant = (ipfilter: boolean) =>
      load((v) => {
        projects(v).rules = projects(v).rules.filter((r: { action: string }) => r.action !== "DROP");
        v.guests.find((g: { vmid: number }) => g.vmid === 201).firewall.ipfilter = ipfilter;
        v.guests.find((g: { vmid: number }) => g.vmid === 202).firewall.rules = [{ type: "in", action: "ACCEPT", proto: "tcp", dport: 22, source: "10.20.0.110" }];
      });
    expect(isolationIssues(variant(true))).toEqual([]);
    expect(isolationIssues(variant(false)).map((i) => i.message).join("\n")).toMatch(/CT 201 proj-x can reach CT 202 proj-y \(tcp\/22\)/);
  });

  it("covers UDP too: a UDP-only ACCEPT between peers is a leak", () => {
    const c = load((v) => {
      projects(v).rules.unshift({ type: "out", action: "ACCEPT", proto: "udp", dport: 5353 }, { type: "in", action: "ACCEPT", proto: "udp", dport: 5353 });
    });
    expect(isolationIssues(c).map((i) => i.message).join("\n")).toMatch(/\(udp\/5353\)/);
  });
});

describe("the seed's hardening checklist", () => {
  it("holds for the shipped stack", () => {
    expect(hardeningIssues(load())).toEqual([]);
  });
  it("refuses SSH from the internet, a privileged container, and an isolated member open to the internet", () => {
    const issues = hardeningIssues(
      load((v) => {
        v.firewall.node.rules = [{ type: "in", action: "ACCEPT", proto: "tcp", dport: 22 }];
        v.guests.find((g: { vmid: number }) => g.vmid === 202).unprivileged = false;
        projects(v).rules.push({ type: "in", action: "ACCEPT", proto: "tcp", dport: 8443 });
      }),
    );
    const text = issues.map((i) => `${i.path}: ${i.message}`).join("\n");
    expect(text).toMatch(/firewall\.node\.rules\[0\]: hardening: the node takes tcp\/22 from the internet/);
    expect(text).toMatch(/guests\[\d\]\.unprivileged: hardening: CT 202 proj-y is privileged/);
    expect(text).toMatch(/CT 201 proj-x is in isolated group projects, which is outbound-only, but takes tcp\/8443 from the internet/);
  });
});

describe("the hardening checklist's off-box encrypted backups", () => {
  const issues = (edit: (v: Values) => void) => hardeningIssues(load(edit)).map((i) => `${i.path}: ${i.message}`);
  it("refuses a stack without backups, pointing at what to declare", () => {
    expect(issues((v) => delete v.backup)).toEqual([expect.stringMatching(/^backup: hardening needs off-box encrypted backups: declare phoenix:backup with a job to a backup\.pbs storage with encryptionKeySecretKey/)]);
    // Without hardening the stack may go without.
    expect(hardeningIssues(load((v) => ((v.firewall.hardening = false), delete v.backup)))).toEqual([]);
  });
  it("refuses a PBS storage without a client-side encryption key, and one on the box itself", () => {
    expect(issues((v) => delete v.backup.pbs[0].encryptionKeySecretKey)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^backup\.pbs\[0\]\.encryptionKeySecretKey: hardening: backups to pbs-nas are not encrypted: create a key with `proxmox-backup-client key create --kdf none pbs\.key`/)]),
    );
    expect(issues((v) => (v.backup.pbs[0].server = "10.20.0.14"))).toEqual(expect.arrayContaining([expect.stringMatching(/^backup\.pbs\[0\]\.server: hardening: 10\.20\.0\.14 is this box/)]));
    // Either way every guest is left without an off-box backup, each named at its path.
    expect(issues((v) => (v.backup.pbs[0].server = "10.20.0.2")).filter((t) => t.startsWith("guests["))).toHaveLength(6);
  });
  it("names each guest no enabled off-box job covers, unless listed in notBackedUp with the reason", () => {
    const excluded = (v: Values) => (v.backup.jobs[0].guests = { all: true, exclude: [202] });
    expect(issues(excluded)).toEqual(["guests[3]: hardening: CT 202 proj-y has no off-box encrypted backup: add it to an enabled job in backup.jobs whose storage is a backup.pbs storage with encryptionKeySecretKey on a server off this box, or an nfs, cifs or shared storage in host.existingStorages, or list it in backup.notBackedUp with the reason"]);
    expect(issues((v) => (excluded(v), (v.backup.notBackedUp = [{ vmid: 202, reason: "scratch project, rebuilt from git" }])))).toEqual([]);
    expect(issues((v) => (v.backup.jobs[0].enabled = false))).toHaveLength(6);
  });
  it("takes an NFS share or a storage declared shared as off-box, never a dataset's storage on the box", () => {
    const to = (storage: string, existing: Values[]) => (v: Values) => {
      v.host.existingStorages = [{ id: "local", content: ["iso", "vztmpl", "backup"], type: "dir" }, ...existing];
      v.backup = { jobs: [{ ...v.backup.jobs[0], storage }] };
    };
    expect(issues(to("nas", [{ id: "nas", content: ["backup"], type: "nfs" }]))).toEqual([]);
    expect(issues(to("usb", [{ id: "usb", content: ["backup"], type: "dir", shared: true }]))).toEqual([]);
    expect(issues(to("local", []))).toHaveLength(6);
  });
  it("keeps the key a secret of its own: required, listed with how to make it, never one of Phoenix's own keys", () => {
    const loaded = validateStack({ values: RAW.values, secretKeys: RAW.secretKeys }, { requireSecrets: false });
    expect(loaded.ok === true && loaded.missingSecrets.find((n) => n.key === "pbsEncryptionKey")).toMatchObject({ path: "backup.pbs[0].encryptionKeySecretKey", why: expect.stringContaining("proxmox-backup-client key create --kdf none") });
    const v = structuredClone(RAW.values) as Values;
    v.backup.pbs[0].encryptionKeySecretKey = "stepCaPassword";
    const refused = validateStack({ values: v, secretKeys: RAW.secretKeys }, { requireSecrets: false });
    expect(JSON.stringify(refused)).toMatch(/backup\.pbs\[0\]\.encryptionKeySecretKey.*phoenix:stepCaPassword is one of Phoenix's own secrets or settings: name a key of its own \(e\.g\. pbsEncryptionKey\)/);
    v.backup.pbs[0].encryptionKeySecretKey = "pbsPassword";
    expect(JSON.stringify(validateStack({ values: v, secretKeys: RAW.secretKeys }, { requireSecrets: false }))).toMatch(/phoenix:pbsPassword is already the password's key/);
  });
});

describe("the tailnet policy", () => {
  it("renders HuJSON that a JSONC parser reads: phone → plan-hq, projects only to the HQ's bus, never to each other", () => {
    const text = renderTailscalePolicy(load())!;
    const errors: ParseError[] = [];
    const policy = parse(text, errors, { allowTrailingComma: true, disallowComments: false }) as { tagOwners: Record<string, string[]>; acls: Array<{ src: string[]; dst: string[] }> };
    expect(errors).toEqual([]);
    expect(policy.acls).toContainEqual({ action: "accept", src: ["tag:phone"], dst: ["tag:plan-hq:*"] });
    const projectTags = ["tag:proj-x", "tag:proj-y", "tag:vrooli-dev"];
    for (const a of policy.acls) if (projectTags.includes(a.src[0]!)) expect(a.dst).toEqual(["tag:plan-hq:4222"]);
    expect(Object.keys(policy.tagOwners).sort()).toEqual(["tag:phone", "tag:plan-hq", ...projectTags]);
  });
  it("refuses a rule joining two isolated projects, and a tag nobody carries", () => {
    const issues = tailscaleIssues(load((v) => v.tailscale.acls.push({ src: "proj-x", dst: "proj-y" }, { src: "laptop", dst: "plan-hq" })));
    expect(issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      "tailscale.acls[4]: tag:proj-x → tag:proj-y lets CT 201 proj-x reach CT 202 proj-y over the tailnet, but both are in isolated group projects: remove the rule",
      "tailscale.acls[5].src: tag:laptop is carried by no guest and is not in tailscale.deviceTags",
    ]);
  });
});

describe("IOMMU group of a passthrough GPU", () => {
  const dev = (id: string, cls: string, vendor: string, device: string, group: number, name: string): PciDevice => ({ id, class: cls, vendor, device, iommugroup: group, device_name: name }) as PciDevice;
  const listing = [
    dev("0000:01:00.0", "0x030000", "0x10de", "0x2204", 14, "GA102 [GeForce RTX 3090]"),
    dev("0000:01:00.1", "0x040300", "0x10de", "0x1aef", 14, "High Definition Audio Controller"),
  ];
  it("accepts a card alone in its group with its audio function", () => {
    expect(gpuCards("pve", listing, ["0000:01:00.0"], ["0000:01:00.0"])[0]!.functions.map((f) => f.id)).toEqual(["10de:2204", "10de:1aef"]);
  });
  it("refuses a card whose group holds another device, listing the group", () => {
    const crowded = [...listing, dev("0000:02:00.0", "0x010802", "0x144d", "0xa80c", 14, "NVMe SSD Controller")];
    expect(() => gpuCards("pve", crowded, ["0000:01:00.0"], ["0000:01:00.0"])).toThrow(
      "GPU 0000:01:00.0 cannot be passed through: IOMMU group 14 on node pve also holds devices outside its slot (0000:01:00.0 10de:2204 GA102 [GeForce RTX 3090]; 0000:01:00.1 10de:1aef High Definition Audio Controller; 0000:02:00.0 144d:a80c NVMe SSD Controller)",
    );
    // An lxc-shared card in the same situation is not refused: the host driver keeps it.
    expect(() => gpuCards("pve", crowded, ["0000:01:00.0"])).not.toThrow();
  });
});
