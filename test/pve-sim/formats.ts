import * as net from "node:net";
import type { ParamSchema } from "./schema";

/**
 * Named formats of pve-common JSONSchema.pm, pve-container and qemu-server.
 * A validator returns null when the value is valid, else PVE's message (which
 * ends in "\n" because PVE builds it with `die "...\n"`). Formats not listed
 * here are accepted: the schema still checks their type, pattern and length.
 */
type Validator = (value: string) => string | null;

const LABEL = "[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?";
const DNS_NAME = new RegExp(`^(${LABEL}\\.)*${LABEL}$`);
const ALIAS_NAME = /^(?:(?:dc|guest)\/)?[A-Za-z][A-Za-z0-9\-_]+$/;

function isIPv4(v: string): boolean {
  return net.isIPv4(v) && /^\d{1,3}(\.\d{1,3}){3}$/.test(v);
}

function cidr(v: string, family: 4 | 6 | 0): boolean {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(v);
  if (!m) return false;
  const ip = m[1] as string;
  const prefix = Number(m[2]);
  if ((family === 4 || family === 0) && isIPv4(ip)) return prefix <= 32;
  if ((family === 6 || family === 0) && net.isIPv6(ip)) return prefix <= 128;
  return false;
}

function isIP(v: string): boolean {
  return isIPv4(v) || net.isIPv6(v);
}

function regexValidator(re: RegExp, message: (v: string) => string): Validator {
  return (v) => (re.test(v) ? null : message(v));
}

function portSpec(v: string): string | null {
  for (const item of v.split(",")) {
    const range = /^(\d+)(?::(\d+))?$/.exec(item);
    if (range) {
      const lo = Number(range[1]);
      const hi = range[2] === undefined ? lo : Number(range[2]);
      if (lo > 65535 || hi > 65535 || hi < lo) return `invalid port '${item}'\n`;
      continue;
    }
    if (!/^[a-z][a-z0-9-]*$/i.test(item)) return `invalid port '${item}'\n`;
  }
  return null;
}

function addressSpec(v: string): string | null {
  if (v.startsWith("+")) {
    return ALIAS_NAME.test(v.slice(1)) ? null : `invalid ipset name '${v}'\n`;
  }
  if (ALIAS_NAME.test(v) && !isIP(v)) return null;
  for (const item of v.split(",")) {
    const range = /^([^-]+)-([^-]+)$/.exec(item);
    if (range && isIP(range[1] as string) && isIP(range[2] as string)) continue;
    if (isIP(item) || cidr(item, 0)) continue;
    return `invalid address '${item}'\n`;
  }
  return null;
}

const VALIDATORS: Record<string, Validator> = {
  "pve-vmid": regexValidator(/^[1-9][0-9]{2,8}$/, () => "value does not look like a valid VM ID\n"),
  "pve-node": regexValidator(/^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/, () => "value does not look like a valid node name\n"),
  "pve-configid": regexValidator(/^[a-z][a-z0-9_-]+$/i, (v) => `invalid configuration ID '${v}'\n`),
  "pve-storage-id": (v) =>
    v.length >= 2 && /^[a-z][a-z0-9\-_.]*[a-z0-9]$/i.test(v) ? null : `storage ID '${v}' contains illegal characters\n`,
  "dns-name": regexValidator(DNS_NAME, () => "value does not look like a valid DNS name\n"),
  "pve-iface": regexValidator(/^[a-z][a-z0-9_]{1,20}([:.]\d+)?$/i, (v) => `invalid network interface name '${v}'\n`),
  "mac-addr": regexValidator(/^[a-f0-9][02468ace](?::[a-f0-9]{2}){5}$/i, () => "value does not look like a valid unicast MAC address\n"),
  urlencoded: regexValidator(/^[-%a-zA-Z0-9_.!~*'()]*$/, (v) => `invalid urlencoded string: ${v}\n`),
  "pve-tag": regexValidator(/^[a-z0-9_][a-z0-9_\-+.]*$/i, (v) => `invalid tag '${v}'\n`),
  "pve-bridge-id": regexValidator(/^[-_.\w\d]+$/, (v) => `invalid bridge ID '${v}'\n`),
  "pve-poolid": regexValidator(/^[A-Za-z0-9_\-/]+$/, (v) => `invalid pool ID '${v}'\n`),
  "pve-realm": regexValidator(/^[A-Za-z][A-Za-z0-9.\-_]*[A-Za-z0-9]$/, (v) => `invalid realm '${v}'\n`),
  "pve-userid": regexValidator(/^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]*[A-Za-z0-9]$/, (v) => `value '${v}' does not look like a valid user name\n`),
  "pve-storage-path": regexValidator(/^\/[^\0]*$/, () => "value does not look like a valid absolute path\n"),
  "pve-storage-content": regexValidator(
    /^(images|rootdir|vztmpl|iso|backup|snippets|import|none)$/,
    (v) => `invalid content type '${v}'\n`,
  ),
  "pve-volume-id": regexValidator(/^[a-z][a-z0-9\-_.]*[a-z0-9]:.+$/i, (v) => `unable to parse volume ID '${v}'\n`),
  "pve-volume-id-or-qm-path": regexValidator(
    /^(?:[a-z][a-z0-9\-_.]*[a-z0-9]:.+|\/.+|none|cdrom)$/i,
    (v) => `unable to parse volume ID '${v}'\n`,
  ),
  "pve-volume-id-or-absolute-path": regexValidator(
    /^(?:[a-z][a-z0-9\-_.]*[a-z0-9]:.+|\/.+)$/i,
    (v) => `unable to parse volume ID '${v}'\n`,
  ),
  "pve-lxc-mp-string": (v) =>
    /(^|\/)\.\.?(\/|$)/.test(v) || v === "" ? `${v} contains illegal character sequences\n` : null,
  "pve-lxc-dev-string": regexValidator(/^\/dev\/\S+$/, () => "not a valid device path\n"),
  "disk-size": regexValidator(/^\d+(\.\d+)?[KMGT]?$/, (v) => `value does not look like a valid disk size: ${v}\n`),
  ipv4: (v) => (isIPv4(v) ? null : "value does not look like a valid IPv4 address\n"),
  ipv6: (v) => (net.isIPv6(v) ? null : "value does not look like a valid IPv6 address\n"),
  ip: (v) => (isIP(v) ? null : "value does not look like a valid IP address\n"),
  address: (v) => (isIP(v) ? null : "value does not look like a valid address\n"),
  CIDR: (v) => (cidr(v, 0) ? null : "value does not look like a valid CIDR network\n"),
  CIDRv4: (v) => (cidr(v, 4) ? null : "value does not look like a valid IPv4 CIDR network\n"),
  CIDRv6: (v) => (cidr(v, 6) ? null : "value does not look like a valid IPv6 CIDR network\n"),
  IPorCIDR: (v) => (isIP(v) || cidr(v, 0) ? null : "value does not look like a valid IP address or CIDR network\n"),
  IPorCIDRorAlias: (v) =>
    isIP(v) || cidr(v, 0) || ALIAS_NAME.test(v) ? null : "value does not look like a valid IP address or CIDR network\n",
  "pve-ipv4-config": (v) =>
    v === "dhcp" || v === "manual" || cidr(v, 4) ? null : "value does not look like a valid ipv4 network configuration\n",
  "pve-ipv6-config": (v) =>
    v === "dhcp" || v === "auto" || v === "manual" || cidr(v, 6)
      ? null
      : "value does not look like a valid ipv6 network configuration\n",
  "pve-startup-order": (v) => {
    for (const part of v.split(",")) {
      if (!/^(?:(?:order=)?\d+|up=\d+|down=\d+)$/.test(part)) return "unable to parse startup options\n";
    }
    return null;
  },
  "pve-fw-addr-spec": addressSpec,
  "pve-fw-dport-spec": portSpec,
  "pve-fw-sport-spec": portSpec,
  "pve-fw-protocol-spec": regexValidator(/^(?:\d+|[a-z][a-z0-9-]*)$/i, (v) => `unknown protocol '${v}'\n`),
  "pve-fw-icmp-type-spec": regexValidator(/^(?:\d+|[a-z][a-z0-9-]*)$/i, (v) => `invalid icmp-type '${v}'\n`),
};

const HEX_ID = { type: "string", optional: 1, pattern: "0x[0-9a-fA-F]{4}" } as const;
const PCI_ID = "(?:[a-f0-9]{4,}:)?[a-f0-9]{2}:[a-f0-9]{2}(?:\\.[a-f0-9])?";

/**
 * Named formats that are property strings: the schema dump references them by
 * name only, so their keys are spelled out here (qemu-server PCI.pm,
 * Cloudinit.pm, QemuServer.pm; pve-common startup order).
 */
export const NAMED_PROPERTY_FORMATS: Record<string, Record<string, ParamSchema>> = {
  "pve-qm-hostpci": {
    host: { type: "string", default_key: 1, optional: 1, pattern: `(?^i:${PCI_ID}(?:;${PCI_ID})*)` },
    mapping: { type: "string", optional: 1, format: "pve-configid" },
    pcie: { type: "boolean", optional: 1 },
    "x-vga": { type: "boolean", optional: 1 },
    rombar: { type: "boolean", optional: 1 },
    "legacy-igd": { type: "boolean", optional: 1 },
    romfile: { type: "string", optional: 1 },
    mdev: { type: "string", optional: 1 },
    driver: { type: "string", optional: 1, enum: ["vfio", "keep"] },
    "device-id": { ...HEX_ID },
    "vendor-id": { ...HEX_ID },
    "sub-device-id": { ...HEX_ID },
    "sub-vendor-id": { ...HEX_ID },
  },
  "pve-qm-ipconfig": {
    ip: { type: "string", optional: 1, format: "pve-ipv4-config" },
    gw: { type: "string", optional: 1, format: "ipv4" },
    ip6: { type: "string", optional: 1, format: "pve-ipv6-config" },
    gw6: { type: "string", optional: 1, format: "ipv6" },
  },
  "pve-qm-boot": {
    legacy: { type: "string", default_key: 1, optional: 1, pattern: "[acdn]{1,4}" },
    order: { type: "string", optional: 1, pattern: "[a-z]+\\d+(?:;[a-z]+\\d+)*" },
  },
  "pve-qm-cicustom": {
    meta: { type: "string", optional: 1, format: "pve-volume-id" },
    network: { type: "string", optional: 1, format: "pve-volume-id" },
    user: { type: "string", optional: 1, format: "pve-volume-id" },
    vendor: { type: "string", optional: 1, format: "pve-volume-id" },
  },
};

/** Cross-key rules PVE's named-format validators apply after parsing. */
export const PROPERTY_FORMAT_CHECKS: Record<string, (parsed: Record<string, string>) => string | null> = {
  "pve-qm-hostpci": (p) =>
    (p.host === undefined) === (p.mapping === undefined) ? "either 'host' or 'mapping' must be set.\n" : null,
  "pve-qm-ipconfig": (p) =>
    (p.gw !== undefined && (p.ip === undefined || p.ip === "dhcp")) ||
    (p.gw6 !== undefined && (p.ip6 === undefined || p.ip6 === "dhcp" || p.ip6 === "auto"))
      ? "gateway specified without specifying an IP address\n"
      : null,
};

/** `split_list` of PVE::Tools: lists are separated by commas, semicolons, whitespace or NUL. */
export function splitList(value: string): string[] {
  return value.split(/[\s,;\0]+/).filter((s) => s !== "");
}

/** Validates a named (non-property-string) format, including the `-list` and `-opt` variants. */
export function checkNamedFormat(format: string, value: string): string | null {
  if (format.endsWith("-opt")) {
    return value === "" ? null : checkNamedFormat(format.slice(0, -4), value);
  }
  const direct = VALIDATORS[format];
  if (direct) return direct(value);
  if (format.endsWith("-list")) {
    const item = VALIDATORS[format.slice(0, -5)];
    if (!item) return null;
    for (const v of splitList(value)) {
      const err = item(v);
      if (err) return err;
    }
  }
  return null;
}

/**
 * Key schemas of a named property-string format read off its `typetext`
 * (e.g. `[[model=]<i6300esb|ib700>] [,action=<enum>]`), for the named formats
 * that NAMED_PROPERTY_FORMATS does not spell out. A key in `[…]` is optional,
 * `[key=]` marks the default key, `<1|0>` a boolean, `<integer>`/`<N>` an
 * integer; other values are only checked for presence.
 */
export function formatFromTypetext(typetext: string): Record<string, ParamSchema> | undefined {
  const keys: Record<string, ParamSchema> = {};
  const re = /(\[\[|\[,|\[| ,|^)([a-z][a-z0-9_-]*)(=\]|=)<([^>]*)>/g;
  for (const m of typetext.matchAll(re)) {
    const [, prefix, name, eq, value] = m as unknown as [string, string, string, string, string];
    const optional = prefix === "[[" || prefix === "[," || (prefix === "[" && eq === "=");
    keys[name] = {
      type: value === "1|0" ? "boolean" : value === "integer" || value === "N" ? "integer" : "string",
      ...(optional ? { optional: 1 } : {}),
      ...(eq === "=]" ? { default_key: 1 } : {}),
    };
  }
  return Object.keys(keys).length > 0 ? keys : undefined;
}
