/** The tiers synth groups resources and guests by; a guest's tier follows its role. */
import type { Role } from "../../stacks/schema";

export const TIERS = ["providers", "host", "firewall", "templates", "core", "models", "docker", "observability", "backup", "guests"] as const;
export type Tier = (typeof TIERS)[number];

export const ROLE_TIER: Record<Role["type"], Tier> = {
  "step-ca": "core",
  traefik: "core",
  "nginx-gateway": "core",
  "model-server": "models",
  "portainer-server": "docker",
  "portainer-agent": "docker",
  "compose-host": "docker",
  observability: "observability",
};
