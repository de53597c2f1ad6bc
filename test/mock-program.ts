/**
 * Runs index.ts under Pulumi's mocks (scripts/offline-program.ts) with the
 * outputs the real providers would report, so tests can assert the graph the
 * engine would see.
 */
import { vi } from "vitest";
import { placeholderCaOutput } from "../scripts/offline-outputs";
import { runOffline, type Registered } from "../scripts/offline-program";
import type { RawStack } from "../stacks/load";

export type { Registered };

/** What the host driver reports in these tests: the cards in the opposite order to their config ids. */
export const MOCK_NVIDIA = {
  installedVersion: "580.95.05",
  gpus: [
    { index: 0, minor: 0, busId: "00000000:02:00.0", name: "NVIDIA GeForce RTX 5060 Ti", memoryMiB: 16311 },
    { index: 1, minor: 1, busId: "00000000:01:00.0", name: "NVIDIA GeForce RTX 5060 Ti", memoryMiB: 16311 },
  ],
  deviceNodes: ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"].map((path) => ({ path, major: path.includes("uvm") ? 509 : 195 })),
};

/** A root certificate as the CA's init script would print it, made once per test file. */
export const MOCK_CA = placeholderCaOutput("Mock Root CA");

/** Outputs the real providers would report, for the resources whose outputs the program consumes. */
function mockOutputs(name: string, inputs: Record<string, unknown>): Record<string, unknown> {
  if (name.endsWith("-nvidia")) return MOCK_NVIDIA;
  if (name === "step-ca-install-run") return { stdout: MOCK_CA.stdout };
  if (name.endsWith("-checksum")) return { sha256: "c".repeat(64) };
  // bpg's token value: `<user>!<name>=<secret>` (proxmox/access/user_token.go CreateUserToken).
  if (name.endsWith("-pve-token")) return { value: `${String(inputs.userId)}!${String(inputs.tokenName)}=00000000-0000-4000-8000-000000000000` };
  if (name.endsWith("-gpu-functions")) {
    const cards = (inputs.addresses as string[]).map((address, i) => ({
      address,
      iommuGroup: 14 + i,
      functions: [
        { path: address, id: "10de:2d04" },
        { path: address.replace(/\.0$/, ".1"), id: "10de:22eb" },
      ],
    }));
    return { cards };
  }
  return {};
}

export interface Program {
  resources: Registered[];
  exports: Record<string, unknown>;
  byName(name: string): Registered;
  ofType(type: string): Registered[];
  /** Every resource `name` depends on, directly or through the resources it depends on. */
  dependenciesOf(name: string): Set<string>;
}

export async function runProgram(raw: RawStack, onRegister?: (name: string) => void): Promise<Program> {
  const { resources, exports } = await runOffline(raw, {
    preview: false,
    outputsOf: mockOutputs,
    onRegister,
    load: async () => {
      vi.resetModules();
      return (await import("../index")) as Record<string, unknown>;
    },
  });
  const byName = (name: string) => {
    const found = resources.find((r) => r.name === name);
    if (!found) throw new Error(`no resource named ${name}; have ${resources.map((r) => r.name).join(", ")}`);
    return found;
  };
  const children = (name: string) => resources.filter((r) => r.parent === name).map((r) => r.name);
  const dependenciesOf = (name: string): Set<string> => {
    const seen = new Set<string>();
    const walk = (n: string) => {
      for (const d of [...byName(n).dependsOn, ...children(n)]) {
        if (seen.has(d)) continue;
        seen.add(d);
        walk(d);
      }
    };
    walk(name);
    return seen;
  };
  return { resources, exports, byName, ofType: (type) => resources.filter((r) => r.type === type), dependenciesOf };
}
