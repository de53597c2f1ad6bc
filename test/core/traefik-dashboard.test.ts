/**
 * Issue 20 item 15: Traefik's dashboard and API answer only host.adminNetworks and only
 * with phoenix:traefikDashboardPassword (ipAllowList, then basicAuth with a users file).
 */
import { compareSync, hashSync } from "bcryptjs";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { stepCaEndpoints } from "../../components/core/step-ca.render";
import { DASHBOARD_USER, dashboardUsersLine, renderTraefikDynamic, renderTraefikFiles, renderTraefikInstallScript, TRAEFIK_PATHS } from "../../components/core/traefik.render";
import { requiredSecrets } from "../../stacks/secrets";
import type { StackConfig } from "../../stacks/schema";
import { prodConfig } from "./helpers";

const config = prodConfig();
const PASSWORD = "correct horse battery staple";
const inputs = { caRootPem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n", acmeDirectoryUrl: stepCaEndpoints(config).acmeDirectoryUrl, dashboardPassword: PASSWORD };

type Dynamic = { http: { routers: Record<string, { middlewares?: string[]; service: string; entryPoints: string[] }>; middlewares?: Record<string, { ipAllowList?: { sourceRange: string[] }; basicAuth?: { usersFile: string } }> } };
const dynamicOf = (c: StackConfig) => parseYaml(renderTraefikDynamic(c).content) as Dynamic;
const change = (f: (c: StackConfig) => void): StackConfig => {
  const c = structuredClone(config);
  f(c);
  return c;
};
const traefikRoleOf = (c: StackConfig) => {
  const role = c.guests.find((g) => g.role?.type === "traefik")!.role;
  if (role?.type !== "traefik") throw new Error("no traefik role");
  return role;
};
const usersFile = (c: StackConfig, password = PASSWORD) => renderTraefikFiles(c, { ...inputs, dashboardPassword: password }).find((f) => f.path === TRAEFIK_PATHS.dashboardUsers);

describe("Traefik dashboard access", () => {
  it("puts the dashboard router behind the admin networks' allow-list, then basicAuth", () => {
    const doc = dynamicOf(config);
    const router = doc.http.routers.dashboard!;
    expect(router.service).toBe("api@internal");
    expect(router.middlewares).toEqual(["dashboard-allow", "dashboard-auth"]);
    expect(doc.http.middlewares?.["dashboard-allow"]?.ipAllowList?.sourceRange).toEqual(config.host.adminNetworks);
    expect(config.host.adminNetworks.length).toBeGreaterThan(0);
    expect(doc.http.middlewares?.["dashboard-auth"]?.basicAuth?.usersFile).toBe(TRAEFIK_PATHS.dashboardUsers);
    // No other router gets the dashboard's middlewares.
    for (const [name, r] of Object.entries(doc.http.routers)) if (name !== "dashboard") expect(r.middlewares ?? [], name).not.toContain("dashboard-auth");
    for (const [name, r] of Object.entries(doc.http.routers)) if (name !== "dashboard") expect(r.middlewares ?? [], name).not.toContain("dashboard-allow");
  });

  it("falls back to Traefik's own subnet when no admin networks are declared (ipAllowList refuses an empty sourceRange)", () => {
    const c = change((x) => {
      x.host.adminNetworks = [];
    });
    const ip = c.guests.find((g) => g.role?.type === "traefik")!.network.ip;
    expect(ip).toBe("10.0.0.12/24");
    expect(dynamicOf(c).http.middlewares?.["dashboard-allow"]?.ipAllowList?.sourceRange).toEqual(["10.0.0.0/24"]);
  });

  it("writes a bcrypt users file for admin, readable by Traefik only, that accepts the password and nothing else", () => {
    const file = usersFile(config)!;
    expect(file).toMatchObject({ mode: "0640", owner: "root:traefik" });
    const [user, hash] = file.content.trimEnd().split(/:(.*)/s) as [string, string];
    expect(user).toBe(DASHBOARD_USER);
    expect(hash).toMatch(/^\$2b\$10\$[./A-Za-z0-9]{53}$/);
    expect(compareSync(PASSWORD, hash)).toBe(true);
    expect(compareSync(`${PASSWORD}x`, hash)).toBe(false);
    expect(file.content).not.toContain(PASSWORD);
  });

  it("is the same line on every render, so a second pulumi up changes nothing; a new password makes a new line", () => {
    expect(dashboardUsersLine(config, PASSWORD)).toBe(dashboardUsersLine(config, PASSWORD));
    expect(renderTraefikInstallScript(config, inputs)).toBe(renderTraefikInstallScript(config, { ...inputs }));
    expect(dashboardUsersLine(config, "another password")).not.toBe(dashboardUsersLine(config, PASSWORD));
    // The salt is per stack too: the same password under another domain hashes differently.
    const other = change((x) => {
      x.host.domain = "example.org";
    });
    expect(dashboardUsersLine(other, PASSWORD)).not.toBe(dashboardUsersLine(config, PASSWORD));
  });

  it("hashes a password once per process: a second line comes from memory, and it is bcrypt's hash", () => {
    const password = "memo probe password";
    const timed = () => {
      const started = performance.now();
      const line = dashboardUsersLine(config, password);
      return { line, ms: performance.now() - started };
    };
    const first = timed();
    const second = timed();
    expect(second.line).toBe(first.line);
    expect(second.ms).toBeLessThan(first.ms / 5);
    const hash = first.line.slice(`${DASHBOARD_USER}:`.length);
    expect(hashSync(password, hash.slice(0, 29))).toBe(hash);
  });

  it("hashes the way bcrypt's reference implementations do (crypt_blowfish wrapper.c vector)", () => {
    // Openwall crypt_blowfish wrapper.c test vector, also in OpenBSD's and py-bcrypt's tests.
    expect(hashSync("U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.")).toBe("$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW");
  });

  it("restarts Traefik when the users file changes (basicAuth reads it only when built)", () => {
    expect(renderTraefikInstallScript(config, inputs)).toMatch(/changed_file \/etc\/traefik\/dashboard-users/);
  });

  it("refuses a password bcrypt would truncate or an empty one, without echoing it", () => {
    const long = "p".repeat(73);
    expect(() => dashboardUsersLine(config, long)).toThrow(/72 bytes/);
    try {
      dashboardUsersLine(config, long);
    } catch (e) {
      expect(String(e)).not.toContain(long);
    }
    expect(() => dashboardUsersLine(config, "")).toThrow(/empty/);
    expect(() => renderTraefikFiles(config, { ...inputs, dashboardPassword: undefined })).toThrow(/traefikDashboardPassword/);
  });

  it("requires phoenix:traefikDashboardPassword while the dashboard is on, and nothing of it when it is off", () => {
    expect(requiredSecrets(config)).toContainEqual(expect.objectContaining({ key: "traefikDashboardPassword", path: expect.stringMatching(/^guests\[\d+\]\.role\.dashboard$/) }));
    const off = change((x) => {
      traefikRoleOf(x).dashboard = false;
    });
    expect(requiredSecrets(off).map((n) => n.key)).not.toContain("traefikDashboardPassword");
    expect(dynamicOf(off).http.routers.dashboard).toBeUndefined();
    // Only the gateway status page's allow-list is left (the API path the gateway reads, from its address alone).
    expect(Object.keys(dynamicOf(off).http.middlewares ?? {})).toEqual(["gateway-status-allow"]);
    expect(usersFile(off)).toBeUndefined();
    expect(renderTraefikInstallScript(off, { ...inputs, dashboardPassword: undefined })).not.toContain(TRAEFIK_PATHS.dashboardUsers);
  });
});
