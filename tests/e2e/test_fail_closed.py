"""Fail closed in every corner (issue 11), through Envoy: the rules LiteLLM applies on paths
that used to return early, tokens that never expire, what unauthenticated and refused clients
are told (no internals, honest challenges, bounded bodies), and credentials sent twice.

Token-cache and key-retirement races are in test_key_retirement.py; configurations that would
check less than written in test_config_strictness.py.
"""

from __future__ import annotations

import re
import time

import pytest

import jwt_fixtures as jf
from checks import (
    JWKS_MISCONFIGURED, JWKS_UNAVAILABLE, assert_auth_error, assert_denied, assert_error, assert_forbidden,
    assert_forwarded,
)

CHAT = "/v1/chat/completions"
REASON = "x-llm-jwt-auth-reason"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("fail-closed", "ES256")


@pytest.fixture(scope="module")
def idp(module_idps, key):
    return module_idps.new([key])


@pytest.fixture(scope="module")
def sign(key):
    def mint(sub: str | None = "alice", **claims):
        return key.sign(jf.claims(sub, **claims))

    return mint


def post(proxy, token: str, model: str | None = None, path: str = CHAT):
    body = b"{}" if model is None else ('{"model": "%s", "messages": []}' % model).encode()
    return proxy.request(token, method="POST", path=path, data=body, headers=JSON)


# -- 3. LiteLLM's rules on paths that returned early ----------------------------------------

TEAMS = [
    {"team_id": "t-blocked", "blocked": True},
    {"team_id": "t-mini", "models": ["gpt-4o-mini"]},
    {"team_id": "t-broke", "max_budget": 10, "spend": 10},
]
USERS = [{"user_id": "root", "max_budget": 5, "spend": 7.5}]


@pytest.fixture(scope="module")
def object_ids(module_envoys, idp):
    return module_envoys.scenario("fc-object-id", jwks=[idp], plugin_config={
        "public_key_url": idp.jwks_url, "teams": TEAMS, "users": USERS,
        "general_settings": {"litellm_jwtauth": {
            "roles_jwt_field": "roles", "object_id_jwt_field": "oid", "user_id_jwt_field": "uid",
            "role_mappings": [{"role": "svc", "internal_role": "team"}]}}})


def test_an_object_id_team_is_checked_like_any_team(object_ids, sign):
    svc = lambda oid: sign("app", roles=["svc"], oid=oid)  # noqa: E731
    assert_denied(post(object_ids, svc("t-blocked"), "gpt-4o-mini"),
                  "Authentication Error, Team=t-blocked is blocked. Update via `/team/unblock` if you're an admin.")
    assert_denied(post(object_ids, svc("t-ghost"), "gpt-4o-mini"),
                  "Authentication Error, Team doesn't exist in db. Team=t-ghost. Create team via `/team/new` call.")
    assert_error(post(object_ids, svc("t-mini"), "o1-pro"), 401, "team_model_access_denied", param="model",
                 token_accepted=True, contains=["This team can only access models=['gpt-4o-mini']"])
    assert_error(post(object_ids, svc("t-broke"), "gpt-4o-mini"), 400, "budget_exceeded",
                 message="Budget has been exceeded! Team=t-broke Current cost: 10.0, Max budget: 10.0")
    echo = assert_forwarded(post(object_ids, svc("t-mini"), "gpt-4o-mini"), sub=None)
    assert echo["headers"]["x-litellm-team-id"] == "t-mini"


def test_an_admins_own_user_record_budget_holds(object_ids, sign):
    # Where LiteLLM checks budgets: /health is one of its budgeted side-effect routes (and an
    # info route admins may call); management routes such as /key/generate spend nothing.
    root = sign("root", uid="root", scope="litellm_proxy_admin")
    reply = object_ids.request(root, path="/health")
    assert_error(reply, 400, "budget_exceeded", message="ExceededBudget: User=root over budget. Spend=7.5, Budget=5.0")
    assert_forwarded(object_ids.request(root, path="/key/generate"), sub="root", role="proxy_admin")
    # An admin without a user record is admitted, as in LiteLLM.
    assert_forwarded(object_ids.request(sign("ops", uid="ops", scope="litellm_proxy_admin"), path="/health"),
                     sub="ops", role="proxy_admin")


def test_a_configured_user_id_field_never_falls_back_to_sub(object_ids, sign):
    echo = assert_forwarded(post(object_ids, sign("someone-elses-id", roles=["svc"], oid="t-mini"), "gpt-4o-mini"),
                            sub=None)
    assert "x-litellm-user-id" not in echo["headers"], echo["headers"]


def test_an_allowed_email_domain_refuses_a_token_without_an_email(module_envoys, idp, sign):
    proxy = module_envoys.scenario("fc-email", jwks=[idp], plugin_config={
        "public_key_url": idp.jwks_url,
        "general_settings": {"litellm_jwtauth": {"user_email_jwt_field": "email",
                                                 "user_allowed_email_domain": "example.com"}}})
    assert_forbidden(proxy.request(sign("no-email")),
                     "Email domain not allowed. User email: None. Allowed domain: example.com", param="user_email")
    assert_forwarded(proxy.request(sign("a", email="ann@example.com")), sub="ann@example.com")


def test_non_admins_may_not_apply_guardrails(object_ids, sign):
    # In LiteLLM's `llm_api_routes` group, yet its route check refuses non-admins there.
    reply = object_ids.request(sign("app", roles=["svc"], oid="t-mini"), method="POST",
                               path="/guardrails/apply_guardrail", data=b"{}", headers=JSON)
    assert_denied(reply, prefix="Authentication Error, Only proxy admin can be used to generate")


def test_the_teams_organization_budget_holds(module_envoys, idp, sign):
    proxy = module_envoys.scenario("fc-org-budget", jwks=[idp], plugin_config={
        "public_key_url": idp.jwks_url,
        "teams": [{"team_id": "t-globex", "organization_id": "globex"}, {"team_id": "t-initech", "organization_id": "initech"}],
        "organizations": [{"organization_id": "globex", "litellm_budget_table": {"max_budget": 50}, "spend": 50},
                          {"organization_id": "initech", "max_budget": 50, "spend": 10}],
        "general_settings": {"litellm_jwtauth": {"team_id_jwt_field": "team"}}})
    assert_error(post(proxy, sign("alice", team="t-globex"), "gpt-4o"), 400, "budget_exceeded",
                 message="Budget has been exceeded! Organization=globex Current cost: 50.0, Max budget: 50.0")
    echo = assert_forwarded(post(proxy, sign("alice", team="t-initech"), "gpt-4o"), sub="alice")
    assert echo["headers"]["x-litellm-org-id"] == "initech", "the team's organization is the org"


# -- 4. Tokens that never expire or live too long -------------------------------------------


@pytest.fixture(scope="module")
def lifetimes(module_envoys, idp):
    def make(name, **top):
        return module_envoys.scenario(name, jwks=[idp], plugin_config={"public_key_url": idp.jwks_url, **top})
    return {"default": make("fc-exp-default"), "pyjwt": make("fc-exp-optional", require_exp=False),
            "bounded": make("fc-lifetime", max_token_lifetime=3600),
            "bounded-pyjwt": make("fc-lifetime-exp-optional", max_token_lifetime=3600, require_exp=False)}


def test_a_token_without_exp_is_refused_unless_exp_is_optional(lifetimes, sign):
    forever = sign("forever", exp_in=None)
    reply = lifetimes["default"].request(forever)
    assert_auth_error(reply, 'Authentication Error, Validation fails: Token is missing the "exp" claim')
    assert reply.headers.get(REASON) == "missing_claim"
    assert_forwarded(lifetimes["pyjwt"].request(forever), sub="forever")


def test_max_token_lifetime_refuses_long_lived_tokens(lifetimes, sign):
    proxy = lifetimes["bounded"]
    assert_forwarded(proxy.request(sign("short", exp_in=3600)), sub="short")
    for token in (sign("long", exp_in=7200), sign("old-long", iat_in=-7000, exp_in=600), sign("no-iat", iat_in=None, exp_in=4000)):
        reply = proxy.request(token)
        assert_auth_error(reply, "Authentication Error, Validation fails: The token is valid for longer than the "
                                 "allowed maximum of 3600 seconds")
        assert reply.headers.get(REASON) == "lifetime_too_long"


def test_max_token_lifetime_requires_exp_even_where_exp_is_optional(lifetimes, sign):
    # require_exp: false with a maximum lifetime: a token that never expires exceeds any maximum.
    proxy = lifetimes["bounded-pyjwt"]
    reply = proxy.request(sign("forever", exp_in=None))
    assert_auth_error(reply, 'Authentication Error, Validation fails: Token is missing the "exp" claim')
    assert reply.headers.get(REASON) == "missing_claim"
    assert_forwarded(proxy.request(sign("short", exp_in=600)), sub="short")


# -- 5. What a client is told when keys cannot be had ---------------------------------------

INTERNALS = ("login.example.com", "cluster", "public_key_url", "https://", "BadArgument", "127.0.0.1")


def test_a_missing_cluster_is_found_at_start_and_the_client_learns_nothing_internal(envoys, sign):
    # The README's "Using it in your Envoy" snippet without a cluster for the JWKS host.
    proxy = envoys.scenario("fc-no-cluster", plugin_config={
        "public_key_url": "https://login.example.com/.well-known/jwks.json", "audience": "api://llm-gateway"})
    deadline = time.monotonic() + 5
    while "critical" not in proxy.envoy.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = proxy.envoy.log_text()
    critical = [line for line in log.splitlines() if "[critical]" in line and "llm_jwt_auth" in line]
    assert any('"login.example.com:443"' in line and "public_key_url" in line for line in critical), \
        f"the prefetch must report the missing cluster as critical, naming it and the field:\n{log[-3000:]}"
    for _ in range(3):
        reply = proxy.request(sign("x"))
        assert_error(reply, 503, "auth_provider_unavailable", message=JWKS_MISCONFIGURED)
        assert reply.headers.get("retry-after") == "60", reply
        assert "temporarily" not in reply.text
        for internal in INTERNALS:
            assert internal not in reply.text and internal not in str(dict(reply.headers)), (internal, reply)
    assert len(re.findall(r"\[critical\].*login\.example\.com:443", proxy.envoy.log_text())) <= 3, \
        "logged once per worker, not once per retry"


def test_an_unreachable_idp_is_temporary_and_named_only_in_the_log(envoys, idps, key, sign):
    idp = idps.new([key])
    idp.fail_with(500)
    proxy = envoys.scenario("fc-idp-500", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url})
    reply = proxy.request(sign("x"))
    assert_error(reply, 503, "auth_provider_unavailable", message=JWKS_UNAVAILABLE)
    assert reply.headers.get("retry-after") == "1", reply
    for internal in INTERNALS + ("500", idp.jwks_url):
        assert internal not in reply.text, (internal, reply.text)
    assert f"JWKS endpoint {idp.jwks_url} returned status 500" in proxy.envoy.log_text()


# -- 6 and 7. Honest challenges, bounded bodies ---------------------------------------------


@pytest.fixture(scope="module")
def teams(module_envoys, idp):
    return module_envoys.scenario("fc-challenges", jwks=[idp], plugin_config={
        "public_key_url": idp.jwks_url, "teams": [{"team_id": "t-mini", "models": ["gpt-4o-mini"]}],
        "general_settings": {"litellm_jwtauth": {"team_id_jwt_field": "team"}}})


def test_authorization_refusals_do_not_call_a_valid_token_invalid(teams, sign):
    cases = [
        teams.request(sign("root", team="t-mini", scope="litellm_proxy_admin"), method="POST", path=CHAT, data=b"{}",
                      headers=JSON),                      # admin on an LLM route
        post(teams, sign("alice", team="t-mini"), "o1"),  # team model
        teams.request(sign("alice")),                    # no team id
    ]
    for reply in cases:
        assert reply.status == 401, reply
        assert reply.headers.get("www-authenticate") == "Bearer", reply
    expired = teams.request(sign("alice", team="t-mini", exp_in=-60, iat_in=-120))
    assert expired.headers["www-authenticate"].startswith('Bearer error="invalid_token"'), expired


def test_an_admin_on_an_llm_route_gets_a_short_answer_naming_route_groups(teams, sign):
    reply = teams.request(sign("root", team="t-mini", scope="litellm_proxy_admin"), method="POST", path=CHAT,
                          data=b"{}", headers=JSON)
    error = assert_denied(reply)
    assert error["message"].endswith(
        "Allowed Routes=['management_routes', 'spend_tracking_routes', 'global_spend_tracking_routes', 'info_routes']")
    assert len(reply.response.content) < 600, len(reply.response.content)


def test_a_refusal_listing_many_models_is_bounded_and_its_header_well_formed(module_envoys, idp, sign):
    models = [f"model-{i:03d}" for i in range(400)]
    proxy = module_envoys.scenario("fc-many-models", jwks=[idp], plugin_config={
        "public_key_url": idp.jwks_url, "teams": [{"team_id": "big", "models": models}],
        "general_settings": {"litellm_jwtauth": {"team_id_jwt_field": "team"}}})
    reply = post(proxy, sign("alice", team="big"), "o1")
    error = assert_error(reply, 401, "team_model_access_denied", param="model", token_accepted=True)
    assert len(error["message"]) <= 520 and "'model-019', '…']" in error["message"], error["message"]
    bad = proxy.request("e30." + "A" * 5000 + ".sig")
    challenge = bad.headers["www-authenticate"]
    assert len(challenge) < 280 and re.fullmatch(r'Bearer error="invalid_token", error_description="[ -!#-\[\]-~]*"',
                                                  challenge), challenge


# -- 10. A missing iss is missing, not wrong -------------------------------------------------


def test_a_missing_iss_says_so(module_envoys, idp, sign):
    proxy = module_envoys.scenario("fc-iss", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url,
                                                                        "issuer": "https://idp.example"})
    reply = proxy.request(sign("alice"))
    assert_auth_error(reply, 'Authentication Error, Validation fails: Token is missing the "iss" claim')
    assert_auth_error(proxy.request(sign("alice", iss="https://other")), "Authentication Error, Validation fails: Invalid issuer")
    assert_forwarded(proxy.request(sign("alice", iss="https://idp.example")), sub="alice")


# -- 11. One credential, any case of Bearer --------------------------------------------------


def test_two_authorization_headers_are_refused_as_two_credentials(teams, sign):
    token = sign("alice", team="t-mini")
    reply = teams.request_raw([("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")])
    assert_auth_error(reply, prefix="Authentication Error, Invalid JWT: ", contains=["send exactly one credential"])


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(teams, sign, scheme):
    reply = teams.request(authorization=f"{scheme} {sign('alice', team='t-mini')}")
    assert_forwarded(reply, sub="alice")


# -- 9. clusters routes the record source too ------------------------------------------------


def test_clusters_may_name_the_record_sources_cluster(envoys, idp, sources, sign):
    src = sources.new(master_key="sk-fc")
    src.put_team("t-src", models=["gpt-4o"])
    proxy = envoys.scenario("fc-record-cluster", jwks=[idp], clusters={"litellm-records": (src.host, src.port)},
                            plugin_config={
                                "public_key_url": idp.jwks_url,
                                "clusters": {src.authority: "litellm-records"},
                                "record_source": {"type": "litellm", "url": src.url, "master_key": "sk-fc"},
                                "general_settings": {"litellm_jwtauth": {"team_id_jwt_field": "team"}}})
    echo = assert_forwarded(post(proxy, sign("alice", team="t-src"), "gpt-4o"), sub="alice")
    assert echo["headers"]["x-litellm-team-id"] == "t-src"
    assert src.count("/team/info?team_id=t-src") == 1
