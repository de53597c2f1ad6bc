/**
 * The simulator as a cluster: several nodes sharing one pmxcfs (one guest list, one
 * storage.cfg), storages that are local to each node or shared, nodes that go offline, and
 * guests migrating between nodes.
 *
 * Sources (read at their newest stored commits): pve-container 94f5585 (src/PVE/API2/LXC.pm
 * migrate_vm, src/PVE/LXC/Migrate.pm), qemu-server e6352be6 (src/PVE/API2/Qemu.pm migrate_vm,
 * src/PVE/QemuMigrate.pm), pve-manager 14a22df3 (PVE/API2/Cluster.pm get_status, resources),
 * pve-storage 0c56bad (src/PVE/Storage/Plugin.pm @SHARED_STORAGE, stacks/shared-storage.ts), pve-http-server 5c9e4ea
 * (src/PVE/APIServer/AnyEvent.pm proxy_request).
 */
import { isSharedStorage } from "../../stacks/shared-storage";
import { flag, req, startTask, str, type Handler, type HandlerCtx, type Sim } from "./core";
import { checkLock, configSchema, guestOf, LABEL, volumesOf, type Kind } from "./guests";
import type { Route } from "./schema";
import type { Storage } from "./state";
import { die, paramError, SimError } from "./tasks";
import { parseWithSchema } from "./validate";

/**
 * pve-storage Plugin.pm @SHARED_STORAGE, or the storage's own `shared` flag. The list is an
 * upstream fact, cited where it lives (stacks/shared-storage.ts, a pure module), so the simulator
 * takes it from there rather than keeping a second copy.
 */
export function isShared(storage: Storage): boolean {
  return isSharedStorage(storage.type, storage.config.shared);
}

/**
 * A request for an offline node, as pveproxy answers it: the call is proxied to the node named
 * in the path (`proxyto => 'node'`), AnyEvent::HTTP cannot connect and reports status 595 with
 * the socket error as the reason, and proxy_request passes status, reason and (empty) body
 * through (pve-http-server AnyEvent.pm proxy_request). Which errno it is depends on the network:
 * "No route to host" for a host that is down, "Connection refused" where only pveproxy is.
 * unverified: AnyEvent::HTTP's 595 convention is from its documentation, not read from source.
 */
export function offlineProxyError(sim: Sim, route: Route, params: Record<string, unknown>): SimError | undefined {
  const node = params.node;
  if (typeof node !== "string" || !route.template.startsWith("/nodes/{node}") || !sim.state.offline.has(node)) return undefined;
  return new SimError(595, "No route to host");
}

/** Corosync's quorum: a majority of votes, one vote per node, the offline ones not counted. */
export function quorate(sim: Sim): boolean {
  const nodes = [...sim.state.nodes.keys()];
  return nodes.filter((n) => !sim.state.offline.has(n)).length * 2 > nodes.length;
}

/** The cluster's view of its nodes (pve-manager PVE/API2/Cluster.pm get_status): the first node is the one answering. */
function clusterStatus(ctx: HandlerCtx): unknown {
  const nodes = [...ctx.sim.state.nodes.keys()];
  return [
    { id: "cluster", name: "phoenix", type: "cluster", nodes: nodes.length, quorate: quorate(ctx.sim) ? 1 : 0, version: nodes.length },
    ...nodes.map((name, i) => ({ id: `node/${name}`, name, type: "node", online: ctx.sim.state.offline.has(name) ? 0 : 1, local: i === 0 ? 1 : 0, nodeid: i + 1, ip: `127.0.0.${i + 1}`, level: "" })),
  ];
}

/**
 * A node as pve-manager 14a22df3 PVE/API2Tools.pm extract_node_stats gives it, for GET /nodes
 * (PVE/API2/Nodes.pm index) and /cluster/resources alike: usage and capacity from the rrd data
 * the node's pvestatd broadcasts, status `online` only while corosync's member list has it online,
 * else `offline`. pmxcfs drops rrd data older than five minutes (pve-cluster 7091d92
 * src/pmxcfs/status.c rrd_entry_is_old, called by cfs_rrd_dump), so a node down longer than that,
 * which is what an offline node is here, has no level, uptime, usage or capacity left.
 */
export function nodeStats(sim: Sim, node: string): Record<string, unknown> {
  const entry = { id: `node/${node}`, node, type: "node" };
  if (sim.state.offline.has(node)) return { ...entry, status: "offline" };
  return { ...entry, status: "online", level: "", uptime: 86400, cpu: 0.02, maxcpu: 64, mem: 16 * 1024 ** 3, maxmem: 256 * 1024 ** 3, disk: 8 * 1024 ** 3, maxdisk: 100 * 1024 ** 3 };
}

/**
 * pve-manager 14a22df3 PVE/API2/Cluster.pm resources: guests from pmxcfs's vmlist (so those of an
 * offline node are still listed, with the node they are on) with `lock` and `tags` from their
 * config (get_guest_config_properties), storages per node (a shared one once per node too,
 * flagged `shared`), nodes as nodeStats. Stats come from the rrd data (PVE/API2Tools.pm
 * extract_vm_stats, extract_storage_stats): for a guest or a storage of an offline node it has
 * expired (nodeStats), leaving status `unknown` and no name, template flag, usage or size.
 */
function clusterResources(ctx: HandlerCtx): unknown {
  const { state } = ctx.sim;
  const type = str(ctx, "type");
  const out: Array<Record<string, unknown>> = [];
  if (!type || type === "vm") {
    for (const g of state.guests.values()) {
      const props = { ...(g.config.lock !== undefined ? { lock: g.config.lock } : {}), ...(g.config.tags !== undefined ? { tags: g.config.tags } : {}) };
      const entry = { id: `${g.kind}/${g.vmid}`, type: g.kind, vmid: g.vmid, node: g.node };
      if (state.offline.has(g.node)) {
        out.push({ ...entry, status: "unknown", ...props });
        continue;
      }
      out.push({
        ...entry,
        name: g.config.hostname ?? g.config.name,
        status: g.status,
        template: g.config.template === "1" ? 1 : 0,
        maxmem: Number(g.config.memory ?? 512) * 1024 * 1024,
        maxcpu: Number(g.config.cores ?? 1),
        ...props,
      });
    }
  }
  if (!type || type === "storage") {
    for (const node of state.nodes.keys()) {
      for (const s of state.storages.values()) {
        const on = (s.config.nodes ?? "").split(",").filter((n) => n !== "");
        if (on.length > 0 && !on.includes(node)) continue;
        const entry = { id: `storage/${node}/${s.id}`, type: "storage", storage: s.id, node, plugintype: s.type, content: s.config.content ?? "", shared: isShared(s) ? 1 : 0 };
        out.push(state.offline.has(node) ? { ...entry, status: "unknown" } : { ...entry, status: "available", maxdisk: s.total, disk: state.usedBytes(s) });
      }
    }
  }
  if (!type || type === "node") {
    for (const node of state.nodes.keys()) out.push(nodeStats(ctx.sim, node));
  }
  return out;
}

/**
 * Why PVE refuses to move a guest's volumes, per volume, as its migration checks them:
 * pve-container Migrate.pm prepare (bind/device mount points unless `shared`; the storage must
 * exist and allow `rootdir` on the target) and phase1 (a local volume must be on a storage type
 * PVE can copy and must not be a linked clone: "clone of '<base>'"); qemu-server QemuMigrate.pm
 * the same for VM disks ("can't migrate '<volid>' as it's a clone of '<base>'").
 */
function volumeRefusals(sim: Sim, kind: Kind, vmid: number, config: Record<string, string>, target: string): string[] {
  const out: string[] = [];
  if (kind === "lxc") {
    const schema = configSchema(sim, "lxc");
    for (const [k, v] of Object.entries(config)) {
      if (!/^mp\d+$/.test(k)) continue;
      const mp = parseWithSchema(schema[k]!, v, k);
      if (mp.volume?.startsWith("/") && mp.shared !== "1") throw die(`cannot migrate local ${mp.volume.startsWith("/dev/") ? "device" : "bind"} mount point '${k}'`);
    }
  }
  for (const { volid } of volumesOf(kind, config, sim)) {
    const storage = sim.state.storage(volid.split(":")[0]!);
    const on = (storage.config.nodes ?? "").split(",").filter((n) => n !== "");
    if (on.length > 0 && !on.includes(target)) throw die(`storage '${storage.id}' is not available on node '${target}'`);
    if (isShared(storage)) continue;
    const vol = sim.state.volume(volid);
    if (!["dir", "zfspool", "lvmthin", "lvm", "btrfs"].includes(storage.type)) out.push(`${volid}: storage type '${storage.type}' not supported`);
    else if (vol.parent) {
      const base = vol.parent.slice(storage.id.length + 1);
      out.push(kind === "lxc" ? `${volid}: clone of '${base}'` : `${volid}: can't migrate '${volid}' as it's a clone of '${base}'`);
    } else if (vol.vmid !== vmid) out.push(`${volid}: owned by other guest (owner = ${String(vol.vmid)})`);
  }
  return out;
}

/**
 * POST /nodes/{node}/{lxc,qemu}/{vmid}/migrate. Up front (the call fails): the target is not the
 * node itself ("target is local node.", a 400), the target exists, the guest exists on the node,
 * a running CT needs `restart` (or `online`, which the worker then refuses), a running VM needs
 * `online`. In the worker (`vzmigrate` / `qmigrate`, the task fails): the guest's lock, an
 * offline target ("Can't connect to destination address using public key", the ssh test in
 * prepare), the volume checks above; then the config holds lock `migrate` while the volumes
 * move, is moved to nodes/<target>/ (move_config_to_node), the lock is cleared and, in restart
 * mode, the CT is started on the target. A VM migrates online: it keeps running. A failure
 * before the config moved leaves the guest where it was, restarted if it ran.
 */
function migrate(kind: Kind): Handler {
  return (ctx) => {
    const { sim } = ctx;
    const target = req(ctx, "target");
    if (target === req(ctx, "node")) throw paramError({ target: "target is local node." });
    // PVE::Cluster::check_node_exists
    if (!sim.state.nodes.has(target)) throw die(`no such cluster node '${target}'`);
    const g = guestOf(ctx, kind);
    const running = g.status === "running";
    const online = flag(ctx, "online") === true;
    const restart = kind === "lxc" && flag(ctx, "restart") === true;
    if (running && kind === "lxc" && !online && !restart) throw die("can't migrate running container without --online or --restart");
    if (running && kind === "qemu" && !online) throw die("can't migrate running VM without --online");
    const source = g.node;
    let moved = false;
    return startTask(
      ctx,
      kind === "lxc" ? "vzmigrate" : "qmigrate",
      String(g.vmid),
      async ({ log, sleep }) => {
        checkLock(g, { ...ctx, params: {} });
        if (running && kind === "lxc" && online) throw die("lxc live migration is currently not implemented");
        if (sim.state.offline.has(target)) throw die("Can't connect to destination address using public key");
        if (running && kind === "lxc") {
          log(`shutdown CT ${g.vmid}`);
          g.status = "stopped";
        }
        g.config.lock = "migrate";
        log(`starting migration of ${LABEL[kind]} ${g.vmid} to node '${target}'`);
        const refusals = volumeRefusals(sim, kind, g.vmid, g.config, target);
        for (const r of refusals) log(`WARN: can't migrate local ${kind === "lxc" ? "volume" : "disk"} '${r.split(": ")[0]}': ${r.split(": ").slice(1).join(": ")}`);
        if (refusals.length > 0) throw die(kind === "lxc" ? "can't migrate CT - check log" : "can't migrate VM - check log");
        for (const { volid } of volumesOf(kind, g.config, sim)) {
          log(isShared(sim.state.storage(volid.split(":")[0]!)) ? `volume '${volid}' is on shared storage` : `found local volume '${volid}' (in current VM config)`);
        }
        await sleep(sim.timing.taskDurationMs);
        g.node = target;
        moved = true;
        log(`migration finished successfully`);
      },
      () => {
        if (g.config.lock === "migrate") delete g.config.lock;
        // Restart mode: started on the target after the move, back on the source after a failure.
        if (running && kind === "lxc") g.status = "running";
        if (!moved) g.node = source;
      },
    );
  };
}

/** The cluster endpoints, keyed by `METHOD template`. */
export function clusterHandlers(): Record<string, Handler> {
  return {
    "GET /cluster/status": clusterStatus,
    "GET /cluster/resources": clusterResources,
    // pve-manager 14a22df3 PVE/API2/Nodes.pm index: every node of the cluster's nodelist.
    "GET /nodes": (ctx) => [...ctx.sim.state.nodes.keys()].map((node) => nodeStats(ctx.sim, node)),
    "POST /nodes/{node}/lxc/{vmid}/migrate": migrate("lxc"),
    "POST /nodes/{node}/qemu/{vmid}/migrate": migrate("qemu"),
  };
}
