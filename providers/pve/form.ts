/** A value the client can send: PVE parses every parameter from a string. */
export type FormValue = string | number | boolean | undefined | null | ReadonlyArray<string | number>;

export type FormParams = Readonly<Record<string, FormValue>>;

/**
 * Encodes parameters the way pve-http-server's decode_urlencoded parses them:
 * it splits pairs on `&` and `;` and keeps only the text up to a second `=`,
 * so `=`, `;` and `,`-carrying property strings must be percent-encoded
 * (encodeURIComponent does); booleans are 1/0 (PVE rejects `true`); arrays
 * become repeated keys; undefined and null are left out.
 */
export function encodeForm(params: FormParams): string {
  const parts: string[] = [];
  const push = (k: string, v: string | number | boolean): void => {
    const text = typeof v === "boolean" ? (v ? "1" : "0") : String(v);
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(text)}`);
  };
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null) continue;
    if (Array.isArray(v)) for (const item of v as ReadonlyArray<string | number>) push(k, item);
    else push(k, v as string | number | boolean);
  }
  return parts.join("&");
}

/**
 * `sshkeys` of a VM has format `urlencoded`: PVE wants it percent-encoded
 * before the form encoding, i.e. twice on the wire, with spaces as %20.
 */
export function encodeSshKeys(keys: string): string {
  return encodeURIComponent(keys).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
