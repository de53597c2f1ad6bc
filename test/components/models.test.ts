import { beforeAll, describe, expect, it } from "vitest";
import { runProgram, type Program } from "../mock-program";
import { prodWithSecrets } from "../stacks/fixtures";

/* eslint-disable @typescript-eslint/no-explicit-any */
type Files = { path: string; content: string }[];
/** An install's files; a whole list holding a secret (Traefik's dashboard users) is marked secret by the mocks. */
const filesOf = (p: Program, name: string): Files => {
  const files = p.byName(name).inputs.files as Files | { value: Files };
  return Array.isArray(files) ? files : files.value;
};
const SERVERS: Record<number, string> = { 801: "ct-801", 802: "ct-802", 914: "ct-914", 917: "ct-917" };

describe("model servers of the prod stack", () => {
  let p: Program;
  beforeAll(async () => {
    p = await runProgram(prodWithSecrets());
  });

  it("install each engine in its own GPU container once its devices are in, then gate on a health check", () => {
    for (const [vmid, guest] of Object.entries(SERVERS)) {
      expect(p.byName(`model-${vmid}-install-run`).inputs.create).toBe(`pct exec ${vmid} -- bash -s`);
      expect(p.dependenciesOf(`model-${vmid}-install-run`)).toContain(`${guest}-root`);
      expect(p.byName(`model-${vmid}-install-check`).dependsOn).toContain(`model-${vmid}-install-run`);
    }
    expect(filesOf(p, "model-802-install").map((f) => f.path)).toContain("/etc/systemd/system/vllm.service");
    expect(String(p.byName("model-914-install-check").inputs.stdin)).toContain("/api/tags");
  });
});

describe("a fifth model server added in config", () => {
  it("gets its route and model with no other edit", async () => {
    const raw = prodWithSecrets();
    const v = raw.values as Record<string, any>;
    const llama = structuredClone(v.guests.find((g: any) => g.vmid === 917));
    Object.assign(llama, { vmid: 918, name: "llamacpp-small", network: { ip: "10.0.0.158/24" } });
    llama.role.server = { ...llama.role.server, servedModelName: "qwen3-0.6b", model: "/models/gguf/qwen3-0.6b-q8.gguf", vramGiB: 1.5 };
    v.guests.push(llama);
    v.services.push({ name: "llamacpp-small", guest: 918, port: 8080, healthPath: "/health" });
    const p = await runProgram(raw);
    expect((p.exports.models as { id: string }[]).map((m) => m.id)).toContain("qwen3-0.6b");
    const modelTable = filesOf(p, "gateway-install").find((f) => f.path.endsWith("/njs/phoenix-models.js"))!.content;
    expect(modelTable).toContain('"qwen3-0.6b"');
    expect(modelTable).toContain(`"qwen3-0.6b": "llamacpp-small"`);
    const dynamic = filesOf(p, "traefik-install").find((f) => f.path.endsWith("/dynamic/phoenix.yml"))!.content;
    expect(dynamic).toContain("Host(`llamacpp-small.svc.internal.thinkheads.ai`)");
    expect(dynamic).toContain("http://10.0.0.158:8080");
    expect(p.byName("model-918-install-run").inputs.create).toBe("pct exec 918 -- bash -s");
  });
});
