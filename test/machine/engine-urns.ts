/**
 * The engine's side of URNs and aliases, for the resources a program run
 * registered (scripts/offline-program.ts records each registration and the
 * aliases the SDK sent). The mock monitor makes URNs its own way (only the
 * parent's last type, the root stack's type kept), and with alias specs the
 * SDK leaves inheriting a parent's alias to the engine: both are done here as
 * the engine does them, so a test can tell which old URN each resource adopts.
 *
 * Ported from pulumi v3.248.0:
 * - pkg/resource/deploy/deployment.go generateURN: the parent's qualified type,
 *   none for the root stack.
 * - sdk/go/common/resource/alias.go CreateURN.
 * - pkg/resource/deploy/step_generator.go collapseAliasToUrn, inheritedChildAlias,
 *   generateAliases and getOldResource: the URN is looked up first, then each
 *   alias in order; a parent adopted through an alias passes that old URN on to
 *   its children (sg.aliases).
 */
import type { AliasSpec, Registered } from "../../scripts/offline-program";

const ROOT_STACK_TYPE = "pulumi:pulumi:Stack";

/** urn:pulumi:<stack>::<project>::<qualified type>::<name>; a name may itself hold "::". */
function parts(urn: string): { prefix: string; qualifiedType: string; name: string } {
  const [stack, project, qualifiedType, ...name] = urn.slice("urn:pulumi:".length).split("::");
  return { prefix: `urn:pulumi:${stack}::${project}::`, qualifiedType: qualifiedType!, name: name.join("::") };
}

export interface Adoption {
  /** The resource's URN under the engine's rule. */
  urn: string;
  type: string;
  name: string;
  custom: boolean;
  /** Its parent's engine URN; undefined under the root stack. */
  parent?: string;
  /** Every alias URN the engine derives for it, in the engine's order. */
  aliases: string[];
  /** The old URN it takes over: its own, an alias, or undefined for a create. */
  adopted?: string;
}

/** Runs the engine's step generation over the registrations in order, against the URNs of a previous state. */
export function adoptions(resources: readonly Registered[], olds: ReadonlySet<string>, stack: string, project: string): Adoption[] {
  const prefix = `urn:pulumi:${stack}::${project}::`;
  const engineUrn = new Map<string, string>();
  const byName = new Map(resources.map((r) => [r.name, r]));
  const byMockUrn = new Map(resources.map((r) => [r.urn, r]));
  // sg.aliases: the old URN each resource was adopted through.
  const adoptedAlias = new Map<string, string>();
  const createUrn = (name: string, type: string, parent: string, proj = project, stk = stack): string =>
    parent === "" ? `urn:pulumi:${stk}::${proj}::${type}::${name}` : `${parent.slice(0, parent.lastIndexOf("::"))}$${type}::${name}`;
  const engineUrnOfMock = (mockUrn: string): string => {
    const r = byMockUrn.get(mockUrn);
    return (r && engineUrn.get(r.name)) ?? mockUrn;
  };
  const collapse = (r: Registered, resParent: string, alias: AliasSpec): string => {
    if ("urn" in alias) return alias.urn;
    let parent = resParent;
    if (alias.parentUrn !== "") {
      const p = engineUrnOfMock(alias.parentUrn);
      parent = adoptedAlias.get(p) ?? p;
    }
    if (alias.noParent || (parent !== "" && parts(parent).qualifiedType === ROOT_STACK_TYPE)) parent = "";
    return createUrn(alias.name || r.name, alias.type || r.type, parent, alias.project || project, alias.stack || stack);
  };
  const inheritedChildAlias = (childType: string, childName: string, parentName: string, parentAlias: string): string => {
    const name = childName.startsWith(parentName) ? parts(parentAlias).name + childName.slice(parentName.length) : childName;
    const { qualifiedType } = parts(parentAlias);
    return `${prefix}${qualifiedType === ROOT_STACK_TYPE ? "" : `${qualifiedType}$`}${childType}::${name}`;
  };
  const out: Adoption[] = [];
  const claimed = new Set<string>();
  for (const r of resources) {
    const parentResource = r.parent === undefined ? undefined : byName.get(r.parent);
    const parent = parentResource ? engineUrn.get(parentResource.name)! : "";
    // deployment.go generateURN: the parent's qualified type prefixes the type.
    const urn = `${prefix}${parent === "" ? "" : `${parts(parent).qualifiedType}$`}${r.type}::${r.name}`;
    engineUrn.set(r.name, urn);
    const aliases: string[] = [];
    const add = (a: string) => void (aliases.includes(a) || aliases.push(a));
    for (const a of r.aliases) add(collapse(r, parent, a));
    const parentAlias = parent === "" ? undefined : adoptedAlias.get(parent);
    if (parentAlias !== undefined) {
      const parentName = parts(parent).name;
      add(inheritedChildAlias(r.type, r.name, parentName, parentAlias));
      for (const a of r.aliases) {
        const child = parts(collapse(r, parent, a));
        add(inheritedChildAlias(child.qualifiedType.split("$").pop()!, child.name, parentName, parentAlias));
      }
    }
    const adopted = [urn, ...aliases].find((u) => olds.has(u) && !claimed.has(u));
    if (adopted !== undefined) claimed.add(adopted);
    if (adopted !== undefined && adopted !== urn) adoptedAlias.set(urn, adopted);
    out.push({ urn, type: r.type, name: r.name, custom: r.custom, ...(parent === "" ? {} : { parent }), aliases, ...(adopted === undefined ? {} : { adopted }) });
  }
  return out;
}
