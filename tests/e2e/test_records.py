"""Team/user/org/end-user records: static records from the plugin config, LiteLLM's management
API and a plain JSON service as sources (tests/servers/record_source.py), the shared-data cache (ttl,
negative ttl, stale window, one fetch per record per Envoy under a burst), outages (503
`no_db_connection`, never a 200 without a record), the LiteLLM rules that read records (team
existence, blocked, model access with wildcards / aliases / access groups, budgets, the groups
path, users, organizations, end users), upserts with write-through, configs refused at load, and
the fail-safe when Envoy withholds the body.

One Envoy per configuration, `--concurrency 2`; module-scoped Envoys and sources are shared by
tests that each use their own record ids (the source counts requests per path).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from typing import Any, Mapping

import pytest

import harness
import jwt_fixtures as jf
from checks import (
    assert_auth_error, assert_denied, assert_error, assert_forbidden, assert_forwarded, assert_invalid_request,
    assert_records_unavailable,
)

CHAT = "/v1/chat/completions"
MASTER_KEY = "sk-master"
WORKERS = 2
# A local answer takes milliseconds; a request paused for a record waits at most about the
# source's timeout. Anything slower than this is a hang.
REQUEST_TIMEOUT = 8.0
MIN_RETRY_GAP = 0.8  # contract: a failed fetch is retried no sooner than ~1 s later
SLACK = 0.3  # scheduling jitter allowed on lower time bounds


# -- expected texts ------------------------------------------------------------------------


def py_list(items) -> str:
    return "[" + ", ".join(repr(i) for i in items) + "]"


def team_not_found(team_id: str) -> str:
    return f"Authentication Error, Team doesn't exist in db. Team={team_id}. Create team via `/team/new` call."


def team_blocked(team_id: str) -> str:
    return f"Authentication Error, Team={team_id} is blocked. Update via `/team/unblock` if you're an admin."


def team_model_denied(models: list[str], model: str) -> str:
    return (f"team not allowed to access model. This team can only access models={py_list(models)}. "
            f"Tried to access {model}")


def py(number: str) -> str:
    """How LiteLLM prints a budget or spend: pydantic reads them as floats, Python's repr."""
    return repr(float(number))


def team_budget(team_id: str, spend: str, max_budget: str) -> str:
    return f"Budget has been exceeded! Team={team_id} Current cost: {py(spend)}, Max budget: {py(max_budget)}"


def user_budget(user_id: str, spend: str, max_budget: str) -> str:
    return f"ExceededBudget: User={user_id} over budget. Spend={py(spend)}, Budget={py(max_budget)}"


def no_team_has_model(model: str, teams: list[str]) -> str:
    checked = ", ".join(repr(t) for t in sorted(teams))
    return (f"No team has access to the requested model: {model}. Checked teams={{{checked}}}. "
            "Check `/models` to see all available models.")


NO_TEAMS_IN_TOKEN = ("No teams found in token. `enforce_team_based_model_access` is set to True. "
                     "Token must belong to a team.")


def user_not_found(user_id: str) -> str:
    return f"Authentication Error, User doesn't exist in db. 'user_id'={user_id}. Create user via `/user/new` call."


def model_not_available(model: str) -> str:
    return (f"The requested model '{model}' is not available for this API key, or the model name is "
            "invalid. Check the models available to you and try again.")


def org_not_found(org_id: str) -> str:
    return (f"Authentication Error, Organization doesn't exist in db. Organization={org_id}. "
            "Create organization via `/organization/new` call.")


def end_user_over_budget(user_id: str, spend: str, budget: str) -> str:
    return f"ExceededBudget: End User={user_id} over budget. Spend={py(spend)}, Budget={py(budget)}"


def end_user_blocked(user_id: str) -> str:
    return f"End User={user_id} is blocked."


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("records-rs256", "RS256")


@pytest.fixture(scope="module")
def idp(module_idps, key):
    return module_idps.new([key])


@pytest.fixture(scope="module")
def sign(key):
    """`sign(sub="alice", **claims)`: a valid RS256 token."""

    def mint(sub: str | None = "alice", **extra: Any) -> str:
        return key.sign(jf.claims(sub, **extra))

    return mint


def litellm_source(source, **settings: Any) -> dict:
    return {"type": "litellm", "url": source.url, "master_key": MASTER_KEY, **settings}


def scenario(factory, idp, name: str, *, source=None, jwtauth: Mapping[str, Any] | None = None,
             concurrency: int = WORKERS, allow_on_headers_stop_iteration: bool = True, **top: Any):
    """A scenario whose plugin config has `top` (teams, users, record_source, ...) and
    `general_settings.litellm_jwtauth = jwtauth`; a STATIC cluster named after the source's
    `host:port` when a source is given."""
    config: dict[str, Any] = {"public_key_url": idp.jwks_url, **top}
    if jwtauth is not None:
        config["general_settings"] = {"litellm_jwtauth": dict(jwtauth)}
    clusters = {source.authority: (source.host, source.port)} if source is not None else None
    return factory.scenario(name, jwks=[idp], clusters=clusters, plugin_config=config, concurrency=concurrency,
                            allow_on_headers_stop_iteration=allow_on_headers_stop_iteration)


def uid(prefix: str) -> str:
    """A record id no other test uses (the module's sources and caches are shared)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- request and assertion helpers ---------------------------------------------------------


def chat_body(model: str | None = None) -> bytes:
    payload: dict[str, Any] = {"messages": [{"role": "user", "content": "hello"}]}
    if model is not None:
        payload["model"] = model
    return json.dumps(payload).encode()


def post(proxy, token: str, model: str | None = None, *, body: bytes | None = None, path: str = CHAT,
         timeout: float = REQUEST_TIMEOUT):
    return proxy.request(token, method="POST", path=path, data=chat_body(model) if body is None else body,
                         headers={"content-type": "application/json"}, timeout=timeout)


def ident(user_id: str | None, **more: str) -> dict:
    """The `x-litellm-*` headers of a non-admin: `ident(user, team_id=..., team_alias=...)`;
    `None`: no user id (a configured `user_id_jwt_field` whose claim the token lacks)."""
    out = {} if user_id is None else {"x-litellm-user-id": user_id}
    out.update({f"x-litellm-{k.replace('_', '-')}": v for k, v in more.items()})
    out["x-litellm-user-role"] = "internal_user"
    return out


def assert_allowed(reply, identity: Mapping[str, str]) -> dict:
    """Forwarded once with the token intact, exactly these `x-litellm-*` headers, and the body
    byte-identical to what was sent."""
    echo = assert_forwarded(reply, sub=identity.get("x-litellm-user-id"), role=identity["x-litellm-user-role"])
    got = {k: v for k, v in echo["headers"].items() if k.startswith("x-litellm-")}
    assert got == dict(identity), echo["headers"]
    sent = reply.response.request.body or b""
    if isinstance(sent, str):
        sent = sent.encode()
    assert echo["body_len"] == len(sent), echo
    assert echo["body_sha256"] == hashlib.sha256(sent).hexdigest(), "the body must reach the upstream intact"
    return echo


def assert_team_model_denied(reply, models: list[str], model: str) -> dict:
    return assert_error(reply, 401, "team_model_access_denied", message=team_model_denied(models, model),
                        param="model", token_accepted=True)


def assert_budget_exceeded(reply, message: str) -> dict:
    return assert_error(reply, 400, "budget_exceeded", message=message)


def team_path(team_id: str) -> str:
    return f"/team/info?team_id={team_id}"


def user_path(user_id: str) -> str:
    return f"/user/info?user_id={user_id}"


# ==========================================================================================
# Static records from the plugin configuration
# ==========================================================================================

STATIC_TEAM_MODELS = ["gpt-4o", "claude-3-5-sonnet"]
STATIC_TEAMS = [
    {"team_id": "team-static", "team_alias": "Static Team", "models": STATIC_TEAM_MODELS, "blocked": False,
     "max_budget": 10.0, "spend": 1.0, "tpm_limit": 100, "rpm_limit": 5, "model_aliases": {"fast": "gpt-4o-mini"}},
    # Only used with the matching `org` claim: whether a team's organization_id alone is forwarded is not
    # part of the contract.
    {"team_id": "team-org", "team_alias": "Org Team", "organization_id": "org-1"},
    {"team_id": "team-blocked", "blocked": True},
    {"team_id": "team-broke", "models": [], "max_budget": 10.0, "spend": 10.0},
    {"team_id": "team-broke-frac", "max_budget": 9.5, "spend": 12.5},
    {"team_id": "team-budget-table", "spend": 2.5, "litellm_budget_table": {"max_budget": 2.0}},
    {"team_id": "team-prefix", "models": ["gpt-4o*"]},
    {"team_id": "team-provider", "models": ["openai/*"]},
    {"team_id": "team-star", "models": ["gpt-4o", "*"]},
    {"team_id": "team-all", "models": ["all-proxy-models"]},
    {"team_id": "team-open", "models": []},
    {"team_id": "team-beta", "models": ["beta"]},
]
STATIC_USERS = [{"user_id": "u-static", "user_email": "u@corp.example", "models": ["gpt-4o-mini"],
                 "max_budget": 5.0, "spend": 9.0}]
STATIC_END_USERS = [
    {"user_id": "cust-ok", "blocked": False, "max_budget": 5.0, "spend": 1.0},
    {"user_id": "cust-at-limit", "max_budget": 5.0, "spend": 5.0},
    {"user_id": "cust-broke", "max_budget": 5.0, "spend": 6.5},
    {"user_id": "cust-blocked", "blocked": True},
]


@pytest.fixture(scope="module")
def static(module_envoys, idp):
    return scenario(module_envoys, idp, "records-static",
                    teams=STATIC_TEAMS, users=STATIC_USERS, organizations=[{"organization_id": "org-1"}],
                    end_users=STATIC_END_USERS, model_access_groups={"beta": ["o3", "gemini-2.5-pro"]},
                    jwtauth={"team_id_jwt_field": "team_id", "user_id_jwt_field": "uid", "org_id_jwt_field": "org",
                             "end_user_id_jwt_field": "customer"})


def test_static_team_is_admitted_with_its_headers(static, sign):
    reply = post(static, sign("alice", team_id="team-static", org="org-1"), "gpt-4o")
    assert_allowed(reply, ident(None, team_id="team-static", team_alias="Static Team", team_tpm_limit="100",
                                team_rpm_limit="5", org_id="org-1"))
    reply = post(static, sign("alice", team_id="team-org", org="org-1"), "gpt-4o")
    assert_allowed(reply, ident(None, team_id="team-org", team_alias="Org Team", org_id="org-1"))


def test_static_minimal_team_forwards_only_its_id(static, sign):
    assert_allowed(post(static, sign("alice", team_id="team-open"), "gpt-4o"), ident(None, team_id="team-open"))


def test_static_unknown_team_is_refused(static, sign):
    assert_denied(post(static, sign("alice", team_id="team-nope"), "gpt-4o"), team_not_found("team-nope"))


ALLOWED_MODELS = {
    "exact": ("team-static", "claude-3-5-sonnet"),
    "alias": ("team-static", "fast"),
    "prefix-wildcard": ("team-prefix", "gpt-4o-mini"),
    "prefix-wildcard-exact": ("team-prefix", "gpt-4o"),
    "provider-wildcard-bare": ("team-provider", "gpt-4o"),
    "provider-wildcard-qualified": ("team-provider", "openai/gpt-4o-mini"),
    "star": ("team-star", "some-local-llama"),
    "all-proxy-models": ("team-all", "mistral-large"),
    "empty-list": ("team-open", "anything-at-all"),
    "access-group-o3": ("team-beta", "o3"),
    "access-group-gemini": ("team-beta", "gemini-2.5-pro"),
}


@pytest.mark.parametrize("team,model", ALLOWED_MODELS.values(), ids=ALLOWED_MODELS.keys())
def test_static_team_may_use_model(static, sign, team, model):
    extra = {"team_alias": "Static Team", "team_tpm_limit": "100", "team_rpm_limit": "5"} \
        if team == "team-static" else {}
    assert_allowed(post(static, sign("alice", team_id=team), model), ident(None, team_id=team, **extra))


DENIED_MODELS = {
    "not-listed": ("team-static", STATIC_TEAM_MODELS, "o1"),
    "alias-target-is-not-an-entry": ("team-static", STATIC_TEAM_MODELS, "gpt-4o-mini"),
    "prefix-wildcard-miss": ("team-prefix", ["gpt-4o*"], "gpt-4"),
    "provider-wildcard-other-provider": ("team-provider", ["openai/*"], "claude-3-5-sonnet"),
    "access-group-non-member": ("team-beta", ["beta"], "gpt-4o"),
    "access-group-name-is-not-a-model": ("team-static", STATIC_TEAM_MODELS, "beta"),
}


@pytest.mark.parametrize("team,models,model", DENIED_MODELS.values(), ids=DENIED_MODELS.keys())
def test_static_team_may_not_use_model(static, sign, team, models, model):
    assert_team_model_denied(post(static, sign("alice", team_id=team), model), models, model)


def test_static_blocked_team_is_refused(static, sign):
    assert_denied(post(static, sign("alice", team_id="team-blocked"), "gpt-4o"), team_blocked("team-blocked"))


@pytest.mark.parametrize("team,spend,max_budget", [
    ("team-broke", "10", "10"), ("team-broke-frac", "12.5", "9.5"), ("team-budget-table", "2.5", "2"),
], ids=["spend-equals-max", "fractions", "litellm_budget_table"])
def test_static_team_over_budget_is_refused(static, sign, team, spend, max_budget):
    reply = post(static, sign("alice", team_id=team), "gpt-4o")
    assert_budget_exceeded(reply, team_budget(team, spend, max_budget))


def test_static_records_body_is_read_even_for_an_unrestricted_team(static, sign):
    reply = post(static, sign("alice", team_id="team-open"), body=b'{"model": "gpt-4o", broken')
    assert_invalid_request(reply, 400, prefix="Invalid request body: ")


def test_static_records_admin_body_is_not_read(static, sign):
    body = b'{"model": "gpt-4o", broken'
    reply = static.request(sign("root", scope="litellm_proxy_admin"), method="POST", path="/key/generate", data=body,
                           headers={"content-type": "application/json"}, timeout=REQUEST_TIMEOUT)
    echo = assert_forwarded(reply, sub=None, role="proxy_admin")
    assert "x-litellm-user-id" not in echo["headers"], "user_id_jwt_field is set and the token has no uid: no user id"
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_static_org_known_is_forwarded_and_unknown_is_refused(static, sign):
    assert_allowed(post(static, sign("alice", team_id="team-open", org="org-1"), "gpt-4o"),
                   ident(None, team_id="team-open", org_id="org-1"))
    assert_denied(post(static, sign("alice", team_id="team-open", org="org-404"), "gpt-4o"),
                      org_not_found("org-404"))


@pytest.mark.parametrize("customer", ["cust-ok", "cust-at-limit", "cust-unknown"])
def test_static_end_user_within_budget_or_unknown_is_admitted(static, sign, customer):
    reply = post(static, sign("alice", team_id="team-open", customer=customer), "gpt-4o")
    assert_allowed(reply, ident(None, team_id="team-open", end_user_id=customer))


def test_static_end_user_over_budget_is_refused(static, sign):
    reply = post(static, sign("alice", team_id="team-open", customer="cust-broke"), "gpt-4o")
    assert_budget_exceeded(reply, end_user_over_budget("cust-broke", "6.5", "5"))


def test_static_blocked_end_user_is_refused(static, sign):
    reply = post(static, sign("alice", team_id="team-open", customer="cust-blocked"), "gpt-4o")
    assert_forbidden(reply, end_user_blocked("cust-blocked"))


def test_static_user_rules_do_not_apply_when_a_team_is_selected(static, sign):
    # u-static may only use gpt-4o-mini and is over budget, but the team decides.
    reply = post(static, sign("alice", team_id="team-static", uid="u-static"), "gpt-4o")
    assert_allowed(reply, ident("u-static", team_id="team-static", team_alias="Static Team", team_tpm_limit="100",
                                team_rpm_limit="5"))


def test_static_unknown_user_is_refused_even_with_a_team(static, sign):
    reply = post(static, sign("alice", team_id="team-open", uid="u-ghost"), "gpt-4o")
    assert_denied(reply, user_not_found("u-ghost"))


# ==========================================================================================
# LiteLLM management API as the source (teams, orgs, end users)
# ==========================================================================================


LITELLM_TIMEOUT_MS = 1000


@pytest.fixture(scope="module")
def litellm_src(module_sources):
    return module_sources.new(master_key=MASTER_KEY)


@pytest.fixture(scope="module")
def from_litellm(module_envoys, idp, litellm_src):
    return scenario(module_envoys, idp, "records-litellm",
                    source=litellm_src,
                    record_source=litellm_source(litellm_src, ttl=60, negative_ttl=10, stale_ttl=300,
                                                 timeout_ms=LITELLM_TIMEOUT_MS),
                    model_access_groups={"beta": ["o3", "gemini-2.5-pro"]},
                    jwtauth={"team_id_jwt_field": "team_id", "user_id_jwt_field": "uid", "org_id_jwt_field": "org",
                             "end_user_id_jwt_field": "customer"})


def test_litellm_team_is_fetched_once_and_its_rules_apply(from_litellm, litellm_src, sign):
    team, org = uid("src-team"), uid("src-org")
    litellm_src.put_team(team, team_alias="Source Team", models=["gpt-4o", "beta"], tpm_limit=1000, rpm_limit=10,
                         organization_id=org, max_budget=50.0, spend=1.5,
                         litellm_model_table={"id": 7, "model_aliases": {"fast": "gpt-4o-mini"}})
    litellm_src.put_org(org, organization_alias="Source Org")
    token = sign("alice", team_id=team, org=org)
    expected = ident(None, team_id=team, team_alias="Source Team", team_tpm_limit="1000", team_rpm_limit="10",
                     org_id=org)
    assert_allowed(post(from_litellm, token, "gpt-4o"), expected)
    assert_allowed(post(from_litellm, token, "fast"), expected)  # alias from litellm_model_table
    assert_allowed(post(from_litellm, token, "o3"), expected)  # access group
    assert_team_model_denied(post(from_litellm, token, "o1"), ["gpt-4o", "beta"], "o1")
    assert litellm_src.count(team_path(team)) == 1, litellm_src.counts()
    assert litellm_src.count(f"/organization/info?organization_id={org}") == 1, litellm_src.counts()


def test_litellm_source_sees_the_master_key(from_litellm, litellm_src, sign):
    team = uid("key-team")
    litellm_src.put_team(team)
    assert_allowed(post(from_litellm, sign("alice", team_id=team), "gpt-4o"), ident(None, team_id=team))
    seen = litellm_src.requests_for(team_path(team))
    assert len(seen) == 1, litellm_src.counts()
    assert seen[0]["headers"].get("authorization") == f"Bearer {MASTER_KEY}", seen[0]["headers"]


def test_litellm_blocked_team_is_refused(from_litellm, litellm_src, sign):
    team = uid("src-blocked")
    litellm_src.put_team(team, blocked=True, models=["gpt-4o"])
    assert_denied(post(from_litellm, sign("alice", team_id=team), "gpt-4o"), team_blocked(team))


@pytest.mark.parametrize("row,spend,max_budget", [
    ({"max_budget": 10.0, "spend": 10.0}, "10", "10"),
    ({"max_budget": None, "spend": 10.25, "litellm_budget_table": {"budget_id": "b", "max_budget": 9.5}},
     "10.25", "9.5"),
], ids=["row", "litellm_budget_table"])
def test_litellm_team_over_budget_is_refused(from_litellm, litellm_src, sign, row, spend, max_budget):
    team = uid("src-broke")
    litellm_src.put_team(team, **row)
    reply = post(from_litellm, sign("alice", team_id=team), "gpt-4o")
    assert_budget_exceeded(reply, team_budget(team, spend, max_budget))


@pytest.mark.parametrize("style", ["404", "team_info-null"])
def test_litellm_unknown_team_is_refused_and_the_answer_cached(from_litellm, litellm_src, sign, style):
    team = uid("ghost")
    if style != "404":
        litellm_src.null_not_found = {team}
    started = time.monotonic()
    for _ in range(4):
        assert_denied(post(from_litellm, sign("alice", team_id=team), "gpt-4o"), team_not_found(team))
    assert time.monotonic() - started < 10, "too slow to observe the 10 s negative cache"
    assert litellm_src.count(team_path(team)) == 1, \
        f"not-found answers are cached for negative_ttl: {litellm_src.counts()}"


@pytest.mark.parametrize("status", [500, 401])
def test_litellm_source_error_is_503_and_not_taken_for_not_found(from_litellm, litellm_src, sign, status):
    team = uid("err-team")
    litellm_src.put_team(team)
    litellm_src.fail_ids[team] = (status, b'{"detail": "boom"}')
    token = sign("alice", team_id=team)
    assert_records_unavailable(post(from_litellm, token, "gpt-4o"))
    first = litellm_src.requests_for(team_path(team))[0]["at"]
    assert_records_unavailable(post(from_litellm, token, "gpt-4o"))
    if time.monotonic() - first < MIN_RETRY_GAP:
        assert litellm_src.count(team_path(team)) == 1, "a failed fetch is retried no sooner than ~1 s later"
    del litellm_src.fail_ids[team]
    assert_allowed(_wait_for_success(from_litellm, token), ident(None, team_id=team))
    times = [r["at"] for r in litellm_src.requests_for(team_path(team))]
    assert all(b - a >= MIN_RETRY_GAP for a, b in zip(times, times[1:])), times


def test_litellm_source_slower_than_its_timeout_is_503(from_litellm, litellm_src, sign):
    team = uid("slow-team")
    litellm_src.put_team(team)
    litellm_src.slow_ids[team] = LITELLM_TIMEOUT_MS / 1000 + 1.5
    started = time.monotonic()
    reply = post(from_litellm, sign("alice", team_id=team), "gpt-4o")
    elapsed = time.monotonic() - started
    assert_records_unavailable(reply)
    assert elapsed < LITELLM_TIMEOUT_MS / 1000 + 1.2, \
        f"answered after {elapsed:.2f}s; timeout_ms is {LITELLM_TIMEOUT_MS}"


def test_litellm_unknown_org_is_refused(from_litellm, litellm_src, sign):
    team, org = uid("org-team"), uid("org-ghost")
    litellm_src.put_team(team)
    reply = post(from_litellm, sign("alice", team_id=team, org=org), "gpt-4o")
    assert_denied(reply, org_not_found(org))
    assert litellm_src.count(f"/organization/info?organization_id={org}") == 1


def test_litellm_end_users(from_litellm, litellm_src, sign):
    team = uid("cust-team")
    litellm_src.put_team(team)
    ok, broke, blocked, unknown = uid("cust-ok"), uid("cust-broke"), uid("cust-blocked"), uid("cust-none")
    litellm_src.put_customer(ok, spend=1.0, litellm_budget_table={"max_budget": 5.0})
    litellm_src.put_customer(broke, spend=6.0, litellm_budget_table={"budget_id": "b", "max_budget": 5.0})
    litellm_src.put_customer(blocked, blocked=True)

    def call(customer):
        return post(from_litellm, sign("alice", team_id=team, customer=customer), "gpt-4o")

    assert_allowed(call(ok), ident(None, team_id=team, end_user_id=ok))
    assert_allowed(call(unknown), ident(None, team_id=team, end_user_id=unknown))
    assert_budget_exceeded(call(broke), end_user_over_budget(broke, "6", "5"))
    assert_forbidden(call(blocked), end_user_blocked(blocked))
    for customer in (ok, broke, blocked, unknown):
        assert litellm_src.count(f"/customer/info?end_user_id={customer}") == 1, litellm_src.counts()


def test_litellm_user_exists_but_team_decides(from_litellm, litellm_src, sign):
    team, user, ghost = uid("ut-team"), uid("ut-user"), uid("ut-ghost")
    litellm_src.put_team(team, models=["gpt-4o"])
    litellm_src.put_user(user, models=["o1"], max_budget=1.0, spend=3.0)
    assert_allowed(post(from_litellm, sign("alice", team_id=team, uid=user), "gpt-4o"), ident(user, team_id=team))
    assert_denied(post(from_litellm, sign("alice", team_id=team, uid=ghost), "gpt-4o"), user_not_found(ghost))
    assert litellm_src.count(user_path(user)) == 1 and litellm_src.count(user_path(ghost)) == 1, litellm_src.counts()


# ==========================================================================================
# LiteLLM source: users without a team; freshness (short ttl and negative_ttl)
# ==========================================================================================

SHORT_TTL = 1.5
SHORT_NEGATIVE_TTL = 1.0


@pytest.fixture(scope="module")
def users(module_envoys, idp, litellm_src):
    return scenario(module_envoys, idp, "records-users", source=litellm_src,
                    record_source=litellm_source(litellm_src, ttl=SHORT_TTL, negative_ttl=SHORT_NEGATIVE_TTL,
                                                 stale_ttl=30),
                    jwtauth={"user_id_jwt_field": "uid"})


def test_user_from_litellm_with_allowed_model(users, litellm_src, sign):
    user = uid("user-ok")
    litellm_src.put_user(user, user_email="ok@corp.example", models=["gpt-4o-mini"], max_budget=5.0, spend=1.0)
    assert_allowed(post(users, sign("alice", uid=user), "gpt-4o-mini"), ident(user))
    seen = litellm_src.requests_for(user_path(user))
    assert len(seen) == 1 and seen[0]["headers"].get("authorization") == f"Bearer {MASTER_KEY}", seen


def test_user_model_list_applies_without_a_team(users, litellm_src, sign):
    user = uid("user-models")
    litellm_src.put_user(user, models=["gpt-4o-mini"])
    assert_forbidden(post(users, sign("alice", uid=user), "gpt-4o"), model_not_available("gpt-4o"))


def test_user_with_empty_model_list_may_use_any_model(users, litellm_src, sign):
    user = uid("user-any")
    litellm_src.put_user(user, models=[])
    assert_allowed(post(users, sign("alice", uid=user), "whatever-model"), ident(user))


def test_user_over_budget_is_refused(users, litellm_src, sign):
    user = uid("user-broke")
    litellm_src.put_user(user, max_budget=5.0, spend=7.5)
    assert_budget_exceeded(post(users, sign("alice", uid=user), "gpt-4o"), user_budget(user, "7.5", "5"))


@pytest.mark.parametrize("style", ["404", "user_info-null"])
def test_unknown_user_is_refused(users, litellm_src, sign, style):
    user = uid("user-ghost")
    if style != "404":
        litellm_src.null_not_found = {user}
    assert_denied(post(users, sign("alice", uid=user), "gpt-4o"), user_not_found(user))


# ==========================================================================================
# Plain JSON service as the source (`type: http`)
# ==========================================================================================

HTTP_PATHS = {"team": "/teams/{id}", "user": "/users/{id}", "org": "/orgs/{id}", "end_user": "/customers/{id}"}


@pytest.fixture(scope="module")
def http_src(module_sources):
    return module_sources.new(master_key=None, plain_headers={"x-token": "t"})


@pytest.fixture(scope="module")
def from_http(module_envoys, idp, http_src):
    return scenario(module_envoys, idp, "records-http", source=http_src,
                    record_source={"type": "http", "url": http_src.plain_url, "paths": HTTP_PATHS,
                                   "headers": {"x-token": "t"}},
                    jwtauth={"team_id_jwt_field": "team_id", "user_id_jwt_field": "uid", "user_id_upsert": True,
                             "org_id_jwt_field": "org", "end_user_id_jwt_field": "customer"})


def test_http_source_team_user_org_and_end_user(from_http, http_src, sign):
    team, user, org, customer = uid("h-team"), uid("h-user"), uid("h-org"), uid("h-cust")
    http_src.put_team(team, team_alias="HTTP Team", models=["gpt-4o*"], tpm_limit=7, rpm_limit=3,
                      organization_id=org)
    http_src.put_user(user, user_email="h@corp.example")
    http_src.put_org(org)
    http_src.put_customer(customer, spend=0.5, litellm_budget_table={"max_budget": 1.0})
    token = sign("alice", team_id=team, uid=user, org=org, customer=customer)
    expected = ident(user, team_id=team, team_alias="HTTP Team", team_tpm_limit="7", team_rpm_limit="3",
                     org_id=org, end_user_id=customer)
    assert_allowed(post(from_http, token, "gpt-4o-mini"), expected)
    assert_allowed(post(from_http, token, "gpt-4o"), expected)
    assert_team_model_denied(post(from_http, token, "o1"), ["gpt-4o*"], "o1")
    for path in (f"/api/teams/{team}", f"/api/users/{user}", f"/api/orgs/{org}", f"/api/customers/{customer}"):
        seen = http_src.requests_for(path)
        assert len(seen) == 1, (path, http_src.counts())
        assert seen[0]["headers"].get("x-token") == "t", seen[0]["headers"]


def test_http_source_blocked_team_and_unknown_team(from_http, http_src, sign):
    blocked, ghost = uid("h-blocked"), uid("h-ghost")
    http_src.put_team(blocked, blocked=True)
    assert_denied(post(from_http, sign("alice", team_id=blocked), "gpt-4o"), team_blocked(blocked))
    for _ in range(3):
        assert_denied(post(from_http, sign("alice", team_id=ghost), "gpt-4o"), team_not_found(ghost))
    assert http_src.count(f"/api/teams/{ghost}") == 1, http_src.counts()


def test_http_source_unknown_user_is_upserted_and_stored(from_http, http_src, sign):
    team, user = uid("h-up-team"), uid("h-new-user")
    http_src.put_team(team)
    token = sign("alice", team_id=team, uid=user)
    assert_allowed(post(from_http, token, "gpt-4o"), ident(user, team_id=team))
    assert_allowed(post(from_http, token, "gpt-4o"), ident(user, team_id=team))
    assert http_src.count(f"/api/users/{user}") == 1, f"the upserted user must be stored: {http_src.counts()}"
    assert not [r for r in http_src.requests if r["method"] != "GET"], "only a litellm source writes through"


# ==========================================================================================
# Groups path: team_ids_jwt_field
# ==========================================================================================

GROUP_TEAMS = {
    "grp-a": {"models": ["claude-3-5-sonnet"]},
    "grp-b": {"models": ["gpt-4o"], "team_alias": "Team B", "tpm_limit": 200},
    "grp-c": {"models": ["gpt-4o", "o3"]},
    "grp-z": {"models": ["*"]},
}


@pytest.fixture(scope="module")
def groups_src(module_sources):
    src = module_sources.new(master_key=MASTER_KEY)
    for team, fields in GROUP_TEAMS.items():
        src.put_team(team, **fields)
    return src


@pytest.fixture(scope="module")
def groups(module_envoys, idp, groups_src):
    return scenario(module_envoys, idp, "records-groups", source=groups_src,
                    record_source=litellm_source(groups_src),
                    jwtauth={"team_ids_jwt_field": "groups", "enforce_team_based_model_access": True})


def team_headers(team: str) -> dict:
    extra = {"team_alias": "Team B", "team_tpm_limit": "200"} if team == "grp-b" else {}
    return {"team_id": team, **extra}


@pytest.mark.parametrize("model,team", [("gpt-4o", "grp-b"), ("o3", "grp-c"), ("claude-3-5-sonnet", "grp-a"),
                                        ("mistral-large", "grp-z")])
def test_groups_pick_the_first_sorted_team_that_can_use_the_model(groups, groups_src, sign, model, team):
    token = sign("alice", groups=["grp-z", "grp-c", "grp-missing", "grp-b", "grp-a"])
    assert_allowed(post(groups, token, model), ident("alice", **team_headers(team)))
    assert groups_src.count(team_path("grp-missing")) == 1, "unknown teams are looked up once and skipped"


def test_groups_no_team_has_the_model(groups, sign):
    reply = post(groups, sign("alice", groups=["grp-b", "grp-a"]), "o3")
    assert_forbidden(reply, no_team_has_model("o3", ["grp-a", "grp-b"]))


def test_groups_without_a_model_pick_the_first_team(groups, sign):
    reply = groups.request(sign("alice", groups=["grp-c", "grp-b"]), path="/v1/models")
    assert_allowed(reply, ident("alice", **team_headers("grp-b")))


@pytest.mark.parametrize("model", ["gpt-4o", None], ids=["with-model", "without-model"])
def test_groups_source_failure_is_503_not_a_verdict(groups, groups_src, sign, model):
    """The only team in the token cannot be read (source answers 500): no copy, so 503 — not
    "no team has the model", and not a request forwarded without its team."""
    team = uid("grp-err")
    groups_src.put_team(team, models=["gpt-4o"])
    groups_src.fail_ids[team] = (500, b'{"detail": "db down"}')
    assert_records_unavailable(post(groups, sign("alice", groups=[team]), model))
    assert groups_src.count(team_path(team)) >= 1


@pytest.mark.parametrize("claim", [None, [], "grp-b"], ids=["missing", "empty-list", "string-not-list"])
def test_groups_enforced_need_a_list_of_teams(groups, sign, claim):
    claims = {} if claim is None else {"groups": claim}
    assert_forbidden(post(groups, sign("alice", **claims), "gpt-4o"), NO_TEAMS_IN_TOKEN)


# ==========================================================================================
# Upserts and write-through
# ==========================================================================================


@pytest.fixture(scope="module")
def upsert_src(module_sources):
    return module_sources.new(master_key=MASTER_KEY)


@pytest.fixture(scope="module")
def upserts(module_envoys, idp, upsert_src):
    return scenario(module_envoys, idp, "records-upsert", source=upsert_src,
                    record_source=litellm_source(upsert_src, write_through=True),
                    jwtauth={"team_id_jwt_field": "team_id", "team_id_upsert": True, "user_id_jwt_field": "uid",
                             "user_id_upsert": True, "user_email_jwt_field": "email"})


def test_unknown_team_is_upserted_stored_and_written_through(upserts, upsert_src, sign):
    team, user = uid("new-team"), uid("known-user")
    upsert_src.put_user(user)
    token = sign("alice", team_id=team, uid=user)
    assert_allowed(post(upserts, token, "gpt-4o"), ident(user, team_id=team))
    assert upsert_src.wait_for("/team/new", method="POST"), f"no write-through: {upsert_src.counts()}"
    created = upsert_src.requests_for("/team/new", method="POST")
    assert [c["json"] for c in created] == [{"team_id": team}], created
    assert created[0]["headers"].get("authorization") == f"Bearer {MASTER_KEY}", created[0]["headers"]
    assert_allowed(post(upserts, token, "o1"), ident(user, team_id=team))
    assert upsert_src.count(team_path(team)) == 1, f"the upserted team must be stored: {upsert_src.counts()}"
    assert upsert_src.count("/team/new", method="POST") == 1, upsert_src.counts()


def test_unknown_user_is_upserted_and_written_through_with_email(upserts, upsert_src, sign):
    team, user = uid("known-team"), uid("new-user")
    upsert_src.put_team(team)
    token = sign("alice", team_id=team, uid=user, email="new@corp.example")
    expected = ident(user, team_id=team, user_email="new@corp.example")
    assert_allowed(post(upserts, token, "gpt-4o"), expected)
    assert upsert_src.wait_for("/user/new", method="POST"), f"no write-through: {upsert_src.counts()}"
    created = [c for c in upsert_src.requests_for("/user/new", method="POST")
               if (c["json"] or {}).get("user_id") == user]
    assert [c["json"] for c in created] == [{"user_id": user, "user_email": "new@corp.example"}], created
    assert created[0]["headers"].get("authorization") == f"Bearer {MASTER_KEY}"
    assert_allowed(post(upserts, token, "gpt-4o"), expected)
    assert upsert_src.count(user_path(user)) == 1, upsert_src.counts()


def test_record_updated_at_the_source_is_picked_up_after_the_ttl(users, litellm_src, sign):
    user = uid("upd-user")
    litellm_src.put_user(user, models=["gpt-4o"])
    token = sign("alice", uid=user)
    assert_allowed(post(users, token, "gpt-4o"), ident(user))
    fetched = litellm_src.requests_for(user_path(user))[0]["at"]
    litellm_src.update("user", user, max_budget=1.0, spend=2.0)
    reply = post(users, token, "gpt-4o")
    assert time.monotonic() - fetched < SHORT_TTL, "test too slow to observe the cached record"
    assert_allowed(reply, ident(user))
    while True:
        reply = post(users, token, "gpt-4o")
        now = time.monotonic()
        if reply.status != 200:
            break
        assert_allowed(reply, ident(user))
        assert now < fetched + SHORT_TTL + 4, f"update not visible {SHORT_TTL + 4}s after the fetch"
        time.sleep(0.1)
    assert_budget_exceeded(reply, user_budget(user, "2", "1"))
    assert now - fetched >= SHORT_TTL - SLACK, f"update visible {now - fetched:.2f}s after the fetch, before the ttl"
    assert litellm_src.count(user_path(user)) >= 2


def test_not_found_expires_after_the_negative_ttl(users, litellm_src, sign):
    user = uid("late-user")
    token = sign("alice", uid=user)
    assert_denied(post(users, token, "gpt-4o"), user_not_found(user))
    first = litellm_src.requests_for(user_path(user))[0]["at"]
    assert_denied(post(users, token, "gpt-4o"), user_not_found(user))
    if time.monotonic() - first < SHORT_NEGATIVE_TTL - SLACK:
        assert litellm_src.count(user_path(user)) == 1, "not-found answers are cached for negative_ttl"
    litellm_src.put_user(user)  # created at LiteLLM right after
    while True:
        reply = post(users, token, "gpt-4o")
        now = time.monotonic()
        if reply.status == 200:
            break
        assert_denied(reply, user_not_found(user))
        assert now < first + SHORT_NEGATIVE_TTL + 4, "the not-found answer outlived negative_ttl"
        time.sleep(0.1)
    assert_allowed(reply, ident(user))
    assert now - first >= SHORT_NEGATIVE_TTL - SLACK, f"refetched {now - first:.2f}s after the not-found answer"
    assert litellm_src.count(user_path(user)) >= 2


# ==========================================================================================
# Outages
# ==========================================================================================


def _wait_for_success(proxy, token, timeout: float = 6.0):
    """Poll until a 200; everything before it must be a 503 no_db_connection."""
    start = time.monotonic()
    while True:
        reply = post(proxy, token, "gpt-4o")
        if reply.status == 200:
            return reply
        assert_records_unavailable(reply)
        assert time.monotonic() - start < timeout, f"still no 200 after {timeout}s: {reply!r}"
        time.sleep(0.15)


def _hammer_503(proxy, token, seconds: float, at_least: int = 5) -> int:
    """Requests for `seconds` and at least `at_least` of them; every one must be a proper 503."""
    started, replies = time.monotonic(), 0
    while time.monotonic() < started + seconds or replies < at_least:
        assert_records_unavailable(post(proxy, token, "gpt-4o"))
        replies += 1
        time.sleep(0.1)
    return replies


def test_source_down_at_start_gives_503_with_spaced_retries_then_recovers(envoys, sources, idp, sign):
    src = sources.new(master_key=MASTER_KEY, start=False)  # port bound, not listening: refused
    src.put_team("down-team")
    proxy = scenario(envoys, idp, "records-down", source=src,
                     record_source=litellm_source(src, timeout_ms=500), jwtauth={"team_id_jwt_field": "team_id"})
    token = sign("alice", team_id="down-team")
    proxy.envoy  # ready
    _hammer_503(proxy, token, 1.2)

    src.fail_with(500)  # reachable now, but failing
    src.start()
    started = time.monotonic()
    replies = _hammer_503(proxy, token, 2.2)
    elapsed = time.monotonic() - started
    times = [r["at"] for r in src.requests_for(team_path("down-team"))]
    assert times, "the filter never asked the source"
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:])]
    assert all(g >= MIN_RETRY_GAP for g in gaps), f"refetched too soon after a failure: gaps {gaps}"
    assert len(times) <= int(elapsed) + 2, f"{len(times)} fetches for {replies} requests in {elapsed:.1f}s"

    src.heal()
    assert_allowed(_wait_for_success(proxy, token), ident("alice", team_id="down-team"))


def test_source_outage_serves_the_stale_copy_then_503_then_recovers(envoys, sources, idp, sign):
    ttl, stale_ttl = 1.0, 2.0
    src = sources.new(master_key=MASTER_KEY)
    src.put_team("stale-team", team_alias="Stale")
    proxy = scenario(envoys, idp, "records-stale", source=src,
                     record_source=litellm_source(src, ttl=ttl, stale_ttl=stale_ttl, negative_ttl=1, timeout_ms=500),
                     jwtauth={"team_id_jwt_field": "team_id"})
    token = sign("alice", team_id="stale-team")
    expected = ident("alice", team_id="stale-team", team_alias="Stale")
    assert_allowed(post(proxy, token, "gpt-4o"), expected)
    fetched = src.requests_for(team_path("stale-team"))[0]["at"]
    src.stop()  # connections refused from now on
    window_end = fetched + ttl + stale_ttl

    stale_served = 0
    while time.monotonic() < window_end - 0.4:
        sent = time.monotonic()
        assert_allowed(post(proxy, token, "gpt-4o"), expected)
        stale_served += sent > fetched + ttl + 0.2
        time.sleep(0.1)
    assert stale_served >= 3, f"only {stale_served} requests landed in the stale window"

    while True:
        reply = post(proxy, token, "gpt-4o")
        now = time.monotonic()
        if reply.status != 200:
            break
        assert_allowed(reply, expected)
        assert now < window_end + 3, f"still 200 {now - window_end:.1f}s after ttl + stale_ttl with the source down"
        time.sleep(0.1)
    assert_records_unavailable(reply)
    assert now >= window_end - SLACK, f"503 {window_end - now:.2f}s before the stale window ended"
    for _ in range(5):
        assert_records_unavailable(post(proxy, token, "gpt-4o"))
        time.sleep(0.1)

    src.start()  # same port
    assert_allowed(_wait_for_success(proxy, token), expected)
    assert src.count(team_path("stale-team")) >= 1


# ==========================================================================================
# One fetch per record per Envoy under a burst
# ==========================================================================================


def test_burst_for_an_uncached_team_makes_one_source_fetch(envoys, sources, idp, sign):
    src = sources.new(master_key=MASTER_KEY)
    src.put_team("warm-team")
    src.put_team("burst-team", team_alias="Burst", models=["gpt-4o"])
    proxy = scenario(envoys, idp, "records-burst", source=src, record_source=litellm_source(src),
                     jwtauth={"team_id_jwt_field": "team_id"})
    # Warm the JWKS (and the Envoy) on another team, then keep the burst's fetch in flight.
    assert_allowed(post(proxy, sign("warm", team_id="warm-team"), "gpt-4o"), ident("warm", team_id="warm-team"))
    src.delay = 0.5
    n = 40
    tokens = [sign(f"burst-{i}", team_id="burst-team") for i in range(n)]
    barrier = threading.Barrier(n)
    replies: list = [None] * n
    errors: list = []

    def fire(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            replies[i] = post(proxy, tokens[i], "gpt-4o", timeout=15)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    for i, reply in enumerate(replies):
        assert_allowed(reply, ident(f"burst-{i}", team_id="burst-team", team_alias="Burst"))
    assert src.count(team_path("burst-team")) == 1, \
        f"{src.count(team_path('burst-team'))} fetches of burst-team for {n} concurrent requests; expected 1"


# ==========================================================================================
# Configurations refused at load, and the fail-safe around Envoy's config
# ==========================================================================================

# (`team_ids_jwt_field` without records: test_authorization.py::test_litellm_jwtauth_setting_is_refused_at_load)
REFUSED = {
    "litellm_source_without_master_key": ({"record_source": {"type": "litellm", "url": "http://127.0.0.1:9"},
                                           "general_settings": {"litellm_jwtauth": {"team_id_jwt_field": "t"}}},
                                          "record_source.master_key"),
}


@pytest.mark.parametrize("extra,mentions", REFUSED.values(), ids=REFUSED.keys())
def test_config_is_refused_at_load(envoys, idp, extra, mentions):
    proxy = envoys.scenario("records-refused", jwks=[idp], clusters={"127.0.0.1:9": ("127.0.0.1", 9)},
                            plugin_config={"public_key_url": idp.jwks_url, **extra})
    envoy = proxy.spawn()
    try:
        envoy.wait_ready(timeout=8.0)
    except harness.EnvoyFailed as exc:
        assert exc.returncode != 0, f"envoy exited 0 instead of refusing the config\n{exc.log}"
        assert mentions in exc.log, f"the logs do not mention {mentions!r}:\n{exc.log}"
    else:
        pytest.fail(f"envoy accepted {extra} and became ready\n{envoy.log_tail()}", pytrace=False)


def test_body_withheld_by_envoy_config_is_answered_500_not_hung(envoys, idp, sign):
    proxy = scenario(envoys, idp, "records-no-stop-iteration", allow_on_headers_stop_iteration=False,
                     teams=[{"team_id": "team-x"}], jwtauth={"team_id_jwt_field": "team_id"})
    proxy.envoy  # ready
    started = time.monotonic()
    reply = post(proxy, sign("alice", team_id="team-x"), "gpt-4o", timeout=20)
    elapsed = time.monotonic() - started
    error = assert_error(reply, 500, "configuration_error", contains=["the gateway is misconfigured"])
    assert "allow_on_headers_stop_iteration" not in error["message"], "configuration text is for the log, not the client"
    assert 8.5 <= elapsed <= 14, f"answered after {elapsed:.1f}s; the contract says ~10 s"
    time.sleep(0.2)
    assert "allow_on_headers_stop_iteration" in proxy.envoy.log_text(), "the log names what to fix"
