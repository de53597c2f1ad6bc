import { readFileSync } from "node:fs";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [
    {
      // The package's source maps name TypeScript sources it does not ship, and vite warns
      // once per file (70 lines): load its files without their maps.
      name: "workflow-parser-without-sourcemaps",
      load: (id: string) => (/[\\/]@actions[\\/]workflow-parser[\\/]dist[\\/].*\.js$/.test(id) ? { code: readFileSync(id, "utf8"), map: null } : null),
    },
  ],
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // The graph tests use Pulumi's process-global mocks: one worker per file keeps them apart.
    pool: "forks",
    // @actions/workflow-parser imports its JSON schemas without `with { type: "json" }`,
    // which Node refuses: let vite transform it instead of loading it natively.
    server: { deps: { inline: ["@actions/workflow-parser"] } },
  },
});
