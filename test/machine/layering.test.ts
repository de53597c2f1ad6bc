/**
 * The layering (README, docs/architecture.md): index.ts → machine/ → components/ → providers/,
 * each may use stacks/, and stacks/ imports none of them. Checked over every import and
 * require of the TypeScript sources, by the path it resolves to.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../stacks/fixtures";

type Layer = "stacks" | "providers" | "components" | "machine";
const LAYERS: Layer[] = ["stacks", "providers", "components", "machine"];

/** What each layer must not import. */
const FORBIDDEN: Record<Layer, Layer[]> = {
  stacks: ["providers", "components", "machine"],
  providers: ["components", "machine"],
  components: ["machine"],
  machine: [],
};

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return /\.(ts|mts|cts)$/.test(e.name) && !e.name.endsWith(".d.ts") ? [p] : [];
  });
}

/** Relative module specifiers: static and dynamic imports, exports from, and require. */
export function relativeImports(text: string): string[] {
  const found: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)["'](\.{1,2}\/[^"']*)["']/gm;
  for (const m of text.matchAll(re)) found.push(m[1]!);
  return found;
}

function layerOf(file: string): Layer | undefined {
  const top = path.relative(ROOT, file).split(path.sep)[0];
  return LAYERS.find((l) => l === top);
}

function violations(): string[] {
  const out: string[] = [];
  for (const layer of LAYERS) {
    for (const file of sources(path.join(ROOT, layer))) {
      for (const spec of relativeImports(fs.readFileSync(file, "utf8"))) {
        const target = layerOf(path.resolve(path.dirname(file), spec));
        if (target && FORBIDDEN[layer].includes(target)) out.push(`${path.relative(ROOT, file)} imports ${spec} (${target})`);
      }
    }
  }
  return out;
}

describe("layering", () => {
  it("finds every form of import the sources use", () => {
    const text = ['import { a } from "../components/x";', "import type { B } from '../machine/y';", 'export * from "../providers/z";', 'const m = await import("../stacks/w");', 'import "./side-effect";', 'require("../machine/v")'].join("\n");
    expect(relativeImports(text)).toEqual(["../components/x", "../machine/y", "../providers/z", "../stacks/w", "./side-effect", "../machine/v"]);
  });

  it("has no import against the layers", () => {
    expect(violations()).toEqual([]);
  });
});
