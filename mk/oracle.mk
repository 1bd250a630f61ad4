# LiteLLM as an independent oracle (tests/oracle/) and the differential run against the filter
# (tests/diff/). See tests/diff/README.md.
#   make oracle-venv            .venv-oracle from tests/oracle/requirements.txt (~520 MB, once)
#   make oracle-test            the oracle's self-check (LiteLLM's own asserted behaviours)
#   make diff [N=300 SEED=1]    N generated cases through LiteLLM and through the filter in Envoy;
#                               summary printed and written to tests/diff/last-run.md, every case
#                               with both answers to tests/diff/last-run.jsonl (difftool.py --replay)
#   make diff-subset            the fixed-seed pytest subset: fails on any disagreement that
#                               tests/diff/known_differences.json does not list
# The filter is $(DIFF_WASM): LLM_JWT_AUTH_WASM when set, else the release build (run `make build`).

ORACLE_VENV   := .venv-oracle
ORACLE_PYTHON := $(ORACLE_VENV)/bin/python
N    ?= 300
SEED ?= 1
DIFF_WASM ?= $(or $(LLM_JWT_AUTH_WASM),$(CURDIR)/$(WASM))

.PHONY: oracle-venv oracle-test diff diff-subset diff-venv

$(ORACLE_VENV)/.installed: tests/oracle/requirements.txt
	python3 -m venv $(ORACLE_VENV)
	$(ORACLE_VENV)/bin/pip install -q --disable-pip-version-check -r tests/oracle/requirements.txt
	@touch $@

oracle-venv: $(ORACLE_VENV)/.installed

oracle-test: oracle-venv
	PYTHONHASHSEED=0 LITELLM_LOCAL_MODEL_COST_MAP=True $(ORACLE_PYTHON) -m pytest tests/oracle -q -p no:cacheprovider

# The diff runs in the project venv (Envoy, PyJWT, requests, pytest: tests/requirements.txt) plus
# whatever tests/diff/requirements.txt adds; installed here, not by editing tests/requirements.txt.
$(VENV)/.diff-installed: $(VENV)/.installed tests/diff/requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/diff/requirements.txt
	@touch $@

diff-venv: $(VENV)/.diff-installed oracle-venv

diff: diff-venv $(if $(LLM_JWT_AUTH_WASM),,build)
	@test -f "$(DIFF_WASM)" || { echo "no filter at $(DIFF_WASM): run make build or set LLM_JWT_AUTH_WASM"; exit 1; }
	LLM_JWT_AUTH_WASM=$(DIFF_WASM) ORACLE_PYTHON=$(CURDIR)/$(ORACLE_PYTHON) \
	  $(PYTHON) tests/diff/difftool.py --n $(N) --seed $(SEED) --out tests/diff/last-run.md \
	  --json tests/diff/last-run.jsonl $(DIFF_ARGS)

diff-subset: diff-venv $(if $(LLM_JWT_AUTH_WASM),,build)
	@test -f "$(DIFF_WASM)" || { echo "no filter at $(DIFF_WASM): run make build or set LLM_JWT_AUTH_WASM"; exit 1; }
	LLM_JWT_AUTH_WASM=$(DIFF_WASM) ORACLE_PYTHON=$(CURDIR)/$(ORACLE_PYTHON) \
	  $(PYTHON) -m pytest tests/diff -q -ra -p no:cacheprovider
