/**
 * The health check a model server must pass before anything that depends on
 * it proceeds. It runs inside the guest after apply: it polls the engine's
 * own endpoints until every check passes, and fails with the unit's last
 * journal lines when the unit crashes or the checks still fail at the
 * deadline, so the apply log shows why without a trip into the guest.
 */
import { shQuote } from "../render/files";
import { ollamaTagged } from "./ollama.render";
import { ENGINE_NAMES, type ModelServerSpec } from "./server";
import { VLLM_API_KEY_VAR, VLLM_ENV_FILE } from "./vllm.render";

export interface HealthCheck {
  /** GET path on the engine's port; any 2xx passes. */
  path: string;
  /** JSON string fields the response must hold, e.g. { field: "id", value: "Qwen3-4B-FP8" }. */
  lists: { field: string; value: string }[];
}

/** What "healthy" means per engine. */
export function healthChecks(spec: ModelServerSpec): HealthCheck[] {
  switch (spec.engine) {
    case "vllm":
      return [
        { path: "/health", lists: [] },
        { path: "/v1/models", lists: [{ field: "id", value: spec.server.servedModelName }] },
      ];
    case "ollama":
      return [{ path: "/api/tags", lists: spec.server.models.map((m) => ({ field: "name", value: ollamaTagged(m.name) })) }];
    case "llamacpp":
      // /health answers 503 until the model is loaded; /v1/models shows the alias the router sends.
      return [
        { path: "/health", lists: [] },
        { path: "/v1/models", lists: [{ field: "id", value: spec.server.servedModelName }] },
      ];
  }
}

/** Seconds a fresh server may take: vLLM downloads and compiles on first start, Ollama's models are pulled before. */
const DEFAULT_SECONDS: Record<ModelServerSpec["engine"], number> = { vllm: 900, ollama: 120, llamacpp: 300 };
const JOURNAL_LINES = 50;

function renderCheck(c: HealthCheck): string {
  const lines = [`get ${shQuote(c.path)} || return 1`];
  for (const l of c.lists) lines.push(`listed ${shQuote(c.path)} ${shQuote(`${JSON.stringify(l.field)}:${JSON.stringify(l.value)}`)} ${shQuote(l.value)} || return 1`);
  return lines.map((l) => `  ${l}`).join("\n");
}

export function renderHealthScript(spec: ModelServerSpec): string {
  const keyed = spec.engine === "vllm" && spec.server.requireApiKey;
  const seconds = DEFAULT_SECONDS[spec.engine];
  return `#!/usr/bin/env bash
# Phoenix: health of ${spec.unit} on guest ${spec.vmid} (${spec.guestName}), ${ENGINE_NAMES[spec.engine]} ${spec.version}.
# Exits 0 once every check passes; otherwise prints the unit's last journal lines and exits 1.
# PHOENIX_HEALTH_SECONDS and PHOENIX_HEALTH_INTERVAL override the deadline and the polling interval.
set -euo pipefail

unit=${spec.unit}
base=http://127.0.0.1:${spec.server.port}
limit=\${PHOENIX_HEALTH_SECONDS:-${seconds}}
interval=\${PHOENIX_HEALTH_INTERVAL:-5}
deadline=$((SECONDS + limit))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
last="no check has run yet"

fail() {
  echo "$unit: $1" >&2
  echo "--- last ${JOURNAL_LINES} journal lines of $unit ---" >&2
  journalctl -u "$unit" -n ${JOURNAL_LINES} --no-pager >&2 || true
  exit 1
}
${
  keyed
    ? `
# The key stays off command lines: curl reads the header from a file only root can read.
# PHOENIX_VLLM_ENV_FILE moves the key's file, so the script can be exercised outside a guest.
key_file=\${PHOENIX_VLLM_ENV_FILE:-${VLLM_ENV_FILE}}
key=$(sed -n 's/^${VLLM_API_KEY_VAR}=//p' "$key_file" 2>/dev/null || true)
[ -n "$key" ] || fail "$key_file holds no ${VLLM_API_KEY_VAR}: run the install again"
printf 'Authorization: Bearer %s\\n' "$key" >"$work/auth"
auth=(-H "@$work/auth")
`
    : `
auth=()
`
}
# GET $1 into $work/body; a refused connection, a timeout or a non-2xx status fails.
get() {
  if ! curl -fsS --connect-timeout 5 --max-time 10 "\${auth[@]}" -o "$work/body" "$base$1" 2>"$work/err"; then
    last="GET $1: $(tr -d '\\n' <"$work/err")"
    return 1
  fi
}

# Whether the last body holds the JSON member $2 (whitespace around ':' ignored); $3 names it in messages.
listed() {
  if ! tr -d '\\n' <"$work/body" | sed 's/"[[:space:]]*:[[:space:]]*/":/g' | grep -qF -- "$2"; then
    last="GET $1 does not list $3; it answered: $(head -c 400 "$work/body" | tr -s '\\n\\t ' '   ')"
    return 1
  fi
}

check() {
${healthChecks(spec).map(renderCheck).join("\n")}
}

restarts() {
  systemctl show -p NRestarts --value "$unit" 2>/dev/null || echo 0
}

# A unit that restarts or stops while being checked will not become healthy by waiting.
restarts_before=$(restarts)
until check; do
  state=$(systemctl is-active "$unit" || true)
  case $state in
    failed | inactive) fail "the unit is $state; last check: $last" ;;
  esac
  if [ "$(restarts)" != "$restarts_before" ]; then fail "the unit restarted while being checked; last check: $last"; fi
  if [ "$SECONDS" -ge "$deadline" ]; then fail "not healthy after \${limit}s; last check: $last"; fi
  sleep "$interval"
done
echo "$unit: healthy"
`;
}
