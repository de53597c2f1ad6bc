import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { engineConfigJson, MAX_ENGINE_CONFIG_BYTES } from "../../stacks/engine-env";
import { withGeneratedGuests } from "../../bench/generated-stack";
import { validateStack } from "../../stacks/load";

const starts = (value: string) => spawnSync(process.execPath, ["-e", "0"], { env: { PULUMI_CONFIG: value } }).error?.message ?? "started";

describe("the configuration as the CLI passes it (PULUMI_CONFIG)", () => {
  it("is built as Go's json.Marshal builds it: namespaced keys, object values as their JSON text, HTML characters escaped", () => {
    expect(engineConfigJson({ a: "x<y", b: { c: [1, "&"] } }, "phoenix")).toBe(String.raw`{"phoenix:config:a":"x\u003cy","phoenix:config:b":"{\"c\":[1,\"\\u0026\"]}"}`);
  });

  it("has the limit Linux puts on one environment string", () => {
    expect(starts("x".repeat(MAX_ENGINE_CONFIG_BYTES))).toBe("started");
    expect(starts("x".repeat(MAX_ENGINE_CONFIG_BYTES + 1))).toMatch(/E2BIG/);
  });

  it("a stack that fits validates; one past the limit is refused at the setting that takes the most room, naming the limit", () => {
    expect(validateStack(withGeneratedGuests(100), { requireSecrets: false }).ok).toBe(true);
    const big = validateStack(withGeneratedGuests(500), { requireSecrets: false });
    expect(big.ok).toBe(false);
    const issues = big.ok === false ? big.issues : [];
    expect(issues).toHaveLength(1);
    expect(issues[0]!.path).toBe("guests");
    expect(issues[0]!.message).toMatch(/^the stack's configuration is \d+ bytes .*PULUMI_CONFIG.*over the 131057 bytes .*MAX_ARG_STRLEN.*E2BIG/);
  });
});
