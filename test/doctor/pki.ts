/**
 * Throwaway certificate authorities made with `openssl ca`, which (unlike
 * `openssl x509 -req` in OpenSSL 3.0) takes explicit validity dates, so an
 * expired certificate is a real one and not a faked clock.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export interface Issued {
  cert: string;
  key: string;
}

export interface TestCa {
  name: string;
  certPem: string;
  /** A server certificate for the host names; dates as YYYYMMDDHHMMSSZ, default: valid for 30 days from now. */
  issue(file: string, hosts: string[], dates?: { start: string; end: string }): Issued;
}

export function makeCa(dir: string, name: string): TestCa {
  const home = path.join(dir, name.replace(/\W+/g, "-"));
  fs.mkdirSync(path.join(home, "new"), { recursive: true });
  fs.writeFileSync(path.join(home, "index.txt"), "");
  fs.writeFileSync(path.join(home, "serial"), "1000\n");
  const cnf = path.join(home, "ca.cnf");
  fs.writeFileSync(
    cnf,
    [
      "[ca]",
      "default_ca = test",
      "[test]",
      `database = ${path.join(home, "index.txt")}`,
      `new_certs_dir = ${path.join(home, "new")}`,
      `serial = ${path.join(home, "serial")}`,
      "default_md = sha256",
      "policy = any",
      "unique_subject = no",
      "[any]",
      "commonName = supplied",
      "",
    ].join("\n"),
  );
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: home, stdio: "pipe" });
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", `/CN=${name}`, "-keyout", "ca.key", "-out", "ca.crt", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  return {
    name,
    certPem: fs.readFileSync(path.join(home, "ca.crt"), "utf8"),
    issue(file, hosts, dates) {
      const ext = path.join(home, `${file}.ext`);
      fs.writeFileSync(ext, `subjectAltName=${hosts.map((h) => `DNS:${h}`).join(",")}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
      openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${hosts[0]}`, "-keyout", `${file}.key`, "-out", `${file}.csr`);
      const validity = dates ? ["-startdate", dates.start, "-enddate", dates.end] : ["-days", "30"];
      openssl("ca", "-batch", "-notext", "-config", cnf, "-cert", "ca.crt", "-keyfile", "ca.key", "-in", `${file}.csr`, "-out", `${file}.crt`, "-extfile", ext, ...validity);
      return { cert: fs.readFileSync(path.join(home, `${file}.crt`), "utf8"), key: fs.readFileSync(path.join(home, `${file}.key`), "utf8") };
    },
  };
}
