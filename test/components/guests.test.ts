import { beforeAll, describe, expect, it } from "vitest";
import { runProgram, type Program, type Registered } from "../mock-program";
import { prodWithSecrets } from "../stacks/fixtures";

const CT = "proxmoxve:index/containerLegacy:ContainerLegacy";
const VM = "proxmoxve:index/vmLegacy:VmLegacy";
const FW_OPTIONS = "proxmoxve:firewall/optionsLegacy:OptionsLegacy";
const ROOT_CONFIG = "pulumi-nodejs:dynamic/phoenix/guest:LxcRootConfig";

let program: Program;
const input = <T>(r: Registered, key: string) => r.inputs[key] as T;
/** Guests only: the VM template is a VmLegacy too. */
const guestsOf = (type: string) => program.ofType(type).filter((r) => r.inputs.template !== true);

beforeAll(async () => {
  program = await runProgram(prodWithSecrets());
});

describe("guests of the prod stack", () => {
  it("are linked clones of their declared templates, named for what they are", () => {
    const expected: Record<string, number> = {
      "ct-101": 900,
      "ct-102": 900,
      "ct-103": 900,
      "ct-104": 900,
      "ct-801": 920,
      "ct-802": 920,
      "ct-914": 901,
      "ct-917": 901,
      "vm-1001": 9000,
      "vm-1002": 9000,
    };
    const guests = [...guestsOf(CT), ...guestsOf(VM)];
    expect(Object.fromEntries(guests.map((g) => [g.name, input<{ vmId: number }>(g, "clone").vmId]))).toEqual(expected);
    for (const g of guests) expect(input<{ full: boolean }>(g, "clone").full).toBe(false);
  });

  it("are unprivileged containers with the firewall on their NIC and inbound DROP", () => {
    for (const ct of program.ofType(CT)) {
      expect(input(ct, "unprivileged")).toBe(true);
      expect(input<{ firewall: boolean }[]>(ct, "networkInterfaces")[0]?.firewall).toBe(true);
    }
    for (const vm of guestsOf(VM)) expect(input<{ firewall: boolean }[]>(vm, "networkDevices")[0]?.firewall).toBe(true);
    const options = program.ofType(FW_OPTIONS);
    expect(options).toHaveLength(10);
    for (const o of options) expect({ enabled: input(o, "enabled"), inputPolicy: input(o, "inputPolicy") }).toEqual({ enabled: true, inputPolicy: "DROP" });
  });

  it("give the token-side container no root-only setting, and leave them to LxcRootConfig", () => {
    for (const ct of program.ofType(CT)) {
      expect(input(ct, "devicePassthroughs")).toBeUndefined();
      expect(input(ct, "mountPoints")).toBeUndefined();
    }
  });

  it("pass exactly the assigned GPU, found by PCI address, to each GPU guest", () => {
    const devices = (name: string) => (program.byName(`${name}-root`).inputs.devices as { path: string }[]).map((d) => d.path);
    // config GPU 0 is 0000:01:00.0, which the driver enumerates as /dev/nvidia1
    expect(devices("ct-802")).toEqual(["/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]);
    expect(devices("ct-914")[0]).toBe("/dev/nvidia0");
    expect(devices("ct-103")).toEqual([]);
    expect(program.byName("ct-802-root").inputs.verifyGpus).toEqual({ busIds: ["00000000:01:00.0"], driverVersion: "580.95.05" });
    expect(program.byName("ct-103-root").inputs.verifyGpus).toBeUndefined();
    // Every container has root settings when a root path exists (its features at least): Traefik's carry no device.
    expect(devices("ct-102")).toEqual([]);
  });

  it("mount the Step-CA volume into the CA and nowhere else, owned through the id map", () => {
    const mounts = program.ofType(ROOT_CONFIG).flatMap((r) => ((r.inputs.mounts as { hostPath: string; owner: unknown }[] | undefined) ?? []).map((m) => ({ guest: r.name, ...m })));
    expect(mounts.filter((m) => m.hostPath === "/fastData/step-ca").map((m) => m.guest)).toEqual(["ct-103-root"]);
    expect(mounts.find((m) => m.guest === "ct-801-root")?.owner).toEqual({ uid: 101000, gid: 101000, mode: "0755" });
  });

  it("never clones two guests from one template at the same time", () => {
    const guests = [...guestsOf(CT), ...guestsOf(VM)];
    const bySource = new Map<number, string[]>();
    for (const g of guests) {
      const source = input<{ vmId: number }>(g, "clone").vmId;
      bySource.set(source, [...(bySource.get(source) ?? []), g.name]);
    }
    for (const clones of bySource.values()) {
      for (let i = 0; i < clones.length; i++) {
        for (let j = i + 1; j < clones.length; j++) {
          const [a, b] = [clones[i]!, clones[j]!];
          const ordered = program.dependenciesOf(a).has(b) || program.dependenciesOf(b).has(a);
          expect(ordered, `${a} and ${b} could clone concurrently`).toBe(true);
        }
      }
    }
  });

  it("clone each guest only once its template is built", () => {
    expect(program.dependenciesOf("ct-802")).toContain("ct-920-tpl-vllm");
    expect(program.dependenciesOf("vm-1001")).toContain("vm-9000-tpl-ubuntu-cloud");
    // the golden template sits on top of the CUDA one, which waits for the host driver
    expect(program.dependenciesOf("ct-920-tpl-vllm")).toContain("host-nvidia");
  });

  it("start GPU guests only after the host driver, and guests after their storage and datasets", () => {
    const chat = program.dependenciesOf("ct-802");
    expect(chat).toContain("host-nvidia");
    expect(chat).toContain("host-storage-quickOS-lxc-disks");
    expect(chat).toContain("host-dataset-fastData-shared-models");
    expect(program.dependenciesOf("ct-102")).not.toContain("host-nvidia");
  });

  it("register the Portainer agent after its server", () => {
    expect(program.dependenciesOf("vm-1002")).toContain("vm-1001");
  });
});

describe("a GPU passed through to a VM next to one shared with containers", () => {
  let mixed: Program;
  beforeAll(async () => {
    const raw = prodWithSecrets();
    /* eslint-disable @typescript-eslint/no-explicit-any */
    const v = raw.values as Record<string, any>;
    v.host.gpus[1].mode = "vm-passthrough";
    v.guests = v.guests.filter((g: any) => g.vmid !== 917);
    v.services = v.services.filter((s: any) => s.guest !== 917);
    const byId = (id: number) => v.guests.find((g: any) => g.vmid === id);
    byId(801).role.server.gpuMemoryUtilization = 0.1;
    byId(802).role.server.gpuMemoryUtilization = 0.4;
    byId(914).gpus = [0];
    byId(1002).gpus = [1];
    mixed = await runProgram(raw);
  });

  it("binds only the passthrough card to vfio, with the ids the PCI listing reports, and keeps the shared one on nvidia", () => {
    const vfio = mixed.byName("host-vfio").inputs.gpus as { name: string; mode: string; ids: string[] }[];
    expect(vfio).toEqual([
      { name: "gpu-0", mode: "lxc-shared", ids: ["10de:2d04", "10de:22eb"] },
      { name: "gpu-1", mode: "vm-passthrough", ids: ["10de:2d04", "10de:22eb"] },
    ]);
    expect(mixed.byName("host-gpu-functions").inputs.addresses).toEqual(["0000:01:00.0", "0000:02:00.0"]);
  });

  it("maps the passthrough card and gives it to the VM as a PCIe device", () => {
    const mapping = mixed.byName("host-pci-gpu-1");
    expect(mapping.inputs.maps).toEqual([{ node: "phoenix", path: "0000:02:00.0", id: "10de:2d04", iommuGroup: 15 }]);
    const vm = mixed.byName("vm-1002");
    expect(vm.inputs.machine).toBe("q35");
    expect(vm.inputs.hostpcis).toEqual([{ device: "hostpci0", mapping: "phoenix-gpu-1", pcie: true }]);
    expect(mixed.dependenciesOf("vm-1002")).toContain("host-vfio");
    expect(mixed.resources.some((r) => r.name === "host-pci-gpu-0")).toBe(false);
  });
});
