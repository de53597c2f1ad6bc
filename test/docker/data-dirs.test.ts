/**
 * The stacks' bind folders on the NFS export: listed from the real compose
 * files, then made by the rendered script for real (bash, setpriv) under a
 * temp root, as the service's uid, never following a planted symlink as root.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { DOCKER_DATA_MOUNT, DOCKER_MOUNT_DROPIN, renderDockerHostUserData } from "../../components/docker/cloud-init";
import { bindSources, dataDirs, renderDataDirsScript, type DataDir } from "../../components/docker/data-dirs";
import { loadStack, tempDir } from "../support";

const config = loadStack("Pulumi.prod.yaml");
const agent = config.guests.find((g) => g.kind === "vm" && g.role?.type === "portainer-agent")!;
const stacks = agent.kind === "vm" ? agent.dockerStacks.map((s) => ({ name: s.name, compose: fs.readFileSync(s.compose, "utf8") })) : [];
const dir = tempDir("data-dirs");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs the script with `zfs` answering `mounted`, under root R. */
function run(script: string, root: string, mounted = "yes") {
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin, { recursive: true });
  fs.writeFileSync(path.join(bin, "zfs"), `#!/bin/sh\necho ${mounted}\n`, { mode: 0o755 });
  const r = spawnSync("bash", ["-s"], { input: script, encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, PHOENIX_ROOT: root } });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** A node root holding the exported dataset, owned as prod declares it. */
function nodeRoot(name: string): string {
  const root = path.join(dir, name);
  const data = path.join(root, "fastData/docker-data");
  fs.mkdirSync(data, { recursive: true });
  for (const p of [dir, root, path.join(root, "fastData")]) fs.chmodSync(p, 0o755);
  fs.chownSync(data, 1000, 1000);
  fs.chmodSync(data, 0o750);
  return root;
}

const isRoot = process.getuid?.() === 0;

describe("the Docker stacks' data folders", () => {
  it("lists every bind source of the prod stacks below the mount, with its parents, owned by the service's user", () => {
    expect(bindSources(stacks.find((s) => s.name === "qdrant")!.compose)).toEqual([
      { service: "qdrant", source: `${DOCKER_DATA_MOUNT}/qdrant/storage`, user: { uid: 1000, gid: 1000 } },
      { service: "qdrant", source: `${DOCKER_DATA_MOUNT}/qdrant/snapshots`, user: { uid: 1000, gid: 1000 } },
    ]);
    const dirs = dataDirs(config, agent.vmid, stacks);
    expect(dirs.map((d) => d.path)).toEqual(["/fastData/docker-data/n8n", "/fastData/docker-data/qdrant", "/fastData/docker-data/qdrant/snapshots", "/fastData/docker-data/qdrant/storage"]);
    expect(new Set(dirs.map((d) => `${d.uid}:${d.gid} ${d.mode}`))).toEqual(new Set(["1000:1000 0750"]));
  });

  it("refuses a bind source that leaves the mount, and ignores sources elsewhere and named volumes", () => {
    const bad = { name: "evil", compose: `services:\n  a:\n    image: x:1\n    volumes: ["${DOCKER_DATA_MOUNT}/../../etc:/etc"]\n` };
    expect(() => dataDirs(config, agent.vmid, [bad])).toThrow(`stack evil, service a: bind source "${DOCKER_DATA_MOUNT}/../../etc" leaves ${DOCKER_DATA_MOUNT}`);
    const other = { name: "o", compose: "services:\n  a:\n    image: x:1\n    volumes: [\"/var/run/docker.sock:/s\", \"named:/data\", {type: bind, source: /srv/phoenix-data/o/x, target: /x}]\n" };
    expect(dataDirs(config, agent.vmid, [other]).map((d) => `${d.path} ${d.uid}`)).toEqual(["/fastData/docker-data/o 1000", "/fastData/docker-data/o/x 1000"]);
    expect(dataDirs(config, 9999, stacks)).toEqual([]);
  });

  it.runIf(isRoot)("makes the folders as uid 1000 inside the 0750 dataset, and a second run changes nothing", () => {
    const root = nodeRoot("ok");
    const script = renderDataDirsScript("fastData/docker-data", dataDirs(config, agent.vmid, stacks));
    const first = run(script, root);
    expect(first.status, first.out).toBe(0);
    const st = fs.statSync(path.join(root, "fastData/docker-data/qdrant/storage"));
    expect([st.uid, st.gid, (st.mode & 0o777).toString(8)]).toEqual([1000, 1000, "750"]);
    expect(first.out).toContain("created /fastData/docker-data/n8n");
    const second = run(script, root);
    expect(second.status, second.out).toBe(0);
    expect(second.out).not.toContain("created");
  });

  it.runIf(isRoot)("never follows a symlink a container planted to a place its uid cannot write", () => {
    const root = nodeRoot("planted");
    const target = path.join(root, "etc");
    fs.mkdirSync(target, { mode: 0o755 });
    fs.symlinkSync(target, path.join(root, "fastData/docker-data/qdrant"));
    const r = run(renderDataDirsScript("fastData/docker-data", dataDirs(config, agent.vmid, stacks)), root);
    expect(r.status).not.toBe(0);
    expect(fs.readdirSync(target)).toEqual([]);
  });

  it("creates nothing when the dataset is not mounted", () => {
    const root = path.join(dir, "unmounted");
    fs.mkdirSync(path.join(root, "fastData/docker-data"), { recursive: true });
    const dirs: DataDir[] = [{ path: "/fastData/docker-data/x", uid: 0, gid: 0, mode: "0750" }];
    const r = run(renderDataDirsScript("fastData/docker-data", dirs), root, "no");
    expect(r.status).toBe(1);
    expect(r.out).toContain("the dataset fastData/docker-data is not mounted");
    expect(fs.readdirSync(path.join(root, "fastData/docker-data"))).toEqual([]);
  });

  it("ties docker.service to the NFS mount on the VM, and only when there is one", () => {
    const base = { hostname: "h", domain: "d.example", user: "u", sshKeys: [], ubuntuCodename: "noble", docker: { engine: "5:28.5.1-1~ubuntu.24.04~noble", containerd: "1.7.28-1~ubuntu.24.04~noble", compose: "2.40.0-1~ubuntu.24.04~noble" }, caRootPem: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n" };
    const files = (d: string) => (parse(d) as { write_files: { path: string; content: string }[] }).write_files;
    const withNfs = files(renderDockerHostUserData({ ...base, nfs: { server: "10.0.0.13", export: "/fastData/docker-data", mountPoint: DOCKER_DATA_MOUNT } }));
    expect(withNfs.find((f) => f.path === DOCKER_MOUNT_DROPIN)?.content).toBe(`[Unit]\nRequiresMountsFor=${DOCKER_DATA_MOUNT}\n`);
    expect(files(renderDockerHostUserData(base)).some((f) => f.path === DOCKER_MOUNT_DROPIN)).toBe(false);
  });
});
