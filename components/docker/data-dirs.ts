/**
 * The folders a Docker host's stacks bind from the NFS-mounted dataset,
 * created on the NFS server (the node) before the stacks deploy.
 *
 * Left to Docker, a missing bind source is created by the daemon as root:
 * compose's short volume syntax "creates a directory at the source path on the
 * host if it doesn't exist" (compose-spec spec.md, volumes short syntax;
 * docs.docker.com/storage/bind-mounts: "-v creates the endpoint for you. It is
 * always created as a directory"). Over an export with root_squash, root is
 * mapped to the anonymous uid (exports(5): "Map requests from uid/gid 0 to the
 * anonymous uid/gid"), which cannot enter the dataset's 0750 root, so the
 * container never starts. The folders are made on the node instead, by the uid
 * the service runs as.
 */
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import type { StackConfig } from "../../stacks/schema";
import { renderScript, shellQuote } from "../../providers/ssh/script";
import { DOCKER_DATA_MOUNT } from "./cloud-init";

export interface DataDir {
  /** Absolute path on the node, inside the exported dataset. */
  path: string;
  uid: number;
  gid: number;
  /** Octal mode, e.g. 0750. */
  mode: string;
}

export interface BindSource {
  service: string;
  /** The bind source as the compose file writes it. */
  source: string;
  /** The service's `user`, when it is numeric (uid or uid:gid). */
  user?: { uid: number; gid?: number };
}

/** Bind sources of every service: short syntax `src:dst[:mode]` with an absolute src, and long syntax `type: bind`. */
export function bindSources(compose: string): BindSource[] {
  const doc = parseYaml(compose) as { services?: Record<string, { user?: unknown; volumes?: unknown[] }> } | null;
  const out: BindSource[] = [];
  for (const [service, s] of Object.entries(doc?.services ?? {})) {
    const m = /^(\d+)(?::(\d+))?$/.exec(String(s?.user ?? ""));
    const user = m ? { uid: Number(m[1]), ...(m[2] !== undefined ? { gid: Number(m[2]) } : {}) } : undefined;
    for (const v of s?.volumes ?? []) {
      const source = typeof v === "string" ? (v.startsWith("/") ? v.split(":")[0] : undefined) : (v as { type?: string; source?: string }).type === "bind" ? (v as { source?: string }).source : undefined;
      if (source) out.push({ service, source, ...(user ? { user } : {}) });
    }
  }
  return out;
}

/**
 * The folders to create on the node for one Docker host: every bind source below the data
 * mount and each of its parents inside the dataset, owned by the service's numeric user or
 * else the dataset's declared owner. A source that leaves the mount through `..` is refused.
 * @param stacks each stack's name and compose text
 */
export function dataDirs(config: StackConfig, vmid: number, stacks: { name: string; compose: string }[]): DataDir[] {
  const exp = config.host.nfsExports.find((e) => e.clients.includes(vmid));
  if (!exp) return [];
  const dataset = config.host.zfs.datasets.find((d) => `${d.pool}/${d.name}` === exp.volume);
  const root = `/${exp.volume}`;
  const dirs = new Map<string, DataDir>();
  for (const s of stacks) {
    for (const b of bindSources(s.compose)) {
      const normal = path.posix.normalize(b.source);
      if (normal !== DOCKER_DATA_MOUNT && !normal.startsWith(`${DOCKER_DATA_MOUNT}/`)) {
        if (b.source.startsWith(`${DOCKER_DATA_MOUNT}/`)) throw new Error(`stack ${s.name}, service ${b.service}: bind source ${JSON.stringify(b.source)} leaves ${DOCKER_DATA_MOUNT}`);
        continue;
      }
      const uid = b.user?.uid ?? dataset?.owner?.uid ?? 0;
      const gid = b.user?.gid ?? dataset?.owner?.gid ?? uid;
      const mode = dataset?.owner?.mode.padStart(4, "0") ?? "0755";
      const parts = normal.slice(DOCKER_DATA_MOUNT.length).split("/").filter(Boolean);
      parts.forEach((_, i) => {
        const p = `${root}/${parts.slice(0, i + 1).join("/")}`;
        if (!dirs.has(p)) dirs.set(p, { path: p, uid, gid, mode });
      });
    }
  }
  return [...dirs.values()].sort((a, b) => a.path.localeCompare(b.path));
}

/**
 * Creates each missing folder, parents first, as the uid and gid that will use it
 * (setpriv, util-linux), never as root: the dataset is written by the containers, and a
 * symlink one of them left there then leads nowhere its own uid could not already go. An
 * existing folder is left as it is (its data and ownership are the service's). The dataset
 * must be mounted first, or the folders would land on the node's root file system.
 */
export function renderDataDirsScript(dataset: string, dirs: DataDir[]): string {
  const lines = dirs.map((d) => {
    const at = `"$R"${shellQuote(d.path)}`;
    return `if [ ! -d ${at} ]; then setpriv --reuid=${d.uid} --regid=${d.gid} --clear-groups mkdir -m ${d.mode} -- ${at}; echo ${shellQuote(`created ${d.path}`)}; fi`;
  });
  return renderScript(`if [ "$(zfs get -H -o value mounted ${shellQuote(dataset)})" != yes ]; then
  echo ${shellQuote(`the dataset ${dataset} is not mounted: the Docker stacks' folders are not created on the node's root file system; mount it (zfs mount ${dataset})`)} >&2
  exit 1
fi
${lines.join("\n")}`);
}
