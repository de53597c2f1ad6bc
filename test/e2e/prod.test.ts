/**
 * The prod stack's shape applied end to end: every guest of the design's machine (two shared
 * GPUs, the vLLM template chain, three Docker stacks over NFS), pointed at the simulator, the
 * rig and the lab network as the dev stack is.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VLLM_LOCK_DIR } from "../../providers/template/layers";
import type { RawStack } from "../../stacks/load";
import { PROD_FILE, ROOT } from "../stacks/fixtures";
import type { ApplyResult } from "./engine";
import { changed, edited, expectNoOrphans, failuresOf, loadProgram } from "./support";
import { startWorld, type World } from "./world";

/** What the README asks of a user before the first `up`: the web app's image, pinned. */
const withWebappImage = (raw: RawStack) =>
  edited(raw, (v) => {
    for (const g of v.guests) for (const s of (g.dockerStacks ?? []) as Array<{ name: string; env?: Record<string, string> }>) if (s.name === "webapp") s.env = { ...s.env, WEBAPP_IMAGE: "registry.example.test/webapp:1.4.2" };
  });

/** The sandboxed node's NVIDIA installer is a stand-in, not NVIDIA's runfile: prod's pin of the real one (test/host/nvidia-config.test.ts) cannot match it. */
const withStandInRunfile = (raw: RawStack) =>
  edited(raw, (v) => {
    delete ((v.host as Record<string, unknown>).nvidiaDriver as { runfileSha256?: string }).runfileSha256;
  });

/**
 * The vLLM lock template 920 installs from: the repository ships none (vllm-locks/generate.sh needs
 * PyPI), so the run stands in for a user who made it, with the layer tests' fixture, removed after.
 */
function standInVllmLock(): () => void {
  const lock = path.join(VLLM_LOCK_DIR, "0.11.0.txt");
  if (fs.existsSync(lock)) return () => undefined;
  fs.copyFileSync(path.join(ROOT, "test", "template", "fixtures", "vllm-0.11.0.lock.txt"), lock);
  return () => fs.rmSync(lock, { force: true });
}

describe("prod-shaped stack, applied against the simulator, the sshd rig and the lab network", () => {
  let w: World;
  let first: ApplyResult;
  let removeLock: () => void = () => undefined;
  beforeAll(async () => {
    removeLock = standInVllmLock();
    w = await startWorld({ stackFile: PROD_FILE, loadProgram, operationTimeoutMs: 30_000 });
    first = await w.apply(withStandInRunfile(withWebappImage(w.raw)));
  }, 180_000);
  afterAll(async () => {
    removeLock();
    await w?.stop();
  });

  it("fresh apply: every resource is created, none fails or is skipped", () => {
    expect(failuresOf(first)).toEqual([]);
    expect(first.skipped).toEqual([]);
    const created = first.operations.map((o) => o.key);
    expect([...first.registered].filter((k) => !k.startsWith("pulumi:providers:") && !created.includes(k))).toEqual([]);
  });

  it("fresh apply: every declared guest runs, the NFS export is published, every Docker stack is deployed", () => {
    const guests = (w.raw.values.guests as Array<{ vmid: number }>).map((g) => g.vmid);
    for (const vmid of guests) expect(w.sim.state.guests.get(vmid)?.status, `guest ${vmid}`).toBe("running");
    expect(w.rig.sandbox.state().nfsExported?.some((l) => l.startsWith("/fastData/docker-data "))).toBe(true);
    expect(w.lab.portainer!.state.stacks.map((s) => s.Name).sort()).toEqual(["n8n", "qdrant", "webapp"]);
  });

  it("state: no orphans either way", async () => {
    await expectNoOrphans(w, expect);
  });

  it("second apply: zero mutating calls anywhere and zero provider updates", async () => {
    w.sim.log.clear();
    const portainerBefore = w.lab.portainer!.mutating().length;
    const commandsBefore = w.commands.length;
    const second = await w.apply(withStandInRunfile(withWebappImage(w.raw)));
    expect(failuresOf(second)).toEqual([]);
    expect(w.sim.log.mutating().map((m) => `${m.method} ${m.path}`)).toEqual([]);
    expect(changed(second)).toEqual([]);
    expect(w.lab.portainer!.mutating().length).toBe(portainerBefore);
    expect(w.commands.length).toBe(commandsBefore);
  }, 90_000);
});
