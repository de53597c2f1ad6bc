import { beforeAll, describe, expect, it } from "vitest";
import { runProgram, type Program } from "../mock-program";
import { prodWithSecrets } from "../stacks/fixtures";

const FW_OPTIONS = "proxmoxve:firewall/optionsLegacy:OptionsLegacy";
const IPSET = "proxmoxve:firewall/ipsetLegacy:IpsetLegacy";

interface Rule {
  type: string;
  action?: string;
  securityGroup?: string;
  proto?: string;
  dport?: string;
  source?: string;
}
const show = (r: Rule) => (r.type === "group" ? `group ${r.securityGroup}` : `${r.action} ${r.proto}/${r.dport} from ${r.source}`);

let program: Program;
beforeAll(async () => {
  program = await runProgram(prodWithSecrets());
});

describe("the node's firewall of the prod stack", () => {
  it("is a fixed list: the admin group, NFS to each export client, the ops guest's scrapes of the host exporters, then the node's own group", () => {
    const rules = program.byName("firewall-node-phoenix-rules").inputs.rules as Rule[];
    expect(rules.map(show)).toEqual(["group phoenix-admin", "ACCEPT tcp/2049 from 10.0.0.102", "ACCEPT tcp/9100 from 10.0.0.14", "ACCEPT tcp/9835 from 10.0.0.14", "group phoenix-node"]);
  });

  it("keeps SSH and the web UI from the admin network in group phoenix-admin, which exists before the list naming it", () => {
    const admin = program.byName("firewall-group-phoenix-admin").inputs;
    expect(admin.name).toBe("phoenix-admin");
    expect((admin.rules as Rule[]).map(show)).toEqual(["ACCEPT tcp/22 from 10.0.0.0/24", "ACCEPT tcp/8006 from 10.0.0.0/24"]);
    expect((program.byName("firewall-group-phoenix-node").inputs.rules as Rule[]).length).toBe(0);
    const deps = program.dependenciesOf("firewall-node-phoenix-rules");
    expect(deps).toContain("firewall-group-phoenix-admin");
    expect(deps).toContain("firewall-group-phoenix-node");
    expect(program.dependenciesOf("firewall-options")).toContain("firewall-node-phoenix-rules");
  });

  it("is in place before the Docker host that mounts the export boots", () => {
    expect(program.dependenciesOf("vm-1002")).toContain("firewall-node-phoenix-rules");
  });
});

describe("guests' ipfilter in the prod stack", () => {
  it("is on for every guest, all of which have static addresses", () => {
    const options = program.ofType(FW_OPTIONS);
    expect(options.length).toBe((prodWithSecrets().values.guests as unknown[]).length);
    for (const o of options) expect(o.inputs.ipfilter, o.name).toBe(true);
  });

  it("gives each VM an ipfilter-net0 set with its address, before the option turns filtering on; containers get theirs from PVE", () => {
    const sets = program.ofType(IPSET);
    expect(Object.fromEntries(sets.map((s) => [s.inputs.vmId, [s.inputs.name, (s.inputs.cidrs as { name: string }[]).map((c) => c.name)]]))).toEqual({
      1001: ["ipfilter-net0", ["10.0.0.111"]],
      1002: ["ipfilter-net0", ["10.0.0.102"]],
    });
    for (const s of sets) expect(s.inputs.containerId).toBeUndefined();
    const vmOptions = program.ofType(FW_OPTIONS).find((o) => o.inputs.vmId === 1002)!;
    expect(program.dependenciesOf(vmOptions.name)).toContain(sets.find((s) => s.inputs.vmId === 1002)!.name);
  });
});

describe("a guest on DHCP", () => {
  it("has no ipfilter unless asked, since PVE would drop all its traffic", async () => {
    const raw = prodWithSecrets();
    /* eslint-disable-next-line @typescript-eslint/no-explicit-any */
    (raw.values as Record<string, any>).guests.push({ kind: "vm", vmid: 1003, name: "scratch", clone: 9000, storage: "quickOS-vm-disks", diskGiB: 32, network: { ip: "dhcp" } });
    const other = await runProgram(raw);
    const options = other.ofType(FW_OPTIONS).find((o) => o.inputs.vmId === 1003)!;
    expect(options.inputs.ipfilter).toBe(false);
    expect(other.ofType(IPSET).map((s) => s.inputs.vmId)).toEqual([1001, 1002]);
  });
});
