/**
 * The tailnet as the stack declares it: which guests join with which tags, and the policy file
 * (HuJSON) rendered from the same declarations. Tailscale's policy denies what no `acls` rule
 * accepts ("default deny" once acls are present), so isolation of the projects is the absence of a
 * rule between their tags; validation refuses a rule that would join two members of an isolated
 * security group. The grammar: tailscale v1.88.3 client/tailscale/acl.go ACLDetails (`acls` rows of
 * action "accept", `src`, `dst`; `tagOwners`) and tailscale.com/kb/1337/acl-syntax (dst `tag:<name>:<ports>`,
 * HuJSON, deny by default); the control server that enforces it is not open source.
 */
import { isolatedGroups } from "./isolation";
import type { Guest, StackConfig } from "./schema";
import { guestLabel, type ConfigIssue } from "./validate";

export const TAILSCALE_POLICY_FILE = "tailscale-policy.hujson";

const tagsOf = (g: Guest): string[] => g.tailscale?.tags ?? [];

/** Every tag the stack names: the guests' and the other devices'. */
export function tailnetTags(config: StackConfig): string[] {
  return [...new Set([...config.guests.flatMap(tagsOf), ...(config.tailscale?.deviceTags ?? [])])].sort();
}

/** The tailnet policy file, HuJSON (JSON with comments and trailing commas allowed); keys and tags are JSON-quoted. */
export function renderTailscalePolicy(config: StackConfig): string | undefined {
  const ts = config.tailscale;
  if (!ts) return undefined;
  const tagOwners = Object.fromEntries(tailnetTags(config).map((t) => [`tag:${t}`, ts.tagOwners]));
  const acls = ts.acls.map((a) => ({ action: "accept", src: [`tag:${a.src}`], dst: [`tag:${a.dst}:${a.ports === "*" ? "*" : a.ports.join(",")}`] }));
  const members = config.guests.filter((g) => g.tailscale).map((g) => `//   ${g.tailscale!.hostname ?? g.name}: ${tagsOf(g).map((t) => `tag:${t}`).join(", ")}`);
  return [
    "// Tailnet policy rendered by Phoenix from the stack's guests[].tailscale and phoenix:tailscale.",
    "// Apply it in the admin console (Access controls). Anything no rule accepts is denied.",
    "// Guests joining with tags:",
    ...members,
    JSON.stringify({ tagOwners, acls }, null, 2),
    "",
  ].join("\n");
}

/** What validation checks about the tailnet declarations. */
export function tailscaleIssues(config: StackConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const ts = config.tailscale;
  config.guests.forEach((g, i) => {
    if (g.tailscale && !ts) issues.push({ path: `guests[${i}].tailscale`, message: `${guestLabel(g)} joins the tailnet, but phoenix:tailscale (the package version and the policy's tag owners) is not declared` });
  });
  if (!ts) return issues;
  const known = new Set(tailnetTags(config));
  const groups = isolatedGroups(config);
  ts.acls.forEach((a, k) => {
    for (const end of ["src", "dst"] as const) {
      if (!known.has(a[end])) issues.push({ path: `tailscale.acls[${k}].${end}`, message: `tag:${a[end]} is carried by no guest and is not in tailscale.deviceTags` });
    }
    for (const grp of groups) {
      const from = grp.members.filter((g) => tagsOf(g).includes(a.src));
      const to = grp.members.filter((g) => tagsOf(g).includes(a.dst));
      const pair = from.flatMap((f) => to.filter((t) => t !== f).map((t) => [f, t] as const))[0];
      if (pair) issues.push({ path: `tailscale.acls[${k}]`, message: `tag:${a.src} → tag:${a.dst} lets ${guestLabel(pair[0])} reach ${guestLabel(pair[1])} over the tailnet, but both are in isolated group ${grp.name}: remove the rule` });
    }
  });
  return issues;
}
