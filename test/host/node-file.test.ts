import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXPORTS_BEGIN } from "../../providers/host/exports";
import { implementation, type NodeFileInputs, type NodeFileOutputs } from "../../providers/host/node-file";
import { startSshd, type SshRig } from "../rig/sshd";

let rig: SshRig;
beforeAll(async () => {
  rig = await startSshd();
});
afterAll(async () => {
  await rig?.stop();
});

const RELOAD = 'echo reloaded >> "$R/reloads"';
const reloads = () => (rig.sandbox.exists("reloads") ? rig.sandbox.read("reloads").split("\n").filter(Boolean).length : 0);

describe("NodeFile: a whole file Phoenix owns", () => {
  const snippet = "/fastData/shared-iso/snippets/phoenix-vm-1001.yaml";
  const inputs = (content: string): NodeFileInputs => ({ node: "pve", connection: rig.connection, path: snippet, mode: "0640", content });

  it("writes it, leaves it alone when unchanged, rewrites it when changed, reports drift, removes it", async () => {
    const { outs } = await implementation.create(inputs("#cloud-config\nhostname: portainer\n"));
    expect(rig.sandbox.read(snippet.slice(1))).toBe("#cloud-config\nhostname: portainer\n");
    expect(outs.actual).toBe("#cloud-config\nhostname: portainer\n");
    const diff = await implementation.diff(snippet, outs as NodeFileOutputs, inputs("#cloud-config\nhostname: portainer\n"));
    expect(diff.changes).toBe(false);
    await implementation.update(snippet, outs as NodeFileOutputs, inputs("#cloud-config\nhostname: portainer2\n"));
    expect(rig.sandbox.read(snippet.slice(1))).toContain("portainer2");
    rig.sandbox.write(snippet.slice(1), "edited by hand\n");
    const { props } = await implementation.read(snippet, { ...(outs as NodeFileOutputs), content: "#cloud-config\nhostname: portainer2\n" });
    expect(props?.actual).toBe("edited by hand\n");
    expect((await implementation.diff(snippet, props as NodeFileOutputs, inputs("#cloud-config\nhostname: portainer2\n"))).changes).toBe(true);
    await implementation.delete(snippet, props as NodeFileOutputs);
    expect(rig.sandbox.exists(snippet.slice(1))).toBe(false);
  });
});

describe("NodeFile: Phoenix's block of /etc/exports", () => {
  const mine = [{ path: "/fastData/docker-data", clients: [{ host: "10.0.0.102", options: ["rw", "sync", "no_subtree_check", "root_squash"] }] }];
  const inputs = (exports: typeof mine): NodeFileInputs => ({ node: "pve", connection: rig.connection, path: "/etc/exports", mode: "0644", exports, reload: RELOAD });

  it("keeps the lines it does not own, reloads only on change, and takes only its block away on delete", async () => {
    const foreign = "/srv/media 10.0.0.50(ro,sync)\n";
    rig.sandbox.write("etc/exports", foreign);
    const { outs } = await implementation.create(inputs(mine));
    const written = rig.sandbox.read("etc/exports");
    expect(written.startsWith(foreign)).toBe(true);
    expect(written).toContain(`${EXPORTS_BEGIN}\n/fastData/docker-data 10.0.0.102(rw,sync,no_subtree_check,root_squash)\n`);
    expect(reloads()).toBe(1);
    await implementation.update("/etc/exports", outs as NodeFileOutputs, inputs(mine));
    expect(reloads()).toBe(1);
    expect((await implementation.diff("/etc/exports", outs as NodeFileOutputs, inputs(mine))).changes).toBe(false);
    await implementation.delete("/etc/exports", outs as NodeFileOutputs);
    expect(rig.sandbox.read("etc/exports")).toBe(foreign);
    expect(reloads()).toBe(2);
  });
});
