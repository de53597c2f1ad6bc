/**
 * What offline synth assumes the providers report, so every renderer can run
 * without a host: the GPUs the config declares (in declaration order), the
 * pinned driver, and a throwaway CA root standing in for Step-CA's. Each
 * placeholder says so in the files it ends up in.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { formatStepCaOutput, parseStepCaOutput } from "../components/core/step-ca.render";
import { SECRET_PLACEHOLDER } from "../stacks/placeholder";
import type { StackConfig } from "../stacks/schema";

// CN is at most 64 characters.
export const PLACEHOLDER_CA_CN = "OFFLINE PLACEHOLDER - real root is made at apply";

/** A self-signed root as the CA's init script would print it. */
export function placeholderCaOutput(commonName = PLACEHOLDER_CA_CN): { rootPem: string; fingerprint: string; stdout: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-offline-ca-"));
  try {
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", `/CN=${commonName}`, "-keyout", path.join(dir, "k"), "-out", path.join(dir, "c")], { stdio: "ignore" });
    const rootPem = fs.readFileSync(path.join(dir, "c"), "utf8");
    const stdout = formatStepCaOutput(rootPem);
    return { rootPem, fingerprint: parseStepCaOutput(stdout).fingerprint, stdout };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function offlineOutputs(config: StackConfig): (name: string, inputs: Record<string, unknown>) => Record<string, unknown> {
  const ca = placeholderCaOutput();
  const gpus = config.host.gpus.map((g, index) => ({ index, minor: index, busId: `0000${g.pci}`, name: g.model, memoryMiB: g.memoryGiB * 1024 }));
  const deviceNodes = [...gpus.map((g) => `/dev/nvidia${g.minor}`), "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"].map((p) => ({ path: p, major: 0 }));
  return (name, inputs) => {
    if (name.endsWith("-nvidia")) return { gpus, deviceNodes, installedVersion: config.host.nvidiaDriver?.version ?? "" };
    if (name.endsWith("-gpu-functions")) {
      return { cards: (inputs.addresses as string[]).map((address) => ({ address, iommuGroup: 0, functions: [{ path: address, id: "0000:0000" }] })) };
    }
    if (name === "step-ca-install-run") return { stdout: ca.stdout };
    // bpg's token value is `<user>!<name>=<secret>` (components/observability/exporters.render.ts); offline the secret part is the placeholder.
    if (name.endsWith("-pve-token")) return { value: `${String(inputs.userId)}!${String(inputs.tokenName)}=${SECRET_PLACEHOLDER}` };
    // The publisher's SHA256SUMS is read at apply; offline the digest is a visibly fake one.
    if (name.endsWith("-checksum")) return { sha256: typeof inputs.sha256 === "string" ? inputs.sha256 : "0".repeat(64) };
    return {};
  };
}
