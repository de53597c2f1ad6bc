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

/**
 * One real request per served model, sent once the endpoints above answer: they answer while
 * generation itself can still fail (a sampler kernel that cannot be compiled, a model that does not
 * fit), so "healthy" means a model produced a token or a vector.
 */
export interface GenerationProbe {
  /** For messages: the model and what is asked of it. */
  what: string;
  path: string;
  body: object;
  /** A JSON member the answer must hold. */
  member: string;
}

const PROMPT = "Reply with OK.";
const EMBED_INPUT = "Phoenix health check";

// vLLM and llama-server speak the OpenAI API: /v1/chat/completions answers with "choices"
// (vllm/entrypoints/openai/protocol.py ChatCompletionResponse; llama.cpp tools/server/server.cpp at b6500),
// /v1/embeddings with data[].embedding. max_tokens: 1 keeps the probe to one token.
const chatProbe = (model: string): GenerationProbe => ({ what: `chat ${model}`, path: "/v1/chat/completions", body: { model, messages: [{ role: "user", content: PROMPT }], max_tokens: 1 }, member: "choices" });
const embedProbe = (model: string): GenerationProbe => ({ what: `embedding ${model}`, path: "/v1/embeddings", body: { model, input: EMBED_INPUT }, member: "embedding" });

export function generationProbes(spec: ModelServerSpec): GenerationProbe[] {
  switch (spec.engine) {
    case "vllm":
      return [spec.server.task === "embed" ? embedProbe(spec.server.servedModelName) : chatProbe(spec.server.servedModelName)];
    case "llamacpp":
      return [spec.server.kind === "embedding" ? embedProbe(spec.server.servedModelName) : chatProbe(spec.server.servedModelName)];
    case "ollama":
      // ollama@v0.12.6 server/routes.go: POST /api/generate and /api/embed; api/types.go: Options.NumPredict
      // is "num_predict", GenerateResponse.Response "response", EmbedResponse.Embeddings "embeddings".
      return spec.server.models.map((m) =>
        m.kind === "embedding"
          ? { what: `embedding ${m.name}`, path: "/api/embed", body: { model: m.name, input: EMBED_INPUT }, member: "embeddings" }
          : { what: `generate ${m.name}`, path: "/api/generate", body: { model: m.name, prompt: PROMPT, stream: false, options: { num_predict: 1 } }, member: "response" },
      );
  }
}

function renderProbe(p: GenerationProbe): string {
  return `probe ${shQuote(p.what)} ${shQuote(p.path)} ${shQuote(JSON.stringify(p.body))} ${shQuote(JSON.stringify(p.member))}`;
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
# Exits 0 once every check passes and every model answers one real request; otherwise prints the
# unit's last journal lines and exits 1. PHOENIX_HEALTH_SECONDS and PHOENIX_HEALTH_INTERVAL override
# the deadline and the polling interval, PHOENIX_HEALTH_REQUEST_SECONDS the time one request may take.
set -euo pipefail

unit=${spec.unit}
base=http://127.0.0.1:${spec.server.port}
limit=\${PHOENIX_HEALTH_SECONDS:-${seconds}}
interval=\${PHOENIX_HEALTH_INTERVAL:-5}
request_seconds=\${PHOENIX_HEALTH_REQUEST_SECONDS:-120}
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

# POST $3 to $2 for $1; fails unless the answer is 2xx JSON holding the member $4.
probe() {
  local code
  code=$(curl -sS --connect-timeout 5 --max-time "$request_seconds" "\${auth[@]}" -H 'Content-Type: application/json' \\
    --data-binary "$3" -o "$work/answer" -w '%{http_code}' "$base$2" 2>"$work/err") || code="curl: $(tr -d '\\n' <"$work/err")"
  case $code in
    2??) ;;
    *) fail "the endpoints answer but $1 failed: POST $2: $code: $(head -c 400 "$work/answer" 2>/dev/null | tr -s '\\n\\t ' '   ')" ;;
  esac
  if ! tr -d '\\n' <"$work/answer" | sed 's/"[[:space:]]*:[[:space:]]*/":/g' | grep -qF -- "$4:"; then
    fail "the endpoints answer but $1 failed: POST $2 answered without $4: $(head -c 400 "$work/answer" | tr -s '\\n\\t ' '   ')"
  fi
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
${generationProbes(spec).map(renderProbe).join("\n")}
echo "$unit: healthy"
`;
}
