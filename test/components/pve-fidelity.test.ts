/**
 * Guests and storages as Proxmox and bpg really behave (issue 19, items 1, 6, 7, 8): container
 * features through the root path, the VM CPU type, `local` with the installer's content, and
 * dir storages on datasets marked as mount points.
 */
import { describe, expect, it } from "vitest";
import { runProgram } from "../mock-program";
import { issuesOf, prodWithSecrets, validate } from "../stacks/fixtures";
import { MACHINE_KEYS, requiredSecrets } from "../../stacks/secrets";
import { stackSchema } from "../../stacks/schema";
import type { RawStack } from "../../stacks/load";

const CT = "proxmoxve:index/containerLegacy:ContainerLegacy";
const VM = "proxmoxve:index/vmLegacy:VmLegacy";
const DIR = "proxmoxve:storage/directoryLegacy:DirectoryLegacy";
const ZFSPOOL = "proxmoxve:storage/zfspoolLegacy:ZfspoolLegacy";
const MOUNTPOINT = "pulumi-nodejs:dynamic/phoenix/storage:DirMountpoint";

type Values = { guests: Array<Record<string, unknown>>; templates: Array<Record<string, unknown>>; host: Record<string, unknown>; proxmox: { nodes: Array<Record<string, unknown>> } };

function edit(f: (v: Values) => void): RawStack {
  const raw = prodWithSecrets();
  f(raw.values as unknown as Values);
  return raw;
}
/** The machine description alone, parsed with its defaults. */
const parsed = (raw: RawStack) => stackSchema.parse(Object.fromEntries(MACHINE_KEYS.map((k) => [k, raw.values[k]])));
const guest = (v: Values, vmid: number) => v.guests.find((g) => g.vmid === vmid)!;
const template = (v: Values, vmid: number) => v.templates.find((t) => t.vmid === vmid)!;

describe("container features (item 1)", () => {
  it("go to LxcRootConfig for every container when a root path exists, and never to the bridged container", async () => {
    const program = await runProgram(edit((v) => (guest(v, 102).features = { nesting: true })));
    for (const ct of program.ofType(CT)) expect(ct.inputs.features, ct.name).toBeUndefined();
    expect(program.byName("ct-102-root").inputs.features).toEqual({ nesting: true, keyctl: false, fuse: false });
    expect(program.byName("ct-101-root").inputs.features).toEqual({ nesting: false, keyctl: false, fuse: false });
  });

  it("need root@pam for a privileged container or to turn off a template's nesting, when the node has no SSH", () => {
    const raw = edit((v) => {
      guest(v, 102).unprivileged = false;
      guest(v, 102).features = { nesting: true };
      guest(v, 102).allowReplace = ["unprivileged"];
      template(v, 900).features = { nesting: true };
    });
    const config = parsed(raw);
    const noSsh = { ...config, proxmox: { ...config.proxmox, nodes: config.proxmox.nodes.map((n) => ({ ...n, ssh: undefined })) } };
    const needs = requiredSecrets(noSsh).filter((n) => n.key === "proxmoxRootPassword");
    const byGuest = Object.fromEntries(needs.map((n) => [n.path, n.why]));
    const ct102 = `guests[${config.guests.findIndex((g) => g.vmid === 102)}]`;
    expect(byGuest[ct102]).toMatch(/features of a privileged container/);
    // Every other container of template 900 keeps nesting off.
    const others = config.guests.filter((g) => g.kind === "lxc" && g.clone === 900 && g.vmid !== 102);
    expect(others.length).toBeGreaterThan(0);
    for (const g of others) expect(byGuest[`guests[${config.guests.indexOf(g)}]`], `CT ${g.vmid}`).toMatch(/turning off the nesting its template has/);
  });

  it("are refused on a privileged template, and a cloned template keeps its source's nesting", () => {
    const issues = issuesOf(
      validate(
        edit((v) => {
          template(v, 900).features = { nesting: true };
          template(v, 901).features = { nesting: false };
        }),
      ),
    );
    const at = (path: string) => issues.filter((i) => i.path === path).map((i) => i.message);
    const i901 = `templates[${(prodWithSecrets().values as unknown as Values).templates.findIndex((t) => t.vmid === 901)}]`;
    expect(at(`${i901}.features.nesting`)).toEqual([expect.stringMatching(/its source 900 has nesting, which a linked clone keeps/)]);
    const privileged = issuesOf(validate(edit((v) => Object.assign(template(v, 900), { unprivileged: false, features: { nesting: true } }))));
    expect(privileged.map((i) => i.message)).toContainEqual(expect.stringMatching(/template 900: features on a privileged container need root@pam/));
  });
});

describe("VM CPU type (item 6)", () => {
  it("is x86-64-v2-AES on the VM template and its clones, not bpg's qemu64, and host when a guest asks", async () => {
    const program = await runProgram(edit((v) => (guest(v, 1002).cpuType = "host")));
    const types = Object.fromEntries(program.ofType(VM).map((r) => [r.name, (r.inputs.cpu as { type?: string }).type]));
    expect(types).toEqual({ "vm-9000-tpl-ubuntu-cloud": "x86-64-v2-AES", "vm-1001": "x86-64-v2-AES", "vm-1002": "host" });
  });
});

describe("the local storage (item 7)", () => {
  it("defaults to the installer's content: iso, vztmpl and backup, no snippets, no import", () => {
    const config = parsed(edit((v) => delete v.host.existingStorages));
    expect(config.host.existingStorages).toEqual([{ id: "local", content: ["iso", "vztmpl", "backup"], type: "dir" }]);
  });

  it("is not taken to hold cloud images or user data unless declared", () => {
    const issues = issuesOf(
      validate(
        edit((v) => {
          delete v.host.existingStorages;
          (template(v, 9000).source as Record<string, unknown>).storage = "local";
          v.host.snippetStorage = "local";
        }),
      ),
    );
    const i9000 = `templates[${(prodWithSecrets().values as unknown as Values).templates.findIndex((t) => t.vmid === 9000)}]`;
    expect(issues).toContainEqual({ path: `${i9000}.source.storage`, message: expect.stringMatching(/storage 'local' does not hold import content.*declare it in host.existingStorages/) });
    expect(issues.map((i) => i.path)).toContain("host.snippetStorage");
    const declared = issuesOf(
      validate(
        edit((v) => {
          v.host.existingStorages = [{ id: "local", content: ["iso", "vztmpl", "backup", "import", "snippets"] }];
          (template(v, 9000).source as Record<string, unknown>).storage = "local";
          v.host.snippetStorage = "local";
        }),
      ),
    );
    expect(declared).toEqual([]);
  });
});

describe("dir storages on datasets (item 8)", () => {
  it("are marked as mount points after their registration, and guests wait for that; zfspool storages are not", async () => {
    const program = await runProgram(prodWithSecrets());
    const dirs = program.ofType(DIR).map((d) => d.inputs.resourceId as string);
    expect(dirs.length).toBeGreaterThan(0);
    const marks = program.ofType(MOUNTPOINT);
    expect(marks.map((m) => m.inputs.storage).sort()).toEqual([...dirs].sort());
    for (const m of marks) expect(m.dependsOn).toContain(`host-storage-${String(m.inputs.storage)}`);
    expect(program.ofType(ZFSPOOL).length).toBeGreaterThan(0);
    // The template whose image is downloaded to fastData-iso waits for the mark.
    expect([...program.dependenciesOf("vm-9000-tpl-ubuntu-cloud-image")]).toContain("host-storage-fastData-iso-mountpoint");
  });
});
