/**
 * Joins the two test worlds: containers live in the PVE simulator (created,
 * started, converted through the API) while `pct exec` runs in the sshd rig's
 * sandbox. Every container the simulator holds gets a config file, a status
 * file and a root directory in the sandbox, kept in step with the simulator,
 * so the pct stand-in sees what PVE would.
 */
import { randomBytes } from "crypto";
import { cpSync, existsSync, mkdirSync, rmSync } from "fs";
import { join } from "path";
import type { Simulator } from "../pve-sim/server";
import type { Guest } from "../pve-sim/state";
import type { Sandbox } from "../rig/sandbox";

export function mirrorContainers(sim: Simulator, sandbox: Sandbox): void {
  const guests = sim.state.guests;
  const set = guests.set.bind(guests);
  const remove = guests.delete.bind(guests);
  const writeStatus = (vmid: number, status: string) => sandbox.write(`run/pct/${vmid}.status`, `${status}\n`);
  guests.set = (vmid: number, g: Guest) => {
    if (g.kind === "lxc") {
      sandbox.write(`etc/pve/lxc/${vmid}.conf`, Object.entries(g.config).map(([k, v]) => `${k}: ${v}`).join("\n") + "\n");
      // A linked clone starts as its template's file system and package state.
      const base = /basevol-(\d+)-disk/.exec(g.config.rootfs ?? "")?.[1];
      const from = base ? join(sandbox.root, "ct", base) : undefined;
      const to = join(sandbox.root, "ct", String(vmid));
      if (from && existsSync(from)) cpSync(from, to, { recursive: true });
      else mkdirSync(to, { recursive: true });
      if (base) {
        sandbox.update((s) => {
          const inherited = s.containers[base];
          if (inherited) s.containers[String(vmid)] = structuredClone(inherited);
        });
      }
      let status = g.status;
      writeStatus(vmid, status);
      Object.defineProperty(g, "status", {
        get: () => status,
        set: (v: Guest["status"]) => {
          status = v;
          writeStatus(vmid, v);
          // What systemd does at boot when /etc/machine-id is empty.
          if (v === "running") sandbox.write(`ct/${vmid}/etc/machine-id`, `${randomBytes(16).toString("hex")}\n`);
        },
        enumerable: true,
        configurable: true,
      });
    }
    return set(vmid, g);
  };
  guests.delete = (vmid: number) => {
    rmSync(join(sandbox.root, "etc/pve/lxc", `${vmid}.conf`), { force: true });
    rmSync(join(sandbox.root, "run/pct", `${vmid}.status`), { force: true });
    return remove(vmid);
  };
}
