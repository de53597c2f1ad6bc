/**
 * The VMs as the node's `qm` sees them in an e2e apply: `run/qm/<vmid>.status` follows the
 * simulator's VM, and a VM's first start runs cloud-init: the `write_files` of the user data
 * snippet Phoenix wrote for it (components/docker/docker-tier.ts) land below `vm/<vmid>` in the
 * rig's sandbox, which is also when its guest agent starts answering (the qm stand-in, test/rig/
 * standins.ts). A VM created anew under the same vmid starts from an empty disk again; one that
 * migrates between the nodes the sandbox stands for (world.ts) is the same VM and keeps it.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { userDataSnippet } from "../../components/docker/docker-tier";
import type { StackConfig } from "../../stacks/schema";
import type { Guest, SimState } from "../pve-sim/state";
import type { Sandbox } from "../rig/sandbox";
import { writeAtomically } from "./node-files";

export function vmBoot(sandbox: Sandbox, nodes: readonly string[], config: () => StackConfig | undefined): { push(state: SimState): void } {
  const booted = new Map<number, Guest>();
  const vmRoot = (vmid: number) => path.join(sandbox.root, "vm", String(vmid));
  const status = (vmid: number) => path.join(sandbox.root, "run/qm", `${vmid}.status`);
  const forget = (vmid: number) => {
    booted.delete(vmid);
    fs.rmSync(vmRoot(vmid), { recursive: true, force: true });
    sandbox.update((s) => {
      if (s.vms) delete s.vms[String(vmid)];
    });
  };
  return {
    push(state) {
      const vms = [...state.guests.values()].filter((g) => g.kind === "qemu" && nodes.includes(g.node) && g.config.template !== "1");
      for (const [vmid, g] of booted) if (state.guests.get(vmid) !== g) forget(vmid);
      for (const g of vms) {
        fs.mkdirSync(path.dirname(status(g.vmid)), { recursive: true });
        writeAtomically(status(g.vmid), `${g.status}\n`);
        const c = config();
        const snippet = c && userDataSnippet(c, g.vmid);
        if (g.status !== "running" || booted.has(g.vmid) || !snippet) continue;
        const file = path.join(sandbox.root, snippet.path);
        if (!fs.existsSync(file)) continue;
        const userData = parse(fs.readFileSync(file, "utf8")) as { write_files?: Array<{ path: string; content: string; permissions?: string }> };
        for (const f of userData.write_files ?? []) {
          const target = path.join(vmRoot(g.vmid), f.path);
          fs.mkdirSync(path.dirname(target), { recursive: true });
          fs.writeFileSync(target, f.content, { mode: Number.parseInt(f.permissions ?? "0644", 8) });
        }
        // Folders the cloud image has, which scripts run through the guest agent write below (as test/rig/sandbox.ts makes the node's).
        for (const d of ["var/tmp", "usr/local/bin"]) fs.mkdirSync(path.join(vmRoot(g.vmid), d), { recursive: true });
        booted.set(g.vmid, g);
      }
      for (const file of fs.existsSync(path.dirname(status(0))) ? fs.readdirSync(path.dirname(status(0))) : []) {
        const vmid = Number(file.replace(/\.status$/, ""));
        if (!vms.some((g) => g.vmid === vmid)) fs.rmSync(status(vmid), { force: true });
      }
    },
  };
}

