"""`/v1/models` as the caller may use it, in a real Envoy with two workers: the upstream's list
is filtered to the models the caller may call (the team's models with LiteLLM's matching —
wildcards, access groups — and the scopes' models), read back by the official OpenAI SDK.
A caller no rule limits gets the upstream's answer byte for byte; an error answer passes
untouched.
"""

from __future__ import annotations

import requests
import pytest

import jwt_fixtures as jf
from test_openai_sdk import (  # noqa: F401 - fixtures are used by name
    SDK_MISSING, TIMEOUT, backend, idp, key, sdk, sdk_envoys,
)

WORKERS = 2
MODELS = ("gpt-4o-mini", "gpt-4o", "o3", "claude-3-5-sonnet", "text-embedding-3-small")
TEAMS = [
    {"team_id": "open", "models": []},
    {"team_id": "gpt-only", "models": ["gpt-4o*"]},
    {"team_id": "beta", "models": ["beta", "claude-3-5-sonnet"]},
    {"team_id": "scoped", "models": []},
]


@pytest.fixture(autouse=True)
def _sdk_installed() -> None:
    if SDK_MISSING:
        pytest.fail(SDK_MISSING, pytrace=False)


@pytest.fixture(scope="module")
def listing(backend):
    before = backend.models
    backend.models = MODELS
    yield backend
    backend.models = before


JWTAUTH = {"team_id_jwt_field": "team_id", "user_id_jwt_field": "sub"}


def scenario(sdk_envoys, idp, name: str, jwtauth: dict):
    return sdk_envoys.scenario(name, jwks=[idp], concurrency=WORKERS, plugin_config={
        "public_key_url": idp.jwks_url, "teams": TEAMS, "users": [{"user_id": "alice"}],
        "model_access_groups": {"beta": ["o3"]}, "general_settings": {"litellm_jwtauth": jwtauth}})


@pytest.fixture(scope="module")
def gateway(sdk_envoys, idp, listing):
    return scenario(sdk_envoys, idp, "model-list", JWTAUTH)


@pytest.fixture(scope="module")
def scoped_gateway(sdk_envoys, idp, listing):
    """Scopes gate models too: a token may call only what its scopes map to."""
    return scenario(sdk_envoys, idp, "model-list-scoped", {
        **JWTAUTH, "enforce_scope_based_access": True,
        "scope_mappings": [{"scope": "llm.chat", "models": ["gpt-4o-mini", "claude-3-5-sonnet"]}]})


@pytest.fixture(scope="module")
def sign(key):
    def mint(team: str, scope: str | None = None) -> str:
        extra = {"scope": scope} if scope else {}
        return key.sign(jf.claims("alice", team_id=team, **extra))

    return mint


def listed(gateway, token: str) -> list[str]:
    return [m.id for m in sdk(gateway, token).api.models.list()]


@pytest.mark.parametrize("team,models", [
    ("gpt-only", ["gpt-4o-mini", "gpt-4o"]),
    ("beta", ["o3", "claude-3-5-sonnet"]),
])
def test_the_list_shows_the_teams_models(gateway, sign, team, models):
    # Many times: Envoy spreads the connections over both workers.
    for _ in range(6):
        assert listed(gateway, sign(team)) == models


def test_the_scopes_models_and_the_teams_both_hold(scoped_gateway, sign):
    assert listed(scoped_gateway, sign("scoped", "llm.chat")) == ["gpt-4o-mini", "claude-3-5-sonnet"]
    assert listed(scoped_gateway, sign("gpt-only", "llm.chat")) == ["gpt-4o-mini"]
    assert listed(scoped_gateway, sign("open")) == [], "no scope: no model may be called"


def test_an_unlimited_caller_gets_the_upstreams_answer_byte_for_byte(gateway, listing, sign):
    straight = requests.get(listing.url + "/v1/models", timeout=TIMEOUT)
    through = requests.get(gateway.url + "/v1/models", timeout=TIMEOUT,
                           headers={"authorization": f"Bearer {sign('open')}"})
    assert through.status_code == 200
    assert through.content == straight.content
    assert through.headers.get("content-length") == straight.headers.get("content-length")


def test_an_error_answer_passes_untouched(gateway, listing, sign):
    # The fake backend has no /v1/model/info: its 404 comes back as it was sent.
    straight = requests.get(listing.url + "/v1/model/info", timeout=TIMEOUT)
    through = requests.get(gateway.url + "/v1/model/info", timeout=TIMEOUT,
                           headers={"authorization": f"Bearer {sign('gpt-only')}"})
    assert straight.status_code == through.status_code == 404
    assert through.content == straight.content
