/**
 * How a guest keeps a Step-CA certificate fresh: its role's script, run by a
 * oneshot service that an hourly timer starts. Shared by the gateway and the
 * Portainer server; only the script (how to issue, what to reload) differs.
 */
import type { RenderedFile } from "./files";

/**
 * Renew when a third of the certificate's life is left: `step certificate needs-renewal
 * --expires-in N%` means N percent of the validity *used* (smallstep/cli v0.28.7
 * command/certificate/needsRenewal.go: percentUsed >= percentThreshold, default 66),
 * so two thirds used is 67%. The timer checks hourly.
 */
export const RENEW_AT_PERCENT_USED = "67%";

export function renderCertRenewal(name: string, what: string, after: string, script: string): RenderedFile[] {
  return [
    { path: `/usr/local/sbin/phoenix-${name}-cert`, content: script, mode: "0755" },
    {
      path: `/etc/systemd/system/phoenix-${name}-cert.service`,
      content: `[Unit]
Description=Phoenix: obtain or renew ${what} from Step-CA
After=network-online.target ${after}
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/phoenix-${name}-cert
`,
    },
    {
      path: `/etc/systemd/system/phoenix-${name}-cert.timer`,
      content: `[Unit]
Description=Phoenix: check ${what} hourly

[Timer]
OnBootSec=2min
OnUnitActiveSec=1h
RandomizedDelaySec=5min
Persistent=true

[Install]
WantedBy=timers.target
`,
    },
  ];
}
