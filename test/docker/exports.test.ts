import { describe, expect, it } from "vitest";
import { EXPORTS_BEGIN, EXPORTS_END, mergeExports, type NfsExport } from "../../providers/host/exports";

const OPTS = ["rw", "sync", "no_subtree_check", "root_squash"];
const data: NfsExport = { path: "/fastData/docker-data", clients: [{ host: "10.0.0.111", options: OPTS }, { host: "10.0.0.102", options: OPTS }] };
const FOREIGN = "# exports written by hand\n/srv/backup 10.0.0.50(ro,sync,no_subtree_check)\n";

describe("mergeExports", () => {
  it("appends Phoenix's block and keeps every other line as it was", () => {
    expect(mergeExports(FOREIGN, [data])).toBe(
      `${FOREIGN}${EXPORTS_BEGIN}\n/fastData/docker-data 10.0.0.111(rw,sync,no_subtree_check,root_squash) 10.0.0.102(rw,sync,no_subtree_check,root_squash)\n${EXPORTS_END}\n`,
    );
  });

  it("is idempotent, and replaces only its own block when the declaration changes", () => {
    const once = mergeExports(FOREIGN, [data]);
    expect(mergeExports(once, [data])).toBe(once);
    const added = `${once}/srv/late 10.0.0.60(ro)\n`;
    const narrowed = mergeExports(added, [{ ...data, clients: [data.clients[1]!] }]);
    expect(narrowed).toContain("/fastData/docker-data 10.0.0.102(rw,sync,no_subtree_check,root_squash)\n");
    expect(narrowed).not.toContain("10.0.0.111");
    expect(narrowed.startsWith(FOREIGN)).toBe(true);
    expect(narrowed.endsWith(`${EXPORTS_END}\n/srv/late 10.0.0.60(ro)\n`)).toBe(true);
  });

  it("removes its block when nothing is declared, and nothing else", () => {
    expect(mergeExports(mergeExports(FOREIGN, [data]), [])).toBe(FOREIGN);
    expect(mergeExports("", [])).toBe("");
  });

  it("refuses a path someone else already exports, a damaged block and unsafe input", () => {
    expect(() => mergeExports('"/fastData/docker-data" *(rw)\n', [data])).toThrow("already exported by a line Phoenix does not manage");
    expect(() => mergeExports(`${EXPORTS_BEGIN}\n/x y(rw)\n`, [data])).toThrow("damaged Phoenix block");
    expect(() => mergeExports("", [{ ...data, clients: [] }])).toThrow("has no clients");
    expect(() => mergeExports("", [{ ...data, clients: [{ host: "10.0.0.1", options: ["rw) * (rw"] }] }])).toThrow("is not an exports(5) option");
    expect(() => mergeExports("", [data, data])).toThrow("declared twice");
  });
});
