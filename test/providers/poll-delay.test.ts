import { describe, expect, it } from "vitest";
import type { PveClient } from "../../providers/pve/client";
import { pollDelay } from "../../providers/pve/tasks";

const client = (pollIntervalMs?: number) => ({ options: { task: pollIntervalMs === undefined ? undefined : { pollIntervalMs } } }) as unknown as PveClient;

describe("task polling", () => {
  it("starts at 50 ms and doubles to one call a second when nothing is configured", () => {
    expect([0, 1, 2, 3, 4, 5, 6, 20].map((a) => pollDelay(client(), {}, a))).toEqual([50, 100, 200, 400, 800, 1000, 1000, 1000]);
  });

  it("keeps a configured interval, the call's own first", () => {
    expect(pollDelay(client(250), {}, 0)).toBe(250);
    expect(pollDelay(client(250), { pollIntervalMs: 7 }, 9)).toBe(7);
  });
});
