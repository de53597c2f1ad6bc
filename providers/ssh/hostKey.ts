import { createHash } from "crypto";

/** A pinned host key: either the full OpenSSH public key line or only its SHA256 fingerprint. */
export type PinnedHostKey =
  | { kind: "key"; type: string; blob: Buffer; fingerprint: string }
  | { kind: "fingerprint"; fingerprint: string };

/** `SHA256:<base64 without padding>`, the form `ssh-keygen -lf` prints. */
export function fingerprintOf(blob: Buffer): string {
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}

/** The key type recorded inside a wire-format public key blob (a length-prefixed string). */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) return "unknown";
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString("latin1");
}

/**
 * Accepts `ssh-ed25519 AAAA… [comment]` (as in a known_hosts entry without the host
 * name, or a `/etc/ssh/ssh_host_*_key.pub` file) or `SHA256:…`.
 */
export function parseHostKey(spec: string): PinnedHostKey {
  const text = spec.trim();
  if (/^SHA256:[A-Za-z0-9+/]{43}=?$/.test(text)) {
    return { kind: "fingerprint", fingerprint: text.replace(/=$/, "") };
  }
  const [type, b64] = text.split(/\s+/);
  if (type && b64 && /^(ssh-|ecdsa-sha2-|sk-)/.test(type) && /^[A-Za-z0-9+/]+=*$/.test(b64)) {
    const blob = Buffer.from(b64, "base64");
    if (keyTypeOf(blob) !== type) {
      throw new Error(`hostKey: the key data does not match its declared type ${type}; paste the whole line of the host's ${type} .pub file`);
    }
    return { kind: "key", type, blob, fingerprint: fingerprintOf(blob) };
  }
  throw new Error(
    `hostKey: expected an OpenSSH public key line ("ssh-ed25519 AAAA…") or a SHA256 fingerprint ("SHA256:…"), got "${text.slice(0, 40)}"; ` +
      "read it on the host with `cat /etc/ssh/ssh_host_ed25519_key.pub`",
  );
}

export function hostKeyMatches(pinned: PinnedHostKey, presented: Buffer): boolean {
  return pinned.kind === "key" ? pinned.blob.equals(presented) : pinned.fingerprint === fingerprintOf(presented);
}
