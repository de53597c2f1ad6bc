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
    // Two files at a time. vitest 4.1.12 defaults to one worker fewer than the CPUs outside watch
    // mode (cli-api getDefaultThreadsCount: max(cpus - 1, 1)), which on a 2-core CI runner runs the
    // files one by one, while most of an e2e file's time is spent waiting on its sshd, stand-ins
    // and simulator. Every world takes its own ports and folders, so two run side by side.
    maxWorkers: 2,
    // @actions/workflow-parser imports its JSON schemas without `with { type: "json" }`,
    // which Node refuses: let vite transform it instead of loading it natively.
    server: { deps: { inline: ["@actions/workflow-parser"] } },
  },
});
