/**
 * The tree `pulumi preview` shows: one root component for the machine, the
 * tiers as its children, the guests and their parts under the tiers (as
 * pulumi-eks and awsx parent their parts under the component the user made).
 *
 * Stacks applied before the tree existed hold every tier at the top, parented
 * by the stack. Each resource moved under the root or a tier carries the alias
 * `{ parent: pulumi.rootStackResource }`, its URN as it was, so the engine
 * adopts the old state instead of creating anew and deleting the old.
 * - @pulumi/pulumi v3.248.0 sdk/nodejs/resource.ts (`rootStackResource`, `Alias.parent`):
 *   "To specify no original parent, use `{ parent: pulumi.rootStackResource }`";
 *   runtime/resource.ts mapAliasesForRequest sends a present-but-undefined
 *   parent as `Alias.Spec.noParent` (the Node SDK's Alias has no noParent field).
 * - Only the moved resource needs the alias. With alias specs the engine itself
 *   derives the children's aliases: pulumi v3.248.0 pkg/resource/deploy/step_generator.go
 *   generateAliases adds inheritedChildAlias(child, parent's adopted old URN) for
 *   every child of a parent that was adopted through an alias (sg.aliases), level by
 *   level, so a guest's container and disk follow their guest. test/machine/tree.test.ts
 *   replays that over the registrations against the URNs of the tree-less layout.
 * - The Proxmox provider stays where it was, under the stack: an aliased explicit
 *   provider is matched only through step_generator.go diffProvider's sg.aliased
 *   check, and every resource using it is at stake if that fails (pulumi/pulumi#3979,
 *   #18395), for no gain in the tree.
 */
import * as pulumi from "@pulumi/pulumi";

/** The name of the root; its URN is `…::phoenix:index:Machine::phoenix`. */
export const MACHINE_NAME = "phoenix";

/** The tiers that exist only to group: the others (HostPrep, Templates, ClusterFirewall, Observability) are their own component. */
export type TierKind = "Guests" | "Core" | "Models" | "Docker";

/** Options for a resource that was registered at the top before the tree: its new parent and its old URN. */
export function movedUnder(parent: pulumi.Resource): { parent: pulumi.Resource; aliases: pulumi.Alias[] } {
  return { parent, aliases: [{ parent: pulumi.rootStackResource }] };
}

/** The root of the machine's resources. */
export class Machine extends pulumi.ComponentResource {
  private readonly tiers = new Map<TierKind, pulumi.ComponentResource>();

  constructor(name: string = MACHINE_NAME, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:index:Machine", name, {}, opts);
    this.registerOutputs({});
  }

  /** The grouping tier of a kind, made on first use so a stack without that tier shows none. */
  tier(kind: TierKind): pulumi.ComponentResource {
    let tier = this.tiers.get(kind);
    if (!tier) {
      tier = new Tier(kind, this);
      this.tiers.set(kind, tier);
    }
    return tier;
  }
}

class Tier extends pulumi.ComponentResource {
  constructor(kind: TierKind, machine: Machine) {
    super(`phoenix:index:${kind}`, kind.toLowerCase(), {}, { parent: machine });
    this.registerOutputs({});
  }
}
