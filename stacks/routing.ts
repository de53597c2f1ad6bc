/**
 * Who reaches what, derived once from the validated stack configuration and
 * shared by the Traefik and Nginx renderers so the two proxies can never
 * disagree about a host name or a backend.
 */
import { parseCidr, subnetOf } from "./net";
import { guestAddress, modelsOf } from "./plan";
import type { Guest, Role, Route, Service, StackConfig } from "./schema";

/**
 * The part of the configuration routing reads: the guests, their services, the
 * routes and the host's domain (and admin networks, for Traefik's dashboard).
 * The core tier's renderers take this rather than a guest's own slice because
 * every one of them renders a table across guests: Step-CA's policy names every
 * guest with a certificate, Traefik's dynamic configuration every service, the
 * gateway every route and the model map.
 */
export type RoutingConfig = Pick<StackConfig, "host" | "guests" | "services" | "routes">;

/**
 * The zone of Traefik's names. Service hosts live in a sub-zone of their own so
 * that no name the gateway answers on (a route host, which users reach) is ever
 * also a name Traefik answers on: Step-CA validates each name at the one
 * address its /etc/hosts gives it (see acmeNames).
 */
export function serviceZone(config: RoutingConfig): string {
  return `svc.${config.host.domain}`;
}

/** The host name a service is reached at through Traefik. */
export function serviceHost(config: RoutingConfig, service: Service): string {
  return `${service.name}.${serviceZone(config)}`;
}

/** The name of Traefik's dashboard, on its internal entry point. */
export function dashboardHost(config: RoutingConfig): string {
  return `traefik.${config.host.domain}`;
}

/** The gateway's own host name: routes without `host` are served there. */
export function gatewayHost(config: RoutingConfig): string {
  return config.host.domain;
}

/**
 * Who may open an admin-only page served by a guest (Traefik's dashboard, the gateway's status
 * page): host.adminNetworks, or, with none declared, the guest's own subnet (PVE likewise admits
 * its own local network when no admin network is declared).
 */
export function adminSourceRange(config: RoutingConfig, guest: Guest, what: string): string[] {
  if (config.host.adminNetworks.length > 0) return [...config.host.adminNetworks];
  const cidr = parseCidr(guest.network.ip);
  if (!cidr) throw new Error(`guest ${guest.vmid} (${guest.name}) uses DHCP; declare host.adminNetworks for ${what}'s allow-list`);
  return [subnetOf(cidr)];
}

/** A guest whose role is of one type. */
export type GuestOfRole<T extends Role["type"]> = Guest & { role: Extract<Role, { type: T }> };

export function guestOfRole<T extends Role["type"]>(config: RoutingConfig, type: T): GuestOfRole<T> {
  const guests = config.guests.filter((g) => g.role?.type === type);
  if (guests.length !== 1) throw new Error(`the stack needs exactly one guest with role ${type}, found ${guests.length}: set guests[].role.type`);
  return guests[0] as Guest & { role: Extract<Role, { type: T }> };
}

export function guestIp(guest: Guest): string {
  const ip = guestAddress(guest);
  if (!ip) throw new Error(`guest ${guest.vmid} (${guest.name}) uses DHCP; the proxies need a static address in guests[].network.ip`);
  return ip;
}

function guestById(config: RoutingConfig, vmid: number): Guest {
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
export function backends(config: RoutingConfig): Backend[] {
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
export function ownCertificateName(config: RoutingConfig, guest: Guest): string | undefined {
  return guest.role?.type === "portainer-server" ? `vm-${guest.vmid}.${config.host.domain}` : undefined;
}

/** The names the CA answers on: its configured names, or ca.<domain>. */
export function caDnsNames(config: RoutingConfig, role: Extract<Role, { type: "step-ca" }>): string[] {
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
export function modelRoutes(config: RoutingConfig): ModelRoute[] {
  return config.guests.flatMap((guest) => {
    const service = modelServerService(config, guest);
    return service ? modelsOf(guest).map((m) => ({ id: m.id, service: service.name, host: serviceHost(config, service) })) : [];
  });
}

/** The service that reaches a model server: the one on its guest and its server's port. */
function modelServerService(config: RoutingConfig, guest: Guest): Service | undefined {
  const port = guest.role?.type === "model-server" ? guest.role.server.port : undefined;
  return port === undefined ? undefined : config.services.find((s) => s.guest === guest.vmid && s.port === port);
}

/**
 * The services in front of a vLLM server that requires phoenix:modelApiKey (`requireApiKey`): behind a
 * gateway that checks its own API keys, the gateway sends that key to them in place of the client's.
 */
export function keyedModelServices(config: RoutingConfig): Set<string> {
  const keyed = config.guests.filter((g) => g.role?.type === "model-server" && g.role.server.engine === "vllm" && g.role.server.requireApiKey);
  return new Set(keyed.flatMap((g) => modelServerService(config, g)?.name ?? []));
}

/** Routes the gateway's API keys guard: the OpenAI routes (byModel) and the gateway host's other /v1 paths. */
export function isApiRoute(config: RoutingConfig, route: Route): boolean {
  return route.byModel || ((route.host === undefined || route.host === gatewayHost(config)) && /^\/v1(\/|$)/.test(route.path));
}

/** Whether the gateway serves any route its API keys guard. */
export function servesApi(config: RoutingConfig): boolean {
  return config.routes.some((r) => isApiRoute(config, r));
}

/** Who answers the CA's ACME validation for a name, and how (the challenge its client uses). */
export interface AcmeName {
  name: string;
  ip: string;
  /** The guest that asks for the certificate and answers the challenge. */
  guest: number;
  challenge: "http-01" | "tls-alpn-01";
}

/**
 * Every name a Phoenix guest asks Step-CA to certify, with the address the CA
 * must reach to validate it. Step-CA validates http-01 by fetching
 * http://<name>/.well-known/acme-challenge/<token> and tls-alpn-01 by dialling
 * <name>:443 (smallstep/certificates v0.28.4 acme/challenge.go, http01Validate
 * and tlsalpn01Validate), resolving the name with Go's resolver, which reads
 * /etc/hosts first: so each name must map to the guest that asked for it.
 *   - the gateway's names (its host and every route host): the gateway, http-01 (renderGatewayCertFiles);
 *   - service hosts and the dashboard's name: Traefik, tls-alpn-01 (its resolver's tlsChallenge);
 *   - the Portainer server's own name: its VM, http-01 (step --standalone, components/docker/portainer.ts).
 */
export function acmeNames(config: RoutingConfig): AcmeName[] {
  const out: AcmeName[] = [];
  const gateway = config.guests.find((g) => g.role?.type === "nginx-gateway");
  if (gateway) {
    const names = [gatewayHost(config), ...config.routes.flatMap((r) => (r.host === undefined ? [] : [r.host]))];
    for (const name of new Set(names)) out.push({ name, ip: guestIp(gateway), guest: gateway.vmid, challenge: "http-01" });
  }
  const traefik = config.guests.find((g) => g.role?.type === "traefik");
  if (traefik) {
    const names = config.services.map((s) => serviceHost(config, s));
    if (traefik.role?.type === "traefik" && traefik.role.dashboard) names.push(dashboardHost(config));
    for (const name of new Set(names)) out.push({ name, ip: guestIp(traefik), guest: traefik.vmid, challenge: "tls-alpn-01" });
  }
  for (const g of config.guests) {
    const own = ownCertificateName(config, g);
    if (own) out.push({ name: own, ip: guestIp(g), guest: g.vmid, challenge: "http-01" });
  }
  return out;
}

/**
 * Names that belong to a guest other than the gateway, so a route may not take
 * them as its host (the CA would validate the gateway's order at that guest):
 * the CA's own names, the dashboard, the Portainer server's name; and the whole
 * service zone, Traefik's. Pure on the config, for validation.
 */
export function routeHostConflict(config: RoutingConfig, host: string): string | undefined {
  const h = host.toLowerCase();
  const zone = serviceZone(config);
  if (h === zone || h.endsWith(`.${zone}`)) return `the zone ${zone} holds Traefik's service hosts`;
  const ca = config.guests.find((g) => g.role?.type === "step-ca");
  if (ca?.role?.type === "step-ca" && caDnsNames(config, ca.role).some((n) => n.toLowerCase() === h)) return `${host} is the CA's own name`;
  const traefik = config.guests.find((g) => g.role?.type === "traefik");
  if (traefik?.role?.type === "traefik" && traefik.role.dashboard && dashboardHost(config).toLowerCase() === h) return `${host} is Traefik's dashboard`;
  const vm = config.guests.find((g) => ownCertificateName(config, g)?.toLowerCase() === h);
  if (vm) return `${host} is the Portainer server's own certificate name (guest ${vm.vmid})`;
  return undefined;
}

/**
 * What a core guest must resolve by name: the CA sees every name it validates
 * at the guest that asked for it (acmeNames); Traefik and the gateway see the
 * CA's names at the CA.
 */
export function internalHosts(config: RoutingConfig, role: "step-ca" | "traefik" | "nginx-gateway"): { ip: string; names: string[] }[] {
  const ca = guestOfRole(config, "step-ca");
  if (role !== "step-ca") return [{ ip: guestIp(ca), names: caDnsNames(config, ca.role) }];
  const entries = new Map<string, string[]>();
  for (const n of acmeNames(config)) entries.set(n.ip, [...new Set([...(entries.get(n.ip) ?? []), n.name])]);
  return [...entries].map(([ip, names]) => ({ ip, names }));
}
