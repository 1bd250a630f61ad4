"""Self-check of the LiteLLM oracle: behaviours LiteLLM's own test suite asserts, asked through
`litellm_oracle.decide()`. If one fails, the oracle is wiring LiteLLM up wrongly (or the pinned
LiteLLM changed), and the diff against the filter cannot be trusted.

Run with the oracle's venv (`make oracle-test`, or
`PYTHONHASHSEED=0 .venv-oracle/bin/python -m pytest tests/oracle`).

The LiteLLM tests each check mirrors are named in its docstring (BerriAI/litellm,
tests/proxy_unit_tests/test_jwt.py and tests/test_litellm/proxy/auth/test_handle_jwt.py).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import litellm_oracle as oracle  # noqa: E402

NOW = int(time.time())


def case(claims=None, *, jwtauth=None, route="/v1/chat/completions", method="POST", model=None,
         records=None, **general):
    settings = dict(general)
    if jwtauth is not None:
        settings["litellm_jwtauth"] = jwtauth
    return {"general_settings": settings, "claims": {"iat": NOW, "exp": NOW + 600, **(claims or {})},
            "route": route, "method": method, "model": model, "records": records or {}}


def test_hash_seed_is_fixed():
    # LiteLLM prints Python sets in some messages; their order depends on the hash seed.
    assert os.environ.get("PYTHONHASHSEED") == "0", "run the oracle with PYTHONHASHSEED=0"


def test_team_token_needs_an_existing_team():
    """test_jwt.py::test_team_token_output: a team token whose team is not in the DB fails on
    /chat/completions; once the team exists the call passes and carries the team's limits."""
    claims = {"sub": "user123", "scope": "litellm_team", "client_id": "team123"}
    jwtauth = {"team_id_jwt_field": "client_id"}
    missing = oracle.decide(case(claims, jwtauth=jwtauth, route="/chat/completions"))
    assert not missing["allow"]
    assert 400 <= missing["status"] < 500
    assert "Team doesn't exist in db. Team=team123" in missing["message"]

    team = {"team_id": "team123", "tpm_limit": 100, "rpm_limit": 99, "models": ["gpt-3.5-turbo", "gpt-4"]}
    found = oracle.decide(case(claims, jwtauth=jwtauth, route="/chat/completions", records={"teams": [team]}))
    assert found["allow"], found
    assert found["team_id"] == "team123"
    assert found["extra"]["team_tpm_limit"] == 100
    assert found["extra"]["team_rpm_limit"] == 99
    assert found["extra"]["team_models"] == ["gpt-3.5-turbo", "gpt-4"]


@pytest.mark.parametrize("admin_allowed_routes", [None, ["ui_routes"]])
def test_admin_scope_reaches_its_allowed_routes(admin_allowed_routes):
    """test_jwt.py::test_allowed_routes_admin: a `litellm_proxy_admin` token passes
    user_api_key_auth on routes of admin_allowed_routes (default, and ["ui_routes"])."""
    jwtauth = {"team_id_jwt_field": "client_id"}
    if admin_allowed_routes:
        jwtauth["admin_allowed_routes"] = admin_allowed_routes
    routes = ["/key/info"] if admin_allowed_routes else ["/key/generate", "/team/new", "/user/new",
                                                         "/spend/logs", "/global/spend/logs", "/key/info"]
    for route in routes:
        answer = oracle.decide(case({"sub": "user123", "scope": "litellm_proxy_admin"}, jwtauth=jwtauth,
                                    route=route))
        assert answer["allow"], (route, answer)
        assert answer["user_role"] == "proxy_admin"


def test_admin_scope_outside_its_allowed_routes():
    """Default admin_allowed_routes has no LLM routes (LiteLLM docs; test_jwt.py's admin tests
    only walk the allowed groups)."""
    answer = oracle.decide(case({"sub": "root", "scope": "litellm_proxy_admin"}, model="gpt-4o"))
    assert answer["status"] == 401
    assert answer["message"].startswith(
        "Authentication Error, Admin not allowed to access this route. Route=/v1/chat/completions")


@pytest.mark.parametrize("email, allowed", [("ishaan@berri.ai", True), ("krrish@tassle.xyz", False)])
def test_email_domain(email, allowed):
    """test_jwt.py::test_allow_access_by_email: user_allowed_email_domain admits its domain only."""
    jwtauth = {"user_email_jwt_field": "email", "user_allowed_email_domain": "berri.ai", "user_id_upsert": True}
    answer = oracle.decide(case({"sub": "user123", "scope": "litellm_team", "email": email}, jwtauth=jwtauth,
                                route="/chat/completions"))
    assert answer["allow"] is allowed, answer
    if not allowed:
        assert answer["status"] == 403
        assert answer["message"] == f"Email domain not allowed. User email: {email}. Allowed domain: berri.ai"
    else:
        assert {"kind": "user", "user_id": email, "user_email": email} in answer["upserts"]


def test_end_user_id_from_claim():
    """test_jwt.py::test_end_user_jwt_auth: end_user_id_jwt_field=sub → the auth object's end_user_id."""
    answer = oracle.decide(case({"sub": "81b3e52a-67a6-4efb-9645-70527e101479"},
                                jwtauth={"end_user_id_jwt_field": "sub"}, route="/chat/completions",
                                model="openai/gpt-3.5-turbo"))
    assert answer["allow"], answer
    assert answer["end_user_id"] == "81b3e52a-67a6-4efb-9645-70527e101479"


def test_rbac_team_role_route_gate():
    """test_jwt.py::test_can_rbac_role_call_route: a team role limited to /v1/chat/completions is
    refused /v1/embeddings (403)."""
    settings = {"role_permissions": [{"role": "team", "routes": ["/v1/chat/completions"]}]}
    jwtauth = {"enforce_rbac": True, "team_id_jwt_field": "team"}
    claims = {"sub": "svc", "team": "t1"}
    records = {"teams": [{"team_id": "t1"}]}
    refused = oracle.decide(case(claims, jwtauth=jwtauth, route="/v1/embeddings", records=records, **settings))
    assert refused["status"] == 403
    assert refused["message"].startswith("Role=team not allowed to call route=/v1/embeddings")
    allowed = oracle.decide(case(claims, jwtauth=jwtauth, route="/v1/chat/completions", records=records,
                                 **settings))
    assert allowed["allow"], allowed


@pytest.mark.parametrize("model, allowed", [("gpt-3.5-turbo-testing", True), ("gpt-4o", False)])
def test_scope_based_access(model, allowed):
    """test_jwt.py::test_check_scope_based_access: scope → model mappings."""
    jwtauth = {"enforce_scope_based_access": True, "scope_mappings": [
        {"scope": "litellm.api.consumer", "models": ["anthropic-claude"], "routes": ["/v1/chat/completions"]},
        {"scope": "litellm.api.gpt_3_5_turbo", "models": ["gpt-3.5-turbo-testing"]}]}
    scopes = "profile groups-scope email litellm.api.gpt_3_5_turbo litellm.api.consumer"
    answer = oracle.decide(case({"sub": "u", "scope": scopes}, jwtauth=jwtauth, model=model))
    assert answer["allow"] is allowed, answer
    if not allowed:
        assert answer["status"] == 403


def test_blocked_team_is_refused_with_its_text():
    """auth_checks.common_checks' blocked-team rule (tests/test_litellm/proxy/auth/test_auth_checks.py)."""
    answer = oracle.decide(case({"sub": "u", "team": "t1"}, jwtauth={"team_id_jwt_field": "team"},
                                model="gpt-4o", records={"teams": [{"team_id": "t1", "blocked": True}]}))
    assert answer["status"] == 401
    assert answer["message"] == "Authentication Error, Team=t1 is blocked. Update via `/team/unblock` if you're an admin."


def test_db_user_with_proxy_admin_role_is_admin():
    """test_handle_jwt.py::test_auth_builder_proxy_admin_user_role: a DB user whose user_role is
    proxy_admin makes the caller a proxy admin."""
    answer = oracle.decide(case({"sub": "test_user_1"}, jwtauth={"user_id_jwt_field": "sub"}, model="gpt-4",
                                records={"users": [{"user_id": "test_user_1", "user_role": "proxy_admin"}]}))
    assert answer["allow"], answer
    assert answer["user_role"] == "proxy_admin"
    assert answer["user_id"] == "test_user_1"


def test_user_is_added_to_its_team():
    """test_handle_jwt.py::test_map_user_to_teams_add_new_user: the JWT user is added to the
    selected team as a `user` member (recorded as an upsert, not sent anywhere)."""
    answer = oracle.decide(case({"sub": "test_user_1", "team": "test_team_1"},
                                jwtauth={"user_id_jwt_field": "sub", "team_id_jwt_field": "team"},
                                model="gpt-4o", records={"teams": [{"team_id": "test_team_1"}],
                                                         "users": [{"user_id": "test_user_1"}]}))
    assert answer["allow"], answer
    assert {"kind": "team_member", "team_id": "test_team_1", "user_id": "test_user_1", "role": "user"} \
        in answer["upserts"]


def test_cases_do_not_leak_into_each_other():
    """Fresh caches per case: a blocked team in one case is not seen in the next."""
    blocked = case({"sub": "u", "team": "t1"}, jwtauth={"team_id_jwt_field": "team"},
                   records={"teams": [{"team_id": "t1", "blocked": True}]})
    open_team = case({"sub": "u", "team": "t1"}, jwtauth={"team_id_jwt_field": "team"},
                     records={"teams": [{"team_id": "t1"}]})
    assert oracle.decide(blocked)["status"] == 401
    assert oracle.decide(open_team)["allow"]
    assert oracle.decide(blocked)["status"] == 401


def test_answers_do_not_depend_on_case_order():
    """Generated cases (tests/diff/cases.py) answered in order and in reverse: any difference is
    state one case left for another (caches, spend counters, budget reservations)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "diff"))
    import cases as casegen

    generated = [c for cfg in casegen.configs(11, 80, now=NOW) for c in cfg.cases()]
    forward = [oracle.decide(c) for c in generated]
    backward = [oracle.decide(c) for c in reversed(generated)][::-1]
    differing = [(c, f, b) for c, f, b in zip(generated, forward, backward) if f != b]
    assert not differing, f"{len(differing)} answers depend on order, e.g. {differing[0]}"


def test_spend_of_one_case_is_not_seen_by_the_next():
    """LiteLLM seeds its in-memory spend counter for a team from the DB row on first read; the
    next case's team of the same id (spend 0) must not see the previous case's spend."""
    def team_case(team):
        return case({"sub": "u", "team": "t2"}, jwtauth={"team_id_jwt_field": "team"}, records={"teams": [team]})

    over = oracle.decide(team_case({"team_id": "t2", "max_budget": 100.0, "spend": 101.0}))
    assert over["status"] == 422 and "Current cost: 101.0" in over["message"], over
    fresh = oracle.decide(team_case({"team_id": "t2", "max_budget": 50.0, "spend": 0.0}))
    assert fresh["allow"], fresh


def test_budget_check_counts_the_requests_own_reservation():
    """LiteLLM 1.110.2 reserves the request's estimated worst-case cost before the team budget
    check: a team exactly at its budget is refused for a priced model (the message's 'Current
    cost' includes the reservation) and admitted without a model (`spend > max_budget`)."""
    team = {"team_id": "t4", "max_budget": 10.0, "spend": 10.0}
    priced = oracle.decide(case({"sub": "u", "team": "t4"}, jwtauth={"team_id_jwt_field": "team"},
                                model="gpt-4o", records={"teams": [team]}))
    assert priced["status"] == 422, priced
    assert priced["message"].startswith("Budget has been exceeded! Team=t4 Current cost: 10.4"), priced
    no_model = oracle.decide(case({"sub": "u", "team": "t4"}, jwtauth={"team_id_jwt_field": "team"},
                                  records={"teams": [team]}))
    assert no_model["allow"], no_model


USERINFO = {"oidc_userinfo_enabled": True, "oidc_userinfo_endpoint": "https://example.com/oauth2/userinfo",
            "user_id_jwt_field": "sub", "user_email_jwt_field": "email"}


def test_opaque_token_takes_its_claims_from_the_userinfo_endpoint():
    """test_handle_jwt.py::test_auth_builder_with_oidc_userinfo_enabled: an opaque token's claims
    are the UserInfo endpoint's answer (the user id is the answer's `sub`)."""
    c = case(jwtauth=USERINFO, route="/chat/completions", records={"users": [{"user_id": "test_user_1"}]})
    c.update(opaque="test_access_token", userinfo={"status": 200, "body": {"sub": "test_user_1", "email": "test@example.com", "scope": ""}})
    answer = oracle.decide(c)
    assert answer["allow"], answer
    assert (answer["user_id"], answer["user_email"]) == ("test_user_1", "test@example.com")


def test_a_jwt_is_verified_even_with_userinfo_enabled():
    """test_handle_jwt.py::test_auth_builder_oidc_enabled_falls_back_to_jwt_auth_for_jwt_tokens:
    a three-part token goes to JWT verification, never to the UserInfo endpoint (which the
    oracle's client would answer with a 401 here)."""
    c = case({"sub": "test_user_1"}, jwtauth=USERINFO, route="/chat/completions",
             records={"users": [{"user_id": "test_user_1"}]})
    answer = oracle.decide(c)
    assert answer["allow"] and answer["user_id"] == "test_user_1", answer


def test_the_idp_refusing_an_opaque_token_is_a_401_naming_its_status():
    """get_oidc_userinfo: a non-200 answer raises `Failed to fetch OIDC UserInfo: OIDC UserInfo
    endpoint returned status <s>: <body>`, which the proxy answers with 401."""
    c = case(jwtauth=USERINFO, route="/chat/completions")
    c.update(opaque="revoked-token", userinfo={"status": 403, "body": {"error": "insufficient_scope"}})
    answer = oracle.decide(c)
    assert not answer["allow"] and answer["status"] == 401, answer
    assert answer["message"].startswith(
        "Authentication Error, Failed to fetch OIDC UserInfo: OIDC UserInfo endpoint returned status 403"), answer


INTROSPECTION_ENV = {"OAUTH_TOKEN_INFO_ENDPOINT": "https://idp.example/oauth2/introspect",
                     "OAUTH_CLIENT_ID": "gw", "OAUTH_CLIENT_SECRET": "s3"}
PARTNER = {"user_id_jwt_field": "sub",
           "routing_overrides": [{"iss": "https://partner.example/*", "scope": "llm.partner"}]}


def partner_case(answer, *, iss="https://partner.example/a", route="/v1/chat/completions"):
    c = case({"sub": "alice", "iss": iss, "scope": "openid llm.partner"}, jwtauth=PARTNER, route=route)
    c["introspection"] = {"env": INTROSPECTION_ENV, **answer}
    return c


def test_routing_overrides_send_matching_jwts_to_rfc7662_introspection():
    """user_api_key_auth.py::oauth2_introspection_applies: a JWT whose unverified claims match an
    override is validated by OAuth2 introspection (a POST with the client's Basic credentials,
    the endpoint containing `introspect`), and its identity is the answer's."""
    admin = oracle.decide(partner_case({"status": 200, "body": {"active": True, "sub": "svc-9", "role": "proxy_admin"}}))
    assert admin["allow"] and (admin["user_id"], admin["user_role"]) == ("svc-9", "proxy_admin"), admin
    [call] = admin["introspection_calls"]
    assert call["method"] == "POST" and call["headers"]["Authorization"].startswith("Basic ") and "token" in call["data"]
    inactive = oracle.decide(partner_case({"status": 200, "body": {"active": False}}))
    assert (inactive["status"], inactive["message"]) == (
        401, "Authentication Error, An error occurred during token validation: Token is not active"), inactive
    other = oracle.decide(partner_case({"status": 200, "body": {"active": True, "sub": "svc-9"}}, iss="https://other.example"))
    assert other["introspection_calls"] == [], "no match: the JWT path"


def test_introspection_is_no_bypass_of_teams_or_management_routes():
    """What the oracle shows LiteLLM doing past the introspection (to be matched by a port): the
    answer's team is loaded (unknown → 404), and management routes take the JWT path."""
    team = oracle.decide(partner_case({"status": 200, "body": {"active": True, "sub": "svc-9", "team_id": "t7"}}))
    assert team["status"] == 404 and "Team doesn't exist in db. Team=t7" in team["message"], team
    mgmt = oracle.decide(partner_case({"status": 200, "body": {"active": True, "sub": "svc-9"}}, route="/key/generate"))
    assert mgmt["introspection_calls"] == [] and not mgmt["allow"], mgmt
