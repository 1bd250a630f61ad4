# The official OpenAI Python SDK as the client of an e2e module (tests/e2e/test_openai_sdk.py,
# against the fake backend tests/servers/fake_openai.py).
#   make sdk-deps   pip-installs tests/e2e/requirements-sdk.txt into .venv, once: a stamp in .venv
#                   remembers it until the requirements file changes (or the venv is rebuilt)
#   make sdk-e2e    tests/e2e/test_openai_sdk.py alone, through the built filter in Envoy
# The full e2e run needs it too: `e2e: build venv oidc-deps sdk-deps` in the top-level Makefile.

SDK_REQUIREMENTS := tests/e2e/requirements-sdk.txt
SDK_STAMP        := $(VENV)/.sdk-installed

.PHONY: sdk-deps sdk-e2e

sdk-deps: $(SDK_STAMP)

$(SDK_STAMP): $(VENV)/.installed $(SDK_REQUIREMENTS)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r $(SDK_REQUIREMENTS)
	@touch $@

sdk-e2e: build venv sdk-deps
	$(PYTHON) -m pytest tests/e2e/test_openai_sdk.py -q -ra
