/** What the Portainer providers share: how they reach the API and how that input is checked. */
import { isUnknown, type Checker } from "../common";
import { PortainerClient, type PortainerAccess } from "./client";

/** The API as the resources that work inside Portainer use it: with the token PortainerAdmin minted. */
export interface PortainerApi extends PortainerAccess {
  apiKey: string;
}

export function checkAccess(c: Checker, property: string, v: unknown): void {
  if (isUnknown(v)) return;
  if (typeof v !== "object" || v === null) return c.require(property, false, `${property} must be { url, caPem?, insecure? }`);
  const a = v as Record<string, unknown>;
  c.string(`${property}.url`, a.url, /^https:\/\/[^\s/]+(:\d{1,5})?\/?$/, "an https:// URL of Portainer such as https://10.0.0.111:9443");
  if (a.caPem !== undefined && !isUnknown(a.caPem)) c.require(`${property}.caPem`, typeof a.caPem === "string" && a.caPem.includes("-----BEGIN CERTIFICATE-----"), `${property}.caPem must be a PEM certificate`);
  if (a.insecure !== undefined && !isUnknown(a.insecure)) c.require(`${property}.insecure`, typeof a.insecure === "boolean", `${property}.insecure must be true or false`);
}

export function checkApi(c: Checker, v: unknown): void {
  checkAccess(c, "api", v);
  if (isUnknown(v) || typeof v !== "object" || v === null) return;
  const key = (v as Record<string, unknown>).apiKey;
  if (!isUnknown(key)) c.require("api.apiKey", typeof key === "string" && key !== "", "api.apiKey is required: the token PortainerAdmin created");
}

export function apiClient(api: PortainerApi): PortainerClient {
  return new PortainerClient({ url: api.url, caPem: api.caPem, insecure: api.insecure }, { kind: "apiKey", key: api.apiKey });
}

function originOf(api: { url?: unknown } | undefined): string | undefined {
  return typeof api?.url === "string" && !isUnknown(api.url) ? new URL(api.url).origin : undefined;
}

/**
 * Another Portainer is another place: what lives in one cannot be moved to the other in place.
 * Only a known change of origin replaces; a token or CA not known yet during preview is an
 * update at most, or a password rotation would preview as replacing every stack.
 */
export function portainerReplaces(property: string, olds: { url?: unknown } | undefined, news: { url?: unknown } | undefined): string[] {
  const [o, n] = [originOf(olds), originOf(news)];
  return o !== undefined && n !== undefined && o !== n ? [property] : [];
}
