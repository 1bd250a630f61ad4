"""Team selection in a real Envoy (two workers): the `x-litellm-team-id` header, the user's only
team, `fallback_to_db_teams` and `team_claim_fallback` (newest LiteLLM's `authorize_jwt`;
docs/configuration.md, "Team selection"), with static records and with LiteLLM's management
API as the record source (tests/servers/record_source.py): one fetch per record per Envoy under
a burst, and a failing source is a 503, never a request without its team.
"""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import unquote
from typing import Any

import pytest

import jwt_fixtures as jf
from checks import assert_denied, assert_error, assert_forbidden, assert_records_unavailable, burst_calls
from test_records import (
    MASTER_KEY, assert_allowed, ident, litellm_source, post, scenario, team_blocked, team_model_denied, team_path,
    user_path,
)


def header_not_allowed(value: str, allowed: list[str]) -> str:
    listed = ", ".join(repr(t) for t in sorted(allowed))
    return (f"x-litellm-team-id '{value}' does not resolve to a team id or a unique team alias in your JWT's "
            f"allowed teams. Allowed team ids: [{listed}]")


def not_a_membership(value: str) -> str:
    return (f"x-litellm-team-id '{value}' does not resolve to a team id or a unique team alias among your "
            "team memberships.")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def choose(proxy, token: str, team: str | None, model: str | None = None):
    """A chat completion whose caller asks to act for `team` (no header when None)."""
    headers = {"content-type": "application/json"}
    if team is not None:
        headers["x-litellm-team-id"] = team
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    if model is not None:
        body["model"] = model
    return proxy.request(token, method="POST", path="/v1/chat/completions", data=json.dumps(body).encode(),
                         headers=headers, timeout=8.0)


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("team-selection-rs256", "RS256")


@pytest.fixture(scope="module")
def idp(module_idps, key):
    return module_idps.new([key])


@pytest.fixture(scope="module")
def sign(key):
    def mint(sub: str | None = "alice", **extra: Any) -> str:
        return key.sign(jf.claims(sub, **extra))

    return mint


# -- static records: the header ---------------------------------------------------------------

STATIC_TEAMS = [
    {"team_id": "t-gpt", "team_alias": "GPT Team", "models": ["gpt-4o"]},
    {"team_id": "t-claude", "team_alias": "Claude Team", "models": ["claude-3-5-sonnet"]},
    {"team_id": "t-other", "models": []},
    {"team_id": "t-blocked", "blocked": True},
]
STATIC_USERS = [
    {"user_id": "alice"},
    {"user_id": "solo-blocked", "teams": ["t-blocked"]},
    {"user_id": "solo-claude", "teams": ["t-claude"]},
    {"user_id": "gone", "metadata": {"scim_active": False}},
]


@pytest.fixture(scope="module")
def static(module_envoys, idp):
    return scenario(module_envoys, idp, "team-selection-static", teams=STATIC_TEAMS, users=STATIC_USERS,
                    jwtauth={"team_ids_jwt_field": "groups", "user_id_jwt_field": "sub"})


def test_the_header_picks_one_of_the_tokens_teams_and_upstream_sees_the_selected_team(static, sign):
    token = sign("alice", groups=["t-gpt", "t-claude"])
    # The groups path alone would take t-gpt for gpt-4o; the header says t-claude.
    assert_allowed(choose(static, token, None, "gpt-4o"), ident("alice", team_id="t-gpt", team_alias="GPT Team"))
    assert_allowed(choose(static, token, "t-claude", "claude-3-5-sonnet"),
                   ident("alice", team_id="t-claude", team_alias="Claude Team"))
    # The chosen team's models apply, whatever another of the caller's teams may use.
    assert_error(choose(static, token, "t-claude", "gpt-4o"), 401, "team_model_access_denied",
                 message=team_model_denied(["claude-3-5-sonnet"], "gpt-4o"), param="model", token_accepted=True)


def test_a_header_naming_a_team_outside_the_token_is_refused(static, sign):
    token = sign("alice", groups=["t-gpt", "t-claude"])
    reply = choose(static, token, "t-other", "gpt-4o")
    assert_forbidden(reply, header_not_allowed("t-other", ["t-gpt", "t-claude"]))


def test_the_users_only_team_applies_when_the_token_names_none(static, sign):
    # Newest LiteLLM acts for a user's only team: its rules hold (this was admitted before).
    assert_denied(choose(static, sign("solo-blocked"), None, "gpt-4o"), team_blocked("t-blocked"))
    assert_allowed(choose(static, sign("solo-claude"), None, "claude-3-5-sonnet"),
                   ident("solo-claude", team_id="t-claude", team_alias="Claude Team"))
    assert_error(choose(static, sign("solo-claude"), None, "gpt-4o"), 401, "team_model_access_denied",
                 message=team_model_denied(["claude-3-5-sonnet"], "gpt-4o"), param="model", token_accepted=True)


def test_a_user_deactivated_through_scim_is_refused(static, sign):
    assert_denied(choose(static, sign("gone"), None, "gpt-4o"),
                      "User=gone has been deactivated via SCIM. Keys owned by this user cannot be used.")


# -- LiteLLM as the source: fallback_to_db_teams ------------------------------------------------


@pytest.fixture(scope="module")
def litellm_src(module_sources):
    return module_sources.new(master_key=MASTER_KEY)


@pytest.fixture(scope="module")
def db_teams(module_envoys, idp, litellm_src):
    return scenario(module_envoys, idp, "team-selection-db", source=litellm_src,
                    record_source=litellm_source(litellm_src, ttl=60, negative_ttl=10, stale_ttl=0, timeout_ms=1000),
                    jwtauth={"team_ids_jwt_field": "groups", "user_id_jwt_field": "sub", "fallback_to_db_teams": True,
                             "enforce_team_based_model_access": True})


def test_a_token_without_teams_acts_for_the_users_first_team_that_may_use_the_model(db_teams, litellm_src, sign):
    user, gpt, claude = uid("u"), uid("t-gpt"), uid("t-claude")
    litellm_src.put_team(gpt, models=["gpt-4o"])
    litellm_src.put_team(claude, models=["claude-3-5-sonnet"])
    litellm_src.put_user(user, teams=[claude, gpt])
    token = sign(user)
    assert_allowed(choose(db_teams, token, None, "gpt-4o"), ident(user, team_id=gpt))
    assert_allowed(choose(db_teams, token, None, "claude-3-5-sonnet"), ident(user, team_id=claude))
    assert_forbidden(choose(db_teams, token, None, "o1"),
                     "No team you are a member of has access to the requested model: o1. Check `/models` to see the "
                     "models available to you.")
    # The header may name any of the user's teams; one it is not a member of is refused, as is
    # a team that does not exist, with the same text.
    assert_allowed(choose(db_teams, sign(user, groups=["t-unrelated"]), claude, None), ident(user, team_id=claude))
    other = uid("t-elsewhere")
    litellm_src.put_team(other)
    assert_forbidden(choose(db_teams, token, other, None), not_a_membership(other))
    assert_forbidden(choose(db_teams, token, "t-does-not-exist", None), not_a_membership("t-does-not-exist"))
    assert litellm_src.count(user_path(user)) == 1, litellm_src.counts()
    assert litellm_src.count(team_path(gpt)) == 1, litellm_src.counts()


def test_a_burst_on_two_workers_fetches_each_record_once(db_teams, litellm_src, sign):
    user, team = uid("u-burst"), uid("t-burst")
    litellm_src.put_team(team, models=["gpt-4o"])
    litellm_src.put_user(user, teams=[team])
    token = sign(user)
    db_teams.envoy  # started before the burst, not by it
    for reply in burst_calls([lambda: choose(db_teams, token, None, "gpt-4o")] * 24):
        assert_allowed(reply, ident(user, team_id=team))
    assert litellm_src.count(user_path(user)) == 1, litellm_src.counts()
    assert litellm_src.count(team_path(team)) == 1, litellm_src.counts()


def test_a_failing_source_is_a_503_never_a_request_without_its_team(db_teams, litellm_src, sign):
    user, team = uid("u-outage"), uid("t-outage")
    litellm_src.put_user(user, teams=[team])
    litellm_src.put_team(team, models=["gpt-4o"])
    litellm_src.fail_with(500)
    try:
        assert_records_unavailable(choose(db_teams, sign(user), None, "gpt-4o"))
    finally:
        litellm_src.heal()
    # A failed fetch is retried after about a second (docs/store.md); then the team applies.
    deadline = time.monotonic() + 5
    reply = choose(db_teams, sign(user), None, "gpt-4o")
    while reply.status == 503 and time.monotonic() < deadline:
        time.sleep(0.25)
        reply = choose(db_teams, sign(user), None, "gpt-4o")
    assert_allowed(reply, ident(user, team_id=team))


# -- aliases, from LiteLLM's list endpoints ------------------------------------------------------


@pytest.fixture(scope="module")
def by_alias(module_envoys, idp, litellm_src):
    return scenario(module_envoys, idp, "team-selection-alias", source=litellm_src,
                    record_source=litellm_source(litellm_src, ttl=60, negative_ttl=10, stale_ttl=0, timeout_ms=1000),
                    jwtauth={"team_alias_jwt_field": "team_name", "org_alias_jwt_field": "org_name",
                             "team_ids_jwt_field": "groups", "user_id_jwt_field": "sub"})


def test_teams_and_organizations_are_found_by_alias(by_alias, litellm_src, sign):
    user, team, org = uid("u-alias"), uid("t-alias"), uid("o-alias")
    team_alias, org_alias = f"Research {team}", f"ACME {org}"
    litellm_src.put_user(user)
    litellm_src.put_team(team, team_alias=team_alias, models=["gpt-4o"])
    # A team whose alias merely contains the other's: LiteLLM's list matches it, the filter must not.
    litellm_src.put_team(uid("t-near"), team_alias=f"{team_alias} (old)", models=[])
    litellm_src.put_org(org, organization_alias=org_alias)
    token = sign(user, team_name=team_alias, org_name=org_alias)
    assert_allowed(choose(by_alias, token, None, "gpt-4o"), ident(user, team_id=team, team_alias=team_alias, org_id=org))
    assert_error(choose(by_alias, token, None, "o1"), 401, "team_model_access_denied",
                 message=team_model_denied(["gpt-4o"], "o1"), param="model", token_accepted=True)
    assert_denied(choose(by_alias, sign(user, team_name="No Such Team"), None, None),
                  "Authentication Error, Team with alias 'No Such Team' doesn't exist in db. Create team via `/team/new` call.")
    assert_denied(choose(by_alias, sign(user, team_name=team_alias, org_name="Nobody Inc"), None, None),
                  "Authentication Error, Organization with alias 'Nobody Inc' doesn't exist in db. Create organization "
                  "via `/organization/new` call.")
    searches = [r for r in litellm_src.requests if r["path"].startswith("/v2/team/list") and team in unquote(r["path"])]
    assert len(searches) == 1, searches  # the alias answer is cached like a record


def test_an_alias_two_teams_share_names_neither(by_alias, litellm_src, sign):
    user, shared = uid("u-twin"), uid("Twins")
    litellm_src.put_user(user)
    litellm_src.put_team(uid("t-twin"), team_alias=shared)
    litellm_src.put_team(uid("t-twin"), team_alias=shared)
    assert_denied(choose(by_alias, sign(user, team_name=shared), None, None),
                  f"Authentication Error, Multiple teams found with alias '{shared}'. Please use team_id_jwt_field "
                  "instead or ensure team aliases are unique.")


def test_the_header_may_name_one_of_the_tokens_teams_by_alias(by_alias, litellm_src, sign):
    user, mine, other = uid("u-hdr"), uid("t-mine"), uid("t-other")
    litellm_src.put_user(user)
    litellm_src.put_team(mine, team_alias=f"Mine {mine}")
    litellm_src.put_team(other, team_alias=f"Other {other}")
    token = sign(user, groups=[mine])
    assert_allowed(choose(by_alias, token, f"Mine {mine}", None), ident(user, team_id=mine, team_alias=f"Mine {mine}"))
    assert_forbidden(choose(by_alias, token, f"Other {other}", None), header_not_allowed(f"Other {other}", [mine]))


# -- the header is a selection, never an identity ----------------------------------------------


@pytest.fixture(scope="module")
def token_only(module_envoys, idp):
    return scenario(module_envoys, idp, "team-selection-token-only", jwtauth={"team_id_jwt_field": "team"})


def test_a_client_cannot_name_a_team_its_token_does_not_have(token_only, sign):
    # Without records too: the header must name the token's team, and the upstream sees the
    # team the filter selected, never the client's value.
    assert_forbidden(choose(token_only, sign("alice", team="t-mine"), "team-of-mallory", None),
                     header_not_allowed("team-of-mallory", ["t-mine"]))
    reply = choose(token_only, sign("alice", team="t-mine"), "t-mine", None)
    echo = reply.json()["echo"]
    assert echo["headers"]["x-litellm-team-id"] == "t-mine", echo["headers"]


# -- sync_user_role_and_teams, written through to LiteLLM ----------------------------------------


@pytest.fixture(scope="module")
def syncing(module_envoys, idp, litellm_src):
    return scenario(module_envoys, idp, "team-selection-sync", source=litellm_src,
                    record_source=litellm_source(litellm_src, ttl=60, negative_ttl=10, stale_ttl=0, timeout_ms=1000,
                                                 write_through=True),
                    jwtauth={"team_ids_jwt_field": "groups", "user_id_jwt_field": "sub", "roles_jwt_field": "roles",
                             "sync_user_role_and_teams": True,
                             "jwt_litellm_role_map": [{"jwt_role": "llm-view*", "litellm_role": "internal_user_viewer"}]})


def test_the_tokens_role_and_teams_reach_the_user_record_once(syncing, litellm_src, sign):
    user, joined, left = uid("u-sync"), uid("t-join"), uid("t-left")
    litellm_src.put_team(joined)
    litellm_src.put_team(left)
    litellm_src.put_user(user, teams=[left], user_role="internal_user")
    token = sign(user, groups=[joined], roles=["llm-viewer"])
    syncing.envoy  # started before the burst, not by it
    for reply in burst_calls([lambda: choose(syncing, token, None, None)] * 12):
        echo = assert_allowed(reply, {**ident(user, team_id=joined), "x-litellm-user-role": "internal_user_viewer"})
        assert echo["headers"]["x-litellm-user-role"] == "internal_user_viewer"
    writes = {p: litellm_src.wait_for(p, 1, method="POST") for p in ("/user/update", "/team/member_add", "/team/member_delete")}
    assert all(writes.values()), litellm_src.counts()
    mine = lambda path: [r for r in litellm_src.requests_for(path, "POST") if user in json.dumps(r["json"])]  # noqa: E731
    # One Envoy, two workers: each change is sent once, however many requests carried it.
    assert [r["json"] for r in mine("/user/update")] == [{"user_id": user, "user_role": "internal_user_viewer"}]
    assert [r["json"] for r in mine("/team/member_add")] == [{"team_id": joined, "member": {"user_id": user, "role": "user"}}]
    assert [r["json"] for r in mine("/team/member_delete")] == [{"team_id": left, "user_id": user}]
    row = litellm_src.get("user", user)
    assert row["user_role"] == "internal_user_viewer" and row["teams"] == [joined], row
