/**
 * Who reaches what, derived once from the validated stack configuration and
 * shared by the Traefik and Nginx renderers so the two proxies can never
 * disagree about a host name or a backend.
 */
import { guestAddress, modelsOf } from "../../stacks/plan";
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
  const ip = guestAddress(guest);
  if (!ip) throw new Error(`guest ${guest.vmid} (${guest.name}) uses DHCP; the proxies need a static address in guests[].network.ip`);
  return ip;
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
      // Step-CA and the Portainer server present certificates for their own names;
      // every other TLS backend is issued a certificate for its service host.
      backend.tlsServerName = guest.role?.type === "step-ca" ? caDnsNames(config, guest.role)[0]! : (ownCertificateName(config, guest) ?? backend.host);
    }
    return backend;
  });
}

/**
 * The name a guest that obtains its own certificate carries on it (the
 * Portainer server). It differs from the service host, which is Traefik's,
 * so the CA can validate each at the machine that really answers there.
 */
export function ownCertificateName(config: StackConfig, guest: Guest): string | undefined {
  return guest.role?.type === "portainer-server" ? `vm-${guest.vmid}.${config.host.domain}` : undefined;
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
  // A guest that obtains its own certificate (the Portainer server) answers its ACME challenge itself, under its own name.
  const traefik = config.guests.find((g) => g.role?.type === "traefik");
  const entries = new Map<string, string[]>();
  const add = (ip: string, name: string) => entries.set(ip, [...(entries.get(ip) ?? []), name]);
  if (traefik) for (const s of config.services) add(guestIp(traefik), serviceHost(config, s));
  for (const g of config.guests) {
    const own = ownCertificateName(config, g);
    if (own) add(guestIp(g), own);
  }
  return [...entries].map(([ip, names]) => ({ ip, names: [...new Set(names)] }));
}
