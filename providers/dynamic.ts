import type * as pulumi from "@pulumi/pulumi";

/** What each provider file exports as `implementation`: every method present. */
export type Implementation = Required<Pick<pulumi.dynamic.ResourceProvider, "check" | "diff" | "create" | "read" | "update" | "delete">>;

/**
 * Builds the provider object Pulumi serializes into the state. Its methods capture only
 * `implFile` (a string) and `loadImplementation` (a function that itself captures nothing), so
 * the serialized text is small and carries no module state. The real work lives in the
 * provider's own file, required at call time.
 *
 * Why not a plain relative `require("./x")`: the engine runs a dynamic provider in a separate
 * process (`pulumi-resource-pulumi-nodejs`) that evaluates the serialized text with
 * `require-from-string` and an empty file name, so a relative path resolves against the
 * process's working directory, which is the project root — not this directory. That process is
 * also plain Node without the TypeScript hook the language host installs, so the `.ts` source
 * needs a loader: `tsx`'s CommonJS hook, registered once per process. Resolving from
 * `process.cwd()` works the same under vitest (run from the project root); an absolute path
 * captured at deployment time would pin the state to one checkout's location.
 *
 * @param implFile path below providers/, without extension, e.g. "host/zfs-dataset"
 */
export function dynamicProvider<Inputs, Outputs>(implFile: string): pulumi.dynamic.ResourceProvider<Inputs, Outputs> {
  const provider: pulumi.dynamic.ResourceProvider<Inputs, Outputs> = {
    check: (olds, news) => loadImplementation(implFile).check(olds, news),
    diff: (id, olds, news) => loadImplementation(implFile).diff(id, olds, news),
    create: (inputs) => loadImplementation(implFile).create(inputs),
    read: (id, props) => loadImplementation(implFile).read(id, props),
    update: (id, olds, news) => loadImplementation(implFile).update(id, olds, news),
    delete: (id, props) => loadImplementation(implFile).delete(id, props),
  };
  implFiles.set(provider, implFile);
  return provider;
}

/**
 * The `implFile` each provider object was made from. Its serialized text is a function of that
 * string and of this file's code alone (the methods above capture nothing else), which is what
 * lets ./dynamic-resource.ts keep the text across runs of one program bundle.
 */
const implFiles = new WeakMap<object, string>();

export const implFileOf = (provider: object): string | undefined => implFiles.get(provider);

function loadImplementation(implFile: string): Implementation {
  const path = require("path") as typeof import("path");
  if (!require.extensions[".ts"]) (require("tsx/cjs/api") as { register(): unknown }).register();
  return (require(path.join(process.cwd(), "providers", implFile)) as { implementation: Implementation }).implementation;
}
