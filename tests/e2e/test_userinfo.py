"""OIDC UserInfo for opaque access tokens (`oidc_userinfo_enabled`), against a real OpenID
provider (panva/oidc-provider, tests/oidc/).

The provider issues opaque access tokens from the authorization code flow (no resource
indicator: no JWT) and answers for them at its UserInfo endpoint; whether a token is good, and
whose it is, is the provider's word, never this project's. Envoy reaches the provider through a
counting proxy, so the tests see every UserInfo call the filter makes.

Covered: the identity from the provider's own answer (compared with what the provider tells the
test directly), one UserInfo call per token per Envoy process under a burst across two workers,
a token the provider does not know (LiteLLM's 401 text, nothing of the provider's body), the
provider down (a cached answer still serves within `oidc_userinfo_cache_ttl`; a new token is a
503, never a pass), JWTs on the same gateway still verified by signature.

Needs Node 20+ and `make oidc-deps` (npm ci in tests/oidc/).
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from checks import assert_auth_error, assert_error, assert_forwarded
from oidc_provider import DEFAULT_RESOURCE, Idps, client_id

REASON = "x-llm-jwt-auth-reason"
USERINFO_UNAVAILABLE = "Service Unavailable, the identity provider's UserInfo endpoint is temporarily unreachable."
REFUSED = "Authentication Error, Failed to fetch OIDC UserInfo: OIDC UserInfo endpoint returned status 401"
BURST = 24
PROVIDER_CONFIG = {"accounts": {"alice": {"email": "alice@corp.example", "team_id": "research"},
                                "bob": {"email": "bob@corp.example", "team_id": "support"}},
                   "token_claims": {client_id("ES256"): {"team_id": "m2m"}}}


def userinfo_config(idp, **more) -> dict:
    return {
        "public_key_url": idp.provider.discovery_url,
        "audience": DEFAULT_RESOURCE,
        "general_settings": {"enable_jwt_auth": True, "litellm_jwtauth": {
            "oidc_userinfo_enabled": True,
            "oidc_userinfo_endpoint": idp.provider.metadata["userinfo_endpoint"],
            "user_id_jwt_field": "sub", "user_email_jwt_field": "email", "team_id_jwt_field": "team_id",
            **more,
        }},
    }


def userinfo_path(idp) -> str:
    return urlsplit(idp.provider.metadata["userinfo_endpoint"]).path


def opaque_token(idp, login_hint: str = "alice") -> str:
    """An access token from the login flow: opaque, the provider's own format."""
    token = idp.provider.login(login_hint=login_hint, scope="openid email llm")["access_token"]
    assert token.count(".") != 2, f"expected an opaque token, got a JWT: {token}"
    return token


def provider_says(idp, token: str) -> dict:
    """What the provider itself answers for the token (the judge of the filter's identity)."""
    resp = requests.get(idp.provider.metadata["userinfo_endpoint"], headers={"authorization": f"Bearer {token}"},
                        timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def identity(reply) -> dict:
    assert reply.status == 200, f"expected 200 from the upstream, got {reply!r}"
    echo = assert_forwarded(reply, sub=None, role="internal_user")
    return {k: v for k, v in echo["headers"].items() if k.startswith("x-litellm-")}


def expected_identity(claims: dict) -> dict:
    return {"x-litellm-user-id": claims["sub"], "x-litellm-user-email": claims["email"],
            "x-litellm-team-id": claims["team_id"], "x-litellm-user-role": "internal_user"}


@pytest.fixture(scope="module")
def module_oidc(tmp_path_factory):
    idps = Idps(tmp_path_factory.mktemp("userinfo-module"))
    yield idps
    idps.close()


@pytest.fixture(scope="module")
def idp(module_oidc):
    return module_oidc.new("userinfo", config=PROVIDER_CONFIG)


@pytest.fixture(scope="module")
def gateway(module_envoys, idp):
    """Two workers, so that a burst is spread over two root contexts sharing one process."""
    return module_envoys.scenario("userinfo", clusters=idp.clusters, plugin_config=userinfo_config(idp),
                                  concurrency=2)


def test_an_opaque_token_is_whoever_the_provider_says_it_is(gateway, idp):
    for who in ("alice", "bob"):
        token = opaque_token(idp, who)
        claims = provider_says(idp, token)
        assert claims["sub"] == who, claims
        reply = gateway.request(token)
        assert identity(reply) == expected_identity(claims)
        assert reply.json()["echo"]["headers"]["authorization"] == f"Bearer {token}", "the credential goes on intact"


def test_a_burst_of_one_new_token_asks_the_provider_once_per_process(gateway, idp):
    token = opaque_token(idp)
    claims = provider_says(idp, token)
    before = idp.proxy.count(userinfo_path(idp))
    gateway.envoy  # started before the burst
    with ThreadPoolExecutor(BURST) as pool:
        replies = list(pool.map(lambda _: gateway.request(token), range(BURST)))
    for reply in replies:
        assert identity(reply) == expected_identity(claims)
    assert idp.proxy.count(userinfo_path(idp)) - before == 1, idp.proxy.requests()[-BURST:]
    assert identity(gateway.request(token)) == expected_identity(claims)
    assert idp.proxy.count(userinfo_path(idp)) - before == 1, "later requests are answered from the cache"


def test_a_token_the_provider_does_not_know_is_litellm_s_401(gateway, idp):
    reply = gateway.request(secrets.token_urlsafe(32))
    error = assert_auth_error(reply, REFUSED)
    assert reply.headers.get(REASON) == "userinfo_refused", reply
    assert "invalid_token" not in error["message"] and "error_description" not in reply.text, \
        "the provider's own answer stays out of the reply"


def test_api_keys_never_reach_the_provider(gateway, idp):
    before = idp.proxy.count(userinfo_path(idp))
    reply = gateway.request("sk-1234567890abcdef")
    assert_auth_error(reply)
    assert reply.headers.get(REASON) == "malformed_token", reply
    assert idp.proxy.count(userinfo_path(idp)) == before, "a LiteLLM or provider key stays with its owner"


def test_jwts_still_verify_by_signature_on_the_same_gateway(gateway, idp):
    before = idp.proxy.count(userinfo_path(idp))
    token = idp.provider.client_credentials(alg="ES256")
    assert token.count(".") == 2
    echo = assert_forwarded(gateway.request(token), sub=None, role="internal_user")
    assert (echo["headers"]["x-litellm-user-id"], echo["headers"]["x-litellm-team-id"]) == (client_id("ES256"), "m2m")
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert gateway.request(tampered).status == 401
    assert idp.proxy.count(userinfo_path(idp)) == before, "a JWT never goes to the UserInfo endpoint"


def test_provider_down_serves_cached_answers_and_refuses_new_tokens_with_503(envoys, tmp_path_factory):
    idps = Idps(tmp_path_factory.mktemp("userinfo-down"))
    try:
        idp = idps.new("userinfo-down", config=PROVIDER_CONFIG)
        proxy = envoys.scenario("userinfo-down", clusters=idp.clusters,
                                plugin_config=userinfo_config(idp, oidc_userinfo_cache_ttl=120))
        known, unseen = opaque_token(idp), opaque_token(idp, "bob")
        claims = provider_says(idp, known)
        assert identity(proxy.request(known)) == expected_identity(claims)
        idp.down()
        assert identity(proxy.request(known)) == expected_identity(claims), "within the cache TTL"
        reply = proxy.request(unseen)
        assert_error(reply, 503, "auth_provider_unavailable", prefix=USERINFO_UNAVAILABLE)
        assert reply.headers.get(REASON) == "userinfo_unavailable", reply
        assert reply.headers.get("retry-after"), reply
        for internal in (idp.provider.authority, userinfo_path(idp), "502"):
            assert internal not in reply.text, f"{internal!r} reaches the client: {reply.text}"
        assert "UserInfo" in proxy.envoy.log_text(), "the cause is in Envoy's log"
    finally:
        idps.close()
