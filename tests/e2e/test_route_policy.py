"""Per-route policy through Envoy: the plugin's `rules` (matched on path, method and host, first
match wins: `public`, `deny`, `require: {admin, team, scopes, claims}`) and Envoy's own
route-level switch (`typed_per_filter_config` → `envoy.config.route.v3.FilterConfig`
`disabled: true`).

The issue's example: `/health` open, `/v1/*` needs a team, admin routes need the admin scope;
plus method and host matching, a closed prefix, scope and claim requirements, and rules that
cannot grant what LiteLLM's rules refuse. Teams come from LiteLLM's groups path
(`team_ids_jwt_field`) over static team records, so one token can have a team and another not.

What Envoy 1.40 needs to turn the filter off on a route (found here, asserted below): the
`typed_per_filter_config` key is the filter's `name` in the HCM's `http_filters`
(`envoy.filters.http.wasm` unless renamed), not the plugin's `config.name`; any other key is
ignored without a word (the filter stays on). The value must be `FilterConfig` with
`disabled: true` — the wasm filter takes no route-specific configuration, so a route can turn
it off but never back on (`FilterConfig` without `disabled`, or a `Wasm` config, is refused at
load). On a route where it is off the filter does not run at all: client-sent `x-litellm-*`
headers reach the upstream there, unlike on a plugin `public` route.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any, Callable, Mapping

import pytest

import harness
import jwt_fixtures as jf
from checks import Reply, assert_auth_error, assert_denied, assert_forbidden, send

ADMIN_SCOPE = "litellm_proxy_admin"
REASON = "x-llm-jwt-auth-reason"
FILTER_NAME = "envoy.filters.http.wasm"  # the wasm filter's name in the rendered HCM
FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"

ONLY_ADMIN = ("Authentication Error, Only proxy admin can be used to generate, delete, update info for new "
              "keys/users/teams. Route={route}. Your role=unknown. Your user_id={user_id}")
ADMIN_NOT_ALLOWED = "Authentication Error, Admin not allowed to access this route. Route={route}, Allowed Routes=["


def closed(route: str) -> str:
    return f"route {route} is closed by the gateway's rules"


def requires(route: str, what: str) -> str:
    return f"route {route} requires {what}"


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("route-policy-rs256", "RS256")


@pytest.fixture(scope="module")
def idp(module_idps, key):
    return module_idps.new([key])


@pytest.fixture(scope="module")
def sign(key):
    """`sign(sub, scope=None, **claims)`: a valid RS256 token."""

    def mint(sub: str | None = "alice", *, scope: str | list[str] | None = None, **extra: Any) -> str:
        return key.sign(jf.claims(sub, scope=scope, **extra))

    return mint


TEAMS = [{"team_id": "team-a"}, {"team_id": "team-b", "models": ["gpt-4o"]}]

RULES = [
    # 0. The open route (LiteLLM counts /health as an info route that needs a token).
    {"match": {"path": "/health"}, "public": True},
    # 1. Host matching: these hosts serve the LLM API without a token (before the /v1/ rules:
    #    first match wins).
    {"match": {"prefix": "/v1/", "hosts": ["open.example.com", "*.sandbox.example.com"]}, "public": True},
    # 2. A closed prefix.
    {"match": {"prefix": "/internal/"}, "deny": True},
    # 3. Method matching: no deleting files through the gateway.
    {"match": {"prefix": "/v1/files", "methods": ["DELETE"]}, "deny": True},
    # 4. A scope on top of the team (rule 7's team requirement does not carry over: first match wins).
    {"match": {"prefix": "/v1/audio/"}, "require": {"team": True, "scopes": ["audio"]}},
    # 5. Claim conditions.
    {"match": {"prefix": "/v1/images/"},
     "require": {"claims": [{"claim": "tier", "equals": "gold"}, {"claim": "regions", "any_of": ["eu", "us"]}]}},
    # 6. An admin-only LLM route: LiteLLM refuses admins on LLM routes by default, and a rule
    #    cannot change that.
    {"match": {"path": "/v1/batches"}, "require": {"admin": True}},
    # 7. The team route.
    {"match": {"prefix": "/v1/"}, "require": {"team": True}},
    # 8. The admin routes, in LiteLLM route syntax (LiteLLM already keeps non-admins out).
    {"match": {"routes": ["/key/generate", "/key/delete", "/team/{action}"]}, "require": {"admin": True}},
    # 9. Narrowing an info route LiteLLM lets every token read — for GET only.
    {"match": {"path": "/model/info", "methods": ["GET"]}, "require": {"admin": True}},
    # 10. An empty requirement on a route LiteLLM refuses non-admins: still refused.
    # A requirement both callers meet; it must not open what LiteLLM refuses. (An empty
    # `require` is refused at load: it would check nothing.)
    {"match": {"path": "/user/new"}, "require": {"claims": [{"claim": "sub", "any_of": ["alice", "root"]}]}},
]


@pytest.fixture(scope="module")
def policy(module_envoys, idp):
    config = {
        "public_key_url": idp.jwks_url,
        "teams": TEAMS,
        "rules": RULES,
        "general_settings": {"litellm_jwtauth": {"team_ids_jwt_field": "groups"}},
    }
    return module_envoys.scenario("route-policy", jwks=[idp], plugin_config=config)


# -- assertions ----------------------------------------------------------------------------


def identity_headers(echo: dict) -> dict:
    return {k: v for k, v in echo["headers"].items() if k.startswith("x-litellm-")}


def assert_through(reply: Reply, identity: Mapping[str, str] | None) -> dict:
    """200 from the echo upstream, reached once, with exactly these `x-litellm-*` headers
    (none: a public request) and the Authorization header as sent."""
    assert reply.status == 200, f"expected 200 from the upstream, got {reply!r}"
    echo = reply.json()["echo"]
    assert len(reply.upstream_copies()) == 1, "the upstream must see the request exactly once"
    assert identity_headers(echo) == dict(identity or {}), echo["headers"]
    assert echo["headers"].get("authorization") == reply.sent_authorization
    assert REASON not in echo["headers"], echo["headers"]
    return echo


def assert_rule_refused(reply: Reply, message: str) -> None:
    """403 from a plugin rule: LiteLLM's error envelope, the insufficient_scope challenge,
    reason `route_rule`, not forwarded."""
    assert_forbidden(reply, message)
    assert reply.headers.get(REASON) == "route_rule", reply


def team_user(sub: str, team: str) -> dict:
    return {"x-litellm-user-id": sub, "x-litellm-user-role": "internal_user", "x-litellm-team-id": team}


def plain_user(sub: str) -> dict:
    return {"x-litellm-user-id": sub, "x-litellm-user-role": "internal_user"}


def admin(sub: str) -> dict:
    return {"x-litellm-user-id": sub, "x-litellm-user-role": "proxy_admin"}


# ==========================================================================================
# public
# ==========================================================================================


@pytest.mark.parametrize("path", ["/health", "/health?probe=1"])
def test_public_rule_needs_no_token(policy, path):
    assert_through(policy.request(None, path=path), None)


def test_public_rule_ignores_a_bad_token_and_strips_spoofed_identity(policy, sign):
    forged = jf.tamper_signature(sign("mallory"))
    reply = policy.request(forged, path="/health",
                           headers={"x-litellm-user-id": "admin", "x-litellm-user-role": "proxy_admin",
                                    REASON: "none"})
    assert_through(reply, None)


def test_exact_path_rule_does_not_cover_sub_paths(policy):
    # /health/x matches no rule: LiteLLM's rules apply, and they want a token.
    assert_auth_error(policy.request(None, path="/health/services"), "Authentication Error, No api key passed in.")


# ==========================================================================================
# deny
# ==========================================================================================


@pytest.mark.parametrize("who", ["nobody", "team", "admin"])
def test_deny_rule_refuses_everyone_before_the_token_is_read(policy, sign, who):
    token = {"nobody": None, "team": sign("alice", groups=["team-a"]),
             "admin": sign("root", scope=ADMIN_SCOPE)}[who]
    assert_rule_refused(policy.request(token, path="/internal/metrics"), closed("/internal/metrics"))


def test_deny_rule_refuses_a_garbage_token_with_the_rule_not_the_token(policy):
    reply = policy.request("not-a-jwt", path="/internal/x?y=1")
    assert_rule_refused(reply, closed("/internal/x"))


# ==========================================================================================
# require: team (the issue's /v1/*)
# ==========================================================================================


@pytest.mark.parametrize("path", ["/v1/models", "/v1/chat/completions"])
def test_team_route_admits_a_token_with_a_team(policy, sign, path):
    reply = policy.request(sign("alice", groups=["team-a"]), path=path)
    assert_through(reply, team_user("alice", "team-a"))


@pytest.mark.parametrize("groups", [None, [], ["team-ghost"]], ids=["no-claim", "empty", "unknown-team"])
def test_team_route_refuses_a_token_without_a_team(policy, sign, groups):
    token = sign("bob") if groups is None else sign("bob", groups=groups)
    assert_rule_refused(policy.request(token, path="/v1/models"), requires("/v1/models", "a team"))


def test_team_rule_applies_to_admins_too(policy, sign):
    # /v1/models is an info route LiteLLM lets admins read; the rule still wants a team.
    reply = policy.request(sign("root", scope=ADMIN_SCOPE), path="/v1/models")
    assert_rule_refused(reply, requires("/v1/models", "a team"))


def test_routes_without_a_rule_keep_litellm_behaviour(policy, sign):
    # /models (no /v1/) matches no rule: a token without a team may read it, as in LiteLLM.
    assert_through(policy.request(sign("bob"), path="/models"), plain_user("bob"))
    assert_auth_error(policy.request(None, path="/models"), "Authentication Error, No api key passed in.")


def test_team_rule_does_not_grant_a_model_litellm_refuses(policy, sign):
    # team-b may only use gpt-4o: the team requirement holds, LiteLLM's team model check refuses.
    body = json.dumps({"model": "o3", "messages": []}).encode()
    reply = policy.request(sign("alice", groups=["team-b"]), method="POST", path="/v1/chat/completions",
                           data=body, headers={"content-type": "application/json"}, timeout=5)
    assert reply.status == 403 and reply.headers.get(REASON) != "route_rule", reply
    assert "No team has access to the requested model: o3" in reply.json()["error"]["message"], reply
    assert not reply.upstream_copies()
    ok = json.dumps({"model": "gpt-4o", "messages": []}).encode()
    reply = policy.request(sign("alice", groups=["team-b"]), method="POST", path="/v1/chat/completions",
                           data=ok, headers={"content-type": "application/json"}, timeout=5)
    assert_through(reply, team_user("alice", "team-b"))


# ==========================================================================================
# method and host matching
# ==========================================================================================


def test_method_rule_denies_only_its_methods(policy, sign):
    token = sign("alice", groups=["team-a"])
    assert_rule_refused(policy.request(token, method="DELETE", path="/v1/files/file-1"), closed("/v1/files/file-1"))
    # Other methods fall through to the /v1/ team rule.
    assert_through(policy.request(token, method="GET", path="/v1/files/file-1"), team_user("alice", "team-a"))
    assert_through(policy.request(token, method="POST", path="/v1/files"), team_user("alice", "team-a"))


def test_method_rule_requirement_applies_only_to_its_methods(policy, sign):
    # /model/info: GET needs an admin (rule 9); POST matches no rule, and LiteLLM lets anyone read it.
    assert_rule_refused(policy.request(sign("bob"), path="/model/info"),
                        requires("/model/info", "a proxy admin token"))
    assert_through(policy.request(sign("root", scope=ADMIN_SCOPE), path="/model/info"), admin("root"))
    assert_through(policy.request(sign("bob"), method="POST", path="/model/info"), plain_user("bob"))


@pytest.mark.parametrize("host", ["open.example.com", "OPEN.example.com:8443", "a.sandbox.example.com",
                                  "b.c.sandbox.example.com:80"])
def test_host_rule_opens_the_api_on_its_hosts(policy, host):
    reply = policy.request(None, path="/v1/chat/completions", headers={"host": host})
    echo = assert_through(reply, None)
    assert echo["headers"]["host"] == host, "the request reached the upstream for the host it was sent to"


@pytest.mark.parametrize("host", ["sandbox.example.com", "open.example.com.evil", "xopen.example.com",
                                  "a.sandbox.example.comx"])
def test_host_rule_does_not_cover_other_hosts(policy, host):
    assert_auth_error(policy.request(None, path="/v1/chat/completions", headers={"host": host}),
                      "Authentication Error, No api key passed in.")


def test_first_matching_rule_wins(policy):
    # On an open host, rule 1 (public) comes before rule 3 (DELETE denied).
    reply = policy.request(None, method="DELETE", path="/v1/files/file-1", headers={"host": "open.example.com"})
    assert_through(reply, None)


# ==========================================================================================
# require: scopes and claims
# ==========================================================================================


def test_scope_requirement(policy, sign):
    path = "/v1/audio/speech"
    assert_through(policy.request(sign("alice", scope="openid audio", groups=["team-a"]), path=path),
                   team_user("alice", "team-a"))
    assert_through(policy.request(sign("alice", scope=["audio"], groups=["team-a"]), path=path),
                   team_user("alice", "team-a"))
    assert_rule_refused(policy.request(sign("alice", scope="openid audiox", groups=["team-a"]), path=path),
                        requires(path, 'the scope "audio"'))
    # The same rule also wants a team, checked first.
    assert_rule_refused(policy.request(sign("bob", scope="audio"), path=path), requires(path, "a team"))


@pytest.mark.parametrize("claims,failed", [
    ({"tier": "gold", "regions": ["eu"]}, None),
    ({"tier": "gold", "regions": ["apac", "us"]}, None),
    ({"tier": "silver", "regions": ["eu"]}, 1),
    ({"regions": ["eu"]}, 1),
    ({"tier": "gold", "regions": ["apac"]}, 2),
    ({"tier": "gold"}, 2),
])
def test_claim_requirements(policy, sign, claims, failed):
    path = "/v1/images/generations"
    reply = policy.request(sign("carol", **claims), path=path)
    if failed is None:
        assert_through(reply, plain_user("carol"))
    else:
        assert_rule_refused(reply, requires(path, f"claim condition {failed} of its rule"))


# ==========================================================================================
# require: admin, and rules never grant what LiteLLM refuses
# ==========================================================================================


@pytest.mark.parametrize("path", ["/key/generate", "/team/new"])
def test_admin_routes_admit_admins(policy, sign, path):
    assert_through(policy.request(sign("root", scope=f"openid {ADMIN_SCOPE}"), method="POST", path=path),
                   admin("root"))


@pytest.mark.parametrize("path", ["/key/generate", "/team/new"])
def test_admin_routes_refuse_others_with_litellm_answer(policy, sign, path):
    # LiteLLM's own rule refuses first; the plugin rule is a second lock.
    reply = policy.request(sign("alice", groups=["team-a"]), method="POST", path=path)
    assert_denied(reply, ONLY_ADMIN.format(route=path, user_id="unknown"))
    assert reply.headers.get(REASON) == "denied", reply


def test_a_met_requirement_does_not_open_a_route_litellm_refuses(policy, sign):
    reply = policy.request(sign("alice", groups=["team-a"]), method="POST", path="/user/new")
    assert_denied(reply, ONLY_ADMIN.format(route="/user/new", user_id="unknown"))
    assert_through(policy.request(sign("root", scope=ADMIN_SCOPE), method="POST", path="/user/new"), admin("root"))


def test_admin_requirement_does_not_let_admins_past_litellm_admin_routes(policy, sign):
    # Rule 6 requires an admin on /v1/batches, but LiteLLM's admin_allowed_routes (default:
    # management, spend and info routes) keep admins off LLM API routes: still refused.
    reply = policy.request(sign("root", scope=ADMIN_SCOPE), method="POST", path="/v1/batches")
    assert_denied(reply, prefix=ADMIN_NOT_ALLOWED.format(route="/v1/batches"))
    assert reply.headers.get(REASON) == "denied", reply
    assert_rule_refused(policy.request(sign("alice", groups=["team-a"]), method="POST", path="/v1/batches"),
                        requires("/v1/batches", "a proxy admin token"))


def test_route_rule_denials_are_counted(policy, sign):
    def stats() -> dict[str, int]:
        return policy.envoy.stats("wasmcustom.llm_jwt_auth.")

    def delta(after: dict, before: dict, name: str) -> int:
        full = f"wasmcustom.llm_jwt_auth.{name}"
        return after.get(full, 0) - before.get(full, 0)

    # Earlier tests' counts reach Envoy on the filter's 100 ms tick: start from a settled reading.
    before = stats()
    while True:
        time.sleep(0.3)
        again = stats()
        if again == before:
            break
        before = again
    assert policy.request(None, path="/internal/a").status == 403
    assert policy.request(sign("bob"), path="/v1/models").status == 403
    assert policy.request(None, path="/health").status == 200
    # The filter hands counters to Envoy on its 100 ms tick, which may fall between two of the
    # requests above: wait for both counters, not the first one to move.
    deadline = time.monotonic() + 5
    while True:
        after = stats()
        settled = (delta(after, before, "requests_denied.route_rule") >= 2
                   and delta(after, before, "requests_public") >= 1)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert delta(after, before, "requests_denied.route_rule") == 2, after
    assert delta(after, before, "requests_public") == 1, after


# ==========================================================================================
# Envoy's route-level disable (typed_per_filter_config)
# ==========================================================================================


def disabled(name: str = FILTER_NAME, **extra: Any) -> dict:
    return {name: {"@type": FILTER_CONFIG, "disabled": True, **extra}}


class RoutedEnvoy:
    """An Envoy rendered by `harness.render_bootstrap()` whose HCM `edit` changes (routes,
    virtual hosts), started on first use from inside a test so a failure is a test failure."""

    def __init__(self, envoys, upstream, name: str, plugin_config: Mapping[str, Any], idp,
                 edit: Callable[[dict], None]) -> None:
        self.envoys, self.upstream, self.name = envoys, upstream, name
        self.plugin_config, self.idp, self.edit = plugin_config, idp, edit
        self._envoy: harness.Envoy | None = None
        self._failure: str | None = None

    def build(self) -> harness.Envoy:
        wasm = harness.require_wasm()
        workdir = self.envoys.workdir(self.name)
        config = harness.render_bootstrap(
            upstream_port=self.upstream.port, plugin_config=self.plugin_config, wasm=wasm,
            jwks_clusters={f"{self.idp.host}:{self.idp.port}": (self.idp.host, self.idp.port)},
            access_log_path=str(workdir / "access.log"),
        )
        self.edit(hcm_of(config))
        return self.envoys.track(harness.Envoy(config, name=self.name, workdir=workdir))

    @property
    def envoy(self) -> harness.Envoy:
        if self._failure:
            pytest.fail(self._failure, pytrace=False)
        if self._envoy is None:
            try:
                envoy = self.build()
                try:
                    envoy.start()
                except harness.EnvoyFailed as exc:
                    envoy.stop()
                    self._failure = f"{exc}\n{envoy.log_tail()}"
            except harness.HarnessError as exc:
                self._failure = str(exc)
            if self._failure:
                pytest.fail(self._failure, pytrace=False)
            self._envoy = envoy
        return self._envoy

    def request(self, token: str | None = None, **kwargs: Any) -> Reply:
        return send(self.envoy, token, upstream=self.upstream, **kwargs)


def hcm_of(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def to_upstream(prefix: str, **extra: Any) -> dict:
    return {"match": {"prefix": prefix}, "route": {"cluster": "upstream", "timeout": "20s"}, **extra}


def route_switches(hcm: dict) -> None:
    """Virtual host `static.example.com`: the filter off for the whole host. Default host:
    `/static/` off (FilterConfig under the HCM filter's name), `/static-optional/` off with
    `is_optional`, `/docs/` keyed by the plugin's name (wrong: ignored), the rest on."""
    default = hcm["route_config"]["virtual_hosts"][0]
    assert default["routes"][-1]["match"] == {"prefix": "/"}, default
    default["routes"][:0] = [
        to_upstream("/static/", typed_per_filter_config=disabled()),
        to_upstream("/static-optional/", typed_per_filter_config=disabled(is_optional=True)),
        to_upstream("/docs/", typed_per_filter_config=disabled(harness.PLUGIN_NAME)),
    ]
    static_host = {"name": "static", "domains": ["static.example.com"], "routes": [to_upstream("/")],
                   "typed_per_filter_config": disabled()}
    hcm["route_config"]["virtual_hosts"].insert(0, static_host)


@pytest.fixture(scope="module")
def switched(module_envoys, upstream, idp):
    return RoutedEnvoy(module_envoys, upstream, "route-disable", {"public_key_url": idp.jwks_url}, idp,
                       route_switches)


@pytest.mark.parametrize("path", ["/static/app.js", "/static-optional/logo.png"])
def test_route_with_the_filter_disabled_needs_no_token(switched, path):
    reply = switched.request(None, path=path)
    assert reply.status == 200, reply
    assert len(reply.upstream_copies()) == 1


def test_virtual_host_with_the_filter_disabled_needs_no_token(switched):
    reply = switched.request(None, path="/v1/chat/completions", headers={"host": "static.example.com"})
    assert reply.status == 200, reply
    assert len(reply.upstream_copies()) == 1


def test_other_routes_still_need_a_token(switched, sign):
    assert_auth_error(switched.request(None), "Authentication Error, No api key passed in.")
    reply = switched.request(sign("alice"))
    assert reply.status == 200, reply
    assert reply.json()["echo"]["headers"]["x-litellm-user-id"] == "alice"


@pytest.mark.parametrize("path", ["/static", "/staticx/app.js"])
def test_paths_next_to_a_disabled_prefix_are_still_checked(switched, sign, path):
    # Envoy's prefix match is on characters, so "/static/" covers neither; the filter runs
    # and LiteLLM's rules refuse a non-admin off the LLM routes.
    assert_auth_error(switched.request(None, path=path), "Authentication Error, No api key passed in.")
    assert_denied(switched.request(sign("alice"), path=path), ONLY_ADMIN.format(route=path, user_id="unknown"))


def test_disable_keyed_by_the_plugin_name_is_ignored_and_the_filter_stays_on(switched):
    # `typed_per_filter_config` is looked up by the HCM filter's name; the plugin's
    # `config.name` (llm_jwt_auth) names nothing there, so Envoy ignores the entry.
    assert_auth_error(switched.request(None, path="/docs/index.html"), "Authentication Error, No api key passed in.")


def test_on_a_disabled_route_the_filter_does_not_strip_identity_headers(switched):
    # The filter does not run there, so a client's x-litellm-* headers reach the upstream:
    # an upstream behind a disabled route must not trust them (a plugin `public` rule strips them).
    reply = switched.request(None, path="/static/app.js", headers={"x-litellm-user-id": "admin"})
    assert reply.status == 200, reply
    assert reply.json()["echo"]["headers"].get("x-litellm-user-id") == "admin"


@pytest.mark.parametrize("entry,says", [
    ({"@type": FILTER_CONFIG}, "Empty route/virtual host per filter configuration for envoy.filters.http.wasm"),
    ({"@type": FILTER_CONFIG, "disabled": False},
     "Empty route/virtual host per filter configuration for envoy.filters.http.wasm"),
    ({"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"},
     "doesn't support virtual host or route specific configurations"),
], ids=["filterconfig-enable", "disabled-false", "wasm-per-route-config"])
def test_the_filter_cannot_be_turned_on_per_route(module_envoys, upstream, idp, entry, says):
    """Envoy 1.40 refuses every route-level entry for the wasm filter other than `disabled: true`,
    so "off in the HCM, on per route" is not available: turn it off where it is not wanted."""

    def edit(hcm: dict) -> None:
        hcm["http_filters"][0]["disabled"] = True
        hcm["route_config"]["virtual_hosts"][0]["routes"].insert(
            0, to_upstream("/v1/", typed_per_filter_config={FILTER_NAME: copy.deepcopy(entry)}))

    routed = RoutedEnvoy(module_envoys, upstream, "route-enable", {"public_key_url": idp.jwks_url}, idp, edit)
    envoy = routed.build()
    envoy.start(wait=False)
    code = envoy.wait_exit(30)
    assert code not in (None, 0), f"Envoy accepted the config:\n{envoy.log_tail()}"
    assert says in envoy.log_text(), envoy.log_tail()


# ==========================================================================================
# The repository's envoy.yaml: the worked example does what its comments say
# ==========================================================================================


@pytest.fixture(scope="module")
def example(module_envoys, upstream, idp, tmp_path_factory):
    """envoy.yaml as written, with only its addresses moved to this test's servers (Envoy
    reads the YAML itself) — every replaced text must be there, so the example cannot drift
    away from what is tested."""
    text = (harness.REPO_ROOT / "envoy.yaml").read_text()
    for old, new in [
        ("127.0.0.1:9090", f"{idp.host}:{idp.port}"),
        ("port_value: 9090", f"port_value: {idp.port}"),
        ("port_value: 8080", f"port_value: {upstream.port}"),
        ("port_value: 10000", "port_value: 0"),  # the teams gateway: the first listener, the one tested here
        ("port_value: 10001", "port_value: 0"),  # the RBAC gateway (tests/e2e/test_demo_walkthrough.py)
        ("port_value: 9901", "port_value: 0"),
        ("filename: target/wasm32-wasip1/release/llm_jwt_auth.wasm", f"filename: {harness.wasm_path()}"),
    ]:
        assert old in text, f"envoy.yaml no longer contains {old!r}: update this test with the example"
        text = text.replace(old, new)
    assert "/.well-known/jwks.json" in text and idp.jwks_url.endswith("/.well-known/jwks.json")

    class Example:
        _envoy: harness.Envoy | None = None

        @property
        def envoy(self) -> harness.Envoy:
            if self._envoy is None:
                harness.require_wasm()
                workdir = module_envoys.workdir("example")
                path = workdir / "envoy.yaml"
                path.write_text(text)
                envoy = module_envoys.track(harness.Envoy(path, name="example", workdir=workdir))
                try:
                    envoy.start()
                except harness.EnvoyFailed as exc:
                    envoy.stop()
                    pytest.fail(f"{exc}\n{envoy.log_tail()}", pytrace=False)
                self._envoy = envoy
            return self._envoy

        def request(self, token: str | None = None, **kwargs: Any) -> Reply:
            return send(self.envoy, token, upstream=upstream, **kwargs)

    return Example()


def test_example_health_is_open_and_v1_needs_a_token(example):
    assert_through(example.request(None, path="/health"), None)
    assert_auth_error(example.request(None, path="/v1/models"), "Authentication Error, No api key passed in.")


def test_example_v1_admits_a_token_with_the_default_team(example, sign):
    assert_through(example.request(sign("alice"), path="/v1/models"), team_user("alice", "demo-team"))
    body = json.dumps({"model": "gpt-4o", "messages": []}).encode()
    reply = example.request(sign("alice"), method="POST", path="/v1/chat/completions", data=body,
                            headers={"content-type": "application/json"}, timeout=5)
    assert_through(reply, team_user("alice", "demo-team"))


def test_example_management_routes_need_an_admin(example, sign):
    assert_rule_refused(example.request(sign("alice"), path="/team/info"), requires("/team/info", "a proxy admin token"))
    assert_through(example.request(sign("root", scope=ADMIN_SCOPE), path="/team/info"), admin("root"))


def test_example_admins_have_no_team_for_v1(example, sign):
    assert_rule_refused(example.request(sign("root", scope=ADMIN_SCOPE), path="/v1/models"),
                        requires("/v1/models", "a team"))


def test_example_static_route_runs_without_the_filter_and_drops_identity_headers(example):
    spoof = {"x-litellm-user-id": "admin", "x-litellm-user-role": "proxy_admin", "x-litellm-team-id": "t"}
    reply = example.request(None, path="/static/app.js", headers=spoof)
    assert_through(reply, None)
