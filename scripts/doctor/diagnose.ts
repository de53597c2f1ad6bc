/**
 * From check results to a diagnosis: for each failing service, the first failing
 * layer counted from the inside (an outer layer failing because an inner one did
 * tells the operator nothing new) and what to do about it. Pure.
 */
import { inGuest } from "./channels";
import type { Telemetry } from "./telemetry";
import { GATEWAY_RENEW_UNIT, LAYERS, TRAEFIK_DYNAMIC_FILE, TRAEFIK_PORT, type Layer, type ServiceContext } from "./plan";

export type Status = "ok" | "warn" | "fail" | "skip";

/** Why a check failed, in the terms the remediation depends on. */
export type Failure =
  | "guest-unreachable"
  | "unit-inactive"
  | "no-process"
  | "not-listening"
  | "loopback-only"
  | "gpu-unavailable"
  | "driver-mismatch"
  | "kernel-module-missing"
  | "firewall-blocks"
  | "refused"
  | "timeout"
  | "unhealthy"
  | "tls-error"
  | "route-missing"
  | "backend-down"
  | "cert-untrusted"
  | "cert-name"
  | "cert-expired"
  | "cert-not-yet-valid"
  | "probe-error";

export interface Finding {
  service: string;
  layer: Layer;
  check: string;
  status: Status;
  detail: string;
  failure?: Failure;
}

export interface Diagnosis {
  service: string;
  layer: Layer;
  check: string;
  detail: string;
  failure: Failure;
  hints: string[];
  /** What the ops guest saw of the backend (scripts/doctor/telemetry.ts), when the stack has one. */
  telemetry?: Telemetry;
}

function hintsFor(failure: Failure, layer: Layer, ctx: ServiceContext): string[] {
  const { guest, gateway, traefik, service } = ctx;
  const port = service.port;
  const unit = ctx.unit ?? "<the service's unit>";
  const log = (g: typeof guest, u: string) => inGuest(g, `journalctl -u ${u} -n 50 --no-pager`);
  const status = guest.kind === "lxc" ? `pct status ${guest.vmid}` : `qm status ${guest.vmid}`;
  const rules = `pvesh get /nodes/${ctx.node}/${guest.kind === "lxc" ? "lxc" : "qemu"}/${guest.vmid}/firewall/rules`;
  switch (failure) {
    case "guest-unreachable":
      return [`${status} (start it with ${guest.kind === "lxc" ? "pct" : "qm"} start ${guest.vmid}; a VM also needs its qemu-guest-agent running)`];
    case "unit-inactive":
    case "no-process":
      return [log(guest, unit), inGuest(guest, `systemctl restart ${unit}`)];
    case "not-listening":
      return [`${unit} runs but nothing listens on tcp/${port}: it may still be loading (follow ${inGuest(guest, `journalctl -u ${unit} -f`)}) or use another port (${inGuest(guest, `systemctl cat ${unit}`)} against services[${service.name}].port)`, inGuest(guest, `systemctl restart ${unit}`)];
    case "loopback-only":
      return [`the service listens on loopback only: make it bind 0.0.0.0:${port} (see ${inGuest(guest, `systemctl cat ${unit}`)}), then pulumi up`];
    case "gpu-unavailable":
      return [`nvidia-smi fails in guest ${guest.vmid}: check the host first (nvidia-smi on the node), then the devices passed in (${guest.kind === "lxc" ? `pct config ${guest.vmid} | grep -E '^dev'` : `qm config ${guest.vmid} | grep hostpci`}); pulumi up re-applies them`];
    case "driver-mismatch":
      return [`the guest's NVIDIA user space differs from the host driver: pulumi up reinstalls the matching user space, then ${inGuest(guest, `systemctl restart ${unit}`)}`];
    case "firewall-blocks":
      return [`declare the hop in the stack file: a rule { type: in, action: ACCEPT, proto: tcp, dport: ${port}, source: <the caller's address> } on guest ${guest.vmid} (or ${TRAEFIK_PORT} on Traefik ${traefik.vmid}), then pulumi up`];
    case "refused":
      return layer === "host"
        ? [`connections to ${guest.ip}:${port} are refused: check the service's bind address and port (${inGuest(guest, "ss -ltnp")}) and the guest's firewall rule for tcp/${port} (${rules}; a REJECT rule refuses too)`]
        : layer === "traefik"
          ? [`Traefik does not accept connections on tcp/${TRAEFIK_PORT}: ${inGuest(traefik, "systemctl status traefik")}`]
          : [`the gateway does not accept connections on tcp/443: ${inGuest(gateway, "systemctl status nginx")}`];
    case "timeout":
      return layer === "host"
        ? [`packets to ${guest.ip}:${port} are dropped: compare the guest's live firewall (${rules}, pve-firewall status) with the stack file, and check the bridge and address (${status})`]
        : [`no answer in time: check ${layer === "traefik" ? `Traefik ${traefik.vmid}'s firewall admits tcp/${TRAEFIK_PORT} from the gateway ${gateway.ip}` : `the gateway ${gateway.vmid} is up and its firewall admits tcp/443 from here`}`];
    case "unhealthy":
      return [`the service answers but reports itself unhealthy on ${service.healthPath}: ${log(guest, unit)}`];
    case "tls-error":
      return layer === "traefik"
        ? [`the gateway does not trust Traefik's certificate for its host: Traefik gets it from Step-CA over ACME (${inGuest(traefik, "journalctl -u traefik -n 50 --no-pager")}, look for acme errors); pulumi up re-installs the CA root on both`]
        : [`TLS to ${service.name} failed: ${log(guest, unit)}`];
    case "route-missing":
      return layer === "traefik"
        ? [`Traefik has no router for this host: pulumi up re-renders ${TRAEFIK_DYNAMIC_FILE} (compare with ${inGuest(traefik, `cat ${TRAEFIK_DYNAMIC_FILE}`)})`]
        : [`the gateway has no route for this path: pulumi up re-renders Nginx's routes (compare with ${inGuest(gateway, "nginx -T")})`];
    case "backend-down":
      return layer === "traefik"
        ? [`Traefik cannot reach ${service.name} or its health check marks it down: ${inGuest(traefik, "journalctl -u traefik -n 50 --no-pager")}; Traefik checks ${service.healthPath} every 10 s`]
        : [`the gateway cannot reach Traefik: ${inGuest(gateway, "tail -n 50 /var/log/nginx/error.log")}`];
    case "cert-expired":
      return [`renew the gateway's certificate: ${inGuest(gateway, `systemctl start ${GATEWAY_RENEW_UNIT}`)}, then ${inGuest(gateway, `journalctl -u ${GATEWAY_RENEW_UNIT} -n 50 --no-pager`)} and make sure its timer is enabled`];
    case "cert-not-yet-valid":
      return [`the certificate is not valid yet: check the clocks of this machine, the gateway (${inGuest(gateway, "timedatectl")}) and Step-CA`];
    case "cert-untrusted":
      return [`the gateway presents a certificate that does not chain to this stack's CA root: re-issue it with ${inGuest(gateway, `systemctl start ${GATEWAY_RENEW_UNIT}`)}; if the CA was re-created, pulumi up distributes the new root`];
    case "cert-name":
      return [`the gateway's certificate does not cover this host name: pulumi up (the certificate's names come from the routes), then ${inGuest(gateway, `systemctl start ${GATEWAY_RENEW_UNIT}`)}`];
    case "probe-error":
      return ["the probe itself failed: see the detail, and run it by hand"];
    case "kernel-module-missing":
      return ["see scripts/doctor/kernel-modules.ts: build the module for the kernel, or pin the kernel, before rebooting"];
  }
}

/** The first failing layer of each failing service, from the inside out. */
export function diagnose(findings: readonly Finding[], contexts: ReadonlyMap<string, ServiceContext>): Diagnosis[] {
  const out: Diagnosis[] = [];
  for (const [service, ctx] of contexts) {
    const failures = findings.filter((f) => f.service === service && f.status === "fail");
    // Stable within a layer: the checks of a layer are themselves listed inside out.
    const first = failures.sort((a, b) => LAYERS.indexOf(a.layer) - LAYERS.indexOf(b.layer))[0];
    if (!first) continue;
    const failure = first.failure ?? "probe-error";
    out.push({ service, layer: first.layer, check: first.check, detail: first.detail, failure, hints: hintsFor(failure, first.layer, ctx) });
  }
  return out;
}
