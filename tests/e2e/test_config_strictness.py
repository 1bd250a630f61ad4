"""A mistaken configuration never makes the filter less strict than the operator meant: a
misspelt field of a static record, or a setting that as written would check nothing, is refused
when Envoy loads the filter (`envoy --mode validate` runs the filter's configure step), naming the
field in the operator's words."""

from __future__ import annotations

import pytest

import harness
import jwt_fixtures as jf
from checks import assert_error, assert_forwarded

KEYS = "http://127.0.0.1:9/jwks"
CLUSTERS = {"127.0.0.1:9": ("127.0.0.1", 9)}


def _refused(tmp_path, config: dict, says: str) -> None:
    config = {"public_key_url": KEYS, **config}
    code, output = harness.validate(tmp_path, config, CLUSTERS)
    assert code != 0, f"Envoy accepted {config}\n{output}"
    assert says in output, f"the refusal does not say {says!r}:\n{output}"


def test_a_misspelt_team_field_is_refused_at_load_not_read_as_no_model_list(tmp_path, envoys, idps, keyring):
    # Spelled right, the team's model list holds: o1-pro is refused …
    key = keyring.get("strict-team", "RS256")
    idp = idps.new([key])
    proxy = envoys.scenario("strict-team", jwks=[idp], plugin_config={
        "public_key_url": idp.jwks_url, "teams": [{"team_id": "research", "models": ["gpt-4o"]}],
        "general_settings": {"litellm_jwtauth": {"team_id_jwt_field": "team"}}})
    token = key.sign(jf.claims("ana", team="research"))
    headers = {"content-type": "application/json"}
    denied = proxy.request(token, method="POST", data=b'{"model": "o1-pro"}', headers=headers)
    assert_error(denied, 401, "team_model_access_denied", param="model", token_accepted=True,
                 contains=["This team can only access models=['gpt-4o']. Tried to access o1-pro"])
    assert_forwarded(proxy.request(token, method="POST", data=b'{"model": "gpt-4o"}', headers=headers), sub="ana")
    # … so a typo must not turn it into "no list" (which LiteLLM reads as every model).
    _refused(tmp_path, {"teams": [{"team_id": "research", "modles": ["gpt-4o"]}],
                        "general_settings": {"litellm_jwtauth": {"team_id_jwt_field": "team"}}},
             "teams[0].modles: unknown field of a team record (known: ")


MISTAKES = {
    "user-field": ({"users": [{"user_id": "u", "max_budgt": 0}]}, "users[0].max_budgt: unknown field of a user record"),
    "org-field": ({"organizations": [{"organization_id": "o", "model": ["x"]}]}, "organizations[0].model: unknown field"),
    "end-user-field": ({"end_users": [{"user_id": "c", "block": True}]}, "end_users[0].block: unknown field"),
    "joined-budget-field": ({"teams": [{"team_id": "t", "litellm_budget_table": {"max_budet": 1}}]},
                            "teams[0].litellm_budget_table.max_budet: unknown field"),
    "team-twice": ({"teams": [{"team_id": "t"}, {"team_id": "t", "blocked": True}]},
                   'teams[1]: team "t" is configured twice'),
    "enable-jwt-auth-false": ({"general_settings": {"enable_jwt_auth": False}},
                              "general_settings.enable_jwt_auth: false is not supported"),
    "scope-gate-without-mappings": ({"general_settings": {"litellm_jwtauth": {"enforce_scope_based_access": True}}},
                                    "scope_mappings must be set if enforce_scope_based_access is true."),
    "mappings-without-scope-gate": (
        {"general_settings": {"litellm_jwtauth": {"scope_mappings": [{"scope": "s", "models": ["m"]}]}}},
        "enforce_scope_based_access must be true when scope_mappings is set"),
    "scope-routes-nobody-enforces": (
        {"general_settings": {"litellm_jwtauth": {"enforce_scope_based_access": True,
                                                  "scope_mappings": [{"scope": "s", "models": ["m"], "routes": ["/v1/models"]}]}}},
        "scope_mappings[0].routes: is not enforced"),
    "role-permissions-without-rbac": (
        {"general_settings": {"role_permissions": [{"role": "team", "models": ["gpt-4o"]}]}},
        "general_settings.role_permissions: only applies with general_settings.litellm_jwtauth.enforce_rbac: true"),
    "email-domain-without-email-field": (
        {"general_settings": {"litellm_jwtauth": {"user_allowed_email_domain": "example.com"}}},
        "user_allowed_email_domain: needs user_email_jwt_field"),
    "empty-audience": ({"audience": ""}, "audience: must not be empty"),
    "misspelt-route-group": ({"general_settings": {"litellm_jwtauth": {"admin_allowed_routes": ["management_route"]}}},
                             '"management_route" is neither a path'),
    "deny-rule-that-never-matches": ({"rules": [{"match": {"prefix": "/admin", "methods": ["DELEET"]}, "deny": True}]},
                                     "rules[0].match.methods[0]: must be an HTTP method"),
    "host-with-scheme": ({"rules": [{"match": {"prefix": "/", "hosts": ["https://api.example.com"]}, "deny": True}]},
                         "rules[0].match.hosts[0]: must be a host name"),
    "require-nothing": ({"rules": [{"match": {"prefix": "/"}, "require": {}}]}, "rules[0].require: asks for nothing"),
}


@pytest.mark.parametrize("config, says", MISTAKES.values(), ids=MISTAKES.keys())
def test_a_setting_that_would_check_less_than_written_is_refused_naming_the_field(tmp_path, config, says):
    _refused(tmp_path, config, says)


def test_the_same_settings_written_completely_load(tmp_path):
    config = {
        "public_key_url": KEYS,
        "teams": [{"team_id": "t", "models": ["gpt-4o"], "litellm_budget_table": {"max_budget": 5}}],
        "rules": [{"match": {"prefix": "/admin", "methods": ["DELETE"], "hosts": ["api.example.com"]}, "deny": True}],
        "general_settings": {"enable_jwt_auth": True,
                             "role_permissions": [{"role": "team", "models": ["gpt-4o"]}],
                             "litellm_jwtauth": {"enforce_rbac": True, "team_id_jwt_field": "team",
                                                 "user_email_jwt_field": "email", "user_allowed_email_domain": "example.com",
                                                 "enforce_scope_based_access": True,
                                                 "scope_mappings": [{"scope": "s", "models": ["m"]}],
                                                 "admin_allowed_routes": ["management_routes"]}},
    }
    code, output = harness.validate(tmp_path, config, CLUSTERS)
    assert code == 0, output
