/**
 * NodeFile: a file on the node that Phoenix owns whole (a cloud-init snippet),
 * or the managed block of one it shares (/etc/exports, via mergeExports, so
 * entries Phoenix does not own are kept). Written only when it differs, then
 * the reload command runs; `read` reports what the node holds, so refresh
 * shows drift.
 */
import * as pulumi from "@pulumi/pulumi";
import { mergeExports, type NfsExport } from "./exports";
import { changedKeys, Checker, diffResult, isUnknown, nodeReplaces, parseProbe, reachOnly } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { parseFiles, readFiles, removeFile, renderScript, runScriptChecked, writeFileIfChanged, type SshConnection } from "../ssh";

export interface NodeFileInputs {
  /** The Proxmox node: with the path, what identifies the file. */
  node: string;
  connection: SshConnection;
  path: string;
  mode: string;
  /** The whole content, for a file Phoenix owns. */
  content?: string;
  /** The managed exports, for /etc/exports. */
  exports?: NfsExport[];
  /** Run after the file changed, e.g. `exportfs -ra`. */
  reload?: string;
}

export interface NodeFileOutputs extends NodeFileInputs {
  /** What the node held at the last read, for drift. */
  actual: string;
}

export interface NodeFileArgs {
  /** The Proxmox node's name; another node is another file. */
  node: pulumi.Input<string>;
  /** SSH to the node; a change is recorded in place. */
  connection: pulumi.Input<SshConnection>;
  /** Absolute path on the node. */
  path: pulumi.Input<string>;
  /** Octal mode, e.g. 0644. */
  mode?: pulumi.Input<string>;
  /** The whole content, for a file Phoenix owns. */
  content?: pulumi.Input<string>;
  /** The managed exports, for /etc/exports (other lines are kept). */
  exports?: pulumi.Input<NfsExport[]>;
  /** Run after the file changed. */
  reload?: pulumi.Input<string>;
}

export const nodeFileProvider = dynamicProvider<NodeFileInputs, NodeFileOutputs>("host/node-file");

export class NodeFile extends DynamicResource {
  declare readonly actual: pulumi.Output<string>;

  constructor(name: string, args: NodeFileArgs, opts?: pulumi.CustomResourceOptions) {
    super(nodeFileProvider, name, { actual: undefined, mode: "0644", ...args, connection: pulumi.secret(args.connection) }, pulumi.mergeOptions(opts, { additionalSecretOutputs: ["connection"] }), "phoenix/host", "NodeFile");
  }
}

async function current(i: NodeFileInputs): Promise<string | undefined> {
  const out = await runScriptChecked(i.connection, `read ${i.path}`, renderScript(readFiles([i.path])));
  return parseFiles(parseProbe(out.stdout).all("file")).get(i.path);
}

function desired(i: NodeFileInputs, now: string | undefined): string {
  return i.content ?? mergeExports(now ?? "", i.exports ?? []);
}

async function converge(i: NodeFileInputs): Promise<NodeFileOutputs> {
  const want = desired(i, await current(i));
  const reload = i.reload ? `\nif [ -n "$changed" ]; then ${i.reload}; fi` : "";
  await runScriptChecked(i.connection, `write ${i.path}`, renderScript(`changed=$(\n${writeFileIfChanged(i.path, want, i.mode)}\n)\nprintf '%s\\n' "$changed"${reload}`));
  return { ...i, actual: (await current(i)) ?? "" };
}

function changes(olds: NodeFileOutputs, news: NodeFileInputs): string[] {
  const changed = changedKeys(olds, news, ["content", "exports", "mode", "reload", "connection"]);
  // Drift found by refresh: the node's file is not what the declaration makes of it.
  if (!isUnknown(news.content) && !isUnknown(news.exports) && olds.actual !== desired(news, olds.actual)) changed.push("actual");
  return changed;
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`node file ${String(news.path)}`);
    c.node(news.node);
    c.connection(news.connection);
    c.string("path", news.path, /^\/[^\s]*[^/\s]$/, "an absolute file path without spaces");
    c.string("mode", news.mode, /^0?[0-7]{3}$/, "an octal mode such as 0644");
    if (!isUnknown(news.content) && !isUnknown(news.exports)) c.require("content", (news.content === undefined) !== (news.exports === undefined), "set exactly one of content or exports");
    return { inputs: news, failures: c.failures };
  },
  async diff(_id: string, olds: NodeFileOutputs, news: NodeFileInputs) {
    return diffResult(changes(olds, news), [...changedKeys(olds, news, ["path"]), ...nodeReplaces(olds, news)]);
  },
  async create(inputs: NodeFileInputs) {
    return { id: inputs.path, outs: await converge(inputs) };
  },
  async read(id: string, props: NodeFileOutputs) {
    const now = await current(props);
    return now === undefined && props.content !== undefined ? { id: "", props: {} } : { id, props: { ...props, actual: now ?? "" } };
  },
  async update(_id: string, olds: NodeFileOutputs, news: NodeFileInputs) {
    if (reachOnly(changes(olds, news))) return { outs: { ...olds, ...news } };
    return { outs: await converge(news) };
  },
  async delete(_id: string, props: NodeFileOutputs) {
    if (props.exports !== undefined) {
      await converge({ ...props, exports: [] });
      return;
    }
    await runScriptChecked(props.connection, `remove ${props.path}`, renderScript(removeFile(props.path)));
  },
};
