"""LiteLLM authorization parity: which verified tokens may call which routes and models.

One Envoy per configuration (module scope), all against one demo IdP and one RS256 key:
default routes and the admin scope, LiteLLM's and configured public routes, custom admin
routes, `enforce_rbac` with `role_permissions` (team ids, Keycloak realm roles, Okta groups,
Azure AD app roles + `scp`), the scope → model gate, the requested model (JSON body, multipart
form, path), identity headers and filter state, `general_settings.enforce_rbac`,
`custom_validate`, the email domain, and `litellm_jwtauth` settings refused at load.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Mapping

import pytest

import harness
import jwt_fixtures as jf
from checks import (
    NO_API_KEY, assert_auth_error, assert_denied, assert_forbidden, assert_forwarded, assert_invalid_request,
)

CHAT = "/v1/chat/completions"
ADMIN_SCOPE = "litellm_proxy_admin"

ONLY_ADMIN = ("Authentication Error, Only proxy admin can be used to generate, delete, update info for new "
              "keys/users/teams. Route={route}. Your role=unknown. Your user_id={user_id}")
ADMIN_NOT_ALLOWED = "Authentication Error, Admin not allowed to access this route. Route={route}, Allowed Routes=["
UNMATCHED = ("Unmatched token passed in. enforce_rbac is set to True. Token must belong to a proxy admin, "
             "team, or user.")
NO_USER_OR_TEAM = ("No user or team id found in token. enforce_rbac is set to True. Token must belong to a "
                   "proxy admin, team, or user.")
NO_TEAM_ID = ("Authentication Error, No team found in token. Checked team_id field '{field}' and team_alias "
              "field 'None'.")
# The route refusal names the user record's id, masked as LiteLLM masks it; these scenarios
# have no records, and LiteLLM prints `unknown` (masked: seven stars) then.
NO_RECORD = "*******"
INVALID_JWT_TOKEN = "Invalid JWT token"
INVALID_BODY = "Invalid request body: "
BODY_TOO_LARGE = "Request body too large to inspect"


def model_not_available(model: str) -> str:
    return (f"The requested model '{model}' is not available for this API key, or the model name is "
            "invalid. Check the models available to you and try again.")


def role_route_denied(role: str, route: str, entries: list[str]) -> str:
    return f"Role={role} not allowed to call route={route}. Allowed routes=[{', '.join(repr(e) for e in entries)}]"


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("authz-rs256", "RS256")


@pytest.fixture(scope="module")
def idp(module_idps, key):
    return module_idps.new([key])


@pytest.fixture(scope="module")
def make(module_envoys, idp):
    """`make(name, general_settings=None, **top_level)`: a scenario with this plugin config."""

    def scenario(name: str, general_settings: Mapping[str, Any] | None = None, **top: Any):
        config: dict[str, Any] = {"public_key_url": idp.jwks_url, **top}
        if general_settings is not None:
            config["general_settings"] = dict(general_settings)
        return module_envoys.scenario(name, jwks=[idp], plugin_config=config)

    return scenario


@pytest.fixture(scope="module")
def sign(key):
    """`sign(sub, scope=None, **claims)`: a valid RS256 token."""

    def mint(sub: str | None = "alice", *, scope: str | list[str] | None = None, **extra: Any) -> str:
        return key.sign(jf.claims(sub, scope=scope, **extra))

    return mint


# -- request and assertion helpers ---------------------------------------------------------


def chat_body(model: str | None = None, *, pad: int = 0, **extra: Any) -> bytes:
    payload: dict[str, Any] = {"messages": [{"role": "user", "content": "hello " + "x" * pad}], **extra}
    if model is not None:
        payload["model"] = model
    return json.dumps(payload).encode()


# Envoy answers a local request in milliseconds; a request whose body is never looked at
# (a stalled filter) fails after this long instead of the default 15 s.
BODY_TIMEOUT = 5.0


def post(proxy, token: str | None, body: Any, *, path: str = CHAT, content_type: str = "application/json",
         headers: Mapping[str, str] | None = None):
    return proxy.request(token, method="POST", path=path, data=body, timeout=BODY_TIMEOUT,
                         headers={"content-type": content_type, **(headers or {})})


def litellm_headers(echo: dict) -> dict:
    return {k: v for k, v in echo["headers"].items() if k.startswith("x-litellm-")}


def assert_body_intact(echo: dict, body: bytes) -> None:
    assert echo["body_len"] == len(body), echo
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest(), "the body must reach the upstream byte-identical"


def assert_allowed(reply, identity: Mapping[str, str], *, body: bytes | None = None) -> dict:
    """Forwarded once, with the token intact, exactly these `x-litellm-*` headers and (when
    given) the body byte-identical."""
    echo = assert_forwarded(reply, sub=identity.get("x-litellm-user-id"), role=identity["x-litellm-user-role"])
    assert litellm_headers(echo) == dict(identity), echo["headers"]
    if body is not None:
        assert_body_intact(echo, body)
    return echo


def user(user_id: str | None, **more: str) -> dict:
    """The identity headers of a non-admin: `user(id, team_id=..., ...)`; `None`: no user id (a
    user id or email field is configured and the token lacks the claim; `sub` never stands in)."""
    out = {} if user_id is None else {"x-litellm-user-id": user_id}
    out.update({f"x-litellm-{k.replace('_', '-')}": v for k, v in more.items()})
    out["x-litellm-user-role"] = "internal_user"
    return out


def assert_public(reply, *, body: bytes | None = None) -> dict:
    """Reached the upstream once without any identity headers (authorization, if any, intact)."""
    assert reply.status == 200, f"expected 200 from the upstream, got {reply!r}"
    echo = reply.json()["echo"]
    assert len(reply.upstream_copies()) == 1
    assert litellm_headers(echo) == {}, echo["headers"]
    assert echo["headers"].get("authorization") == reply.sent_authorization
    if body is not None:
        assert_body_intact(echo, body)
    return echo


def multipart(fields: list[tuple[str, str | None, bytes]], boundary: str = "----llmjwtauthBoundary7MA4YWxk"):
    """A multipart/form-data body from (name, filename or None, content) parts; returns (content type, body)."""
    out = b""
    for name, filename, content in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename:
            out += b"Content-Type: audio/wav\r\n"
        out += b"\r\n" + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", out


def chunks(body: bytes, size: int = 1000) -> Iterator[bytes]:
    """The body as a generator: `requests` sends it with `transfer-encoding: chunked`."""
    for i in range(0, len(body), size):
        yield body[i:i + size]


# ==========================================================================================
# Default configuration: no litellm_jwtauth
# ==========================================================================================


@pytest.fixture(scope="module")
def default(make):
    return make("authz-default")


LLM_ROUTES = ["/v1/chat/completions", "/chat/completions", "/v1/models", "/v1/messages", "/v1/embeddings",
              "/openai/deployments/gpt-4o/chat/completions", "/v1beta/models/gemini-1.5-pro:generateContent",
              "/v1/chat/completions?api-version=2024-06-01"]
INFO_ROUTES = ["/key/info", "/health", "/model/info"]


@pytest.mark.parametrize("path", LLM_ROUTES + INFO_ROUTES)
def test_default_token_may_call_llm_api_and_info_routes(default, sign, path):
    assert_allowed(default.request(sign("alice"), path=path), user("alice"))


@pytest.mark.parametrize("path", ["/key/generate", "/team/new", "/custom/thing", "/health/readiness"])
def test_default_token_on_other_routes_is_only_proxy_admin(default, sign, path):
    reply = default.request(sign("alice"), method="POST", path=path)
    assert_denied(reply, ONLY_ADMIN.format(route=path, user_id=NO_RECORD))


def test_route_is_the_path_without_query_string(default, sign):
    reply = default.request(sign("alice"), path="/key/generate?next=/v1/chat/completions")
    assert_denied(reply, ONLY_ADMIN.format(route="/key/generate", user_id=NO_RECORD))


@pytest.mark.parametrize("scope", [f"openid {ADMIN_SCOPE}", ["profile", ADMIN_SCOPE]], ids=["string", "list"])
@pytest.mark.parametrize("path", ["/key/generate", "/team/new", "/spend/logs", "/global/spend/logs", "/key/info"])
def test_admin_scope_may_call_admin_allowed_routes(default, sign, scope, path):
    reply = default.request(sign("root", scope=scope), method="POST", path=path)
    assert_forwarded(reply, sub="root", role="proxy_admin")


def test_admin_scope_may_not_call_llm_routes_by_default(default, sign):
    reply = default.request(sign("root", scope=ADMIN_SCOPE), method="POST", data=chat_body("gpt-4o"),
                            headers={"content-type": "application/json"})
    # LiteLLM lists every route of the groups (~6 KB); the filter names the groups.
    assert_denied(reply, ADMIN_NOT_ALLOWED.format(route=CHAT)
                  + "'management_routes', 'spend_tracking_routes', 'global_spend_tracking_routes', 'info_routes']")


def test_default_config_does_not_inspect_bodies(default, sign):
    """No rule needs the model: invalid JSON and a body above the default 1 MiB inspection
    limit both reach the upstream untouched."""
    for body in (b'{"model": "gpt-4o", not json', chat_body("gpt-4o", pad=1_500_000)):
        assert_allowed(post(default, sign("alice"), body), user("alice"), body=body)


# -- public routes (LiteLLM's list) --------------------------------------------------------

LITELLM_PUBLIC = ["/", "/.well-known/litellm-ui-config", "/config/yaml", "/health/liveliness", "/health/liveness",
                  "/routes", "/test", "/public/model_hub", "/health/liveliness?probe=1"]


@pytest.mark.parametrize("path", LITELLM_PUBLIC)
def test_litellm_public_routes_need_no_token(default, path):
    assert_public(default.request(path=path))


@pytest.mark.parametrize("authorization", ["Bearer not-a-jwt", "Basic dXNlcjpwYXNz"])
def test_public_route_ignores_garbage_credentials(default, authorization):
    assert_public(default.request(path="/health/liveliness", authorization=authorization))


def test_public_route_strips_spoofed_identity_headers(default, sign):
    reply = default.request(sign("alice"), path="/health/liveness", headers={
        "x-litellm-user-id": "mallory", "X-LiteLLM-User-Role": "proxy_admin", "x-litellm-team-id": "evil"})
    assert_public(reply)


def test_route_outside_public_list_still_needs_a_token(default):
    assert_auth_error(default.request(path="/health/readiness"), NO_API_KEY)
    assert_auth_error(default.request(path="/health/liveliness/more"), NO_API_KEY)


# -- configured public routes --------------------------------------------------------------


@pytest.fixture(scope="module")
def public(make):
    return make("authz-public", {"public_routes": ["/status", "/docs/*"], "enable_jwt_auth": True})


@pytest.mark.parametrize("path", ["/status", "/status?verbose=1", "/docs/", "/docs/a/b.html", "/health/liveliness"])
def test_configured_public_routes_need_no_token(public, path):
    body = b"not json at all"
    assert_public(post(public, None, body, path=path, content_type="text/plain"), body=body)


@pytest.mark.parametrize("path", ["/status/more", "/statusx", "/docs", "/v1/chat/completions"])
def test_paths_near_configured_public_routes_need_a_token(public, path):
    assert_auth_error(public.request(path=path), NO_API_KEY)


# ==========================================================================================
# admin_jwt_scope and admin_allowed_routes
# ==========================================================================================


@pytest.fixture(scope="module")
def admin_routes(make):
    return make("authz-admin-routes", {"litellm_jwtauth": {
        "admin_jwt_scope": "llm.admin",
        "admin_allowed_routes": ["openai_routes", "/custom/admin/*", "/exact/admin"],
    }})


@pytest.mark.parametrize("path", [CHAT, "/openai/deployments/gpt-4o/chat/completions", "/custom/admin/",
                                  "/custom/admin/a/b", "/exact/admin"])
def test_configured_admin_scope_on_configured_routes(admin_routes, sign, path):
    reply = admin_routes.request(sign("root", scope="openid llm.admin"), path=path)
    assert_forwarded(reply, sub="root", role="proxy_admin")


@pytest.mark.parametrize("path", ["/key/generate", "/exact/admin/more", "/custom/administrator"])
def test_configured_admin_scope_elsewhere_is_refused_listing_the_routes(admin_routes, sign, path):
    reply = admin_routes.request(sign("root", scope=["llm.admin"]), path=path)
    # Route groups by name, not their expansion: the answer stays short.
    assert_denied(reply, ADMIN_NOT_ALLOWED.format(route=path) + "'openai_routes', '/custom/admin/*', '/exact/admin']")


def test_default_admin_scope_is_not_admin_when_another_is_configured(admin_routes, sign):
    token = sign("root", scope=ADMIN_SCOPE)
    assert_denied(admin_routes.request(token, path="/key/generate"),
                      ONLY_ADMIN.format(route="/key/generate", user_id=NO_RECORD))
    assert_allowed(admin_routes.request(token), user("root"))


# ==========================================================================================
# enforce_rbac + role_permissions with team ids
# ==========================================================================================

TEAM_ROUTES = ["openai_routes", "anthropic_routes", "/custom/team/*"]


@pytest.fixture(scope="module")
def rbac_team(make):
    return make("authz-rbac-team", {
        "role_permissions": [{"role": "team", "models": ["gpt-4o", "claude-3-5-sonnet"], "routes": TEAM_ROUTES}],
        "litellm_jwtauth": {"enforce_rbac": True, "team_id_jwt_field": "team", "user_id_jwt_field": "uid"},
    })


def test_team_token_with_allowed_model_is_forwarded(rbac_team, sign):
    body = chat_body("gpt-4o")
    reply = post(rbac_team, sign("s1", uid="u-1", team="t-1"), body)
    assert_allowed(reply, user("u-1", team_id="t-1"), body=body)


def test_team_token_with_other_model_is_refused(rbac_team, sign):
    # A team id makes the token a team even with a user id: the team's model list applies.
    reply = post(rbac_team, sign("s1", uid="u-1", team="t-1"), chat_body("gpt-4o-mini"))
    assert_forbidden(reply, model_not_available("gpt-4o-mini"))


def test_team_token_without_model_skips_the_model_gate(rbac_team, sign):
    assert_allowed(rbac_team.request(sign("s1", team="t-1"), path="/v1/models"), user(None, team_id="t-1"))
    body = chat_body(None)
    assert_allowed(post(rbac_team, sign("s1", team="t-1"), body), user(None, team_id="t-1"), body=body)


def test_team_token_on_a_route_group_member(rbac_team, sign):
    body = chat_body("claude-3-5-sonnet")
    reply = post(rbac_team, sign("s1", team=["t-a", "t-b"]), body, path="/v1/messages")
    assert_allowed(reply, user(None, team_id="t-a"), body=body)


def test_team_token_on_a_route_outside_its_routes_is_refused(rbac_team, sign):
    reply = rbac_team.request(sign("s1", team="t-1"), path="/key/info")
    assert_forbidden(reply, role_route_denied("team", "/key/info", TEAM_ROUTES))


def test_team_routes_do_not_lift_the_non_admin_route_check(rbac_team, sign):
    reply = rbac_team.request(sign("s1", uid="u-1", team="t-1"), path="/custom/team/x")
    assert_denied(reply, ONLY_ADMIN.format(route="/custom/team/x", user_id=NO_RECORD))


@pytest.mark.parametrize("path,model", [("/openai/deployments/gpt-4o-mini/chat/completions", "gpt-4o-mini"),
                                        ("/engines/davinci/completions", "davinci")])
def test_team_model_from_the_path_is_gated(rbac_team, sign, path, model):
    assert_forbidden(rbac_team.request(sign("s1", team="t-1"), method="POST", path=path), model_not_available(model))


def test_team_model_from_the_path_is_allowed(rbac_team, sign):
    reply = rbac_team.request(sign("s1", team="t-1"), path="/openai/deployments/gpt-4o/chat/completions")
    assert_allowed(reply, user(None, team_id="t-1"))


def test_team_token_with_invalid_json_body_is_a_bad_request(rbac_team, sign):
    reply = post(rbac_team, sign("s1", team="t-1"), b'{"model": "gpt-4o",')
    assert_invalid_request(reply, 400, prefix=INVALID_BODY)


def test_user_without_team_claim_needs_the_team_id(rbac_team, sign):
    assert_denied(rbac_team.request(sign("s1", uid="u-1")), NO_TEAM_ID.format(field="team"))


def test_token_matching_no_rbac_role_is_unmatched(rbac_team, sign):
    assert_forbidden(rbac_team.request(sign("s1", scope="openid")), UNMATCHED)


def test_admin_under_rbac_keeps_admin_routes(rbac_team, sign):
    reply = rbac_team.request(sign("root", scope=ADMIN_SCOPE), path="/team/new")
    echo = assert_forwarded(reply, sub=None, role="proxy_admin")
    assert "x-litellm-user-id" not in echo["headers"], "user_id_jwt_field is set and the token has no uid"


# ==========================================================================================
# Keycloak: realm roles (user_roles_jwt_field) and client roles (roles_jwt_field)
# ==========================================================================================

KC_USER_ROUTES = ["/v1/chat/completions", "/v1/models"]


@pytest.fixture(scope="module")
def keycloak(make):
    return make("authz-keycloak", {
        "role_permissions": [
            {"role": "internal_user", "models": ["llama-3-70b", "mistral-large"], "routes": KC_USER_ROUTES},
            {"role": "team", "routes": ["/v1/embeddings"]},
        ],
        "litellm_jwtauth": {
            "enforce_rbac": True,
            "user_roles_jwt_field": "realm_access.roles",
            "user_allowed_roles": ["llm-user"],
            "user_email_jwt_field": "email",
            "user_id_jwt_field": "preferred_username",
            "roles_jwt_field": "resource_access.litellm.roles",
            "role_mappings": [{"role": "service", "internal_role": "team"}],
        },
    })


def kc_user(sign, roles=("offline_access", "llm-user"), **extra):
    return sign("5f1c-kc-uuid", realm_access={"roles": list(roles)}, azp="litellm-proxy",
                resource_access={"account": {"roles": ["view-profile"]}}, **extra)


def test_keycloak_realm_role_user_with_allowed_model(keycloak, sign):
    body = chat_body("llama-3-70b")
    reply = post(keycloak, kc_user(sign, email="ann@corp.example"), body)
    assert_allowed(reply, user("ann@corp.example", user_email="ann@corp.example"), body=body)


def test_keycloak_user_without_username_or_email_has_no_user_id(keycloak, sign):
    # LiteLLM has no user id then; forwarding `sub` would mix it into the username namespace.
    assert_allowed(keycloak.request(kc_user(sign), path="/v1/models"), user(None))


def test_keycloak_realm_role_user_with_other_model_is_refused(keycloak, sign):
    assert_forbidden(post(keycloak, kc_user(sign), chat_body("gpt-4o")), model_not_available("gpt-4o"))


def test_keycloak_realm_role_user_on_other_route_is_refused(keycloak, sign):
    reply = keycloak.request(kc_user(sign), path="/v1/embeddings")
    assert_forbidden(reply, role_route_denied("internal_user", "/v1/embeddings", KC_USER_ROUTES))


def test_keycloak_user_body_is_inspected(keycloak, sign):
    assert_invalid_request(post(keycloak, kc_user(sign), b"model=llama"), 400, prefix=INVALID_BODY)


def test_keycloak_realm_roles_without_an_allowed_role_are_unmatched(keycloak, sign):
    assert_forbidden(keycloak.request(kc_user(sign, roles=["offline_access", "uma_authorization"])), UNMATCHED)


def test_keycloak_user_id_claim_makes_an_internal_user_whatever_the_roles(keycloak, sign):
    token = kc_user(sign, roles=["offline_access"], preferred_username="ann", email="ann@corp.example")
    assert_allowed(keycloak.request(token, path="/v1/models"), user("ann", user_email="ann@corp.example"))
    reply = keycloak.request(token, path="/v1/embeddings")
    assert_forbidden(reply, role_route_denied("internal_user", "/v1/embeddings", KC_USER_ROUTES))


def test_keycloak_client_role_mapped_to_team(keycloak, sign):
    token = sign("svc-uuid", realm_access={"roles": ["offline_access"]},
                 resource_access={"litellm": {"roles": ["service"]}})
    # The team role has no model list: the body is not inspected.
    body = b'{"model": "anything", "input": ["a", "b"]} trailing garbage'
    assert_allowed(post(keycloak, token, body, path="/v1/embeddings"), user(None), body=body)
    assert_forbidden(keycloak.request(token), role_route_denied("team", CHAT, ["/v1/embeddings"]))


# ==========================================================================================
# Okta: `groups` list mapped with role_mappings
# ==========================================================================================


@pytest.fixture(scope="module")
def okta(make):
    return make("authz-okta", {
        "role_permissions": [
            {"role": "internal_user", "models": ["gpt-4o-mini"]},
            {"role": "team", "models": ["text-embedding-3-small"], "routes": ["/v1/embeddings"]},
        ],
        "litellm_jwtauth": {
            "enforce_rbac": True,
            "roles_jwt_field": "groups",
            "role_mappings": [
                {"role": "LLM-Service-Accounts", "internal_role": "team"},
                {"role": "LLM-Users", "internal_role": "internal_user"},
            ],
        },
    })


def okta_token(sign, groups, sub="ann@corp.example"):
    return sign(sub, uid="00u1a2b3c4", cid="0oa9z8y7", groups=groups, scope=["openid", "profile"])


def test_okta_group_mapped_to_internal_user(okta, sign):
    body = chat_body("gpt-4o-mini")
    assert_allowed(post(okta, okta_token(sign, ["Everyone", "LLM-Users"]), body), user("ann@corp.example"), body=body)


def test_okta_string_group_claim_is_one_role(okta, sign):
    assert_allowed(post(okta, okta_token(sign, "LLM-Users"), chat_body("gpt-4o-mini")), user("ann@corp.example"))


def test_okta_internal_user_with_other_model_is_refused(okta, sign):
    assert_forbidden(post(okta, okta_token(sign, ["LLM-Users"]), chat_body("gpt-4o")), model_not_available("gpt-4o"))


def test_okta_unmapped_groups_are_unmatched(okta, sign):
    assert_forbidden(okta.request(okta_token(sign, ["Everyone", "LLM-Users-Pending"])), UNMATCHED)
    assert_forbidden(okta.request(okta_token(sign, "Everyone")), UNMATCHED)


def test_okta_first_matching_mapping_wins(okta, sign):
    """Mapping order decides, not the order of the groups in the token."""
    token = okta_token(sign, ["LLM-Users", "LLM-Service-Accounts"])
    assert_forbidden(okta.request(token), role_route_denied("team", CHAT, ["/v1/embeddings"]))
    body = json.dumps({"model": "text-embedding-3-small", "input": "hi"}).encode()
    assert_allowed(post(okta, token, body, path="/v1/embeddings"), user("ann@corp.example"), body=body)


# ==========================================================================================
# Scope → model gate, and how the requested model is found
# ==========================================================================================

SCOPE_LIMIT = 16384


@pytest.fixture(scope="module")
def scoped(make):
    return make("authz-scopes", {"litellm_jwtauth": {
        "enforce_scope_based_access": True,
        "scope_mappings": [
            {"scope": "llm.basic", "models": ["gpt-4o-mini", "whisper-1"]},
            {"scope": "llm.pro", "models": ["gpt-4o", "o1", "gemini-1.5-pro", "text-davinci-003"]},
        ],
    }}, max_body_bytes=SCOPE_LIMIT)


def test_scope_allows_its_models_with_a_large_body_intact(scoped, sign):
    body = chat_body("gpt-4o-mini", pad=6000, temperature=0.2, metadata={"model": "o1"})
    assert len(body) > 4096
    assert_allowed(post(scoped, sign("alice", scope="openid llm.basic"), body), user("alice"), body=body)


@pytest.mark.parametrize("scope,model", [("llm.basic llm.pro", "o1"), (["llm.pro"], "gpt-4o"),
                                         (["llm.basic", "llm.pro"], "gpt-4o-mini")])
def test_models_of_every_scope_of_the_token_count(scoped, sign, scope, model):
    assert_allowed(post(scoped, sign("alice", scope=scope), chat_body(model)), user("alice"))


@pytest.mark.parametrize("claims", [{"scope": "llm.basic"}, {}, {"scope": "openid"}, {"scp": "llm.pro"}],
                         ids=["other-scope", "no-scope", "unmapped-scope", "scp-not-read-by-default"])
def test_model_outside_the_token_scopes_is_refused(scoped, sign, claims):
    assert_forbidden(post(scoped, sign("alice", **claims), chat_body("o1")), model_not_available("o1"))


@pytest.mark.parametrize("body", [chat_body(None), chat_body(None, metadata={"model": "o1"}), b"", b"  \n"],
                         ids=["no-model", "nested-model", "empty", "blank"])
def test_request_without_model_passes_the_scope_gate(scoped, sign, body):
    assert_allowed(post(scoped, sign("alice"), body), user("alice"), body=body)
    assert_allowed(scoped.request(sign("alice"), path="/v1/models"), user("alice"))


@pytest.mark.parametrize("body", [b"{not json", b'{"model": "gpt-4o-mini"} trailing', b'{"model": 5}',
                                  b'{"model": "gpt-4o-mini", "model": "o1"}'],
                         ids=["broken", "trailing", "model-not-a-string", "duplicate-model"])
def test_body_that_must_be_inspected_but_is_not_json_is_a_bad_request(scoped, sign, body):
    assert_invalid_request(post(scoped, sign("alice", scope="llm.basic"), body), 400, prefix=INVALID_BODY)


def test_json_body_that_is_not_an_object_names_no_model(scoped, sign):
    """A JSON array has no top-level `model`: its first element must not be taken for one.
    (LiteLLM cannot read such a body either; the filter refuses it as not a JSON object.)"""
    reply = post(scoped, sign("alice", scope="llm.basic"), b'["o1"]')
    assert_invalid_request(reply, 400, prefix=INVALID_BODY)


def test_body_larger_than_max_body_bytes_is_refused(scoped, sign):
    body = chat_body("gpt-4o-mini", pad=SCOPE_LIMIT + 100)
    assert_invalid_request(post(scoped, sign("alice", scope="llm.basic"), body), 413, prefix=BODY_TOO_LARGE)


def test_chunked_body_is_inspected_and_forwarded_intact(scoped, sign):
    token = sign("alice", scope="llm.basic")
    allowed = chat_body("gpt-4o-mini", pad=9000)
    assert_allowed(post(scoped, token, chunks(allowed)), user("alice"), body=allowed)
    assert_forbidden(post(scoped, token, chunks(chat_body("o1", pad=9000))), model_not_available("o1"))
    too_large = chat_body("gpt-4o-mini", pad=3 * SCOPE_LIMIT)
    assert_invalid_request(post(scoped, token, chunks(too_large, 4096)), 413, prefix=BODY_TOO_LARGE)


def test_body_is_inspected_after_waiting_for_the_keys(envoys, idps, key, sign):
    """Cold start: the JWKS answers slowly, so requests wait for keys while their bodies arrive;
    each is then decided on its body."""
    idp = idps.new([key])
    idp.delay = 1.0
    jwtauth = {"enforce_scope_based_access": True,
               "scope_mappings": [{"scope": "llm.basic", "models": ["gpt-4o-mini"]}]}
    proxy = envoys.scenario("authz-cold-body", jwks=[idp], plugin_config={
        "public_key_url": idp.jwks_url, "general_settings": {"litellm_jwtauth": jwtauth}})
    proxy.envoy  # started; the JWKS fetch is still pending
    token = sign("alice", scope="llm.basic")
    allowed, denied, broken = chat_body("gpt-4o-mini", pad=5000), chat_body("o1"), b"{broken"
    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda body: post(proxy, token, body), [allowed, denied, broken]))
    assert_allowed(replies[0], user("alice"), body=allowed)
    assert_forbidden(replies[1], model_not_available("o1"))
    assert_invalid_request(replies[2], 400, prefix=INVALID_BODY)


def test_multipart_model_field_is_gated(scoped, sign):
    audio = b"RIFF\x24\x08\x00\x00WAVEfmt " + bytes(range(256)) * 20 + b'name="model"\r\n\r\no1'
    token = sign("alice", scope="llm.basic")
    content_type, body = multipart([("file", "speech.wav", audio), ("model", None, b"whisper-1"),
                                    ("language", None, b"en")])
    reply = post(scoped, token, body, path="/v1/audio/transcriptions", content_type=content_type)
    assert_allowed(reply, user("alice"), body=body)
    content_type, body = multipart([("file", "speech.wav", audio), ("model", None, b"whisper-large-v3")])
    reply = post(scoped, token, body, path="/v1/audio/transcriptions", content_type=content_type)
    assert_forbidden(reply, model_not_available("whisper-large-v3"))


@pytest.mark.parametrize("path,model", [
    ("/openai/deployments/gpt-4o/chat/completions", "gpt-4o"),
    ("/engines/text-davinci-003/completions", "text-davinci-003"),
    ("/v1beta/models/gemini-1.5-pro:generateContent", "gemini-1.5-pro"),
])
def test_model_from_the_path_is_gated(scoped, sign, path, model):
    assert_forbidden(scoped.request(sign("alice", scope="llm.basic"), path=path), model_not_available(model))
    assert_allowed(scoped.request(sign("alice", scope="llm.pro"), path=path), user("alice"))


# ==========================================================================================
# Azure AD: app roles (`roles`), delegated scopes (`scp`), object ids
# ==========================================================================================


@pytest.fixture(scope="module")
def azure(make):
    return make("authz-azure", {"litellm_jwtauth": {
        "admin_jwt_scope": "LLM.Admin",
        "enforce_rbac": True,
        "roles_jwt_field": "roles",
        "role_mappings": [
            {"role": "LLM.Service", "internal_role": "team"},
            {"role": "LLM.User", "internal_role": "internal_user"},
        ],
        "object_id_jwt_field": "oid",
        "user_email_jwt_field": "preferred_username",
        "org_id_jwt_field": "tid",
        "enforce_scope_based_access": True,
        "scope_mappings": [{"scope": "LLM.Use", "models": ["gpt-4o"]}, {"scope": "LLM.Premium", "models": ["o1"]}],
    }}, scope_claims=["scope", "scp"])


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def azure_user(sign, scp="User.Read LLM.Use", roles=("LLM.User",)):
    return sign("AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", scp=scp, roles=list(roles),
                oid="00000000-0000-0000-66f3-3332eca7ea81", tid=TENANT, preferred_username="ann@contoso.com",
                aud="api://litellm")


def test_azure_user_with_scp_scope_and_allowed_model(azure, sign):
    body = chat_body("gpt-4o")
    reply = post(azure, azure_user(sign), body)
    # object_id_jwt_field: for an internal_user the object id is the user id (LiteLLM).
    assert_allowed(reply, user("00000000-0000-0000-66f3-3332eca7ea81", org_id=TENANT,
                               user_email="ann@contoso.com"), body=body)


def test_azure_user_model_outside_scp_scopes_is_refused(azure, sign):
    assert_forbidden(post(azure, azure_user(sign), chat_body("o1")), model_not_available("o1"))


def test_azure_scope_claim_still_counts_with_scope_claims(azure, sign):
    token = sign("u", scope="LLM.Premium", roles=["LLM.User"], oid="oid-2", tid=TENANT)
    assert_allowed(post(azure, token, chat_body("o1")), user("oid-2", org_id=TENANT))


def test_azure_app_role_is_a_team_identified_by_object_id(azure, sign):
    token = sign("app-sub", roles=["LLM.Service"], oid="sp-oid-1", tid=TENANT, azp="client-app-id")
    assert_allowed(azure.request(token, path="/v1/models"), user(None, team_id="sp-oid-1", org_id=TENANT))
    # An app token has no delegated scopes: no model is allowed to it.
    assert_forbidden(post(azure, token, chat_body("gpt-4o")), model_not_available("gpt-4o"))


def test_azure_admin_scope_from_scp(azure, sign):
    token = sign("admin-sub", scp="LLM.Admin", tid=TENANT, preferred_username="root@contoso.com")
    reply = azure.request(token, path="/key/generate")
    assert_forwarded(reply, sub="root@contoso.com", role="proxy_admin")


def test_azure_token_without_mapped_role_is_unmatched(azure, sign):
    assert_forbidden(azure.request(azure_user(sign, roles=["Other.Role"]), path="/v1/models"), UNMATCHED)


# ==========================================================================================
# Identity headers and filter state
# ==========================================================================================

FILTER_STATE_NAMES = ["user_id", "team_id", "org_id", "end_user_id", "user_email", "user_role"]
ACCESS_LOG_FORMAT = "test-id=%REQ(X-TEST-ID)% " + " ".join(
    f"{name}=%FILTER_STATE(wasm.llm_jwt_auth.{name}:PLAIN)%" for name in FILTER_STATE_NAMES) + "\n"


def with_access_log_format(scenario, fmt: str):
    """Render this scenario's Envoy with another access log format (same file)."""
    build = scenario.build

    def build_with_format() -> harness.Envoy:
        envoy = build()
        config = json.loads(envoy.config_path.read_text())
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["access_log"][0]["typed_config"]["log_format"] = {"text_format_source": {"inline_string": fmt}}
        envoy.config_path.write_text(json.dumps(config, indent=2))
        return envoy

    scenario.build = build_with_format
    return scenario


def access_log_line(envoy: harness.Envoy, test_id: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if envoy.access_log_path.exists():
            for line in envoy.access_log_path.read_text(errors="replace").splitlines():
                if f"test-id={test_id} " in line:
                    return line
        time.sleep(0.1)
    raise AssertionError(f"no access log line for {test_id} in {timeout}s:\n{envoy.log_tail()}")


@pytest.fixture(scope="module")
def identity(make):
    scenario = make("authz-identity", {"litellm_jwtauth": {
        "user_id_jwt_field": "user.id",
        "user_email_jwt_field": "email",
        "team_id_jwt_field": "groups",
        "org_id_jwt_field": "metadata.org.id",
        "end_user_id_jwt_field": "customer\\.id",
    }}, filter_state=True)
    return with_access_log_format(scenario, ACCESS_LOG_FORMAT)


@pytest.fixture(scope="module")
def identity_without_filter_state(make):
    scenario = make("authz-identity-plain", {"litellm_jwtauth": {"user_id_jwt_field": "user.id"}})
    return with_access_log_format(scenario, ACCESS_LOG_FORMAT)


def full_claims(**overrides: Any) -> dict:
    claims = {"user": {"id": "u-1"}, "email": "ann@corp.example", "groups": ["team-a", "team-b"],
              "org": {"id": "org-9"}, "customer.id": "cust-7", "customer": {"id": "not-this-one"}}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_identity_headers_from_claim_paths_replace_spoofed_ones(identity, sign):
    # (x-litellm-team-id is a team selection, not a spoof: test_team_selection.py.)
    reply = identity.request(sign("s-1", **full_claims()), headers={
        "x-litellm-user-id": "mallory", "x-litellm-org-id": "evil-org",
        "x-litellm-end-user-id": "evil", "X-LiteLLM-User-Email": "m@evil", "x-litellm-user-role": "proxy_admin",
        "x-litellm-extra": "spoofed"})
    assert_allowed(reply, user("u-1", team_id="team-a", org_id="org-9", end_user_id="cust-7",
                               user_email="ann@corp.example"))


def test_user_id_falls_back_to_email_never_to_sub(identity, sign):
    reply = identity.request(sign("s-1", **full_claims(user=None, groups="team-z")))
    assert_allowed(reply, user("ann@corp.example", team_id="team-z", org_id="org-9", end_user_id="cust-7",
                               user_email="ann@corp.example"))
    reply = identity.request(sign("s-1", **full_claims(user=None, email=None, org=None, **{"customer.id": None})))
    assert_allowed(reply, user(None, team_id="team-a"))


def test_missing_team_claim_is_refused_naming_the_field(identity, sign):
    assert_denied(identity.request(sign("s-1", **full_claims(groups=None))), NO_TEAM_ID.format(field="groups"))


def test_other_route_message_names_the_user_record_not_the_claim(identity, sign):
    # LiteLLM names the user *record* (role, masked id); the token's user id u-1 has none here.
    reply = identity.request(sign("s-1", **full_claims()), path="/team/new")
    assert_denied(reply, ONLY_ADMIN.format(route="/team/new", user_id=NO_RECORD))


def test_identity_is_published_as_filter_state(identity, sign):
    reply = identity.request(sign("s-1", **full_claims()))
    assert_allowed(reply, user("u-1", team_id="team-a", org_id="org-9", end_user_id="cust-7",
                               user_email="ann@corp.example"))
    line = access_log_line(identity.envoy, reply.test_id)
    expected = {"user_id": "u-1", "team_id": "team-a", "org_id": "org-9", "end_user_id": "cust-7",
                "user_email": "ann@corp.example", "user_role": "internal_user"}
    for name, value in expected.items():
        assert f"{name}={value}" in line.split(), f"{name}: {line!r}"


def test_filter_state_is_opt_in(identity_without_filter_state, sign):
    reply = identity_without_filter_state.request(sign("s-1", **full_claims()))
    assert reply.status == 200, reply
    line = access_log_line(identity_without_filter_state.envoy, reply.test_id)
    assert "user_id=-" in line.split() and "user_role=-" in line.split(), line


@pytest.fixture(scope="module")
def team_default(make):
    return make("authz-team-default", {"litellm_jwtauth": {"team_id_jwt_field": "team",
                                                            "team_id_default": "default-team"}})


def test_team_id_default_when_the_claim_is_missing(team_default, sign):
    assert_allowed(team_default.request(sign("alice")), user("alice", team_id="default-team"))
    assert_allowed(team_default.request(sign("alice", team="t-7")), user("alice", team_id="t-7"))


# ==========================================================================================
# general_settings.enforce_rbac (role_permissions ignored without litellm_jwtauth.enforce_rbac)
# ==========================================================================================


@pytest.fixture(scope="module")
def general_rbac(make):
    # general_settings.enforce_rbac alone (role_permissions would need litellm_jwtauth.enforce_rbac:
    # without it they are refused at load, see test_config_strictness.py).
    return make("authz-general-rbac", {
        "enforce_rbac": True,
        "litellm_jwtauth": {"user_id_jwt_field": "uid", "user_email_jwt_field": "email"},
    })


def test_general_enforce_rbac_refuses_tokens_without_user_or_team_id(general_rbac, sign):
    assert_forbidden(general_rbac.request(sign("alice", scope="openid")), NO_USER_OR_TEAM)


def test_general_enforce_rbac_accepts_a_user_id_or_email(general_rbac, sign):
    # No rule reads the model: the body is not even read.
    body = b'{"model": "gpt-4o", broken'
    assert_allowed(post(general_rbac, sign("alice", uid="u-1"), body), user("u-1"), body=body)
    assert_allowed(general_rbac.request(sign("alice", email="a@corp.example")),
                   user("a@corp.example", user_email="a@corp.example"))


def test_general_enforce_rbac_exempts_admins(general_rbac, sign):
    reply = general_rbac.request(sign("root", scope=ADMIN_SCOPE), path="/key/generate")
    echo = assert_forwarded(reply, sub=None, role="proxy_admin")
    assert "x-litellm-user-id" not in echo["headers"]


# ==========================================================================================
# custom_validate and the email domain
# ==========================================================================================


@pytest.fixture(scope="module")
def custom(make):
    return make("authz-custom-validate", {"litellm_jwtauth": {"custom_validate": [
        {"claim": "tenant", "equals": "acme"},
        {"claim": "realm_access.roles", "any_of": ["llm", "ml"]},
        {"claim": "amr", "all_of": ["pwd", "mfa"]},
    ]}})


GOOD_CUSTOM = {"tenant": "acme", "realm_access": {"roles": ["x", "ml"]}, "amr": ["mfa", "otp", "pwd"]}


def test_custom_validate_passes_when_every_rule_holds(custom, sign):
    assert_allowed(custom.request(sign("alice", **GOOD_CUSTOM)), user("alice"))


@pytest.mark.parametrize("change", [
    {"tenant": "evil"}, {"tenant": None}, {"realm_access": {"roles": ["x"]}}, {"realm_access": None},
    {"amr": ["pwd"]}, {"amr": "pwd"},
], ids=["equals-differs", "equals-missing", "any_of-none", "any_of-missing", "all_of-partial", "all_of-string"])
def test_custom_validate_refuses_when_a_rule_fails(custom, sign, change):
    claims = {k: v for k, v in {**GOOD_CUSTOM, **change}.items() if v is not None}
    assert_forbidden(custom.request(sign("alice", **claims)), INVALID_JWT_TOKEN)


def test_custom_validate_applies_to_admins_too(custom, sign):
    token = sign("root", scope=ADMIN_SCOPE, **{**GOOD_CUSTOM, "tenant": "other"})
    assert_forbidden(custom.request(token, path="/key/generate"), INVALID_JWT_TOKEN)


@pytest.fixture(scope="module")
def email_domain(make):
    return make("authz-email-domain", {"litellm_jwtauth": {"user_email_jwt_field": "email",
                                                            "user_allowed_email_domain": "corp.example"}})


def test_email_in_the_allowed_domain_is_the_user_id(email_domain, sign):
    reply = email_domain.request(sign("s-1", email="ann@corp.example"))
    assert_allowed(reply, user("ann@corp.example", user_email="ann@corp.example"))
    reply = email_domain.request(sign("s-1", email="ann@corp.example"), path="/key/generate")
    assert_denied(reply, ONLY_ADMIN.format(route="/key/generate", user_id=NO_RECORD))


def test_email_in_another_domain_is_refused(email_domain, sign):
    reply = email_domain.request(sign("s-1", email="eve@evil.example"))
    # LiteLLM's ProxyException names the parameter.
    assert_forbidden(reply, "Email domain not allowed. User email: eve@evil.example. Allowed domain: corp.example",
                     param="user_email")
    assert reply.headers.get("x-llm-jwt-auth-reason") == "email_domain", reply


# ==========================================================================================
# litellm_jwtauth settings refused at load
# ==========================================================================================

REFUSED = {
    "unknown_key": ({"user_id_jwt_feild": "uid"}, "Invalid arguments provided:"),
    "roles_without_allowed_roles": ({"user_roles_jwt_field": "realm_access.roles"},
                                    "user_allowed_roles must be provided if user_roles_jwt_field is set."),
    "team_ids_groups_path_without_records": ({"team_ids_jwt_field": "groups"}, "needs team/user records"),
    "unsupported_newest_feature": ({"virtual_key_claim_field": "client_id"}, "does not support yet"),
    "userinfo_without_endpoint": ({"oidc_userinfo_enabled": True}, "oidc_userinfo_endpoint: must be set"),
}


@pytest.mark.parametrize("jwtauth,mentions", REFUSED.values(), ids=REFUSED.keys())
def test_litellm_jwtauth_setting_is_refused_at_load(envoys, idps, keyring, jwtauth, mentions):
    idp = idps.new([keyring.get("authz-rs256", "RS256")])
    proxy = envoys.scenario("authz-refused", jwks=[idp], plugin_config={
        "public_key_url": idp.jwks_url, "general_settings": {"litellm_jwtauth": jwtauth}})
    envoy = proxy.spawn()
    try:
        envoy.wait_ready(timeout=8.0)
    except harness.EnvoyFailed as exc:
        assert exc.returncode != 0, f"envoy exited 0 instead of refusing the config\n{exc.log}"
        assert mentions in exc.log, f"the logs do not mention {mentions!r}:\n{exc.log}"
    else:
        pytest.fail(f"envoy accepted {jwtauth} and became ready\n{envoy.log_tail()}", pytrace=False)
