/**
 * DestroyGuard: one per stack. It records the guests of each apply (their node, template,
 * storage, privilege, disk size, and what the configuration allows) and, in its check, compares
 * the declared guests with the recorded ones (stacks/replacement.ts). A change that
 * would destroy a guest without the configuration allowing it fails the check, which the engine
 * runs during `pulumi preview` and at the start of `pulumi up`, before any resource is touched;
 * each guest's bridged resource also waits for the guard. It holds no secret and makes no call.
 */
import * as pulumi from "@pulumi/pulumi";
import { same } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { destructiveChanges, type GuardedGuest } from "../../stacks/replacement";

export interface DestroyGuardInputs {
  guests: GuardedGuest[];
}

export const destroyGuardProvider = dynamicProvider<DestroyGuardInputs, DestroyGuardInputs>("guest/destroy-guard");

export class DestroyGuard extends DynamicResource {
  constructor(name: string, args: DestroyGuardInputs, opts: pulumi.CustomResourceOptions = {}) {
    super(destroyGuardProvider, name, args, opts, "phoenix/guest", "DestroyGuard");
  }
}

const guestsOf = (v: unknown): GuardedGuest[] => (Array.isArray((v as { guests?: unknown } | undefined)?.guests) ? (v as DestroyGuardInputs).guests : []);

export const implementation: Implementation = {
  async check(olds: unknown, news: Record<string, unknown>) {
    const failures = destructiveChanges(guestsOf(olds), guestsOf(news)).map((c) => ({ property: c.path, reason: c.message }));
    return { inputs: news, failures };
  },
  async diff(_id: string, olds: DestroyGuardInputs, news: DestroyGuardInputs) {
    return { changes: !same(olds.guests, news.guests), replaces: [] };
  },
  async create(inputs: DestroyGuardInputs) {
    return { id: "phoenix-destroy-guard", outs: inputs };
  },
  async update(_id: string, _olds: DestroyGuardInputs, news: DestroyGuardInputs) {
    return { outs: news };
  },
  async read(id: string, props: DestroyGuardInputs) {
    return { id, props };
  },
  async delete() {
    // Nothing exists outside the state.
  },
};
