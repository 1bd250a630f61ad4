"""Seeded generator of differential cases: LiteLLM configurations (the `general_settings` block
both LiteLLM and the filter take), team/user/org/end-user records, and requests (claims, route,
method, model) over the rules both implement.

    configs(seed, n_cases) -> list[Config]      every Config holds the requests sent under it

Cases are grouped by configuration so the filter side can serve a whole group from one Envoy.
Only configurations both sides accept are generated (LiteLLM_JWTAuth's constructor rules and the
filter's "needs records" rules), so a refused configuration is itself a finding.

The generator is plain `random.Random(seed)`: the same seed always gives the same cases, and a
case is reproducible from its printed JSON alone.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from typing import Any

# -- vocabulary ---------------------------------------------------------------------------------

MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4", "o1", "claude-3-5-sonnet", "gemini-1.5-pro", "gpt-4.1"]
TEAM_IDS = ["t1", "t2", "t3", "t4"]
TEAM_ALIASES = ["Research", "Sales", "Ops", "Platform", "Research"]  # "Research" is drawn twice as often
USERS = ["alice", "bob", "carol", "svc-1"]
EMAILS = ["alice@example.com", "bob@corp.example.com", "carol@other.org", "svc@example.com"]
ORGS = ["acme", "globex"]
END_USERS = ["cust-1", "cust-2", "cust-3"]
IDP_ROLES = ["llm-admin", "llm-team", "llm-user", "viewer"]
SCOPES = ["openid", "profile", "llm.basic", "llm.pro", "email"]  # admin scopes are added on purpose only

#: Where both sides ask about opaque tokens (`oidc_userinfo_enabled`): the oracle answers the call
#: itself, the filter side maps the authority to its loopback UserInfo server.
USERINFO_ENDPOINT = "http://userinfo.diff:8080/userinfo"
#: The share of configurations whose tokens are opaque, answered at the UserInfo endpoint.
USERINFO_SHARE = 0.2
#: The share of their requests whose token the IdP refuses (401).
USERINFO_REFUSED_SHARE = 0.1

# route, method, whether a model may be sent in the JSON body
ROUTES: list[tuple[str, str, bool, str]] = [
    # LLM API routes
    ("/v1/chat/completions", "POST", True, "llm"),
    ("/chat/completions", "POST", True, "llm"),
    ("/v1/completions", "POST", True, "llm"),
    ("/v1/embeddings", "POST", True, "llm"),
    ("/embeddings", "POST", True, "llm"),
    ("/v1/messages", "POST", True, "llm"),
    ("/v1/responses", "POST", True, "llm"),
    ("/v1/images/generations", "POST", True, "llm"),
    ("/v1/models", "GET", False, "llm"),
    ("/models", "GET", False, "llm"),
    ("/v1/threads/thread_abc/runs", "POST", False, "llm"),
    ("/v1/batches", "POST", False, "llm"),
    ("/mcp/tools/list", "POST", False, "llm"),
    # info routes
    ("/key/info", "GET", False, "info"),
    ("/team/info", "GET", False, "info"),
    ("/user/info", "GET", False, "info"),
    ("/model/info", "GET", False, "info"),
    ("/v2/model/info", "GET", False, "info"),
    ("/team/list", "GET", False, "info"),
    # management routes
    ("/key/generate", "POST", False, "management"),
    ("/key/delete", "POST", False, "management"),
    ("/team/new", "POST", False, "management"),
    ("/team/update", "POST", False, "management"),
    ("/user/new", "POST", False, "management"),
    ("/user/list", "GET", False, "management"),
    ("/organization/new", "POST", False, "management"),
    ("/model/new", "POST", False, "management"),
    # spend tracking
    ("/spend/logs", "GET", False, "spend"),
    ("/global/spend/logs", "GET", False, "spend"),
    # other
    ("/health", "GET", False, "other"),
    ("/metrics", "GET", False, "other"),
    ("/config/update", "POST", False, "other"),
    ("/guardrails/apply_guardrail", "POST", False, "other"),
    ("/v1/mcp/server", "GET", False, "other"),
    ("/some/unknown/route", "GET", False, "other"),
    # public
    ("/health/liveliness", "GET", False, "public"),
    ("/routes", "GET", False, "public"),
]
ROUTE_WEIGHTS = {"llm": 8, "info": 2, "management": 2, "spend": 1, "other": 1, "public": 0.3}

ROUTE_LIST_CHOICES = [
    ["management_routes", "info_routes"],
    ["management_routes", "spend_tracking_routes", "global_spend_tracking_routes", "info_routes", "openai_routes"],
    ["openai_routes", "info_routes"],
    ["llm_api_routes"],
    ["/v1/chat/completions", "/key/info"],
    ["openai_routes", "/key/*"],
]


@dataclass
class Config:
    cid: str
    general_settings: dict[str, Any]
    records: dict[str, list[dict]]
    requests: list[dict] = field(default_factory=list)  # {"claims", "route", "method", "model"[, "headers"]}

    def case(self, i: int) -> dict:
        r = self.requests[i]
        return {"general_settings": copy.deepcopy(self.general_settings),
                "records": copy.deepcopy(self.records), **copy.deepcopy(r)}

    def cases(self) -> list[dict]:
        return [self.case(i) for i in range(len(self.requests))]

    def key(self) -> str:
        return json.dumps([self.general_settings, self.records], sort_keys=True)


# -- configurations -----------------------------------------------------------------------------


def _p(rng: random.Random, prob: float) -> bool:
    return rng.random() < prob


def _models(rng: random.Random) -> list[str]:
    return rng.choice([
        [], ["gpt-4o"], ["gpt-4o", "gpt-4o-mini"], ["gpt-4o-mini", "claude-*"], ["openai/*"],
        ["all-proxy-models"], ["*"], ["gpt-4.*"], ["claude-3-5-sonnet"], ["o1", "gemini-1.5-pro"],
        ["gpt-4"],
    ])


def _budget(rng: random.Random) -> dict:
    if not _p(rng, 0.25):
        return {}
    budget = rng.choice([10.0, 50.0, 100.0])
    spend = rng.choice([0.0, budget / 2, budget, budget + 1])
    return {"max_budget": budget, "spend": spend}


def _records(rng: random.Random, jwt: dict) -> dict[str, list[dict]]:
    teams = []
    for tid in TEAM_IDS + (["t-default"] if jwt.get("team_id_default") else []):
        if _p(rng, 0.2) and tid != "t1":
            continue  # some teams do not exist
        team: dict[str, Any] = {"team_id": tid, "models": _models(rng)}
        if _p(rng, 0.12):
            team["blocked"] = True
        team.update(_budget(rng))
        if _p(rng, 0.2):
            team["organization_id"] = rng.choice(ORGS)
        # (No members_with_roles: static records refuse fields the filter does not read.)
        teams.append(team)
    users = []
    for uid, email in zip(USERS + EMAILS, EMAILS + [None] * len(EMAILS)):
        if _p(rng, 0.4):
            continue
        user: dict[str, Any] = {"user_id": uid}
        if email:
            user["user_email"] = email
        if _p(rng, 0.3):
            user["models"] = _models(rng)
        user.update(_budget(rng))
        if _p(rng, 0.25):
            user["user_role"] = rng.choice(["internal_user", "internal_user_viewer", "proxy_admin",
                                            "proxy_admin_viewer"])
        users.append(user)
    # Team aliases (found by `team_alias_jwt_field` and the team header); now and then two teams
    # share one, which then names neither.
    for team in teams:
        if _p(rng, 0.5):
            team["team_alias"] = rng.choice(TEAM_ALIASES)
    # Team memberships (LiteLLM's `teams` column): newest LiteLLM acts for a user's only team,
    # and `fallback_to_db_teams` chooses among them. A few users were deactivated through SCIM.
    for user in users:
        if _p(rng, 0.45):
            user["teams"] = rng.sample(TEAM_IDS + ["t-missing"], rng.randint(1, 2))
        if _p(rng, 0.04):
            user["metadata"] = {"scim_active": False}
    orgs = []
    for oid in ORGS:
        if _p(rng, 0.3):
            continue
        org: dict[str, Any] = {"organization_id": oid}
        if _p(rng, 0.3):
            org["models"] = _models(rng)
        org.update(_budget(rng))
        orgs.append(org)
    end_users = []
    for eid in END_USERS:
        if _p(rng, 0.3):
            continue
        eu: dict[str, Any] = {"user_id": eid}
        if _p(rng, 0.2):
            eu["blocked"] = True
        eu.update(_budget(rng))
        end_users.append(eu)
    return {"teams": teams, "users": users, "organizations": orgs, "end_users": end_users}


def gen_config(rng: random.Random, cid: str) -> Config:
    jwt: dict[str, Any] = {}
    gs: dict[str, Any] = {}
    with_records = _p(rng, 0.8)

    if _p(rng, 0.25):
        jwt["admin_jwt_scope"] = "llm-admin"
    if _p(rng, 0.3):
        jwt["admin_allowed_routes"] = rng.choice(ROUTE_LIST_CHOICES)

    team_mode = rng.choice(["none", "single", "single", "default", "single_default", "groups", "groups"]
                           if with_records else ["none", "single", "default", "single_default"])
    if team_mode in ("single", "single_default"):
        jwt["team_id_jwt_field"] = rng.choice(["team", "team", "org_info.team", "tid"])
    if team_mode in ("default", "single_default"):
        jwt["team_id_default"] = "t-default"
    if team_mode == "groups":
        jwt["team_ids_jwt_field"] = rng.choice(["groups", "groups", "realm.groups"])
        if _p(rng, 0.3):
            jwt["team_allowed_routes"] = rng.choice(ROUTE_LIST_CHOICES)
        if _p(rng, 0.35):
            jwt["enforce_team_based_model_access"] = True

    if _p(rng, 0.5):
        jwt["user_id_jwt_field"] = rng.choice(["sub", "sub", "preferred_username", "user.id"])
    if _p(rng, 0.4):
        jwt["user_email_jwt_field"] = "email"
        if _p(rng, 0.4):
            jwt["user_allowed_email_domain"] = rng.choice(["example.com", "corp.example.com"])
    if _p(rng, 0.3):
        jwt["org_id_jwt_field"] = rng.choice(["org", "tenant.org"])
    if _p(rng, 0.3):
        jwt["end_user_id_jwt_field"] = rng.choice(["customer", "azp"])

    if _p(rng, 0.3):
        jwt["roles_jwt_field"] = rng.choice(["roles", "realm_access.roles"])
        mappings = [{"role": "llm-admin", "internal_role": "proxy_admin"},
                    {"role": "llm-team", "internal_role": "team"},
                    {"role": "llm-user", "internal_role": "internal_user"}]
        rng.shuffle(mappings)
        jwt["role_mappings"] = mappings[: rng.randint(1, 3)]
        if _p(rng, 0.4):
            jwt["object_id_jwt_field"] = "oid"
    if _p(rng, 0.25):
        jwt["user_roles_jwt_field"] = rng.choice(["roles", "realm_access.roles", "user_roles"])
        jwt["user_allowed_roles"] = rng.choice([["llm-user"], ["llm-user", "llm-team"]])
    if _p(rng, 0.35):
        jwt["enforce_rbac"] = True
        if _p(rng, 0.7):
            perms = []
            for role in rng.sample(["team", "internal_user", "proxy_admin"], rng.randint(1, 3)):
                entry: dict[str, Any] = {"role": role}
                if _p(rng, 0.6):
                    entry["models"] = rng.choice([["gpt-4o"], ["gpt-4o", "gpt-4o-mini"], ["claude-3-5-sonnet"]])
                if _p(rng, 0.5):
                    entry["routes"] = rng.choice(ROUTE_LIST_CHOICES)
                perms.append(entry)
            gs["role_permissions"] = perms
    if _p(rng, 0.25):
        jwt["enforce_scope_based_access"] = True
        jwt["scope_mappings"] = rng.choice([
            [{"scope": "llm.basic", "models": ["gpt-4o-mini"]}],
            [{"scope": "llm.basic", "models": ["gpt-4o-mini"]}, {"scope": "llm.pro", "models": ["gpt-4o", "o1"]}],
            # (No `routes`: LiteLLM ignores them and the filter refuses them at load.)
            [{"scope": "llm.pro", "models": ["gpt-4o", "claude-3-5-sonnet"]}],
        ])
    if _p(rng, 0.2):
        gs["enforce_rbac"] = True
    if with_records:
        if _p(rng, 0.15) and "team_id_jwt_field" in jwt:
            jwt["team_id_upsert"] = True
        if _p(rng, 0.15):
            jwt["user_id_upsert"] = True

    if with_records:
        if _p(rng, 0.2):
            jwt["team_claim_fallback"] = True
        if _p(rng, 0.25):
            jwt["fallback_to_db_teams"] = True
        if _p(rng, 0.15):
            jwt["team_alias_jwt_field"] = "team_name"
        if _p(rng, 0.2):  # the token's roles and teams written to its user record
            jwt["sync_user_role_and_teams"] = True
            if "roles_jwt_field" in jwt and _p(rng, 0.7):
                jwt["jwt_litellm_role_map"] = rng.choice([
                    [{"jwt_role": "llm-*", "litellm_role": "internal_user_viewer"}],
                    [{"jwt_role": "llm-admin", "litellm_role": "proxy_admin"}, {"jwt_role": "*", "litellm_role": "internal_user"}],
                    [{"jwt_role": "viewer", "litellm_role": "proxy_admin_viewer"}],
                ])

    if jwt:
        gs["litellm_jwtauth"] = jwt
    records = _records(rng, jwt) if with_records else {}
    return Config(cid=cid, general_settings=gs, records=records)


# -- requests -----------------------------------------------------------------------------------


def _set_path(claims: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    node = claims
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def gen_request(rng: random.Random, cfg: Config, now: int) -> dict:
    jwt = cfg.general_settings.get("litellm_jwtauth", {})
    claims: dict[str, Any] = {"sub": rng.choice(USERS), "iat": now, "exp": now + 3600}
    admin_scope = jwt.get("admin_jwt_scope", "litellm_proxy_admin")
    scope_roll = rng.random()
    if scope_roll < 0.1:
        claims["scope"] = f"openid {admin_scope}"
    elif scope_roll < 0.14:
        claims["scope"] = [admin_scope, "profile"]
    elif scope_roll < 0.18:  # the other admin scope: an admin elsewhere, not here
        claims["scope"] = "openid " + ("llm-admin" if admin_scope == "litellm_proxy_admin" else "litellm_proxy_admin")
    elif scope_roll < 0.7:
        claims["scope"] = " ".join(rng.sample(SCOPES, rng.randint(1, 3)))
    # else: no scope claim

    for fld, pool in (("team_id_jwt_field", TEAM_IDS + ["t-missing"]),):
        if fld in jwt and _p(rng, 0.85):
            value: Any = rng.choice(pool)
            if _p(rng, 0.1):
                value = [value, rng.choice(TEAM_IDS)]
            _set_path(claims, jwt[fld], value)
    if "team_ids_jwt_field" in jwt and _p(rng, 0.85):
        groups = rng.choice([[], ["t1"], ["t2", "t3"], ["t-missing", "t4"], ["t4", "t1", "t2"], ["t3"], "t1"])
        _set_path(claims, jwt["team_ids_jwt_field"], groups)
    uid_field = jwt.get("user_id_jwt_field")
    if uid_field and uid_field != "sub" and _p(rng, 0.8):
        _set_path(claims, uid_field, rng.choice(USERS + ["dave"]))
    if "user_email_jwt_field" in jwt and _p(rng, 0.8):
        claims["email"] = rng.choice(EMAILS)
    if "org_id_jwt_field" in jwt and _p(rng, 0.75):
        _set_path(claims, jwt["org_id_jwt_field"], rng.choice(ORGS + ["initech"]))
    if "end_user_id_jwt_field" in jwt and _p(rng, 0.75):
        _set_path(claims, jwt["end_user_id_jwt_field"], rng.choice(END_USERS + ["cust-9"]))
    for fld in ("roles_jwt_field", "user_roles_jwt_field"):
        if fld in jwt and _p(rng, 0.75):
            roles: Any = rng.sample(IDP_ROLES, rng.randint(0, 2))
            if _p(rng, 0.1):
                roles = rng.choice(IDP_ROLES)  # a string role claim
            _set_path(claims, jwt[fld], roles)
    if "object_id_jwt_field" in jwt and _p(rng, 0.7):
        claims["oid"] = rng.choice(TEAM_IDS + USERS)

    weights = [ROUTE_WEIGHTS[r[3]] for r in ROUTES]
    route, method, takes_model, _group = rng.choices(ROUTES, weights=weights)[0]
    model = None
    if takes_model and _p(rng, 0.85):
        model = rng.choice(MODELS)
    req: dict[str, Any] = {"claims": claims, "route": route, "method": method, "model": model}
    if "team_alias_jwt_field" in jwt and _p(rng, 0.6):
        claims["team_name"] = rng.choice(TEAM_ALIASES + ["Nobody"])
    if _p(rng, 0.2):  # the caller picks a team (LiteLLM's team selection header), by id or alias
        req["headers"] = {"x-litellm-team-id": rng.choice(TEAM_IDS + ["t-missing", "Research", "Sales"])}
    return req


def with_userinfo(cfg: Config) -> None:
    """For a share of configurations, chosen by their id (a generator of its own, so the cases
    of every other configuration stay what they were): opaque tokens, their claims the UserInfo
    endpoint's answer, a few refused by the IdP."""
    rng = random.Random(f"{cfg.cid}/userinfo")
    if rng.random() >= USERINFO_SHARE:
        return
    jwt = cfg.general_settings.setdefault("litellm_jwtauth", {})
    jwt.update(oidc_userinfo_enabled=True, oidc_userinfo_endpoint=USERINFO_ENDPOINT)
    for i, req in enumerate(cfg.requests):
        req["opaque"] = f"opaque-{cfg.cid}-{i}-{rng.getrandbits(64):016x}"
        status = 401 if rng.random() < USERINFO_REFUSED_SHARE else 200
        req["userinfo"] = {"status": status, "body": req["claims"] if status == 200 else {"error": "invalid_token"}}


def configs(seed: int, n_cases: int, *, per_config: int = 12, now: int | None = None) -> list[Config]:
    """`n_cases` requests spread over configurations of about `per_config` requests each."""
    import time

    rng = random.Random(seed)
    now = int(time.time()) if now is None else now
    out: list[Config] = []
    made = 0
    while made < n_cases:
        cfg = gen_config(rng, f"s{seed}-c{len(out)}")
        k = min(n_cases - made, max(1, rng.randint(per_config // 2, per_config + per_config // 2)))
        cfg.requests = [gen_request(rng, cfg, now) for _ in range(k)]
        with_userinfo(cfg)
        out.append(cfg)
        made += k
    return out
