import { execFile } from "node:child_process";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface SimCertificates {
  dir: string;
  caPem: string;
  caPath: string;
  key: string;
  cert: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  try {
    await run("openssl", args, { cwd: dir });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === "ENOENT") {
      throw new Error("pve-sim: the openssl CLI is required to generate the simulator's certificate; install it (apt-get install openssl)", { cause: e });
    }
    throw new Error(`pve-sim: openssl ${args[0]} failed: ${err.stderr ?? err.message}`, { cause: e });
  }
}

/**
 * A throwaway CA and a server certificate for 127.0.0.1/localhost (or the names given) signed by
 * it, so that clients can verify TLS against the CA instead of turning
 * verification off. The caller removes `dir` when done.
 */
export async function generateCertificates(subjectAltNames = ["IP:127.0.0.1", "DNS:localhost"]): Promise<SimCertificates> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pve-sim-"));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(dir, [
    "req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "7", "-subj", "/CN=pve-sim test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  await openssl(dir, ["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
  await fs.writeFile(
    path.join(dir, "server.ext"),
    `subjectAltName=${subjectAltNames.join(",")}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`,
  );
  await openssl(dir, [
    "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
    "-out", "server.pem", "-days", "7", "-extfile", "server.ext",
  ]);
  const [caPem, key, cert] = await Promise.all(
    ["ca.pem", "server.key", "server.pem"].map((f) => fs.readFile(path.join(dir, f), "utf8")),
  );
  return { dir, caPem: caPem as string, caPath: path.join(dir, "ca.pem"), key: key as string, cert: cert as string };
}
