/**
 * Internal names the machine's own guests must resolve without an internal DNS
 * server: the CA validates ACME challenges at each service host (Traefik), and
 * Traefik and the gateway reach the CA by its name. Kept in a marked block of
 * /etc/hosts; PVE's own block and every other line are left as they are.
 */
import { shellQuote } from "../../providers/ssh/script";

export interface HostsEntry {
  ip: string;
  names: string[];
}

const BEGIN = "# BEGIN phoenix internal names";
const END = "# END phoenix internal names";

/** Shell lines that make /etc/hosts hold exactly these entries in Phoenix's block; a no-op when it already does. */
export function renderHostsBlock(entries: readonly HostsEntry[]): string {
  const lines = [BEGIN, ...entries.filter((e) => e.names.length > 0).map((e) => `${e.ip} ${e.names.join(" ")}`), END];
  return `hosts_new=$(mktemp)
awk -v b=${shellQuote(BEGIN)} -v e=${shellQuote(END)} '$0==b{skip=1;next} $0==e{skip=0;next} !skip' /etc/hosts > "$hosts_new"
printf '%s\\n' ${lines.map(shellQuote).join(" ")} >> "$hosts_new"
if cmp -s "$hosts_new" /etc/hosts; then rm -f "$hosts_new"; else cat "$hosts_new" > /etc/hosts && rm -f "$hosts_new"; fi`;
}
