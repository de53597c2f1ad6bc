import { describe, expect, it } from "vitest";
import { hostIdOf, ID_RANGE, planIdmap, type IdmapRange } from "../../stacks/idmap";

describe("planIdmap", () => {
  it("keeps PVE's default map when nothing is passed through", () => {
    expect(planIdmap({ uids: [], gids: [] })).toEqual({ ranges: [], subuid: [], subgid: [] });
  });

  it("splits the gid map in three around a passed-through gid 33 and delegates it in subgid", () => {
    const plan = planIdmap({ uids: [], gids: [33] });
    expect(plan.ranges.filter((r) => r.type === "g")).toEqual([
      { type: "g", containerId: 0, hostId: 100000, size: 33 },
      { type: "g", containerId: 33, hostId: 33, size: 1 },
      { type: "g", containerId: 34, hostId: 100034, size: 65502 },
    ]);
    // lxc.idmap replaces the whole default map, so the uid map is written too
    expect(plan.ranges.filter((r) => r.type === "u")).toEqual([{ type: "u", containerId: 0, hostId: 100000, size: 65536 }]);
    expect(plan.subgid).toEqual(["root:33:1"]);
    expect(plan.subuid).toEqual([]);
  });

  it("handles ids at the edges of the range", () => {
    const plan = planIdmap({ uids: [0, 65535], gids: [] });
    expect(plan.ranges.filter((r) => r.type === "u")).toEqual([
      { type: "u", containerId: 0, hostId: 0, size: 1 },
      { type: "u", containerId: 1, hostId: 100001, size: 65534 },
      { type: "u", containerId: 65535, hostId: 65535, size: 1 },
    ]);
  });

  // A small deterministic PRNG keeps the property test repeatable.
  function random(seed: number): () => number {
    let s = seed;
    return () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  }

  it("always tiles 0–65535 without overlap, for random passthrough sets (500 cases)", () => {
    const rnd = random(42);
    for (let n = 0; n < 500; n++) {
      const pick = () => Array.from({ length: Math.floor(rnd() * 6) }, () => (rnd() < 0.2 ? [0, 1, 65534, 65535][Math.floor(rnd() * 4)]! : Math.floor(rnd() * ID_RANGE)));
      const uids = pick();
      const gids = pick();
      if (uids.length + gids.length === 0) continue;
      const plan = planIdmap({ uids, gids });
      for (const type of ["u", "g"] as const) {
        const ranges = plan.ranges.filter((r) => r.type === type);
        let next = 0;
        for (const r of ranges) {
          expect(r.containerId).toBe(next);
          expect(r.size).toBeGreaterThan(0);
          next = r.containerId + r.size;
        }
        expect(next).toBe(ID_RANGE);
        // host ids never collide either: each container id has its own host id
        const hostIds = ranges.flatMap((r: IdmapRange) => [[r.hostId, r.hostId + r.size]] as const).sort((a, b) => a[0] - b[0]);
        for (let i = 1; i < hostIds.length; i++) expect(hostIds[i]![0]).toBeGreaterThanOrEqual(hostIds[i - 1]![1]);
        const passed = new Set(type === "u" ? uids : gids);
        for (const id of passed) expect(ranges).toContainEqual({ type, containerId: id, hostId: id, size: 1 });
      }
    }
  });

  it("maps an owner to its host id through the same map", () => {
    expect(hostIdOf(1000, [], true)).toBe(101000);
    expect(hostIdOf(33, [33], true)).toBe(33);
    expect(hostIdOf(1000, [], false)).toBe(1000);
  });
});
