import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { runValidate } from "../../scripts/validate";
import { PROD_FILE, ROOT } from "./fixtures";

describe("npm run validate", () => {
  it("passes the prod stack and lists the secret commands to run", () => {
    const { code, text } = runValidate("prod", ROOT);
    expect(code).toBe(0);
    expect(text).toContain("Pulumi.prod.yaml is valid: 4 templates, 10 guests, 9 routes.");
    expect(text).toContain("pulumi config set --secret phoenix:stepCaPassword <value>");
  });

  it("lists the vLLM lock the vllm layer installs from, with the command that makes it, while it is missing", () => {
    const lock = path.join(ROOT, "providers", "template", "vllm-locks", "0.11.0.txt");
    const { text } = runValidate("prod", ROOT);
    if (fs.existsSync(lock)) expect(text).not.toContain("vllm-locks/0.11.0.txt");
    else expect(text).toMatch(/providers\/template\/vllm-locks\/0\.11\.0\.txt +# phoenix:templates\[2\]\.versions\.vllm: providers\/template\/vllm-locks\/generate\.sh 0\.11\.0/);
  });

  it("exits 1 with every problem of a broken stack", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-validate-"));
    const broken = fs.readFileSync(PROD_FILE, "utf8").replace("ip: 10.0.0.153/24", "ip: 10.0.0.10/24").replace("name: traefik\n", "name: traefik_\n");
    fs.writeFileSync(path.join(dir, "Pulumi.broken.yaml"), broken);
    const { code, text } = runValidate("broken", dir);
    expect(code).toBe(1);
    expect(text).toContain("phoenix:guests[1].name: must be a valid hostname");
    expect(text).toContain("phoenix:guests[2].network.ip: IP 10.0.0.10 is already used by guests[0].network.ip");
    fs.rmSync(dir, { recursive: true });
  });

  it("names a missing stack file", () => {
    expect(runValidate("nope", ROOT)).toEqual({ code: 2, text: "no stack file Pulumi.nope.yaml: create it, or name an existing stack" });
  });
});
