/**
 * The base class of Phoenix's dynamic resources, in place of `pulumi.dynamic.Resource`: it
 * registers the same resource with the same `__provider` input, and under the Pulumi CLI keeps
 * each provider's serialized text beside the program bundle, so a run of an unchanged program
 * sends the text it serialized before instead of loading and running the SDK's closure serializer
 * (which reads every captured scope through the inspector and parses functions with TypeScript).
 *
 * What the SDK's class does (@pulumi/pulumi@3.248.0 sdk/nodejs/dynamic/index.ts, `Resource`
 * constructor, `serializeProvider`, `serializeFunctionMaybeSecret`), and what is done here alike:
 * - a `__provider` prop is refused;
 * - `__provider` is `serializeFunction(() => provider, { allowSecrets: true })` as an Output that is
 *   known, secret when the text captured a secret, and of no resource;
 * - one serialization per provider object while `cacheDynamicProviders()` (on unless
 *   PULUMI_NODEJS_CACHE_DYNAMIC_PROVIDERS=false, runtime/state.js), else one per resource;
 * - the type is `pulumi-nodejs:dynamic[/<module>]:<type>` (default "Resource"), then
 *   CustomResource(type, name, props, opts).
 *
 * The kept text travels as a plain string: rpc.js `serializeProperty` sends a known, non-secret
 * Output of no resource as its value (a custom resource never keeps output values), so the engine
 * receives the same bytes and the same (empty) dependencies (test/e2e/wire/wire.test.ts compares
 * a miss run's `__provider` values with a hit run's).
 *
 * When a text is kept, and why it cannot be stale: only for a provider made by `dynamicProvider`
 * (./dynamic.ts), whose methods capture `implFile` and `loadImplementation` and nothing else, so
 * its text is a function of the implFile, of the bundle's code (the key pulumi-entry.cjs computes
 * over every file bundled), of the serializer (the SDK's version) and of Node's function text
 * (Node's version); the file records all four and is read only when all match. A text that
 * captured a secret is never kept. A provider made any other way (test/e2e/wire/fixtures), a run
 * outside the bundle (vitest's mocks, scripts/synth.ts) or an unreadable file: serialized as the
 * SDK does. The file is written by rename; a write that fails leaves the next run a miss.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type * as SerializeClosure from "@pulumi/pulumi/runtime/closure/serializeClosure";
import { version as sdkVersion } from "@pulumi/pulumi/version";
import { implFileOf } from "./dynamic";

/** Set by pulumi-entry.cjs before it requires the bundle: the bundle's key and its folder. */
export const PROGRAM_BUNDLE = Symbol.for("phoenix.programBundle");

interface ProgramBundle {
  key: string;
  dir: string;
}

interface CacheFile {
  program: string;
  sdk: string;
  node: string;
  providers: Record<string, string>;
}

function programBundle(): ProgramBundle | undefined {
  const b = (globalThis as Record<symbol, unknown>)[PROGRAM_BUNDLE] as Partial<ProgramBundle> | undefined;
  return typeof b?.key === "string" && /^[0-9a-f]+$/.test(b.key) && typeof b.dir === "string" ? { key: b.key, dir: b.dir } : undefined;
}

export const providerCacheFile = (b: ProgramBundle): string => path.join(b.dir, `providers-${b.key}.json`);

/** The kept texts of each cache file this process has read, by implFile. */
const kept = new Map<string, Map<string, string>>();

function keptTexts(b: ProgramBundle): Map<string, string> {
  const file = providerCacheFile(b);
  let texts = kept.get(file);
  if (!texts) {
    texts = new Map();
    try {
      const c = JSON.parse(fs.readFileSync(file, "utf8")) as Partial<CacheFile>;
      if (c.program === b.key && c.sdk === sdkVersion && c.node === process.version && c.providers && typeof c.providers === "object") {
        for (const [implFile, text] of Object.entries(c.providers)) if (typeof text === "string") texts.set(implFile, text);
      }
    } catch {
      // Absent or unreadable: every provider is serialized and the file written anew.
    }
    kept.set(file, texts);
  }
  return texts;
}

function keep(b: ProgramBundle, texts: Map<string, string>): void {
  const file = providerCacheFile(b);
  const content: CacheFile = { program: b.key, sdk: sdkVersion, node: process.version, providers: Object.fromEntries(texts) };
  try {
    fs.writeFileSync(`${file}.${process.pid}`, JSON.stringify(content));
    fs.renameSync(`${file}.${process.pid}`, file);
    // The texts of older bundles go, as pulumi-entry.cjs removes their bundles.
    for (const f of fs.readdirSync(b.dir)) if (/^providers-[0-9a-f]+\.json$/.test(f) && f !== path.basename(file)) fs.rmSync(path.join(b.dir, f), { force: true });
  } catch {
    // A cache that cannot be written costs the next run the serialization, nothing else.
  }
}

/** The Output's internal constructor, which dynamic/index.ts uses (not in the SDK's typings). */
type OutputConstructor = new (resources: pulumi.Resource[], value: Promise<string>, isKnown: Promise<boolean>, isSecret: Promise<boolean>, allResources: Promise<pulumi.Resource[]>) => pulumi.Output<string>;

/** dynamic/index.ts `serializeFunctionMaybeSecret`; `onText` gets the text when it holds no secret. */
function serialize(provider: pulumi.dynamic.ResourceProvider, onText?: (text: string) => void): pulumi.Output<string> {
  // Required here, as the SDK does: the closure serializer is slow to load.
  const sc = require("@pulumi/pulumi/runtime/closure/serializeClosure") as typeof SerializeClosure;
  const sf = sc.serializeFunction(() => provider, { allowSecrets: true });
  if (onText) sf.then((s) => !s.containsSecrets && onText(s.text), () => undefined);
  return new (pulumi.Output as unknown as OutputConstructor)(
    [],
    sf.then((s) => s.text),
    Promise.resolve(true),
    sf.then((s) => s.containsSecrets),
    Promise.resolve([]),
  );
}

function serializeOrKeep(provider: pulumi.dynamic.ResourceProvider): pulumi.Input<string> {
  const implFile = implFileOf(provider);
  const b = programBundle();
  if (implFile === undefined || b === undefined) return serialize(provider);
  const texts = keptTexts(b);
  return (
    texts.get(implFile) ??
    serialize(provider, (text) => {
      texts.set(implFile, text);
      keep(b, texts);
    })
  );
}

/** dynamic/index.ts `providerCache`: one text per provider object. */
const perProvider = new WeakMap<pulumi.dynamic.ResourceProvider, pulumi.Input<string>>();

function providerText(provider: pulumi.dynamic.ResourceProvider): pulumi.Input<string> {
  if (!pulumi.runtime.cacheDynamicProviders()) return serialize(provider);
  let text = perProvider.get(provider);
  if (text === undefined) {
    text = serializeOrKeep(provider);
    perProvider.set(provider, text);
  }
  return text;
}

/** `pulumi.dynamic.Resource`, with the provider's text kept across runs of one program bundle. */
export abstract class DynamicResource extends pulumi.CustomResource {
  constructor(provider: pulumi.dynamic.ResourceProvider, name: string, props: pulumi.Inputs, opts?: pulumi.CustomResourceOptions, module?: string, type = "Resource") {
    const providerKey = "__provider";
    if (props[providerKey]) throw new Error("A dynamic resource must not define the __provider key");
    props[providerKey] = providerText(provider);
    super(`pulumi-nodejs:dynamic${module ? `/${module}` : ""}:${type}`, name, props, opts);
  }
}
