/**
 * The VM template's cloud image: its file name on an `import` storage and the
 * SHA-256 it must have, either pinned in the configuration or read from the
 * publisher's SHA256SUMS file.
 */
import * as https from "https";

/** `import` storages take only disk-image extensions PVE knows; Ubuntu's `.img` is a qcow2 file. */
export function importFileName(url: string): string {
  const base = decodeURIComponent(new URL(url).pathname.split("/").pop() ?? "");
  if (!base) throw new Error(`cloud image URL ${url} names no file`);
  return base.replace(/\.img$/, ".qcow2");
}

/**
 * The digest a SHA256SUMS file (`sha256sum` output: `<hex>  <name>` or `<hex> *<name>` for binary
 * mode) gives for `fileName`. Absent or listed twice with different digests is an error: the image
 * must never be used unverified.
 */
export function pickSha256(sums: string, fileName: string, from: string): string {
  const digests = new Set<string>();
  for (const line of sums.split("\n")) {
    const m = /^([0-9a-fA-F]{64}) [ *](.+)$/.exec(line.trim());
    if (m && m[2] === fileName) digests.add(m[1]!.toLowerCase());
  }
  if (digests.size === 0) throw new Error(`${from} lists no SHA-256 for ${fileName}: check templates[].source.url against the files it lists`);
  if (digests.size > 1) throw new Error(`${from} lists ${fileName} with ${digests.size} different SHA-256 digests; refusing to pick one`);
  return [...digests][0]!;
}

/** GETs a small text file over HTTPS, following a few redirects. */
export function httpsText(url: string, redirects = 3): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { timeout: 30_000 }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location && redirects > 0) {
        res.resume();
        resolve(httpsText(new URL(res.headers.location, url).toString(), redirects - 1));
        return;
      }
      if (status !== 200) {
        res.resume();
        reject(new Error(`GET ${url}: HTTP ${status}`));
        return;
      }
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: no answer within 30 s`)));
    req.on("error", reject);
  });
}

export interface ImageSource {
  url: string;
  sha256?: string;
  sha256SumsUrl?: string;
}

/** The image's expected SHA-256: the pinned one, or the publisher's line for the URL's file. */
export async function imageSha256(source: ImageSource, fetchText: (url: string) => Promise<string> = httpsText): Promise<string> {
  if (source.sha256 !== undefined) return source.sha256.toLowerCase();
  if (source.sha256SumsUrl === undefined) throw new Error(`cloud image ${source.url}: set sha256 or sha256SumsUrl`);
  const published = decodeURIComponent(new URL(source.url).pathname.split("/").pop() ?? "");
  return pickSha256(await fetchText(source.sha256SumsUrl), published, source.sha256SumsUrl);
}
