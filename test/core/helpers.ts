/** Shared by the core renderer tests: the prod stack, test certificates, a real nginx. */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import type * as http from "node:http";
import * as https from "node:https";
import * as os from "node:os";
import type { RenderedFile } from "../../components/render/files";
import { GATEWAY_LAYOUT, type GatewayLayout } from "../../components/core/nginx.render";
import { goldenChecker, loadStack } from "../support";
import type { StackConfig } from "../../stacks/schema";

export { freePort, loadStack, REFERENCE_DIR, ROOT, tempDir } from "../support";
import { freePort } from "../support";

/** Compares with test/core/golden/<name>; UPDATE_GOLDEN=1 rewrites the file instead. */
export const expectGolden = goldenChecker(path.join(__dirname, "golden"));

export const prodConfig = (): StackConfig => loadStack("Pulumi.prod.yaml");


/** Writes rendered files below root, keeping their absolute paths. */
export function writeFiles(root: string, files: RenderedFile[]): void {
  for (const f of files) {
    const target = path.join(root, f.path);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, f.content);
  }
}

export interface TestPki {
  caCert: string;
  caPem: string;
  /** Issues a leaf for the names, returns [certFile, keyFile]. */
  issue(name: string, hosts: string[]): [string, string];
}

/** A throwaway CA made with openssl, standing in for Step-CA. */
export function testPki(dir: string): TestPki {
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=Phoenix Test Root", "-keyout", "ca.key", "-out", "ca.crt", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  const caCert = path.join(dir, "ca.crt");
  return {
    caCert,
    caPem: fs.readFileSync(caCert, "utf8"),
    issue(name, hosts) {
      const ext = path.join(dir, `${name}.ext`);
      fs.writeFileSync(ext, `subjectAltName=${hosts.map((h) => `DNS:${h}`).join(",")}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
      run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${hosts[0]}`, "-keyout", `${name}.key`, "-out", `${name}.csr`);
      run("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", `${name}.crt`);
      return [path.join(dir, `${name}.crt`), path.join(dir, `${name}.key`)];
    },
  };
}

const nginxArgs = (prefix: string) => ["-p", prefix, "-c", path.join(prefix, "etc/nginx/nginx.conf"), "-g", `pid ${path.join(prefix, "nginx.pid")}; error_log stderr;`];

/** `nginx -t` on a config rendered below prefix, with nginx's output (it reports on stderr). */
export function nginxTest(prefix: string): { ok: boolean; output: string } {
  const r = spawnSync("nginx", ["-t", ...nginxArgs(prefix)], { encoding: "utf8" });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

/** Starts nginx in the foreground on a config rendered below prefix; resolves once the port answers. */
export async function startNginx(prefix: string, port: number): Promise<{ proc: ChildProcess; log: () => string; stop: () => Promise<void> }> {
  let log = "";
  const proc = spawn("nginx", [...nginxArgs(prefix).slice(0, 5), `daemon off; pid ${path.join(prefix, "nginx.pid")}; error_log stderr;`], { stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout!.on("data", (d: Buffer) => (log += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`nginx exited: ${log}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => (s.end(), resolve(true)));
      s.on("error", () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error(`nginx did not listen on ${port}: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    proc,
    log: () => log,
    stop: async () => {
      if (proc.exitCode === null) proc.kill("SIGQUIT");
      await exited;
    },
  };
}

/** Runs a script with bash without blocking the event loop (servers in this process must keep answering). */
export function runBash(script: string, env: Record<string, string>): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn("bash", ["-s"], { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    proc.stdout.on("data", (d: Buffer) => (out += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (out += d.toString()));
    proc.on("error", reject);
    proc.on("close", (status) => resolve({ status, out }));
    proc.stdin.end(script);
  });
}

/**
 * The gateway's layout moved under `prefix` for a live test: its config, logs and temp dirs there,
 * its worker running as this user, free high ports; `stubStatus` also gives stub_status a port.
 */
export async function testGatewayLayout(prefix: string, cert: { certFile: string; keyFile: string }, stubStatus = false): Promise<GatewayLayout> {
  return {
    ...GATEWAY_LAYOUT,
    confDir: path.join(prefix, "etc/nginx"),
    certFile: cert.certFile,
    keyFile: cert.keyFile,
    caRootFile: path.join(prefix, "etc/nginx/tls/step-ca-root.pem"),
    acmeRoot: path.join(prefix, "acme"),
    logDir: prefix,
    varDir: prefix,
    user: os.userInfo().username,
    httpPort: await freePort(),
    httpsPort: await freePort(),
    stubStatusPort: stubStatus ? await freePort() : undefined,
  };
}

/** An HTTPS answer read whole, with how long it took. */
export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  ms: number;
}

/** One HTTPS request to a live gateway (`options`: host, port, servername, ca, headers...), its answer read whole. */
export function httpsReply(options: https.RequestOptions, body?: string | Buffer): Promise<Reply> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const req = https.request(options, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, ms: Date.now() - start }));
    });
    req.on("error", reject);
    req.end(body);
  });
}
