#!/bin/bash
set -euo pipefail
R="${PHOENIX_ROOT:-}"
installed() {
  # shellcheck disable=SC2016 # ${Status} is dpkg-query's format field, not a shell variable
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
wanted=(python3-venv python3-dev gcc)
missing=()
for p in "${wanted[@]}"; do
  if ! installed "$p"; then missing+=("$p"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  (
    # apt-get update does not wait for /var/lib/apt/lists/lock (DPkg::Lock::Timeout covers dpkg's locks only)
    for _ in $(seq 120); do
      if out="$(LC_ALL=C apt-get -o DPkg::Lock::Timeout=600 update 2>&1)"; then
        if [ -n "$out" ]; then printf '%s\n' "$out"; fi
        exit 0
      fi
      case "$out" in *"Unable to lock directory "*) sleep 5 ;; *) break ;; esac
    done
    printf '%s\n' "$out" >&2
    exit 100
  )
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
  echo "changed packages ${missing[*]}"
fi
mkdir -p "$(dirname "$R"/opt/vllm-requirements/0.11.0.txt)"
tmp="$(mktemp "$(dirname "$R"/opt/vllm-requirements/0.11.0.txt)/.phoenix.XXXXXX")"
cat > "$tmp" <<'PHOENIX_EOF'
# Test fixture in the shape providers/template/vllm-locks/generate.sh writes (uv pip compile --generate-hashes).
# The hashes are made up: this file only exercises the renderer and the pip stand-in, never a real install.
torch==2.8.0 \
    --hash=sha256:1111111111111111111111111111111111111111111111111111111111111111
    # via vllm
triton==3.4.0 ; platform_machine == 'x86_64' and sys_platform == 'linux' \
    --hash=sha256:2222222222222222222222222222222222222222222222222222222222222222
    # via torch
vllm==0.11.0 \
    --hash=sha256:3333333333333333333333333333333333333333333333333333333333333333 \
    --hash=sha256:4444444444444444444444444444444444444444444444444444444444444444
    # via -r requirements.in
PHOENIX_EOF
chmod 0644 "$tmp"
if cmp -s "$tmp" "$R"/opt/vllm-requirements/0.11.0.txt; then rm -f "$tmp"; else mv -f "$tmp" "$R"/opt/vllm-requirements/0.11.0.txt; echo 'changed /opt/vllm-requirements/0.11.0.txt'; fi
venv="$R"/opt/vllm
v=0.11.0
if [ ! -x "$venv/bin/pip" ]; then python3 -m venv "$venv"; echo 'changed venv /opt/vllm'; fi
have="$("$venv/bin/pip" show vllm 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$have" != "$v" ]; then "$venv/bin/pip" install --no-cache-dir --require-hashes --no-deps -r "$R"/opt/vllm-requirements/0.11.0.txt; echo "changed vllm $v"; fi
