# Release artifacts and the container harness (docs/deploy.md).
#   make dist           dist/llm_jwt_auth.wasm, its .sha256, and dist/oci: the filter as an OCI
#                       image layout Istio pulls with oci:// (tools/wasm_oci.py)
#   make dist-test      reads dist/ back with skopeo and umoci (tests/dist/test_dist.py)
#   make compose-test   docker-compose.yaml brought up for real with podman + podman-compose
#                       (tests/compose/run.sh; images built locally, no registry needed)

DIST         := dist
# The image tag: the crate's version (deploy/istio pulls oci://…/llm-jwt-auth:<version>).
DIST_VERSION ?= $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
# Timestamp inside the OCI image (tar entry, config): fixed, so a rebuild is byte-identical.
SOURCE_DATE_EPOCH ?= 0
export SOURCE_DATE_EPOCH

DIST_APT_PKGS    := skopeo umoci
COMPOSE_APT_PKGS := podman runc mmdebstrap curl

define apt_ensure
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

.PHONY: dist dist-test compose-test compose-clean

dist: build
	@mkdir -p $(DIST)
	install -m 0644 $(WASM) $(DIST)/llm_jwt_auth.wasm
	cd $(DIST) && sha256sum llm_jwt_auth.wasm > llm_jwt_auth.wasm.sha256
	python3 tools/wasm_oci.py --wasm $(DIST)/llm_jwt_auth.wasm --out $(DIST)/oci --tag $(DIST_VERSION)
	@cat $(DIST)/llm_jwt_auth.wasm.sha256

# Distribution's registry for the push/pull check: Debian's docker-registry binary, unpacked from its
# .deb into target/ (installing the package would also enable a registry service on :5000).
REGISTRY_BIN := target/dist-tools/usr/bin/docker-registry

$(REGISTRY_BIN):
	@mkdir -p target/dist-tools/deb
	cd target/dist-tools/deb && { apt-get download -qq docker-registry 2>/dev/null || \
	  { apt-get update -qq && apt-get download -qq docker-registry; }; }
	dpkg-deb -x $$(ls target/dist-tools/deb/docker-registry_*.deb | tail -n1) target/dist-tools
	@touch $@

dist-test: dist venv $(REGISTRY_BIN)
	$(call apt_ensure,$(DIST_APT_PKGS))
	LLM_JWT_AUTH_REGISTRY=$(REGISTRY_BIN) $(PYTHON) -m pytest tests/dist -q -ra

# The compose harness: its own venv with podman-compose (tests/compose/requirements.txt), Debian's
# podman + runc + mmdebstrap, images and containers under /var/tmp/llm-jwt-auth/containers.
COMPOSE_VENV := target/compose/venv

$(COMPOSE_VENV)/.installed: tests/compose/requirements.txt
	python3 -m venv $(COMPOSE_VENV)
	$(COMPOSE_VENV)/bin/pip install -q --disable-pip-version-check -r tests/compose/requirements.txt
	@touch $@

.PHONY: compose-deps
compose-deps:
	$(call apt_ensure,$(COMPOSE_APT_PKGS))

compose-test: compose-deps dist venv $(COMPOSE_VENV)/.installed
	COMPOSE_VENV=$(COMPOSE_VENV) COMPOSE_PYTHON=$(COMPOSE_VENV)/bin/python PYTHON=$(PYTHON) tests/compose/run.sh

# Drops the harness's images, containers and scratch files (the next compose-test rebuilds them).
compose-clean:
	-CONTAINERS_CONF=$(CURDIR)/tests/compose/containers.conf CONTAINERS_STORAGE_CONF=$(CURDIR)/tests/compose/storage.conf \
	  podman system reset --force
	rm -rf /var/tmp/llm-jwt-auth/containers target/compose
