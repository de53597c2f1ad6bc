/**
 * What the doctor checks for each service, derived from the validated stack and
 * the stack outputs. Pure: no I/O. The order of LAYERS is the order a request
 * is built from the inside out, which is also the order diagnosis reads them in.
 */
import { gatewayHost, guestIp, guestOfRole, serviceHost } from "../../stacks/routing";
import { UNITS } from "../../components/models/server";
import { observabilityUnitAt } from "../../components/observability/logs.render";
import type { PhoenixOutputs } from "../../stacks/outputs";
import { guestNodeOf } from "../../stacks/cluster";
import { modelsOf } from "../../stacks/plan";
import type { Guest, Service, StackConfig } from "../../stacks/schema";
import { admits, type Admission } from "./firewall";

export const LAYERS = ["guest", "firewall", "host", "traefik", "gateway"] as const;
export type Layer = (typeof LAYERS)[number];

/**
 * What `pulumi stack output --json --show-secrets` prints. Every key may be
 * missing (an older stack, a tier not deployed yet): the doctor then derives
 * the value from the stack file.
 */
export type OutputsJson = Partial<Pick<PhoenixOutputs, "guests" | "models" | "gatewayUrl" | "caRootPem" | "serviceUrls">>;

export interface Address {
  host: string;
  port: number;
}

/** A guest as the doctor addresses it: enough to run commands in it and to name it in a hint. */
export interface GuestRef {
  vmid: number;
  kind: "lxc" | "vm";
  name: string;
  ip: string;
  /** The node holding the guest: commands inside it run there (scripts/doctor/channels.ts guestsViaNodes). */
  node: string;
  /** The login user of a VM (cloud-init), for hints that ssh into it. */
  user?: string;
}

/** Where the gateway keeps the CA root it verifies Traefik with (GATEWAY_LAYOUT.caRootFile). */
export const GATEWAY_CA_FILE = "/etc/nginx/tls/step-ca-root.pem";
/** The gateway's certificate renewal unit. */
export const GATEWAY_RENEW_UNIT = "phoenix-gateway-cert.service";
/** Traefik's HTTPS entry point, as the gateway reaches it. */
export const TRAEFIK_PORT = 443;
/** Traefik's generated routers, for hints. */
export const TRAEFIK_DYNAMIC_FILE = "/etc/traefik/dynamic/phoenix.yml";

export type Check =
  | {
      layer: "guest";
      guest: GuestRef;
      /** systemd unit that runs the service; undefined when the guest's role names none. */
      unit?: string;
      port: number;
      /** For GPU guests: the host driver version the container's user space must match, when declared. */
      gpu?: { expectedDriver?: string; shared: boolean };
    }
  | {
      layer: "firewall";
      /** Each hop a request takes to the service, with the declared firewall's verdict. */
      hops: { from: string; to: string; admission: Admission }[];
    }
  | {
      layer: "host";
      target: Address;
      scheme: "http" | "https";
      path: string;
      /** Whether the service guest's declared firewall lets the node in: a drop is then expected. */
      nodeAdmission: Admission;
    }
  | {
      layer: "traefik";
      /** Run from inside the gateway, as Nginx reaches Traefik. */
      from: GuestRef;
      traefik: Address;
      host: string;
      path: string;
    }
  | {
      layer: "gateway";
      gateway: Address;
      /** SNI and Host header: the name clients use. */
      host: string;
      path: string;
    };

export interface PlannedCheck {
  service: string;
  check: Check;
}

/** What hints need to know about a service besides the failing check. */
export interface ServiceContext {
  service: Service;
  guest: GuestRef;
  unit?: string;
  gateway: GuestRef;
  traefik: GuestRef;
  node: string;
}

export interface DoctorPlan {
  checks: PlannedCheck[];
  contexts: Map<string, ServiceContext>;
  /** Where the gateway's status page is read (scripts/doctor/status-page.ts): its address and host name. */
  statusPage: { gateway: Address; host: string };
}

function ref(config: StackConfig, outputs: OutputsJson, g: Guest): GuestRef {
  const ip = outputs.guests?.[String(g.vmid)]?.ip ?? guestIp(g);
  return { vmid: g.vmid, kind: g.kind, name: g.name, ip, node: guestNodeOf(config, g), ...(g.kind === "vm" ? { user: g.cloudInit.user } : {}) };
}

/** The unit that runs what a guest's role serves; Docker runs everything on the VMs. */
export function unitOf(g: Guest, port?: number): string | undefined {
  switch (g.role?.type) {
    case "observability":
      return port === undefined ? undefined : observabilityUnitAt(g.role, port);
    case "model-server":
      return UNITS[g.role.server.engine];
    case "step-ca":
      return "step-ca.service";
    case "portainer-server":
    case "portainer-agent":
      return "docker.service";
    default:
      return g.kind === "vm" && g.dockerStacks.length > 0 ? "docker.service" : undefined;
  }
}

/**
 * The path that reaches a service through the gateway, or undefined when no
 * route leads to it. A model server is reached through the OpenAI model
 * listing, which the gateway answers per model from the server serving it.
 */
function gatewayRequest(config: StackConfig, service: Service, guest: Guest, outputs: OutputsJson): { host: string; path: string } | undefined {
  const defaultHost = outputs.gatewayUrl ? new URL(outputs.gatewayUrl).hostname : gatewayHost(config);
  const route = config.routes.find((r) => r.service === service.name);
  if (route) {
    const published = outputs.serviceUrls?.[service.name];
    const path = route.stripPrefix ? `${route.path.replace(/\/$/, "")}${service.healthPath}` : route.path === "/" ? service.healthPath : route.path;
    return { host: published ? new URL(published).hostname : (route.host ?? defaultHost), path };
  }
  const model = modelsOf(guest)[0];
  const listing = config.routes.find((r) => r.byModel && /\/models\/?$/.test(r.path));
  if (model && listing) return { host: listing.host ?? defaultHost, path: `${listing.path.replace(/\/$/, "")}/${encodeURIComponent(model.id)}` };
  return undefined;
}

/** Every check for every service, inside out. */
export function planDoctor(config: StackConfig, outputs: OutputsJson): DoctorPlan {
  const gatewayGuest = guestOfRole(config, "nginx-gateway");
  const traefikGuest = guestOfRole(config, "traefik");
  const gateway = ref(config, outputs, gatewayGuest);
  const traefik = ref(config, outputs, traefikGuest);
  const nodeIp = config.host.address.split("/")[0]!;
  const gatewayAddress: Address = outputs.gatewayUrl ? { host: gateway.ip, port: Number(new URL(outputs.gatewayUrl).port || 443) } : { host: gateway.ip, port: 443 };
  const checks: PlannedCheck[] = [];
  const contexts = new Map<string, ServiceContext>();
  for (const service of config.services) {
    const g = config.guests.find((x) => x.vmid === service.guest)!;
    const guest = ref(config, outputs, g);
    const unit = unitOf(g, service.port);
    contexts.set(service.name, { service, guest, unit, gateway, traefik, node: guest.node });
    const add = (check: Check) => checks.push({ service: service.name, check });
    const gpu = g.gpus.length === 0 ? undefined : { expectedDriver: config.host.nvidiaDriver?.version, shared: g.kind === "lxc" };
    add({ layer: "guest", guest, unit, port: service.port, ...(gpu ? { gpu } : {}) });
    const request = gatewayRequest(config, service, g, outputs);
    const hops = [{ from: `Traefik ${traefik.ip}`, to: `${guest.name} tcp/${service.port}`, admission: admits(config, g, service.port, traefik.ip) }];
    if (request) hops.push({ from: `gateway ${gateway.ip}`, to: `Traefik tcp/${TRAEFIK_PORT}`, admission: admits(config, traefikGuest, TRAEFIK_PORT, gateway.ip) });
    add({ layer: "firewall", hops });
    add({ layer: "host", target: { host: guest.ip, port: service.port }, scheme: service.scheme, path: service.healthPath, nodeAdmission: admits(config, g, service.port, nodeIp) });
    add({ layer: "traefik", from: gateway, traefik: { host: traefik.ip, port: TRAEFIK_PORT }, host: serviceHost(config, service), path: service.healthPath });
    if (request) add({ layer: "gateway", gateway: gatewayAddress, ...request });
  }
  const statusHost = outputs.gatewayUrl ? new URL(outputs.gatewayUrl).hostname : gatewayHost(config);
  return { checks, contexts, statusPage: { gateway: gatewayAddress, host: statusHost } };
}
