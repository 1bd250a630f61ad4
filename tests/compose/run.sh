#!/usr/bin/env bash
# `make compose-test`: docker-compose.yaml brought up for real, with podman and podman-compose.
#
#   1. builds the images (tests/compose/build-images.sh; cached between runs), and the one-image
#      Envoy of deploy/envoy/Dockerfile on top of the Envoy image (`podman build --from`, since
#      envoyproxy/envoy cannot be pulled here), and validates its envoy.yaml in it;
#   2. podman-compose -f docker-compose.yaml -f tests/compose/docker-compose.override.yaml up -d
#      (the override names the local images, nothing else);
#   3. pytest tests/compose: the README's Docker Compose commands as written, and the same requests
#      with status, identity headers and metrics checked;
#   4. swaps compose's Envoy for the deploy/envoy/Dockerfile image (`podman run --network host
#      IMAGE`, its own command and envoy.yaml) and runs the same checks again;
#   5. tears everything down, also on failure (with the containers' logs).
#
# Podman is configured by the files beside this script (CONTAINERS_CONF etc.), not /etc; images
# and containers live under /var/tmp/llm-jwt-auth/containers (storage.conf), scratch files under
# target/compose. Needs root, podman, runc, mmdebstrap, curl, the project venv (.venv) and the
# venv with podman-compose (COMPOSE_VENV); `make compose-test` provides them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
HERE=$PWD/tests/compose
export CONTAINERS_CONF=$HERE/containers.conf
export CONTAINERS_STORAGE_CONF=$HERE/storage.conf
export CONTAINERS_REGISTRIES_CONF=$HERE/registries.conf
PYTHON=${PYTHON:-.venv/bin/python}
COMPOSE_VENV=${COMPOSE_VENV:-target/compose/venv}
export WORK=${WORK:-target/compose}
PROJECT=llm-jwt-auth-compose
COMPOSE=("$COMPOSE_VENV/bin/podman-compose" -p "$PROJECT" -f docker-compose.yaml -f "$HERE/docker-compose.override.yaml")
IMAGE_CONTAINER=$PROJECT-envoy-image
WASM=target/wasm32-wasip1/release/llm_jwt_auth.wasm
T0=$SECONDS

log() { echo "compose-test [$((SECONDS - T0))s]: $*" >&2; }
die() { log "$*"; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (podman with runc and cgroupfs, as on the project's machines)"
[[ -f "$WASM" ]] || die "$WASM missing: make build"
[[ -f dist/llm_jwt_auth.wasm ]] || die "dist/llm_jwt_auth.wasm missing: make dist"
cmp -s "$WASM" dist/llm_jwt_auth.wasm || die "dist/llm_jwt_auth.wasm is not $WASM: make dist"

# Everything runs on the host network: the compose file's ports must be free (another `make run`?),
# and Envoy's hot-restart base id 0.
"$PYTHON" - <<'EOF' || die "stop whatever holds these ports first"
import socket, sys
busy = []
for port in (9090, 8080, 10000, 10001, 9901):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        busy.append(port)
    finally:
        s.close()
if busy:
    sys.exit(f"compose-test: port(s) {', '.join(map(str, busy))} on 127.0.0.1 in use")
# The compose file's Envoy runs with base id 0 (no --use-dynamic-base-id) in the host's network
# namespace, where its hot-restart socket is an abstract one: another Envoy on base id 0 blocks it.
with open("/proc/net/unix") as f:
    if any("@envoy_domain_socket_parent_0@" in line or line.rstrip().endswith("@envoy_domain_socket_parent_0")
           for line in f):
        sys.exit("compose-test: another Envoy with base id 0 runs in the host network namespace")
EOF

failed=1
cleanup() {
  set +e
  if ((failed)); then
    for c in $(podman ps -a --format '{{.Names}}' | grep "^$PROJECT"); do
      echo "----- logs of $c (last 60 lines)" >&2
      podman logs --tail 60 "$c" >&2
    done
  fi
  podman rm -f -t 2 "$IMAGE_CONTAINER" >/dev/null 2>&1
  # The idp runs under `sh -c`, which ignores SIGTERM: do not wait the default 10 s for it.
  "${COMPOSE[@]}" down -t 2 >/dev/null 2>&1
  log "torn down"
}
trap cleanup EXIT

# -- images -------------------------------------------------------------------------------------
log "images"
PYTHON=$PYTHON tests/compose/build-images.sh
ENVOY_IMAGE=$(sed -n 's|^ *image: \(localhost/llm-jwt-auth/envoy:.*\)$|\1|p' "$HERE/docker-compose.override.yaml")
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
FILTER_IMAGE=localhost/llm-jwt-auth/envoy-with-filter:$version
log "deploy/envoy/Dockerfile on $ENVOY_IMAGE -> $FILTER_IMAGE"
podman build --quiet --pull=never --from "$ENVOY_IMAGE" -f deploy/envoy/Dockerfile -t "$FILTER_IMAGE" . >/dev/null
podman run --rm "$FILTER_IMAGE" envoy --mode validate -c /etc/envoy/envoy.yaml --log-level warn \
  || die "$FILTER_IMAGE: envoy --mode validate refused /etc/envoy/envoy.yaml"

wait_ready() {  # wait_ready SECONDS: the IdP, the upstream and Envoy all answer
  "$PYTHON" - "$1" <<'EOF'
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[1])
urls = ["http://127.0.0.1:9090/healthz", "http://127.0.0.1:8080/healthz", "http://127.0.0.1:9901/ready"]
while urls and time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(urls[0], timeout=1) as r:
            if r.status == 200:
                urls.pop(0)
                continue
    except Exception:
        pass
    time.sleep(0.2)
sys.exit(f"compose-test: not ready: {urls}" if urls else 0)
EOF
}

run_checks() {  # run_checks ENVOY_CONTAINER WASM_IN_CONTAINER
  LLM_JWT_AUTH_COMPOSE_PROJECT=$PROJECT LLM_JWT_AUTH_ENVOY_CONTAINER=$1 LLM_JWT_AUTH_WASM_IN_CONTAINER=$2 \
    "$PYTHON" -m pytest "$HERE" -q -ra -p no:cacheprovider
}

# -- compose --------------------------------------------------------------------------------------
log "podman-compose up"
"${COMPOSE[@]}" up -d >/dev/null
wait_ready 60 || die "services did not come up"
log "up; checks against docker-compose.yaml's Envoy"
run_checks "${PROJECT}_envoy_1" /app/$WASM

# -- the one-image Envoy, in place of compose's ----------------------------------------------------
log "swapping in $FILTER_IMAGE (docker run --network host, its own command)"
podman stop -t 5 "${PROJECT}_envoy_1" >/dev/null
podman run -d --name "$IMAGE_CONTAINER" --network host "$FILTER_IMAGE" >/dev/null
wait_ready 30 || die "$FILTER_IMAGE did not come up"
run_checks "$IMAGE_CONTAINER" /etc/envoy/llm_jwt_auth.wasm

failed=0
log "passed"
