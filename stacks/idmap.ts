/**
 * Id mapping of unprivileged containers. PVE maps container ids 0–65535 to
 * host ids 100000–165535. Passing an id through (container id N is host id N)
 * splits that range around N; the host must then delegate N to root in
 * /etc/subuid or /etc/subgid, or the container does not start.
 */

export const ID_RANGE = 65536;
export const DEFAULT_HOST_BASE = 100000;

export interface IdmapRange {
  type: "u" | "g";
  containerId: number;
  hostId: number;
  size: number;
}

export interface IdmapPlan {
  /** The lxc.idmap ranges, in container-id order; empty when the default map applies. */
  ranges: IdmapRange[];
  /** Lines the host's /etc/subuid needs (root:<id>:<count>). */
  subuid: string[];
  /** Lines the host's /etc/subgid needs. */
  subgid: string[];
}

function rangesFor(type: "u" | "g", passthrough: readonly number[]): IdmapRange[] {
  const ids = [...new Set(passthrough)].sort((a, b) => a - b);
  const ranges: IdmapRange[] = [];
  let next = 0;
  for (const id of ids) {
    if (id > next) ranges.push({ type, containerId: next, hostId: DEFAULT_HOST_BASE + next, size: id - next });
    ranges.push({ type, containerId: id, hostId: id, size: 1 });
    next = id + 1;
  }
  if (next < ID_RANGE) ranges.push({ type, containerId: next, hostId: DEFAULT_HOST_BASE + next, size: ID_RANGE - next });
  return ranges;
}

/** The map of an unprivileged container that passes the given ids through. */
export function planIdmap(passthrough: { uids: readonly number[]; gids: readonly number[] }): IdmapPlan {
  if (passthrough.uids.length === 0 && passthrough.gids.length === 0) return { ranges: [], subuid: [], subgid: [] };
  // lxc.idmap replaces the default map entirely, so both kinds are written even when one has no passthrough.
  const ranges = [...rangesFor("u", passthrough.uids), ...rangesFor("g", passthrough.gids)];
  const sub = (ids: readonly number[]) => [...new Set(ids)].sort((a, b) => a - b).map((id) => `root:${id}:1`);
  return { ranges, subuid: sub(passthrough.uids), subgid: sub(passthrough.gids) };
}

/** The host id a container id maps to. */
export function hostIdOf(containerId: number, passthrough: readonly number[], unprivileged: boolean): number {
  if (!unprivileged || passthrough.includes(containerId)) return containerId;
  return DEFAULT_HOST_BASE + containerId;
}
