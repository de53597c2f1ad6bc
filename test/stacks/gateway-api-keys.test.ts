/** The gateway's API keys at the boundary: schema rules, the secrets they need, and the keys checked without being echoed. */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { apiKeyDigests } from "../../components/core/nginx.render";
import { isDockerSecretKey, requiredSecrets } from "../../stacks/secrets";
import type { StackConfig } from "../../stacks/schema";
import { issuesOf, prodWithSecrets, validate } from "./fixtures";

type Values = Record<string, unknown> & { guests: Array<{ vmid: number; role?: Record<string, unknown> }> };

/** prod with its secrets set, the gateway's apiKeys replaced. */
function withApiKeys(apiKeys: unknown) {
  const raw = prodWithSecrets();
  const values = raw.values as Values;
  values.guests.find((g) => g.role?.type === "nginx-gateway")!.role!.apiKeys = apiKeys;
  return validate(raw);
}

const messages = (apiKeys: unknown) => issuesOf(withApiKeys(apiKeys)).map((i) => `${i.path}: ${i.message}`);

describe("the gateway's API keys in the stack", () => {
  it("refuses keys on with no client, saying what to do", () => {
    for (const apiKeys of [undefined, {}, { clients: [] }]) {
      // The keys the fixture sets are then no setting either: only the apiKeys message is looked at here.
      const found = messages(apiKeys).filter((m) => m.includes(".apiKeys"));
      expect(found).toHaveLength(1);
      expect(found[0]).toMatch(/^guests\[\d+\]\.role\.apiKeys\.clients: API keys are on and no client is declared.*declare a client.*pulumi config set --secret phoenix:gatewayApiKey-.*apiKeys\.enabled: false/);
    }
  });

  it("asks no client of a gateway that serves no /v1 route: it checks no key", () => {
    const raw = prodWithSecrets();
    const values = raw.values as Values & { routes: Array<{ byModel?: boolean; path?: string }> };
    values.routes = values.routes.filter((r) => !r.byModel && !(r.path ?? "/").startsWith("/v1"));
    values.guests.find((g) => g.role?.type === "nginx-gateway")!.role!.apiKeys = { clients: [] };
    delete raw.values["gatewayApiKey-webapp"];
    delete raw.values["gatewayApiKey-n8n"];
    expect(issuesOf(validate(raw)).filter((i) => i.path.includes("apiKeys"))).toEqual([]);
  });

  it("accepts keys turned off without clients, and then needs no key (a key left set is flagged as no setting)", () => {
    expect(messages({ enabled: false })).toEqual(expect.arrayContaining([expect.stringMatching(/^gatewayApiKey-webapp: phoenix:gatewayApiKey-webapp is not a Phoenix setting/)]));
    const raw = prodWithSecrets();
    delete raw.values["gatewayApiKey-webapp"];
    delete raw.values["gatewayApiKey-n8n"];
    (raw.values as Values).guests.find((g) => g.role?.type === "nginx-gateway")!.role!.apiKeys = { enabled: false };
    const result = validate(raw);
    expect(result.ok).toBe(true);
    if (result.ok === true) expect(requiredSecrets(result.config).some((n) => n.key.startsWith("gatewayApiKey-"))).toBe(false);
  });

  it("refuses duplicate, unsafe and malformed clients with their paths", () => {
    expect(messages({ clients: [{ name: "a" }, { name: "a" }] })).toEqual([expect.stringMatching(/^guests\[\d+\]\.role\.apiKeys\.clients\[1\]\.name: client a is declared twice/)]);
    expect(messages({ clients: [{ name: "We b;" }] })).toEqual([expect.stringMatching(/^guests\[\d+\]\.role\.apiKeys\.clients\[0\]\.name: /)]);
    expect(messages({ clients: [{ name: "a", rate: "10r/h" }] })).toEqual([expect.stringMatching(/clients\[0\]\.rate: must be a request rate such as 10r\/s/)]);
    expect(messages({ clients: [{ name: "a", burst: -1 }] })).toEqual([expect.stringMatching(/clients\[0\]\.burst/)]);
  });

  it("needs one secret per client, reported like the others when missing, and never a Docker stack's", () => {
    const raw = prodWithSecrets();
    delete raw.values["gatewayApiKey-n8n"];
    expect(issuesOf(validate(raw))).toEqual([{ path: expect.stringMatching(/^guests\[\d+\]\.role\.apiKeys\.clients\[1\]$/), message: expect.stringMatching(/^needs the secret phoenix:gatewayApiKey-n8n .*pulumi config set --secret phoenix:gatewayApiKey-n8n/) }]);
    expect(isDockerSecretKey("gatewayApiKey-webapp")).toBe(false);
  });
});

describe("apiKeyDigests", () => {
  const result = withApiKeys({ clients: [{ name: "webapp" }, { name: "n8n" }] });
  const config = (result.ok === true ? result.config : undefined) as StackConfig;

  it("keeps SHA-256 digests only", () => {
    const key = "k".repeat(40);
    const table = apiKeyDigests(config, { webapp: key, n8n: "n".repeat(40) });
    const sha = (v: string) => createHash("sha256").update(v).digest("hex");
    expect(table).toEqual({ [sha(key)]: "webapp", [sha("n".repeat(40))]: "n8n" });
    expect(JSON.stringify(table)).not.toContain(key);
    expect(Object.keys(table).every((d) => /^[0-9a-f]{64}$/.test(d))).toBe(true);
  });

  it("refuses a short, a malformed, a missing and a shared key without echoing it", () => {
    const short = "short-key-123";
    const spaced = `${"x".repeat(32)} with space`;
    expect(() => apiKeyDigests(config, { webapp: short, n8n: "n".repeat(40) })).toThrow(/^phoenix:gatewayApiKey-webapp must be 32 to 256 characters/);
    expect(() => apiKeyDigests(config, { webapp: spaced, n8n: "n".repeat(40) })).toThrow(/gatewayApiKey-webapp must be/);
    for (const keys of [{ webapp: short, n8n: "n".repeat(40) }, { webapp: spaced, n8n: "n".repeat(40) }]) {
      try {
        apiKeyDigests(config, keys);
      } catch (e) {
        expect((e as Error).message).not.toContain(keys.webapp);
      }
    }
    expect(() => apiKeyDigests(config, { webapp: "w".repeat(40) })).toThrow(/client n8n has no key: pass phoenix:gatewayApiKey-n8n/);
    expect(() => apiKeyDigests(config, { webapp: "s".repeat(40), n8n: "s".repeat(40) })).toThrow(/gatewayApiKey-n8n holds the same key as phoenix:gatewayApiKey-webapp/);
  });

  it("refuses a badly shaped key when the stack loads, before any resource, without echoing it", () => {
    const raw = prodWithSecrets();
    const short = "short-key-123";
    raw.values["gatewayApiKey-n8n"] = short;
    raw.values.portainerAgentSecret = "tiny secret";
    const found = issuesOf(validate(raw));
    expect(found.map((i) => i.path).sort()).toEqual(["gatewayApiKey-n8n", "portainerAgentSecret"]);
    expect(found.find((i) => i.path === "gatewayApiKey-n8n")!.message).toMatch(/^phoenix:gatewayApiKey-n8n must be 32 to 256 characters.*pulumi config set --secret phoenix:gatewayApiKey-n8n/);
    for (const i of found) expect(i.message).not.toMatch(/short-key-123|tiny secret/);
  });
});
