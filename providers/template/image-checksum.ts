/**
 * ImageChecksum: the SHA-256 a cloud image must have, read from the
 * publisher's SHA256SUMS when the stack names one. A resource rather than a
 * fetch at program start, so preview and offline synth touch no network, and
 * the digest the image was verified against is kept in the state.
 */
import * as pulumi from "@pulumi/pulumi";
import { Checker, isUnknown, same } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { imageSha256, type ImageSource } from "./image";

export interface ImageChecksumOutputs extends ImageSource {
  sha256: string;
}

export interface ImageChecksumArgs {
  /** The image URL. */
  url: pulumi.Input<string>;
  /** A pinned digest, used as is. */
  sha256?: pulumi.Input<string>;
  /** Or the publisher's SHA256SUMS file. */
  sha256SumsUrl?: pulumi.Input<string>;
}

export const imageChecksumProvider = dynamicProvider<ImageSource, ImageChecksumOutputs>("template/image-checksum");

export class ImageChecksum extends DynamicResource {
  declare readonly sha256: pulumi.Output<string>;

  constructor(name: string, args: ImageChecksumArgs, opts?: pulumi.CustomResourceOptions) {
    super(imageChecksumProvider, name, { sha256: args.sha256, url: args.url, sha256SumsUrl: args.sha256SumsUrl }, opts, "phoenix/template", "ImageChecksum");
  }
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`checksum of ${String(news.url)}`);
    c.string("url", news.url, /^https:\/\/\S+$/, "an https:// URL");
    const pinned = news.sha256 !== undefined && news.sha256 !== null;
    const sums = news.sha256SumsUrl !== undefined && news.sha256SumsUrl !== null;
    c.require("sha256", isUnknown(news.sha256) || isUnknown(news.sha256SumsUrl) || pinned !== sums, "set exactly one of sha256 or sha256SumsUrl");
    return { inputs: news, failures: c.failures };
  },
  async diff(_id: string, olds: ImageChecksumOutputs, news: ImageSource) {
    // A pinned digest that equals the one fetched before is no change.
    const changed = ["url", "sha256SumsUrl"].filter((k) => !same((olds as unknown as Record<string, unknown>)[k], (news as unknown as Record<string, unknown>)[k]));
    if (news.sha256 !== undefined && !same(news.sha256?.toLowerCase(), olds.sha256)) changed.push("sha256");
    return { changes: changed.length > 0, replaces: changed };
  },
  async create(inputs: ImageSource) {
    return { id: inputs.url, outs: { ...inputs, sha256: await imageSha256(inputs) } };
  },
  async read(id: string, props: ImageChecksumOutputs) {
    // What was verified stays the record; a changed SHA256SUMS upstream is not drift of this image.
    return { id, props };
  },
  async update(_id: string, _olds: ImageChecksumOutputs, news: ImageSource) {
    return { outs: { ...news, sha256: await imageSha256(news) } };
  },
  async delete() {
    // Nothing exists outside the state.
  },
};
