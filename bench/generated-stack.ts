/** The stacks `npm run bench` scales with: prod plus generated containers. */
import * as path from "node:path";
import { readStackFile, type RawStack } from "../stacks/load";

const ROOT = path.resolve(__dirname, "..");

/** The prod stack with `extra` more containers on a /16, each a clone of the base template with its own address. */
export function withGeneratedGuests(extra: number): RawStack {
  const raw = readStackFile(path.join(ROOT, "Pulumi.prod.yaml"), "Pulumi.prod.yaml");
  const values = structuredClone(raw.values) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  values.host.address = "10.0.0.13/16";
  for (const g of values.guests) g.network.ip = g.network.ip.replace("/24", "/16");
  for (let i = 0; i < extra; i++) {
    values.guests.push({
      kind: "lxc",
      vmid: 3000 + i,
      name: `bench-${i}`,
      clone: 900,
      storage: "quickOS-lxc-disks",
      network: { ip: `10.0.${10 + Math.floor(i / 250)}.${(i % 250) + 1}/16` },
      firewall: { rules: [{ type: "in", action: "ACCEPT", proto: "tcp", dport: 22, source: "10.0.0.0/24" }] },
    });
  }
  return { values, secretKeys: raw.secretKeys };
}
