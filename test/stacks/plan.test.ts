import { describe, expect, it } from "vitest";
import { planCloneOrder, type CloneJob } from "../../stacks/plan";

/** Simulates the order: which clones could run at the same moment. */
function waves(jobs: CloneJob[], after: Map<number, number>): number[][] {
  const done = new Set<number>();
  const result: number[][] = [];
  while (done.size < jobs.length) {
    const wave = jobs.filter((j) => !done.has(j.vmid) && (!after.has(j.vmid) || done.has(after.get(j.vmid)!))).map((j) => j.vmid);
    expect(wave.length).toBeGreaterThan(0);
    wave.forEach((v) => done.add(v));
    result.push(wave);
  }
  return result;
}

describe("planCloneOrder", () => {
  const jobs: CloneJob[] = [
    { vmid: 101, source: 900, storage: "lxc" },
    { vmid: 102, source: 900, storage: "lxc" },
    { vmid: 103, source: 900, storage: "lxc" },
    { vmid: 801, source: 920, storage: "lxc" },
    { vmid: 802, source: 920, storage: "lxc" },
    { vmid: 914, source: 901, storage: "lxc" },
    { vmid: 917, source: 901, storage: "lxc" },
    { vmid: 1001, source: 9000, storage: "vm" },
    { vmid: 1002, source: 9000, storage: "vm" },
  ];

  it("never runs two clones of one template at once", () => {
    for (const wave of waves(jobs, planCloneOrder(jobs))) {
      const sources = wave.map((v) => jobs.find((j) => j.vmid === v)!.source);
      expect(new Set(sources).size).toBe(sources.length);
    }
  });

  it("runs at most two clones per storage at once, and uses that parallelism", () => {
    const all = waves(jobs, planCloneOrder(jobs));
    for (const wave of all) {
      const perStorage = new Map<string, number>();
      for (const v of wave) {
        const s = jobs.find((j) => j.vmid === v)!.storage;
        perStorage.set(s, (perStorage.get(s) ?? 0) + 1);
      }
      expect(Math.max(...perStorage.values())).toBeLessThanOrEqual(2);
    }
    expect(all[0]!.length).toBe(3); // two lanes on lxc, one on vm
  });

  it("clones the guests others boot after first", () => {
    const after = planCloneOrder([
      { vmid: 101, source: 900, storage: "lxc", priority: 3 },
      { vmid: 102, source: 900, storage: "lxc", priority: 2 },
      { vmid: 103, source: 900, storage: "lxc", priority: 1 },
    ]);
    expect([...after.entries()].sort()).toEqual([
      [101, 102],
      [102, 103],
    ]);
  });

  it("with a bound of 1, clones on a storage run strictly one by one", () => {
    const all = waves(jobs, planCloneOrder(jobs, 1));
    expect(all.every((w) => w.length <= 2)).toBe(true);
    expect(all.length).toBe(7);
  });
});
