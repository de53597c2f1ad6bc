#!/usr/bin/env bash
# Phoenix: health of vllm.service on guest 801 (vllm-embed), vLLM 0.11.0.
# Exits 0 once every check passes and every model answers one real request; otherwise prints the
# unit's last journal lines and exits 1. PHOENIX_HEALTH_SECONDS and PHOENIX_HEALTH_INTERVAL override
# the deadline and the polling interval, PHOENIX_HEALTH_REQUEST_SECONDS the time one request may take.
set -euo pipefail

unit=vllm.service
base=http://127.0.0.1:8000
limit=${PHOENIX_HEALTH_SECONDS:-900}
interval=${PHOENIX_HEALTH_INTERVAL:-5}
request_seconds=${PHOENIX_HEALTH_REQUEST_SECONDS:-120}
deadline=$((SECONDS + limit))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
last="no check has run yet"

fail() {
  echo "$unit: $1" >&2
  echo "--- last 50 journal lines of $unit ---" >&2
  journalctl -u "$unit" -n 50 --no-pager >&2 || true
  exit 1
}

auth=()

# GET $1 into $work/body; a refused connection, a timeout or a non-2xx status fails.
get() {
  if ! curl -fsS --connect-timeout 5 --max-time 10 "${auth[@]}" -o "$work/body" "$base$1" 2>"$work/err"; then
    last="GET $1: $(tr -d '\n' <"$work/err")"
    return 1
  fi
}

# Whether the last body holds the JSON member $2 (whitespace around ':' ignored); $3 names it in messages.
listed() {
  if ! tr -d '\n' <"$work/body" | sed 's/"[[:space:]]*:[[:space:]]*/":/g' | grep -qF -- "$2"; then
    last="GET $1 does not list $3; it answered: $(head -c 400 "$work/body" | tr -s '\n\t ' '   ')"
    return 1
  fi
}

check() {
  get /health || return 1
  get /v1/models || return 1
  listed /v1/models '"id":"granite-embedding-english-r2"' granite-embedding-english-r2 || return 1
}

# POST $3 to $2 for $1; fails unless the answer is 2xx JSON holding the member $4.
probe() {
  local code
  code=$(curl -sS --connect-timeout 5 --max-time "$request_seconds" "${auth[@]}" -H 'Content-Type: application/json' \
    --data-binary "$3" -o "$work/answer" -w '%{http_code}' "$base$2" 2>"$work/err") || code="curl: $(tr -d '\n' <"$work/err")"
  case $code in
    2??) ;;
    *) fail "the endpoints answer but $1 failed: POST $2: $code: $(head -c 400 "$work/answer" 2>/dev/null | tr -s '\n\t ' '   ')" ;;
  esac
  if ! tr -d '\n' <"$work/answer" | sed 's/"[[:space:]]*:[[:space:]]*/":/g' | grep -qF -- "$4:"; then
    fail "the endpoints answer but $1 failed: POST $2 answered without $4: $(head -c 400 "$work/answer" | tr -s '\n\t ' '   ')"
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
  if [ "$SECONDS" -ge "$deadline" ]; then fail "not healthy after ${limit}s; last check: $last"; fi
  sleep "$interval"
done
probe 'embedding granite-embedding-english-r2' /v1/embeddings '{"model":"granite-embedding-english-r2","input":"Phoenix health check"}' '"embedding"'
echo "$unit: healthy"
