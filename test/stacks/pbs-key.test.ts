/** A PBS encryption key is checked when the stack loads: the key file itself, never PVE's autogen, never echoed. */
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { readStackFile, validateStack } from "../../stacks/load";
import { ROOT } from "./fixtures";

function issuesWith(key: string): string[] {
  const raw = readStackFile(path.join(ROOT, "Pulumi.vrooli.yaml"));
  const result = validateStack({ values: { ...raw.values, pbsEncryptionKey: key }, secretKeys: new Set([...raw.secretKeys, "pbsEncryptionKey"]) }, { requireSecrets: false });
  return result.ok === false ? result.issues.filter((i) => i.path.endsWith("encryptionKeySecretKey")).map((i) => `${i.path}: ${i.message}`) : [];
}

describe("the PBS encryption key", () => {
  it("takes the key file proxmox-backup-client writes", () => {
    expect(issuesWith(JSON.stringify({ kdf: null, data: "c2VjcmV0LWtleS1ieXRlcw==", fingerprint: "aa:bb" }))).toEqual([]);
  });

  it("refuses autogen and anything that is not the key file, without echoing it", () => {
    for (const value of ["autogen", "not json at all", JSON.stringify({ kdf: null }), JSON.stringify({ data: "" })]) {
      const found = issuesWith(value);
      expect(found, value).toHaveLength(1);
      expect(found[0]).toMatch(/^backup\.pbs\[0\]\.encryptionKeySecretKey: phoenix:pbsEncryptionKey must be the key file .*not PVE's autogen/);
      if (value !== "autogen") expect(found[0]).not.toContain(value);
    }
  });
});
