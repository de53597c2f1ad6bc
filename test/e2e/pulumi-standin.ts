/**
 * A stand-in for the `pulumi` CLI, for the commands scripts/move.ts and scripts/stack-guest.ts run:
 * `stack export`, `stack import` and `config get`, serving one folder ($PHOENIX_PULUMI_DIR):
 * `<stack>.state.json` (the deployment), `<stack>.config.json` (config key → value) and
 * `calls.log` (one JSON argv per line). pulumi-state.ts transpiles it and puts a `pulumi` wrapper
 * on PATH. Node built-ins only.
 *
 * Flags as pulumi v3.248.0 declares them (cobra, so `--flag value`, `--flag=value`, `-s value`):
 * pkg/cmd/pulumi/stack/stack_export.go `--stack/-s`, `--file` ("A filename to write stack output
 * to", else stdout), `--show-secrets`; stack_import.go `--stack/-s`, `--file` (else stdin),
 * `--force`, prints "Import complete."; the import decodes an apitype.UntypedDeployment
 * (sdk/go/common/apitype/core.go: `version`, `deployment`), refused here unless version 3 with
 * a resources list, as DeserializeUntypedDeployment refuses what it cannot read.
 * pkg/cmd/pulumi/config `config get <key> --stack`: the value and a newline.
 */
import * as fs from "fs";
import * as path from "path";

function fail(message: string, code = 255): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

function flags(argv: string[], known: Record<string, string>): { values: Record<string, string | true>; rest: string[] } {
  const values: Record<string, string | true> = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("-")) {
      rest.push(a);
      continue;
    }
    const [flag, inline] = a.split(/=(.*)/s, 2) as [string, string | undefined];
    const name = known[flag];
    if (name === undefined) fail(`unknown flag: ${flag}`);
    if (name === "show-secrets" || name === "force") values[name] = true;
    else values[name] = inline ?? argv[++i] ?? fail(`flag needs an argument: ${flag}`);
  }
  return { values, rest };
}

function main(): void {
  const dir = process.env.PHOENIX_PULUMI_DIR ?? fail("PHOENIX_PULUMI_DIR is not set", 2);
  const argv = process.argv.slice(2);
  fs.appendFileSync(path.join(dir, "calls.log"), JSON.stringify(argv) + "\n");
  const stackFlags = { "--stack": "stack", "-s": "stack" };
  const stackOf = (v: Record<string, string | true>) => (typeof v.stack === "string" ? v.stack : fail("no stack selected (the stand-in has no current stack)"));
  if (argv[0] === "stack" && argv[1] === "export") {
    const { values } = flags(argv.slice(2), { ...stackFlags, "--file": "file", "--show-secrets": "show-secrets" });
    if (values["show-secrets"]) fail("the stand-in holds no plaintext secrets");
    const state = path.join(dir, `${stackOf(values)}.state.json`);
    if (!fs.existsSync(state)) fail(`no stack named '${String(values.stack)}' found`);
    const text = fs.readFileSync(state, "utf8");
    if (typeof values.file === "string") fs.writeFileSync(values.file, text);
    else process.stdout.write(text);
    return;
  }
  if (argv[0] === "stack" && argv[1] === "import") {
    const { values } = flags(argv.slice(2), { ...stackFlags, "--file": "file", "--force": "force", "-f": "force" });
    const stack = stackOf(values);
    const text = typeof values.file === "string" ? fs.readFileSync(values.file, "utf8") : fs.readFileSync(0, "utf8");
    const d = JSON.parse(text) as { version?: number; deployment?: { resources?: unknown } };
    if (d.version !== 3 || !d.deployment || !Array.isArray(d.deployment.resources ?? [])) fail("could not deserialize deployment: the stand-in reads version 3 only");
    fs.writeFileSync(path.join(dir, `${stack}.state.json`), text);
    process.stdout.write("Import complete.\n");
    return;
  }
  if (argv[0] === "config" && argv[1] === "get") {
    const { values, rest } = flags(argv.slice(2), stackFlags);
    const key = rest[0] ?? fail("accepts 1 arg(s), received 0");
    const config = JSON.parse(fs.readFileSync(path.join(dir, `${stackOf(values)}.config.json`), "utf8")) as Record<string, string>;
    if (!(key in config)) fail(`configuration key '${key}' not found for stack '${String(values.stack)}'`);
    process.stdout.write(config[key] + "\n");
    return;
  }
  fail(`the pulumi stand-in does not serve: ${argv.join(" ")}`, 2);
}

main();
