/**
 * A clone to another node (`target`), as pve-container 963730e (6.0.18) src/PVE/API2/LXC.pm
 * clone_vm and qemu-server e6352be6 src/PVE/API2/Qemu.pm clone_vm allow it: only when every
 * volume of the source is on shared storage; the clone is made on the source's node and its
 * config moved to the target at the end; and the storage status bpg reads to choose between a
 * clone with `target` and a clone then migration.
 */
import { req, str, type Handler, type HandlerCtx, type Sim } from "./core";
import { isShared, quorate } from "./cluster";
import { configSchema, type Kind } from "./guests";
import { die, paramError } from "./tasks";
import { parseWithSchema } from "./validate";

/**
 * pve-storage 0c56bad src/PVE/Storage.pm storage_check_enabled and storage_check_node: the
 * storage exists, is not disabled and, when it names its nodes, names this one.
 */
export function checkStorageEnabled(sim: Sim, storage: string, node: string): void {
  const s = sim.state.storage(storage);
  if (s.config.disable === "1") throw die(`storage '${storage}' is disabled`);
  const on = (s.config.nodes ?? "").split(",").filter((n) => n !== "");
  if (on.length > 0 && !on.includes(node)) throw die(`storage '${storage}' is not available on node '${node}'`);
}

/**
 * Up front, before any lock, in upstream's order: `target` equal to the node answering (or
 * `localhost`) is no target (LXC.pm:1951, Qemu.pm:4442-4444); the target must be a cluster node
 * (PVE::Cluster::check_node_exists, LXC.pm:1953, Qemu.pm:4450); `storage` must be enabled on the
 * node answering (a VM's must hold images: a 400), and with a target be enabled there too and
 * shared (LXC.pm:1957-1966, Qemu.pm:4453-4466); then the cluster must be quorate
 * (check_cfs_quorum, LXC.pm:1969, Qemu.pm:4469; pve-cluster 7091d92 src/PVE/Cluster.pm:121-132).
 * Nothing checks that the target is online: the config is moved to it in pmxcfs at the end
 * (move_config_to_node / rename), which a quorate cluster allows for a node that is down.
 * Returns the target, or undefined for a local clone.
 */
export function cloneTarget(ctx: HandlerCtx, kind: Kind, storage: string | undefined): string | undefined {
  const { sim } = ctx;
  const node = req(ctx, "node");
  const raw = str(ctx, "target");
  const target = raw === undefined || raw === node || raw === "localhost" ? undefined : raw;
  if (target !== undefined && !sim.state.nodes.has(target)) throw die(`no such cluster node '${target}'`);
  if (storage !== undefined) {
    checkStorageEnabled(sim, storage, node);
    if (kind === "qemu" && !sim.state.contentOf(sim.state.storage(storage)).includes("images")) throw paramError({ storage: `storage '${storage}' does not support vm images` });
    if (target !== undefined) {
      checkStorageEnabled(sim, storage, target);
      if (!isShared(sim.state.storage(storage))) throw die(`can't clone to non-shared storage '${storage}'`);
    }
  }
  if (!quorate(sim)) throw die("cluster not ready - no quorum?");
  return target;
}

/**
 * The source must be all on shared storage to clone to another node. pve-container counts the
 * rootfs and mount point volumes, each on `storage` when given (LXC.pm:2019-2036, refused at
 * :2079 after the linked-clone checks); qemu-server every drive with a volume, CD-ROMs and the
 * cloud-init drive included, on its own storage (Qemu.pm:282-323 check_storage_access_clone,
 * refused at :4498 before them).
 */
export function refuseLocalClone(sim: Sim, kind: Kind, config: Record<string, string>, storage: string | undefined, target: string | undefined): void {
  if (target === undefined) return;
  const schema = configSchema(sim, kind);
  const keys = kind === "lxc" ? /^(rootfs|mp\d+)$/ : /^((ide|sata|scsi|virtio)\d+|efidisk0|tpmstate0)$/;
  let shared = true;
  for (const [k, v] of Object.entries(config)) {
    if (!keys.test(k) || !schema[k]) continue;
    const volid = parseWithSchema(schema[k], v, k)[kind === "lxc" ? "volume" : "file"];
    if (!volid || volid === "none" || volid === "cdrom" || !/^[^/:\s]+:/.test(volid)) continue;
    const sid = kind === "lxc" && storage !== undefined ? storage : volid.split(":")[0]!;
    if (!isShared(sim.state.storage(sid))) shared = false;
  }
  if (!shared) throw die(kind === "lxc" ? `can't clone CT to node '${target}' (CT uses local storage)` : `can't clone VM to node '${target}' (VM uses local storage)`);
}

/**
 * GET /nodes/{node}/storage/{storage}/status: pve-storage 0c56bad src/PVE/API2/Storage/Status.pm
 * read_status, the node's storage_info entry (type, content, enabled, active, shared, sizes);
 * one the node does not have (unknown, or limited to other nodes) is "No such storage.".
 */
const storageStatus: Handler = (ctx) => {
  const { sim } = ctx;
  const node = req(ctx, "node");
  sim.state.node(node);
  const s = sim.state.storages.get(req(ctx, "storage"));
  const on = (s?.config.nodes ?? "").split(",").filter((n) => n !== "");
  if (!s || (on.length > 0 && !on.includes(node))) throw paramError({ storage: "No such storage." });
  const used = sim.state.usedBytes(s);
  return { type: s.type, content: s.config.content ?? "", enabled: s.config.disable === "1" ? 0 : 1, active: 1, shared: isShared(s) ? 1 : 0, total: s.total, used, avail: s.total - used };
};

export function cloneTargetHandlers(): Record<string, Handler> {
  return { "GET /nodes/{node}/storage/{storage}/status": storageStatus };
}
