/**
 * proxmoxve:backup/job:Job as bpg makes its calls (bpg v0.111.1 fwprovider/cluster/backup/
 * resource.go and model.go, proxmox/cluster/backup/backup.go): Create POSTs /cluster/backup with
 * id, schedule, storage and the set fields (lists joined with ",", prune_backups as sorted
 * `k=v` pairs, booleans as 0/1), then GETs /cluster/backup/{id}; Update PUTs the set fields with
 * `delete` naming those that were set and no longer are (toAPIUpdate, attribute.CheckDelete),
 * then GETs; Delete DELETEs; Read GETs. `id` is RequiresReplace. `exclude` is bpg commit
 * c398ad8d's, which the 8.6.0 SDK's `excludes` stands for.
 */
import type { FormParams, PveApi } from "../../providers/pve";
import type { Translation } from "./engine";

type Inputs = Record<string, unknown>;

/** The request keys bpg sends for the inputs Phoenix sets (fillCommonFields), undefined where unset. */
export function backupJobBody(i: Inputs): Record<string, string | undefined> {
  const list = (v: unknown) => (Array.isArray(v) && v.length > 0 ? v.map(String).join(",") : undefined);
  const bool = (v: unknown) => (v === undefined ? undefined : v ? "1" : "0");
  const prune = i.pruneBackups as Record<string, string> | undefined;
  const keys = prune ? Object.keys(prune).sort() : [];
  return {
    enabled: bool(i.enabled),
    node: i.node as string | undefined,
    all: bool(i.all),
    mode: i.mode as string | undefined,
    compress: i.compress as string | undefined,
    mailto: list(i.mailtos),
    mailnotification: i.mailnotification as string | undefined,
    "prune-backups": keys.length > 0 ? keys.map((k) => `${k}=${prune![k]}`).join(",") : undefined,
    pool: i.pool as string | undefined,
    vmid: list(i.vmids),
    exclude: list(i.excludes),
  };
}

const defined = (o: Record<string, string | undefined>): FormParams => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as FormParams;

export function backupJobTranslation(api: PveApi): Translation {
  const path = (id: string) => `/cluster/backup/${encodeURIComponent(id)}`;
  const find = async (id: string) => (await api.client.get<Inputs[]>("/cluster/backup")).find((j) => j.id === id);
  return {
    replaceOnChanges: ["resourceId"],
    async create(i) {
      const id = String(i.resourceId);
      await api.client.post("/cluster/backup", { id, schedule: String(i.schedule), storage: String(i.storage), ...defined(backupJobBody(i)) });
      return { id, outputs: await api.client.get<Inputs>(path(id)) };
    },
    async update(entry, i) {
      const before = backupJobBody(entry.inputs);
      const now = backupJobBody(i);
      const del = Object.keys(now).filter((k) => now[k] === undefined && before[k] !== undefined);
      await api.client.put(path(entry.id), { schedule: String(i.schedule), storage: String(i.storage), ...defined(now), ...(del.length > 0 ? { delete: del.join(",") } : {}) });
      return api.client.get<Inputs>(path(entry.id));
    },
    async delete(entry) {
      if (await find(entry.id)) await api.client.delete(path(entry.id));
    },
    read: (entry) => find(entry.id),
  };
}

/**
 * proxmoxve:storage/pbs:Pbs as bpg makes its calls (bpg v0.111.1 fwprovider/storage/resource_pbs.go
 * Create, model_pbs.go toCreateAPIRequest/toUpdateAPIRequest/fromAPI, model_base.go
 * populateCreateFields/populateUpdateFields, proxmox/storage/storage_types.go and pbs_types.go):
 * Create POSTs /storage with storage, type=pbs, disable (a non-nil CustomBool, `url:"disable,omitempty,int"`:
 * 0), nodes and content joined with ",", username, password, namespace when set, server, datastore,
 * fingerprint, `encryption-key` when set; then GETs /storage/{id}. Update PUTs disable, nodes,
 * content and fingerprint: the rest (server, datastore, username, password, namespace,
 * encryptionKey) is RequiresReplace. PVE never returns the password nor the key (PBSPlugin.pm keeps
 * them in /etc/pve/priv/storage/<id>.pw and .enc), so the state keeps the planned ones, as bpg's
 * (`resp.State.Set(ctx, &plan)` after fromAPI, which sets neither).
 */
export function pbsTranslation(api: PveApi): Translation {
  const path = (id: string) => `/storage/${encodeURIComponent(id)}`;
  const joined = (v: unknown) => (Array.isArray(v) && v.length > 0 ? v.map(String).join(",") : undefined);
  const mutable = (i: Inputs): FormParams => ({ disable: 0, nodes: joined(i.nodes), content: joined(i.contents), fingerprint: i.fingerprint as string | undefined });
  const find = async (id: string) => (await api.storages()).find((s) => s.storage === id);
  const outputs = async (id: string, i: Inputs) => ({ ...(await api.client.get<Inputs>(path(id))), password: i.password, ...(i.encryptionKey !== undefined ? { encryptionKey: i.encryptionKey } : {}) });
  return {
    replaceOnChanges: ["resourceId", "server", "datastore", "username", "password", "namespace", "encryptionKey"],
    async create(i) {
      const id = String(i.resourceId);
      await api.client.post("/storage", {
        storage: id,
        type: "pbs",
        ...mutable(i),
        username: String(i.username),
        password: String(i.password),
        namespace: i.namespace as string | undefined,
        server: String(i.server),
        datastore: String(i.datastore),
        "encryption-key": i.encryptionKey as string | undefined,
      });
      return { id, outputs: await outputs(id, i) };
    },
    async update(entry, i) {
      await api.client.put(path(entry.id), mutable(i));
      return outputs(entry.id, i);
    },
    async delete(entry) {
      if (await find(entry.id)) await api.client.delete(path(entry.id));
    },
    read: async (entry) => ((await find(entry.id)) ? outputs(entry.id, entry.outputs ?? {}) : undefined),
  };
}
