/**
 * The pinned release installer, run for real with bash and curl against a
 * local HTTPS server: a binary is installed only when its archive matches the
 * pinned digest or the publisher's checksums file, and only once per version.
 */
import { execFileSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderReleaseInstalls, type PinnedRelease } from "../../components/render/install-script";
import { runBash, tempDir, testPki } from "./helpers";

let dir: string;
let server: https.Server;
let base: string;
let digest: string;
let caFile: string;
const requests: string[] = [];

beforeAll(async () => {
  dir = tempDir("release");
  const pki = testPki(dir);
  caFile = pki.caCert;
  const [cert, key] = pki.issue("srv", ["localhost"]);
  fs.mkdirSync(path.join(dir, "pkg/tool_1.0"), { recursive: true });
  fs.writeFileSync(path.join(dir, "pkg/tool_1.0/tool"), "#!/bin/sh\necho tool 1.0\n", { mode: 0o755 });
  execFileSync("tar", ["-czf", path.join(dir, "tool.tar.gz"), "-C", path.join(dir, "pkg"), "tool_1.0"]);
  const archive = fs.readFileSync(path.join(dir, "tool.tar.gz"));
  digest = crypto.createHash("sha256").update(archive).digest("hex");
  const files: Record<string, Buffer> = {
    "/v1.0/tool_linux_amd64.tar.gz": archive,
    "/v1.0/checksums.txt": Buffer.from(`${"0".repeat(64)}  other.tar.gz\n${digest}  tool_linux_amd64.tar.gz\n`),
    "/v1.1/tool_linux_amd64.tar.gz": archive,
    "/v1.1/checksums.txt": Buffer.from(`${"0".repeat(64)}  other.tar.gz\n`),
  };
  server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
    requests.push(req.url ?? "");
    const body = files[req.url ?? ""];
    if (body) res.end(body);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `https://localhost:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const dest = () => path.join(dir, "bin", "tool");

function install(release: Partial<PinnedRelease> & { version: string }) {
  const r: PinnedRelease = { name: "tool", url: `${base}/v${release.version}/tool_linux_amd64.tar.gz`, binary: "tool", installAs: dest(), ...release };
  fs.mkdirSync(path.dirname(dest()), { recursive: true });
  const script = `set -euo pipefail\n${renderReleaseInstalls([r])}\n`;
  return runBash(script, { CURL_CA_BUNDLE: caFile, PHOENIX_STATE_DIR: path.join(dir, "state") });
}

describe("pinned release install", () => {
  it("installs a release listed in the publisher's checksums file", async () => {
    const r = await install({ version: "1.0", checksumsUrl: `${base}/v1.0/checksums.txt` });
    expect(r.status, r.out).toBe(0);
    expect(execFileSync(dest(), { encoding: "utf8" })).toBe("tool 1.0\n");
  });

  it("downloads nothing when that version is already installed", async () => {
    const before = requests.length;
    const r = await install({ version: "1.0", checksumsUrl: `${base}/v1.0/checksums.txt` });
    expect(r.status, r.out).toBe(0);
    expect(requests.length).toBe(before);
  });

  it("refuses an archive the checksums file does not list, leaving the installed binary alone", async () => {
    const r = await install({ version: "1.1", checksumsUrl: `${base}/v1.1/checksums.txt` });
    expect(r.status).not.toBe(0);
    expect(r.out).toContain("is not listed in");
    expect(fs.readFileSync(path.join(dir, "state/releases/tool.version"), "utf8")).toBe("1.0\n");
    expect(execFileSync(dest(), { encoding: "utf8" })).toBe("tool 1.0\n");
  });

  it("refuses an archive whose digest differs from the pinned one", async () => {
    const r = await install({ version: "1.1", sha256: "f".repeat(64) });
    expect(r.status).not.toBe(0);
    expect(r.out).toContain("checksum mismatch");
  });

  it("installs against a pinned digest", async () => {
    const r = await install({ version: "1.1", sha256: digest });
    expect(r.status, r.out).toBe(0);
    expect(fs.readFileSync(path.join(dir, "state/releases/tool.version"), "utf8")).toBe("1.1\n");
  });

  it("refuses a release with neither or both of digest and checksums file, or a plain HTTP URL", () => {
    expect(() => renderReleaseInstalls([{ name: "x", version: "1", url: "https://a/x.tgz", binary: "x", installAs: "/x" }])).toThrow(/exactly one of sha256 or checksumsUrl/);
    expect(() => renderReleaseInstalls([{ name: "x", version: "1", url: "http://a/x.tgz", sha256: digest, binary: "x", installAs: "/x" }])).toThrow(/must be an https:\/\/ URL/);
  });
});
