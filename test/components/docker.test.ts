import { beforeAll, describe, expect, it } from "vitest";
import { MOCK_CA, runProgram, type Program } from "../mock-program";
import { prodWithSecrets } from "../stacks/fixtures";

let p: Program;
beforeAll(async () => {
  p = await runProgram(prodWithSecrets());
});

describe("the Docker tier of the prod stack", () => {
  it("clones each Portainer VM with user data written first, trusting the CA and starting its compose project", () => {
    const server = p.byName("vm-1001");
    expect((server.inputs.initialization as { userDataFileId: string }).userDataFileId).toBe("fastData-iso:snippets/phoenix-vm-1001.yaml");
    expect(p.dependenciesOf("vm-1001")).toContain("vm-1001-user-data");
    const userData = p.byName("vm-1001-user-data").inputs;
    expect(userData.path).toBe("/fastData/shared-iso/snippets/phoenix-vm-1001.yaml");
    const content = String(userData.content);
    expect(content.startsWith("#cloud-config\n")).toBe(true);
    expect(content).toContain(MOCK_CA.rootPem.split("\n")[1]!);
    expect(content).toContain("/opt/phoenix/portainer/compose.yaml");
    expect(content).toContain("portainer/portainer-ce:2.33.2");
    expect(String(p.byName("vm-1002-user-data").inputs.content)).toContain("portainer/agent:2.33.2");
    // its certificate names the VM itself, so the CA validates it there while portainer.<domain> stays Traefik's
    expect(content).toContain("vm-1001.internal.thinkheads.ai");
    // and it reaches the CA by address: nothing resolves ca.<domain> on the VM (cloud-init manages its /etc/hosts)
    expect(content).toContain("ca=(--ca-url https://10.0.0.10:9000 --root /etc/phoenix/step-ca-root.pem)");
    expect(content).not.toContain("https://ca.internal.thinkheads.ai");
  });

  it("drives Portainer only once it answers: admin, then the agent's environment, then its stacks", () => {
    expect(p.dependenciesOf("portainer-health")).toContain("vm-1001");
    expect(p.dependenciesOf("portainer-admin")).toContain("portainer-health");
    const env = p.dependenciesOf("portainer-env-1002");
    expect(env).toContain("vm-1002");
    expect(env).toContain("portainer-admin");
    for (const stack of ["qdrant", "webapp", "n8n"]) expect(p.dependenciesOf(`portainer-stack-1002-${stack}`)).toContain("portainer-env-1002");
    expect(p.byName("portainer-env-1002").inputs.agentUrl).toBe("tcp://10.0.0.102:9001");
  });

  it("waits for each routed stack to answer through the gateway: Qdrant's /qdrant/healthz", () => {
    const qdrant = p.byName("qdrant-health");
    expect(qdrant.inputs).toMatchObject({ url: "https://internal.thinkheads.ai/qdrant/healthz", address: "10.0.0.153" });
    expect(qdrant.dependsOn).toEqual(expect.arrayContaining(["portainer-stack-1002-qdrant", "gateway-install-run"]));
  });
});

describe("NFS for the Docker host's data", () => {
  it("exports the declared dataset to exactly the declared VM, owned for its containers, before the VM mounts it", () => {
    const exports = p.byName("host-nfs-exports").inputs;
    expect(exports.exports).toEqual([{ path: "/fastData/docker-data", clients: [{ host: "10.0.0.102", options: ["rw", "sync", "no_subtree_check", "root_squash"] }] }]);
    expect(String(exports.reload)).toContain('chown 1000:1000 "$R"/fastData/docker-data');
    expect(p.dependenciesOf("host-nfs-exports")).toContain("host-dataset-fastData-docker-data");
    expect(p.dependenciesOf("vm-1002")).toContain("host-nfs-exports");
    expect(String(p.byName("vm-1002-user-data").inputs.content)).toContain("10.0.0.13:/fastData/docker-data");
    expect(String(p.byName("vm-1001-user-data").inputs.content)).not.toContain("/fastData/docker-data");
    // the stacks' bind folders exist, owned for their containers, before Portainer deploys a stack there (root_squash)
    for (const stack of ["qdrant", "webapp", "n8n"]) expect(p.dependenciesOf(`portainer-stack-1002-${stack}`)).toContain("vm-1002-data-dirs");
  });
});

describe("resource names", () => {
  it("are unique, as the engine requires of URNs", () => {
    const keys = p.resources.map((r) => `${r.type}::${r.name}`);
    expect(keys.filter((k, i) => keys.indexOf(k) !== i)).toEqual([]);
  });
});
