/** IPv4 helpers shared by validation, planning and the renderers. */

export interface Cidr {
  /** The address as written (host part kept). */
  address: string;
  prefix: number;
}

const OCTET = "(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const IPV4 = `${OCTET}(\\.${OCTET}){3}`;
export const IPV4_RE = new RegExp(`^${IPV4}$`);
export const CIDR_RE = new RegExp(`^${IPV4}/(3[0-2]|[12]?\\d)$`);

export function parseCidr(text: string): Cidr | undefined {
  if (!CIDR_RE.test(text)) return undefined;
  const [address, prefix] = text.split("/") as [string, string];
  return { address, prefix: Number(prefix) };
}

export function ipToInt(ip: string): number {
  return ip.split(".").reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function networkOf(cidr: Cidr): number {
  return (ipToInt(cidr.address) & mask(cidr.prefix)) >>> 0;
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join(".");
}

/** "10.0.0.13/24" → "10.0.0.0/24". */
export function subnetOf(cidr: Cidr): string {
  return `${intToIp(networkOf(cidr))}/${cidr.prefix}`;
}

export function inSubnet(ip: string, subnet: Cidr): boolean {
  return ((ipToInt(ip) & mask(subnet.prefix)) >>> 0) === networkOf(subnet);
}

/** True when the address is the network or broadcast address of its subnet (unusable for a host). */
export function isNetworkOrBroadcast(cidr: Cidr): boolean {
  if (cidr.prefix >= 31) return false;
  const ip = ipToInt(cidr.address);
  const net = networkOf(cidr);
  const broadcast = (net | (~mask(cidr.prefix) >>> 0)) >>> 0;
  return ip === net || ip === broadcast;
}
