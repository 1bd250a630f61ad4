# Tools the end-to-end suite uses besides Envoy and Python; this file makes the top-level `e2e`
# target depend on them (a prerequisite added here, the Makefile's rule unchanged).
#   curl, yq    Debian packages: the `make run` walkthrough prints curl commands, which
#               tests/e2e/test_demo_walkthrough.py runs; docs/migration.md's YAML → JSON command is
#               Debian's yq, the jq wrapper (tests/e2e/test_docs_yq.py runs it)
#   promtool    Prometheus's, unpacked from Debian's prometheus package into target/ (installing the
#               package would also start a Prometheus service): deploy/observability/'s alert rules
#               are checked and unit-tested with it (tests/e2e/test_observability.py)
#   make e2e-tools   installs / unpacks them (once; `make e2e` does it first)

E2E_APT_PKGS := curl yq
E2E_TOOLS    := target/observability-tools
PROMTOOL_BIN := $(E2E_TOOLS)/usr/bin/promtool

.PHONY: e2e-tools
e2e-tools: $(PROMTOOL_BIN)
	@missing=""; for p in $(E2E_APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(PROMTOOL_BIN):
	@mkdir -p $(E2E_TOOLS)/deb
	cd $(E2E_TOOLS)/deb && { apt-get download -qq prometheus 2>/dev/null || \
	  { apt-get update -qq && apt-get download -qq prometheus; }; }
	dpkg-deb --fsys-tarfile $$(ls $(E2E_TOOLS)/deb/prometheus_*.deb | tail -n1) | tar -x -C $(E2E_TOOLS) ./usr/bin/promtool
	rm -rf $(E2E_TOOLS)/deb
	@touch $@

e2e: e2e-tools
