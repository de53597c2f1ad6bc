/**
 * providers/dynamic-resource.ts under the SDK's mocks: the `__provider` each registration carries
 * when the cache file beside the bundle holds the text (hit), lacks it (miss), is corrupt, or was
 * written for another bundle, SDK or Node; and what is never kept. Each case uses a provider object
 * and a folder of its own (the class keeps one text per provider object, one read per file).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type * as SerializeClosure from "@pulumi/pulumi/runtime/closure/serializeClosure";
import { version as sdkVersion } from "@pulumi/pulumi/version";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { dynamicProvider } from "../../providers/dynamic";
import { DynamicResource, PROGRAM_BUNDLE, providerCacheFile } from "../../providers/dynamic-resource";

class Probe extends DynamicResource {
  constructor(provider: pulumi.dynamic.ResourceProvider, name: string, props: pulumi.Inputs = { value: 1 }) {
    super(provider, name, props, {}, "phoenix/test", "Probe");
  }
}

const registered = new Map<string, { type: string; inputs: Record<string, unknown> }>();
// The CommonJS module the class requires on a miss: counting its calls tells a hit from a miss.
const closure = require("@pulumi/pulumi/runtime/closure/serializeClosure") as typeof SerializeClosure;
const realSerialize = closure.serializeFunction;
let serializations = 0;

let root: string;
let n = 0;
const globals = globalThis as Record<symbol, unknown>;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-provider-cache-"));
  closure.serializeFunction = (...args: Parameters<typeof realSerialize>) => {
    serializations++;
    return realSerialize(...args);
  };
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        registered.set(args.name, { type: args.type, inputs: args.inputs as Record<string, unknown> });
        return { id: args.name, state: args.inputs };
      },
      call: () => ({}),
    },
    "phoenix",
    "test",
  );
});
afterEach(() => delete globals[PROGRAM_BUNDLE]);
afterAll(() => {
  closure.serializeFunction = realSerialize;
  fs.rmSync(root, { recursive: true, force: true });
});

/** A bundle of its own (key, folder), set as pulumi-entry.cjs sets it, and its cache file. */
function bundle(): { key: string; dir: string; file: string } {
  const b = { key: `${(++n).toString(16).padStart(4, "0")}abcdef`, dir: fs.mkdtempSync(path.join(root, "b-")) };
  globals[PROGRAM_BUNDLE] = b;
  return { ...b, file: providerCacheFile(b) };
}

/** Registers one Probe and returns its registration and how many serializations it took. */
async function register(provider: pulumi.dynamic.ResourceProvider) {
  const before = serializations;
  const name = `probe-${++n}`;
  const props: pulumi.Inputs = { value: 1 };
  const r = new Probe(provider, name, props);
  await new Promise((resolve) => r.urn.apply(resolve));
  return { ...registered.get(name)!, serialized: serializations - before, sent: props.__provider };
}

const fileOf = (file: string) => JSON.parse(fs.readFileSync(file, "utf8")) as { program: string; sdk: string; node: string; providers: Record<string, string> };

describe("DynamicResource's kept provider text", () => {
  it("registers the SDK's dynamic type and refuses a __provider prop", async () => {
    const r = await register(dynamicProvider("guest/destroy-guard"));
    expect(r.type).toBe("pulumi-nodejs:dynamic/phoenix/test:Probe");
    expect(() => new Probe(dynamicProvider("guest/destroy-guard"), "refused", { __provider: "x" })).toThrow("must not define the __provider key");
  });

  it("outside the bundled run (no bundle set) serializes as the SDK does and writes nothing", async () => {
    const provider = dynamicProvider("guest/destroy-guard");
    const r = await register(provider);
    expect(r.serialized).toBe(1);
    expect(r.inputs.__provider).toContain('implFile: "guest/destroy-guard"');
    // One text per provider object, as the SDK's providerCache.
    expect((await register(provider)).serialized).toBe(0);
  });

  it("a miss serializes and keeps the text, under the bundle's key, the SDK's version and Node's", async () => {
    const b = bundle();
    const r = await register(dynamicProvider("guest/destroy-guard"));
    expect(r.serialized).toBe(1);
    expect(r.inputs.__provider).toContain("loadImplementation");
    expect(await pulumi.isSecret(r.sent as pulumi.Output<string>)).toBe(false);
    expect(fileOf(b.file)).toEqual({ program: b.key, sdk: sdkVersion, node: process.version, providers: { "guest/destroy-guard": r.inputs.__provider } });
  });

  it("a hit sends the kept text and never calls the closure serializer", async () => {
    const b = bundle();
    fs.writeFileSync(b.file, JSON.stringify({ program: b.key, sdk: sdkVersion, node: process.version, providers: { "guest/destroy-guard": "kept text" } }));
    const r = await register(dynamicProvider("guest/destroy-guard"));
    expect(r).toMatchObject({ serialized: 0, inputs: { __provider: "kept text" }, sent: "kept text" });
    // Another provider of the same bundle is a miss, and joins the file.
    const other = await register(dynamicProvider("host/zfs-arc"));
    expect(other.serialized).toBe(1);
    expect(Object.keys(fileOf(b.file).providers).sort()).toEqual(["guest/destroy-guard", "host/zfs-arc"]);
  });

  it("a corrupt file is a miss and is written anew", async () => {
    const b = bundle();
    fs.writeFileSync(b.file, '{"program": "trunc');
    const r = await register(dynamicProvider("guest/destroy-guard"));
    expect(r.serialized).toBe(1);
    expect(fileOf(b.file).providers["guest/destroy-guard"]).toBe(r.inputs.__provider);
  });

  it.each([
    ["another bundle", { program: "ffff" }],
    ["another SDK", { sdk: "3.0.0" }],
    ["another Node", { node: "v1.0.0" }],
  ])("a file written for %s is a miss", async (_what, other) => {
    const b = bundle();
    fs.writeFileSync(b.file, JSON.stringify({ program: b.key, sdk: sdkVersion, node: process.version, providers: { "guest/destroy-guard": "stale text" }, ...other }));
    const r = await register(dynamicProvider("guest/destroy-guard"));
    expect(r.serialized).toBe(1);
    expect(r.inputs.__provider).not.toBe("stale text");
    expect(r.inputs.__provider).toContain("loadImplementation");
  });

  it("a text that captured a secret goes secret to the engine and is never kept", async () => {
    const b = bundle();
    const provider = dynamicProvider<Record<string, unknown>, Record<string, unknown>>("guest/destroy-guard");
    const token = pulumi.secret("s3cr3t");
    provider.create = async (inputs) => ({ id: String(token), outs: inputs });
    const r = await register(provider);
    expect(r.serialized).toBe(1);
    expect(await pulumi.isSecret(r.sent as pulumi.Output<string>)).toBe(true);
    expect(fs.existsSync(b.file)).toBe(false);
  });

  it("a provider not made by dynamicProvider is serialized every run and never kept", async () => {
    const b = bundle();
    const r = await register({ create: async (inputs: Record<string, unknown>) => ({ id: "x", outs: inputs }) });
    expect(r.serialized).toBe(1);
    expect(fs.existsSync(b.file)).toBe(false);
  });
});
