# panva/oidc-provider (OpenID Certified) as a test IdP for the e2e suite: tests/oidc/ (Node 20+).
#   make oidc-deps   npm ci in tests/oidc/ from its committed package-lock.json (once; a stamp
#                    in node_modules/ remembers it until package.json or the lock file change)
#   make oidc-e2e    tests/e2e/test_oidc_provider.py alone, through the built filter in Envoy
#   make oidc-run    the provider on 127.0.0.1:$(OIDC_PORT) for manual use (prints its port line)
# The full e2e run needs oidc-deps too: `e2e: build venv oidc-deps` in the top-level Makefile.

OIDC_DIR   := tests/oidc
OIDC_STAMP := $(OIDC_DIR)/node_modules/.oidc-deps.stamp
OIDC_PORT  ?= 9091
NPM        ?= npm
NODE       ?= node

.PHONY: oidc-deps oidc-e2e oidc-run

oidc-deps: $(OIDC_STAMP)

$(OIDC_STAMP): $(OIDC_DIR)/package.json $(OIDC_DIR)/package-lock.json
	@command -v $(NPM) >/dev/null || { echo "oidc-deps: $(NPM) not found; tests/oidc needs Node 20+ and npm" >&2; exit 1; }
	cd $(OIDC_DIR) && $(NPM) ci --no-audit --no-fund
	@touch $@

oidc-e2e: build venv oidc-deps
	$(PYTHON) -m pytest tests/e2e/test_oidc_provider.py -q -ra

oidc-run: oidc-deps
	$(NODE) $(OIDC_DIR)/provider.mjs --port $(OIDC_PORT)
