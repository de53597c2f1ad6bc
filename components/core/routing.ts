/**
 * Who reaches what, derived once from the validated stack configuration and
 * shared by the Traefik and Nginx renderers so the two proxies can never
 * disagree about a host name or a backend.
 */
import { modelsOf } from "../../stacks/plan";
import type { Guest, Role, Service, StackConfig } from "../../stacks/schema";

/** The host name a service is reached at through Traefik. */
export function serviceHost(config: StackConfig, service: Service): string {
  return `${service.name}.${config.host.domain}`;
}

/** The gateway's own host name: routes without `host` are served there. */
export function gatewayHost(config: StackConfig): string {
  return config.host.domain;
}

export function guestOfRole<T extends Role["type"]>(config: StackConfig, type: T): Guest & { role: Extract<Role, { type: T }> } {
  const guests = config.guests.filter((g) => g.role?.type === type);
  if (guests.length !== 1) throw new Error(`the stack needs exactly one guest with role ${type}, found ${guests.length}: set guests[].role.type`);
  return guests[0] as Guest & { role: Extract<Role, { type: T }> };
}

export function guestIp(guest: Guest): string {
  if (guest.network.ip === "dhcp") throw new Error(`guest ${guest.vmid} (${guest.name}) uses DHCP; the proxies need a static address in guests[].network.ip`);
  return guest.network.ip.split("/")[0]!;
}

function guestById(config: StackConfig, vmid: number): Guest {
  const g = config.guests.find((x) => x.vmid === vmid);
  if (!g) throw new Error(`guest ${vmid} is not declared`);
  return g;
}

/** A service Traefik routes to, with everything its router needs. */
export interface Backend {
  service: Service;
  host: string;
  /** scheme://ip:port Traefik forwards to. */
  url: string;
  /** For https backends: the name their certificate carries. */
  tlsServerName?: string;
}

/** Every declared service as a Traefik backend (validation already refused loops and plain HTTP to TLS ports). */
export function backends(config: StackConfig): Backend[] {
  return config.services.map((service) => {
    const guest = guestById(config, service.guest);
    const backend: Backend = { service, host: serviceHost(config, service), url: `${service.scheme}://${guestIp(guest)}:${service.port}` };
    if (service.scheme === "https") {
      // Step-CA serves its own certificate for its configured names; every other
      // TLS backend is issued a certificate for its service host.
      backend.tlsServerName = guest.role?.type === "step-ca" ? caDnsNames(config, guest.role)[0]! : backend.host;
    }
    return backend;
  });
}

/** The names the CA answers on: its configured names, or ca.<domain>. */
export function caDnsNames(config: StackConfig, role: Extract<Role, { type: "step-ca" }>): string[] {
  return role.dnsNames.length > 0 ? role.dnsNames : [`ca.${config.host.domain}`];
}

export interface ModelRoute {
  /** The name clients put in the request's "model". */
  id: string;
  /** The service (and so the Traefik host) that serves the model. */
  service: string;
  host: string;
}

/** Every model the stack serves, with the service that reaches the server serving it (validation guarantees one). */
export function modelRoutes(config: StackConfig): ModelRoute[] {
  return config.guests.flatMap((guest) => {
    const port = guest.role?.type === "model-server" ? guest.role.server.port : undefined;
    const service = config.services.find((s) => s.guest === guest.vmid && s.port === port);
    return service ? modelsOf(guest).map((m) => ({ id: m.id, service: service.name, host: serviceHost(config, service) })) : [];
  });
}

/**
 * What a core guest must resolve by name: the CA sees every Traefik-served
 * host at Traefik (to validate ACME challenges there); Traefik and the gateway
 * see the CA's names at the CA.
 */
export function internalHosts(config: StackConfig, role: "step-ca" | "traefik" | "nginx-gateway"): { ip: string; names: string[] }[] {
  const ca = guestOfRole(config, "step-ca");
  if (role !== "step-ca") return [{ ip: guestIp(ca), names: caDnsNames(config, ca.role) }];
  // A guest that obtains its own certificate (the Portainer server) answers its ACME challenge itself.
  const selfIssued = new Set(config.guests.filter((g) => g.role?.type === "portainer-server").map((g) => g.vmid));
  const traefik = config.guests.find((g) => g.role?.type === "traefik");
  const entries = new Map<string, string[]>();
  const add = (ip: string, name: string) => entries.set(ip, [...(entries.get(ip) ?? []), name]);
  for (const s of config.services) {
    const g = config.guests.find((x) => x.vmid === s.guest);
    if (g && selfIssued.has(g.vmid)) {
      add(guestIp(g), serviceHost(config, s));
      for (const r of config.routes) if (r.service === s.name && r.host) add(guestIp(g), r.host);
    } else if (traefik) add(guestIp(traefik), serviceHost(config, s));
  }
  return [...entries].map(([ip, names]) => ({ ip, names: [...new Set(names)] }));
}
