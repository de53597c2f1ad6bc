/**
 * LxcRootConfig: the settings of a container that only root@pam may make —
 * device passthrough, bind mounts (with their host-side owner), features beyond
 * nesting, and lxc.idmap — converged over SSH to the node (`pct set`, the
 * config file for lxc.* keys) or, for what the API allows, through the API as
 * root@pam. The container itself belongs to the bridged provider.
 */
import * as pulumi from "@pulumi/pulumi";
import { createPveClient } from "../pve";
import { runScriptChecked, type SshConnection } from "../ssh";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { changedKeys, Checker, diffResult, isUnknown, parseProbe, same } from "../common";
import { desiredKeys, gpuViewProblem, idmapLines, isOwnedKey, planIsEmpty, planRootConfig, renderApply, renderGpuCheck, renderProbe, type ProbedState, type RootConfigSpec, type RootDevice, type RootMount, volumeSlots } from "./lxc-root-config.render";
import type { IdmapRange } from "../../stacks/idmap";

/** How root-only settings reach the node. */
export type RootTransport = { kind: "ssh"; connection: SshConnection } | { kind: "api"; endpoint: string; password: string; caPem?: string; insecure?: boolean };

export interface LxcRootConfigInputs extends RootConfigSpec {
  transport: RootTransport;
  node: string;
  vmid: number;
  /** For GPU guests: what nvidia-smi inside must report once the devices are in. */
  verifyGpus?: { busIds: string[]; driverVersion: string };
}

export interface LxcRootConfigOutputs extends LxcRootConfigInputs {
  /** The owned keys as last read from the node, so refresh shows drift. */
  actual: Record<string, string>;
  actualIdmap: string[];
  /** mpN slots holding storage volumes, which bind mounts must not take. */
  volumeSlots: string[];
}

export interface LxcRootConfigArgs {
  /** SSH to the node, or the API with the root@pam password. */
  transport: pulumi.Input<RootTransport>;
  /** Node the container lives on. */
  node: pulumi.Input<string>;
  /** The container. */
  vmid: pulumi.Input<number>;
  /** Device nodes passed through (devN). */
  devices: pulumi.Input<RootDevice[]>;
  /** Bind mounts (mpN) and the host-side owner of their directories. */
  mounts: pulumi.Input<RootMount[]>;
  /** Container features; all of them, since PVE keeps them in one key. */
  features: pulumi.Input<RootConfigSpec["features"]>;
  /** lxc.idmap ranges; empty for PVE's default map. */
  idmap: pulumi.Input<IdmapRange[]>;
  /** Delegations the id map needs in /etc/subuid and /etc/subgid. */
  subuid: pulumi.Input<string[]>;
  subgid: pulumi.Input<string[]>;
  /** For GPU guests: the bus ids and driver version nvidia-smi inside must report. */
  verifyGpus?: pulumi.Input<{ busIds: string[]; driverVersion: string } | undefined>;
}

export const lxcRootConfigProvider = dynamicProvider<LxcRootConfigInputs, LxcRootConfigOutputs>("guest/lxc-root-config");

export class LxcRootConfig extends DynamicResource {
  declare readonly actual: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: LxcRootConfigArgs, opts?: pulumi.CustomResourceOptions) {
    super(lxcRootConfigProvider, name, { actual: undefined, actualIdmap: undefined, volumeSlots: undefined, ...args }, pulumi.mergeOptions(opts, { additionalSecretOutputs: ["transport"] }), "phoenix/guest", "LxcRootConfig");
  }
}

const label = (i: { vmid: number; node: string }) => `CT ${i.vmid} on ${i.node}`;

async function probeSsh(i: LxcRootConfigInputs, connection: SshConnection): Promise<ProbedState> {
  const out = parseProbe((await runScriptChecked(connection, `read root-only settings of ${label(i)}`, renderProbe(i.vmid, i.mounts.map((m) => m.hostPath)))).stdout);
  const config: Record<string, string> = {};
  const idmap: string[] = [];
  for (const line of out.all("config")) {
    const sep = line.indexOf(": ");
    if (sep < 0) continue;
    const key = line.slice(0, sep);
    const value = line.slice(sep + 2);
    if (key === "lxc.idmap") idmap.push(value);
    else config[key] = value;
  }
  const owners: ProbedState["owners"] = {};
  for (const line of out.all("owner")) {
    const [path, spec] = line.split(" ");
    const [uid, gid, mode] = (spec ?? "").split(":");
    if (path) owners[path] = { uid: Number(uid), gid: Number(gid), mode: mode ?? "" };
  }
  const files = new Map(out.all("file").map((l) => {
    const [path, data] = l.split(" ");
    return [path, data === "-" || data === undefined ? undefined : Buffer.from(data, "base64").toString("utf8")] as const;
  }));
  return { exists: out.get("exists") === "1", running: out.get("running") === "1", config, idmap, owners, subuid: files.get("/etc/subuid"), subgid: files.get("/etc/subgid") };
}

function apiClient(t: Extract<RootTransport, { kind: "api" }>) {
  return createPveClient({ endpoint: t.endpoint, auth: { kind: "ticket", username: "root@pam", password: t.password }, tls: { caPem: t.caPem, insecure: t.insecure } });
}

/** The API cannot write lxc.* keys nor touch the node's files: those need SSH. */
function apiRefusal(i: LxcRootConfigInputs): string | undefined {
  const needs = [i.mounts.length > 0 && "bind mounts (their host directories get an owner)", i.idmap.length > 0 && "an id map (lxc.idmap)"].filter(Boolean);
  return needs.length > 0 ? `${label(i)}: ${needs.join(" and ")} need SSH to the node; configure proxmox.nodes[].ssh for ${i.node}` : undefined;
}

async function converge(i: LxcRootConfigInputs): Promise<LxcRootConfigOutputs> {
  const t = i.transport;
  if (t.kind === "api") {
    const refusal = apiRefusal(i);
    if (refusal) throw new Error(refusal);
    const api = apiClient(t);
    try {
      const config = (await api.guestConfig(i.node, "lxc", i.vmid)) as Record<string, unknown>;
      const state: ProbedState = { exists: true, running: false, config: stringValues(config), idmap: [], owners: {} };
      const plan = planRootConfig(i, state);
      if (Object.keys(plan.set).length > 0 || plan.delete.length > 0) {
        await api.updateGuestConfig(i.node, "lxc", i.vmid, { ...plan.set, ...(plan.delete.length > 0 ? { delete: plan.delete.join(",") } : {}) });
        if ((await api.guestStatus(i.node, "lxc", i.vmid)).status === "running") await api.setGuestState(i.node, "lxc", i.vmid, "reboot");
      }
      return outputs(i, stringValues((await api.guestConfig(i.node, "lxc", i.vmid)) as Record<string, unknown>), []);
    } finally {
      api.close();
    }
  }
  const before = await probeSsh(i, t.connection);
  if (!before.exists) throw new Error(`${label(i)} does not exist; it is created by the guest's container resource, which must run first`);
  const plan = planRootConfig(i, before);
  if (!planIsEmpty(plan)) await runScriptChecked(t.connection, `apply root-only settings to ${label(i)}`, renderApply(i.vmid, plan, before.running));
  const after = await probeSsh(i, t.connection);
  const left = planRootConfig(i, after);
  if (!planIsEmpty(left)) throw new Error(`${label(i)}: settings did not take: ${JSON.stringify(left)}; check the node's PVE logs`);
  // A stopped container cannot be asked; it is checked on the apply that finds it running.
  if (i.verifyGpus && after.running) {
    const seen = parseProbe((await runScriptChecked(t.connection, `check the GPUs inside ${label(i)}`, renderGpuCheck(i.vmid))).stdout).all("gpu");
    const problem = gpuViewProblem(i.verifyGpus, seen);
    if (problem) throw new Error(`${label(i)}: ${problem}`);
  }
  return outputs(i, after.config, after.idmap);
}

function stringValues(config: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(config).map(([k, v]) => [k, String(v)]));
}

function outputs(i: LxcRootConfigInputs, config: Record<string, string>, idmap: string[]): LxcRootConfigOutputs {
  return { ...i, actual: Object.fromEntries(Object.entries(config).filter(([k, v]) => isOwnedKey(k, v))), actualIdmap: idmap, volumeSlots: volumeSlots(config) };
}

const SPEC_KEYS = ["devices", "mounts", "features", "idmap", "subuid", "subgid", "transport", "verifyGpus"] as const;

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`root settings of CT ${String(news.vmid)}`);
    c.require("vmid", isUnknown(news.vmid) || (Number.isInteger(news.vmid) && (news.vmid as number) >= 100), "vmid must be a container id (100 or more)");
    c.string("node", news.node, /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/, "a node name");
    for (const key of ["devices", "mounts", "idmap", "subuid", "subgid"]) c.require(key, isUnknown(news[key]) || Array.isArray(news[key]), `${key} must be a list`);
    const devices = Array.isArray(news.devices) ? news.devices : [];
    devices.forEach((d: Record<string, unknown>, i) => {
      if (!isUnknown(d)) c.require(`devices[${i}].path`, isUnknown(d.path) || (typeof d.path === "string" && d.path.startsWith("/dev/")), "a device path must start with /dev/");
    });
    const mounts = Array.isArray(news.mounts) ? news.mounts : [];
    mounts.forEach((m: Record<string, unknown>, i) => {
      if (isUnknown(m)) return;
      c.require(`mounts[${i}].hostPath`, isUnknown(m.hostPath) || (typeof m.hostPath === "string" && m.hostPath.startsWith("/")), "hostPath must be absolute");
      c.require(`mounts[${i}].path`, isUnknown(m.path) || (typeof m.path === "string" && m.path.startsWith("/") && m.path !== "/"), "the mount point must be absolute and not /");
    });
    const t = news.transport as Record<string, unknown> | undefined;
    if (!isUnknown(t)) {
      c.require("transport", t?.kind === "ssh" || t?.kind === "api", "transport must be { kind: ssh, connection } or { kind: api, endpoint, password }");
      if (t?.kind === "ssh") c.connection(t.connection);
      if (t?.kind === "api" && !isUnknown(news.mounts) && !isUnknown(news.idmap)) {
        const refusal = apiRefusal(news as unknown as LxcRootConfigInputs);
        if (refusal) c.require("transport", false, refusal);
      }
    }
    return { inputs: news, failures: c.failures };
  },

  async diff(_id: string, olds: LxcRootConfigOutputs, news: LxcRootConfigInputs) {
    const replaces = changedKeys(olds, news, ["node", "vmid"]);
    const changed = changedKeys(olds, news, SPEC_KEYS);
    // Drift found by refresh: what the node has differs from what was declared.
    // Compared as sets of keys: the node lists its config in its own order (PVE sorts it), not the spec's.
    const keysDrifted = !isUnknown(news.devices) && !isUnknown(news.mounts) && !isUnknown(news.features) && !same(olds.actual ?? {}, desiredKeys(news, olds.volumeSlots ?? []));
    const idmapDrifted = !isUnknown(news.idmap) && !same(olds.actualIdmap ?? [], idmapLines(news.idmap));
    const drifted = keysDrifted || idmapDrifted;
    return diffResult(drifted ? [...changed, "actual"] : changed, replaces);
  },

  async create(inputs: LxcRootConfigInputs) {
    return { id: `${inputs.node}/${inputs.vmid}`, outs: await converge(inputs) };
  },

  async read(id: string, props: LxcRootConfigOutputs) {
    const t = props.transport;
    if (t.kind === "api") {
      const api = apiClient(t);
      try {
        return { id, props: outputs(props, stringValues((await api.guestConfig(props.node, "lxc", props.vmid)) as Record<string, unknown>), []) };
      } finally {
        api.close();
      }
    }
    const state = await probeSsh(props, t.connection);
    if (!state.exists) return { id: "", props: {} };
    return { id, props: outputs(props, state.config, state.idmap) };
  },

  async update(_id: string, _olds: LxcRootConfigOutputs, news: LxcRootConfigInputs) {
    return { outs: await converge(news) };
  },

  async delete(id: string, props: LxcRootConfigOutputs) {
    // Removing the settings from config, not the container: it goes with its own resource.
    // Without its devices the guest sees no GPU: the check would fail the delete it follows.
    const empty: LxcRootConfigInputs = { ...props, devices: [], mounts: [], idmap: [], subuid: [], subgid: [], features: { ...props.features, keyctl: false, fuse: false }, verifyGpus: undefined };
    try {
      await converge(empty);
    } catch (e) {
      if (!String(e).includes("does not exist")) throw new Error(`CT ${id}: could not remove root-only settings: ${String(e)}`, { cause: e });
    }
  },
};
