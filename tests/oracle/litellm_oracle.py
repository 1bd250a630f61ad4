#!/usr/bin/env python3
"""LiteLLM itself as an oracle for llm-jwt-auth's authorization decisions.

Runs LiteLLM's own `user_api_key_auth()` (litellm/proxy/auth/user_api_key_auth.py → the JWT
`auth_builder` in handle_jwt.py → the centralized `common_checks` of auth_checks.py → its
exception conversion) in-process, with no database and no network:

* the JWT is signed here (RS256, a key generated at start) and its JWKS is put in LiteLLM's
  key cache under the key LiteLLM reads for `JWT_PUBLIC_KEY_URL` (`litellm_jwt_auth_keys_<url>`);
  LiteLLM's HTTP client is replaced by one that raises, so a cache miss cannot go out;
* `proxy_server.prisma_client` is a fake whose tables answer from the case's records (teams,
  users, organizations, end users; everything else is empty);
* the write endpoints LiteLLM calls during JWT auth (`new_team` for `team_id_upsert`,
  `team_member_add` from `map_user_to_teams`, `patch_team_membership` from
  `sync_user_role_and_teams`) and user creation (`litellm_usertable.create`) are recorded and
  reported as `upserts`;
* a case with an `opaque` token (`oidc_userinfo_enabled`) is answered through LiteLLM's own
  UserInfo path (`JWTAuthManager.authenticate_jwt` → `get_oidc_userinfo`): the HTTP client
  answers the UserInfo call with the case's `userinfo` (status, body), and the proxy's gate in
  front of JWT auth (`is_jwt`, which only lets three-part tokens in, so that a LiteLLM proxy
  never reaches the UserInfo path) is opened for that token only; `authenticate_jwt`'s own
  `is_jwt` test is LiteLLM's;
* a case with an `introspection` answer (`routing_overrides`) gives LiteLLM's OAuth2 check
  (`Oauth2Handler.check_oauth2_token`) its environment (`OAUTH_TOKEN_INFO_ENDPOINT`, …, from the
  case's `introspection.env`) and an HTTP client that answers with the case's status and body;
* every case gets fresh caches (LiteLLM's in-memory key/team/user caches and the per-process
  "last DB access" table), so cases are independent.

Usage
    decide(case) -> answer                    (import this module; see below)
    python litellm_oracle.py --serve          one JSON case per stdin line, one JSON answer per
                                              stdout line (the 7-10 s import is paid once)
    python litellm_oracle.py CASE.json        one case, pretty-printed answer

A case:
    {"general_settings": {..., "litellm_jwtauth": {...}},   # LiteLLM's block as in config.yaml
     "claims": {...},                                        # signed as they are (exp added if absent)
     "route": "/v1/chat/completions", "method": "POST",
     "model": "gpt-4o" | null,                               # put in the JSON body when given
     "records": {"teams": [...], "users": [...], "organizations": [...], "end_users": [...]},
     "opaque": "<token>", "userinfo": {"status": 200, "body": {...claims}},   (optional: see above)
     "introspection": {"env": {"OAUTH_TOKEN_INFO_ENDPOINT": ..., ...}, "status": 200, "body": {...}}}

An answer:
    {"allow": bool, "status": int, "message": str, "type": str | null, "param": str | null,
     "user_id", "team_id", "org_id", "end_user_id", "user_role", "user_email",
     "db_user_role" (on success: the effective role of the resolved user row, which LiteLLM's
                     non-admin route rules read; a row without a valid role counts as internal_user),
     "upserts": [{"kind": "team" | "user" | "team_member" | "team_membership", ...}],
     "exception": "<class of what LiteLLM raised>" | null,
     "extra": {"team_models", "team_tpm_limit", "team_rpm_limit", "team_alias"}}   (success only)
On success status is 200 and message ""; on failure status is `int(ProxyException.code)` and the
ids are null. `PYTHONHASHSEED=0` must be set before the interpreter starts (LiteLLM prints Python
sets in some messages); `--serve` re-executes itself with it when it is missing.

This file contains no LiteLLM code: it imports the installed package (tests/oracle/requirements.txt).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import sys
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price download at import
os.environ.setdefault("LITELLM_LOG", "CRITICAL")
JWKS_URL = "http://litellm-oracle.invalid/.well-known/jwks.json"
os.environ["JWT_PUBLIC_KEY_URL"] = JWKS_URL
for _var in ("JWT_AUDIENCE", "JWT_ISSUER", "DATABASE_URL", "REDIS_HOST", "REDIS_URL"):
    os.environ.pop(_var, None)

MASTER_KEY = "sk-litellm-oracle-master"
KID = "litellm-oracle"

_state: dict[str, Any] = {}


# -- fake database -------------------------------------------------------------------------------


class Row(dict):
    """A DB row: a dict that also answers attribute access, `.dict()` and `.model_dump()`, as
    prisma's models do."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self.get(name)

    def dict(self, *args: Any, **kwargs: Any) -> dict:  # noqa: A003 - prisma's name
        return {k: v for k, v in self.items()}

    def model_dump(self, *args: Any, **kwargs: Any) -> dict:
        return self.dict()

    def model_dump_json(self, *args: Any, **kwargs: Any) -> str:
        return json.dumps(self.dict(), default=str)


def _matches(row: dict, where: dict | None) -> bool:
    if not where:
        return True
    for key, cond in where.items():
        if key in ("OR", "AND", "NOT"):
            parts = cond if isinstance(cond, list) else [cond]
            results = [_matches(row, part) for part in parts]
            if key == "OR" and not any(results):
                return False
            if key == "AND" and not all(results):
                return False
            if key == "NOT" and any(results):
                return False
            continue
        value = row.get(key)
        if isinstance(cond, dict):
            mode_insensitive = cond.get("mode") == "insensitive"
            for op, arg in cond.items():
                if op == "mode":
                    continue
                a, b = value, arg
                if mode_insensitive and isinstance(a, str) and isinstance(b, str):
                    a, b = a.lower(), b.lower()
                if op == "equals" and a != b:
                    return False
                if op == "in" and a not in (arg or []):
                    return False
                if op == "not" and a == b:
                    return False
                if op == "has" and (not isinstance(value, list) or arg not in value):
                    return False
                if op == "hasSome" and (not isinstance(value, list) or not set(arg) & set(value)):
                    return False
                if op == "contains" and (a is None or b not in a):
                    return False
                if op == "is_empty" and bool(value) == bool(arg):
                    return False
        elif value != cond:
            return False
    return True


class FakeTable:
    def __init__(self, name: str, rows: list[dict], key: str | None, db: "FakeDB") -> None:
        self.name = name
        self.rows = [Row(r) for r in rows]
        self.key = key
        self.db = db

    async def find_unique(self, where: dict | None = None, include: Any = None, **_: Any) -> Row | None:
        self.db.reads.append((self.name, "find_unique", where))
        for row in self.rows:
            if _matches(row, where):
                return row
        return None

    async def find_first(self, where: dict | None = None, include: Any = None, **_: Any) -> Row | None:
        self.db.reads.append((self.name, "find_first", where))
        for row in self.rows:
            if _matches(row, where):
                return row
        return None

    async def find_many(self, where: dict | None = None, include: Any = None, take: int | None = None,
                        **_: Any) -> list[Row]:
        self.db.reads.append((self.name, "find_many", where))
        out = [row for row in self.rows if _matches(row, where)]
        return out[:take] if take else out

    async def count(self, where: dict | None = None, **_: Any) -> int:
        return len([row for row in self.rows if _matches(row, where)])

    async def create(self, data: dict | None = None, include: Any = None, **_: Any) -> Row:
        data = dict(data or {})
        self.db.writes.append({"table": self.name, "op": "create", "data": _jsonable(data)})
        row = Row(self.db.defaults(self.name, data))
        self.rows.append(row)
        return row

    async def upsert(self, where: dict | None = None, data: dict | None = None, **_: Any) -> Row:
        self.db.writes.append({"table": self.name, "op": "upsert", "where": _jsonable(where),
                               "data": _jsonable(data)})
        found = await self.find_first(where=where)
        return found or Row((data or {}).get("create", {}))

    async def update(self, where: dict | None = None, data: dict | None = None, **_: Any) -> Row | None:
        self.db.writes.append({"table": self.name, "op": "update", "where": _jsonable(where),
                               "data": _jsonable(data)})
        for row in self.rows:
            if _matches(row, where):
                for k, v in (data or {}).items():
                    if not isinstance(v, dict):
                        row[k] = v
                return row
        return None

    async def update_many(self, where: dict | None = None, data: dict | None = None, **_: Any) -> int:
        self.db.writes.append({"table": self.name, "op": "update_many", "where": _jsonable(where),
                               "data": _jsonable(data)})
        return 0

    async def delete(self, where: dict | None = None, **_: Any) -> None:
        return None

    async def delete_many(self, where: dict | None = None, **_: Any) -> int:
        return 0

    async def group_by(self, *args: Any, **kwargs: Any) -> list:
        return []


class _Tx:
    def __init__(self, db: "FakeDB") -> None:
        self.db = db

    async def __aenter__(self) -> "FakeDB":
        return self.db

    async def __aexit__(self, *exc: Any) -> bool:
        return False


class FakeDB:
    """`prisma_client.db`: the four record tables from the case, every other table empty."""

    TABLES = {
        "litellm_teamtable": ("teams", "team_id"),
        "litellm_usertable": ("users", "user_id"),
        "litellm_organizationtable": ("organizations", "organization_id"),
        "litellm_endusertable": ("end_users", "user_id"),
    }

    def __init__(self, records: dict[str, list[dict]]) -> None:
        self.reads: list = []
        self.writes: list = []
        self._tables: dict[str, FakeTable] = {}
        for table, (kind, key) in self.TABLES.items():
            rows = [self.defaults(table, dict(r)) for r in records.get(kind) or []]
            self._tables[table] = FakeTable(table, rows, key, self)

    @staticmethod
    def defaults(table: str, row: dict) -> dict:
        """Columns a prisma row always has (LiteLLM reads some with attribute access)."""
        if table == "litellm_teamtable":
            base = {"team_alias": None, "organization_id": None, "admins": [], "members": [],
                    "members_with_roles": [], "metadata": {}, "tpm_limit": None, "rpm_limit": None,
                    "max_budget": None, "budget_duration": None, "models": [], "blocked": False,
                    "spend": 0.0, "max_parallel_requests": None, "budget_reset_at": None,
                    "model_id": None, "litellm_model_table": None, "litellm_budget_table": None,
                    "object_permission_id": None, "object_permission": None}
        elif table == "litellm_usertable":
            base = {"user_email": None, "user_alias": None, "user_role": None, "teams": [],
                    "models": [], "max_budget": None, "spend": 0.0, "metadata": {},
                    "organization_memberships": [], "sso_user_id": None, "tpm_limit": None,
                    "rpm_limit": None, "model_max_budget": {}, "budget_duration": None,
                    "budget_reset_at": None, "object_permission_id": None}
        elif table == "litellm_organizationtable":
            # budget_id is a required string column; limits live in the joined budget row
            row = dict(row)
            budget = {k: row.pop(k) for k in ("max_budget", "tpm_limit", "rpm_limit") if k in row}
            row.setdefault("budget_id", f"oracle-budget-{row.get('organization_id')}")
            if row.get("litellm_budget_table") is None:
                row["litellm_budget_table"] = {"budget_id": row["budget_id"], **budget}
            base = {"organization_alias": None, "metadata": {}, "models": [],
                    "spend": 0.0, "model_spend": {}, "litellm_budget_table": None,
                    "object_permission_id": None, "created_by": "oracle", "updated_by": "oracle",
                    "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"}
        elif table == "litellm_endusertable":
            row = dict(row)
            budget = {k: row.pop(k) for k in ("max_budget", "tpm_limit", "rpm_limit") if k in row}
            base = {"alias": None, "spend": 0.0, "allowed_model_region": None,
                    "default_model": None, "blocked": False, "budget_id": None,
                    "litellm_budget_table": None, "object_permission_id": None}
            if budget and row.get("litellm_budget_table") is None:
                row["budget_id"] = row.get("budget_id") or f"oracle-{row.get('user_id')}"
                row["litellm_budget_table"] = {"budget_id": row["budget_id"], **budget}
        else:
            base = {}
        return {**base, **row}

    def __getattr__(self, name: str) -> FakeTable:
        if name.startswith("__"):
            raise AttributeError(name)
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = FakeTable(name, [], None, self)
        return table

    def tx(self, *args: Any, **kwargs: Any) -> _Tx:
        return _Tx(self)

    def batch_(self) -> Any:
        return self

    async def query_raw(self, *args: Any, **kwargs: Any) -> list:
        return []

    async def execute_raw(self, *args: Any, **kwargs: Any) -> int:
        return 0


class FakePrisma:
    """`proxy_server.prisma_client`."""

    def __init__(self, records: dict[str, list[dict]]) -> None:
        self.db = FakeDB(records)
        self.writer_db = self.db

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        async def _none(*args: Any, **kwargs: Any) -> None:
            return None

        return _none

    async def get_data(self, *args: Any, **kwargs: Any) -> Any:
        table = kwargs.get("table_name")
        query_type = kwargs.get("query_type", "find_unique")
        key_map = {"team": "litellm_teamtable", "user": "litellm_usertable",
                   "organization": "litellm_organizationtable"}
        name = key_map.get(table or "")
        if name is None:
            return [] if query_type == "find_all" else None
        rows = self.db._tables[name].rows
        if query_type == "find_all":
            return list(rows)
        for field in ("team_id", "user_id", "organization_id"):
            if kwargs.get(field) is not None:
                return next((r for r in rows if r.get(field) == kwargs[field]), None)
        return None


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=lambda o: getattr(o, "model_dump", lambda: str(o))()))
    except Exception:
        return str(value)


# -- LiteLLM set-up ------------------------------------------------------------------------------


def _import() -> None:
    if _state:
        return
    t0 = time.monotonic()
    import jwt  # noqa: F401
    from cryptography.hazmat.primitives.asymmetric import rsa

    import litellm
    import litellm.proxy.proxy_server as proxy_server
    from litellm.proxy.auth import auth_checks, handle_jwt
    from litellm.proxy.auth.user_api_key_auth import user_api_key_auth
    from litellm.proxy.management_endpoints import team_endpoints
    from litellm.proxy._types import LiteLLM_JWTAuth

    for name in ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router", "litellm"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    litellm.suppress_debug_info = True
    litellm.set_verbose = False

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    from jwt.algorithms import RSAAlgorithm
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": KID, "alg": "RS256", "use": "sig"})

    class _NoNetwork:
        async def get(self, url: str, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"litellm_oracle: no network (LiteLLM asked for {url})")

        async def post(self, url: str, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"litellm_oracle: no network (LiteLLM asked for {url})")

        async def close(self) -> None:
            return None

    proxy_server.jwt_handler.http_handler = _NoNetwork()

    # The proxy's gate in front of JWT auth, opened for the current case's opaque token (see the
    # module docstring); every other caller, `authenticate_jwt` included, gets LiteLLM's answer.
    real_is_jwt = type(proxy_server.jwt_handler).is_jwt  # a staticmethod

    def is_jwt(token: str | None) -> bool:
        caller = sys._getframe(1).f_code.co_name
        if token is not None and token == _state.get("opaque") and caller != "authenticate_jwt":
            return True
        return real_is_jwt(token=token)

    type(proxy_server.jwt_handler).is_jwt = staticmethod(is_jwt)

    upserts: list[dict] = []

    async def new_team(data: Any, http_request: Any = None, user_api_key_dict: Any = None, **_: Any) -> dict:
        team_id = getattr(data, "team_id", None)
        upserts.append({"kind": "team", "team_id": team_id})
        prisma = proxy_server.prisma_client
        row = await prisma.db.litellm_teamtable.create(data={"team_id": team_id})
        return dict(row)

    async def team_member_add(data: Any, user_api_key_dict: Any = None, **_: Any) -> dict:
        members = getattr(data, "member", None)
        members = members if isinstance(members, list) else [members]
        for m in members:
            upserts.append({"kind": "team_member", "team_id": getattr(data, "team_id", None),
                            "user_id": getattr(m, "user_id", None), "role": getattr(m, "role", None)})
        return {}

    async def patch_team_membership(*args: Any, **kwargs: Any) -> dict:
        upserts.append({"kind": "team_membership", "args": _jsonable(kwargs)})
        return {}

    team_endpoints.new_team = new_team
    team_endpoints.team_member_add = team_member_add
    team_endpoints.patch_team_membership = patch_team_membership

    _state.update(
        litellm=litellm, proxy_server=proxy_server, auth_checks=auth_checks, handle_jwt=handle_jwt,
        user_api_key_auth=user_api_key_auth, LiteLLM_JWTAuth=LiteLLM_JWTAuth, private=private,
        jwk=jwk, upserts=upserts, import_seconds=time.monotonic() - t0,
        loop=asyncio.new_event_loop(),
    )


def _fresh_cache() -> Any:
    from litellm.proxy.utils import UserApiKeyCache  # type: ignore[attr-defined]
    return UserApiKeyCache()


def _make_cache() -> Any:
    ps = _state["proxy_server"]
    cls = type(ps.user_api_key_cache)
    try:
        return cls()
    except TypeError:
        return _fresh_cache()


def sign(claims: dict) -> str:
    import jwt
    _import()
    return jwt.encode(claims, _state["private"], algorithm="RS256", headers={"kid": KID})


def _request(route: str, method: str, body: bytes, token: str | None, extra: dict | None = None) -> Any:
    from starlette.requests import Request

    headers = [(b"content-type", b"application/json"), (b"host", b"litellm-oracle")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    for name, value in (extra or {}).items():
        headers.append((name.lower().encode(), str(value).encode()))
    path, _, query = route.partition("?")
    scope = {
        "type": "http", "http_version": "1.1", "method": method.upper(), "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query.encode(),
        "headers": headers, "client": ("127.0.0.1", 12345), "server": ("litellm-oracle", 80),
        "app": _state["proxy_server"].app,
    }
    sent = {"done": False}

    async def receive() -> dict:
        if sent["done"]:
            return {"type": "http.disconnect"}
        sent["done"] = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def _configure(case: dict, prisma: FakePrisma) -> None:
    ps = _state["proxy_server"]
    auth_checks = _state["auth_checks"]
    gs = copy.deepcopy(case.get("general_settings") or {})
    gs["enable_jwt_auth"] = True
    gs.setdefault("master_key", MASTER_KEY)
    jwtauth = dict(gs.get("litellm_jwtauth") or {})
    cache = _make_cache()
    ps.general_settings.clear()
    ps.general_settings.update(gs)
    ps.master_key = MASTER_KEY
    ps.premium_user = True
    ps.prisma_client = prisma
    ps.user_api_key_cache = cache
    ps.user_custom_auth = None
    ps.jwt_handler.update_environment(
        prisma_client=prisma, user_api_key_cache=cache,
        litellm_jwtauth=_state["LiteLLM_JWTAuth"](**jwtauth), leeway=0,
    )
    # the JWKS, where LiteLLM's `_get_public_key_from_jwks_url` looks for it
    ttl = 10 ** 7
    _state["loop"].run_until_complete(cache.async_set_cache(
        key=f"litellm_jwt_auth_keys_{JWKS_URL}", value=[_state["jwk"]], ttl=ttl))
    # per-process "when did we last read the DB" table: one case must not see another's
    for name in ("last_db_access_time",):
        table = getattr(auth_checks, name, None)
        if table is not None and hasattr(table, "clear"):
            table.clear()
    # budget counters: an admitted request reserves its estimated cost in the spend counters
    # (memory-only without Redis), which the next case's budget check would read
    from litellm.redis.stores.connection import connect
    from litellm.redis.stores.spend_counters import SpendCounterStore
    ps.spend_counter_store = SpendCounterStore(connect(None).spend_counters())
    ps.spend_counter_cache.in_memory_cache.flush_cache()
    _state["upserts"].clear()


class _UserInfoResponse:
    """What LiteLLM's HTTP client returns, for the one UserInfo call of a case."""

    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self.text = json.dumps(body) if not isinstance(body, str) else body
        self._body = body

    def json(self) -> Any:
        return json.loads(self.text)


class _IntrospectionClient:
    """LiteLLM's httpx client for its OAuth2 check, for one case: the case's answer, recorded."""

    def __init__(self, answer: dict) -> None:
        self.answer, self.calls = answer, []

    def _respond(self, method: str, url: str, headers: dict | None, data: dict | None) -> Any:
        import httpx
        self.calls.append({"method": method, "url": url, "headers": dict(headers or {}), "data": dict(data or {})})
        request = httpx.Request(method, url)
        body = self.answer.get("body", {})
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return httpx.Response(int(self.answer.get("status", 200)), content=content, request=request,
                              headers={"content-type": "application/json"})

    async def post(self, url: str, headers: dict | None = None, data: dict | None = None, **_: Any) -> Any:
        return self._respond("POST", url, headers, data)

    async def get(self, url: str, headers: dict | None = None, **_: Any) -> Any:
        return self._respond("GET", url, headers, None)


class _UserInfoEndpoint:
    """The IdP's UserInfo endpoint for one case: the case's answer for its token, else a 401."""

    def __init__(self, token: str, answer: dict) -> None:
        self.token, self.answer = token, answer

    async def get(self, url: str, *args: Any, headers: dict | None = None, **kwargs: Any) -> Any:
        if (headers or {}).get("Authorization") != f"Bearer {self.token}":
            return _UserInfoResponse(401, {"error": "invalid_token"})
        return _UserInfoResponse(int(self.answer.get("status", 200)), self.answer.get("body", {}))

    async def post(self, url: str, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"litellm_oracle: no network (LiteLLM asked for {url})")

    async def close(self) -> None:
        return None


def _status(code: Any) -> int:
    try:
        return int(code)
    except (TypeError, ValueError):
        return 500


def _role(value: Any) -> str | None:
    if value is None:
        return None
    return getattr(value, "value", value)


def decide(case: dict) -> dict:
    """LiteLLM's answer to one case (see the module docstring)."""
    _import()
    records = case.get("records") or {}
    prisma = FakePrisma(records)
    _configure(case, prisma)
    claims = dict(case.get("claims") or {})
    now = int(time.time())
    claims.setdefault("iat", now)
    claims.setdefault("exp", now + 3600)
    token = case.get("opaque") or case.get("token") or sign(claims)
    _state["opaque"] = case.get("opaque")
    handler = _state["proxy_server"].jwt_handler
    network = handler.http_handler
    if case.get("opaque"):
        handler.http_handler = _UserInfoEndpoint(case["opaque"], case.get("userinfo") or {"status": 200, "body": claims})
    from litellm.proxy.auth import oauth2_check
    introspection = case.get("introspection")
    oauth_env = {k: v for k, v in os.environ.items() if k.startswith("OAUTH_")}
    for k in oauth_env:
        del os.environ[k]
    client = _IntrospectionClient(introspection or {})
    real_client = oauth2_check.get_async_httpx_client
    if introspection:
        os.environ.update(introspection.get("env") or {})
        oauth2_check.get_async_httpx_client = lambda *a, **k: client
    route = case.get("route") or "/v1/chat/completions"
    method = case.get("method") or "POST"
    body_obj: dict[str, Any] = {}
    if case.get("model") is not None:
        body_obj["model"] = case["model"]
    if "body" in case:
        body_obj = case["body"]
    body = json.dumps(body_obj).encode() if method.upper() not in ("GET", "HEAD") or body_obj else b""
    request = _request(route, method, body, token, case.get("headers"))

    from litellm.proxy._types import ProxyException

    answer: dict[str, Any] = {
        "allow": False, "status": 0, "message": "", "type": None, "param": None,
        "user_id": None, "team_id": None, "org_id": None, "end_user_id": None, "user_role": None,
        "user_email": None, "db_user_role": None, "upserts": [], "exception": None, "extra": {},
    }
    coro = _state["user_api_key_auth"](
        request=request, api_key=f"Bearer {token}", azure_api_key_header=None,
        anthropic_api_key_header=None, google_ai_studio_api_key_header=None, azure_apim_header=None,
        custom_litellm_key_header=None,
    )
    try:
        auth = _state["loop"].run_until_complete(coro)
    except ProxyException as exc:
        answer.update(status=_status(exc.code), message=str(exc.message), type=exc.type,
                      param=exc.param, exception="ProxyException")
    except Exception as exc:  # LiteLLM converts everything; anything else is reported as is
        answer.update(status=_status(getattr(exc, "status_code", 500)),
                      message=str(getattr(exc, "detail", exc)), exception=type(exc).__name__)
    else:
        answer.update(allow=True, status=200, user_id=auth.user_id, team_id=auth.team_id,
                      org_id=auth.org_id, end_user_id=auth.end_user_id,
                      user_role=_role(auth.user_role), user_email=auth.user_email,
                      extra={"team_models": auth.team_models, "team_tpm_limit": auth.team_tpm_limit,
                             "team_rpm_limit": auth.team_rpm_limit, "team_alias": auth.team_alias})
    finally:
        handler.http_handler = network
        _state["opaque"] = None
        oauth2_check.get_async_httpx_client = real_client
        for k in [k for k in os.environ if k.startswith("OAUTH_")]:
            del os.environ[k]
    answer["introspection_calls"] = client.calls
    if answer["allow"] and answer["user_id"] is not None:
        # the role LiteLLM's non-admin route rules read from the resolved user row
        # (auth_checks.get_user_role: a row without a valid role counts as internal_user)
        row = next((r for r in prisma.db.litellm_usertable.rows if r.get("user_id") == answer["user_id"]), None)
        if row is not None:
            from litellm.proxy.auth.auth_checks import effective_user_role
            answer["db_user_role"] = _role(effective_user_role(row.get("user_role")))
    ups = list(_state["upserts"])
    for write in prisma.db.writes:
        if write["table"] == "litellm_usertable" and write["op"] == "create":
            ups.append({"kind": "user", "user_id": write["data"].get("user_id"),
                        "user_email": write["data"].get("user_email")})
    answer["upserts"] = ups
    return answer


def serve(stdin: Any = sys.stdin, stdout: Any = sys.stdout) -> None:
    _import()
    print(json.dumps({"ready": True, "import_seconds": round(_state["import_seconds"], 2),
                      "litellm": _litellm_version()}), file=stdout, flush=True)
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            answer = decide(json.loads(line))
        except Exception as exc:  # a broken case must not kill the server
            answer = {"oracle_error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer, default=str), file=stdout, flush=True)


def _litellm_version() -> str:
    from importlib.metadata import version
    return version("litellm")


def main(argv: list[str]) -> int:
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # LiteLLM prints banners; keep the protocol stream clean
    if argv[:1] == ["--serve"]:
        serve(stdout=real_stdout)
        return 0
    if len(argv) == 1:
        with open(argv[0]) as fh:
            case = json.load(fh)
        print(json.dumps(decide(case), indent=2, default=str), file=real_stdout)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
