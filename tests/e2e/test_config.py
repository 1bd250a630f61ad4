"""Plugin configuration handling and the repository's example envoy.yaml."""

from __future__ import annotations

import json
import subprocess

import pytest

import envoy_yaml
import harness
import jwt_fixtures as jf
from checks import assert_forwarded

NOT_READY_WITHIN = 8.0


def _assert_rejected(envoy: harness.Envoy, *, mentions: str | None = None) -> str:
    """Envoy must exit non-zero or never become ready; returns its log."""
    try:
        envoy.wait_ready(timeout=NOT_READY_WITHIN)
    except harness.EnvoyFailed as exc:
        assert exc.returncode != 0, f"envoy exited 0 instead of rejecting the config\n{exc.log}"
        log = exc.log
    else:
        pytest.fail(f"envoy accepted an invalid plugin configuration and became ready\n{envoy.log_tail()}",
                    pytrace=False)
    if mentions is not None:
        assert mentions in log, f"the logs do not mention {mentions!r}:\n{log}"
    return log


def test_unknown_top_level_field_is_rejected_naming_the_field(envoys, idps, keyring):
    idp = idps.new([keyring.get("config-key", "RS256")])
    proxy = envoys.scenario(
        "unknown-field", jwks=[idp],
        plugin_config={"public_key_url": idp.jwks_url, "bogus_field_xyz": True},
    )
    _assert_rejected(proxy.spawn(), mentions="bogus_field_xyz")


# Each refused with a message in the operator's words, naming the field as written (not a Rust
# type: no `OneOrMany`, `u64` or `?:`), which Envoy's log shows.
INVALID_CONFIGS = {
    "url_not_a_string": ({"public_key_url": 42},
                         "public_key_url: expected a URL, a list of URLs or a comma-separated string"),
    "leeway_not_a_number": ({"public_key_url": "http://127.0.0.1:9/jwks", "leeway": "soon"},
                            'leeway: expected a whole number (0 or more), got the string "soon"'),
    "negative_fetch_timeout": ({"public_key_url": "http://127.0.0.1:9/jwks", "jwks_fetch_timeout_ms": -1},
                               "jwks_fetch_timeout_ms: expected a whole number (0 or more), got the number -1"),
    "ttl_not_a_number": ({"public_key_url": "http://127.0.0.1:9/jwks",
                          "general_settings": {"litellm_jwtauth": {"public_key_ttl": "forever"}}},
                         "general_settings.litellm_jwtauth.public_key_ttl: must be a number of seconds"),
    "public_keys_not_pem": ({"public_keys": ["this is not a PEM key"]}, "public_keys[0]: not a PEM block"),
    "not_json": ("{this is not json", "not valid JSON at line 1, column 2"),
}


@pytest.mark.parametrize("config,says", INVALID_CONFIGS.values(), ids=INVALID_CONFIGS.keys())
def test_invalid_configuration_value_is_rejected_in_the_operators_words(envoys, config, says):
    proxy = envoys.scenario("invalid-config", plugin_config=config, clusters={"127.0.0.1:9": ("127.0.0.1", 9)})
    log = _assert_rejected(proxy.spawn(), mentions=f"invalid plugin configuration: {says}")
    ours = "\n".join(line for line in log.splitlines() if "invalid plugin configuration" in line)
    for rust in ("OneOrMany", "u64", "?:", "untagged enum"):
        assert rust not in ours, f"{rust!r} in the filter's message:\n{ours}"


def test_valid_configuration_with_every_field_is_accepted(envoys, idps, keyring):
    key = keyring.get("config-full", "ES384")
    inline = keyring.get("config-inline", "RS256")
    idp = idps.new([key])
    proxy = envoys.scenario(
        "full-config", clusters={"idp": (idp.host, idp.port)},
        plugin_config={
            "public_key_url": [idp.jwks_url],
            "clusters": {idp.authority: "idp"},
            "public_keys": [inline.public_pem()],
            "audience": "aud-full",
            "issuer": "iss-full",
            "leeway": 5,
            "jwks_fetch_timeout_ms": 2000,
            "general_settings": {"litellm_jwtauth": {"public_key_ttl": 60}},
        },
    )
    assert_forwarded(proxy.request(key.sign(jf.claims("full", aud="aud-full", iss="iss-full"))), sub="full")


def test_repository_envoy_yaml_passes_envoy_validate():
    """`envoy --mode validate` loads the wasm and runs its configure step, so this needs the build."""
    wasm = harness.wasm_path()
    default = harness.DEFAULT_WASM.resolve()
    if not default.is_file():
        pytest.fail(
            f"envoy.yaml refers to target/wasm32-wasip1/release/llm_jwt_auth.wasm, which does not exist "
            f"({default}); `envoy --mode validate` loads the wasm, so build it first (make build)."
            + (f" (LLM_JWT_AUTH_WASM={wasm} is not used by envoy.yaml.)" if wasm != default else ""),
            pytrace=False,
        )
    result = subprocess.run(
        [harness.find_envoy(), "--mode", "validate", "-c", "envoy.yaml", "--log-level", "warn"],
        cwd=harness.REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "configuration 'envoy.yaml' OK" in output, output


TEAMS_GATEWAY = {
    "public_key_url": "http://127.0.0.1:9090/.well-known/jwks.json",
    "teams": [
        {"team_id": "demo-team", "models": []},
        {"team_id": "research", "team_alias": "Research", "models": ["gpt-4o-mini"]},
        {"team_id": "interns", "models": ["gpt-4o-mini"], "max_budget": 10, "spend": 12.5},
        {"team_id": "legacy", "blocked": True},
    ],
    "organizations": [{"organization_id": "acme"}],
    "general_settings": {"litellm_jwtauth": {
        "public_key_ttl": 600,
        "team_id_jwt_field": "team", "team_id_default": "demo-team",
        "user_id_jwt_field": "sub", "user_id_upsert": True, "user_email_jwt_field": "email",
        "org_id_jwt_field": "org", "end_user_id_jwt_field": "end_user",
    }},
    "rules": [
        {"match": {"path": "/health"}, "public": True},
        {"match": {"routes": ["management_routes"]}, "require": {"admin": True}},
        {"match": {"prefix": "/v1/"}, "require": {"team": True}},
    ],
}

RBAC_GATEWAY = {
    "public_key_url": "http://127.0.0.1:9090/.well-known/jwks.json",
    "general_settings": {
        "litellm_jwtauth": {
            "public_key_ttl": 600,
            "enforce_rbac": True,
            "roles_jwt_field": "roles",
            "role_mappings": [{"role": "llm-user", "internal_role": "internal_user"}],
            "enforce_scope_based_access": True,
            "scope_mappings": [
                {"scope": "llm.basic", "models": ["gpt-4o-mini"]},
                {"scope": "llm.pro", "models": ["gpt-4o", "gpt-4o-mini"]},
            ],
        },
        "role_permissions": [
            {"role": "internal_user", "models": ["gpt-4o", "gpt-4o-mini"], "routes": ["openai_routes"]},
        ],
    },
}


def test_repository_envoy_yaml_plugin_config_matches_the_demo():
    """The example keeps to the contract the walkthrough (docs/try-the-rules.md, `make run`)
    relies on: JWKS from the demo IdP on 9090 via the `127.0.0.1:9090` cluster, a 600 s TTL; the
    teams gateway on 10000 (static teams, the demo team, identity claims, the worked per-route
    rules) and the RBAC gateway on 10001 (role mappings, role permissions, scope mappings);
    upstream on 8080, admin on 9901, denial reasons as a Prometheus label."""
    text = (harness.REPO_ROOT / "envoy.yaml").read_text()
    assert envoy_yaml.plugin_configs(text) == [TEAMS_GATEWAY, RBAC_GATEWAY]
    assert envoy_yaml.listeners(text) == {"ingress": 10000, "rbac": 10001}
    for needle in ('name: "127.0.0.1:9090"', "port_value: 9901", "port_value: 8080",
                   "filename: target/wasm32-wasip1/release/llm_jwt_auth.wasm",
                   "  - tag_name: reason\n    regex: '^wasmcustom\\.llm_jwt_auth\\.(?:requests_denied|decisions\\.denied)"
                   "((?:\\.reason)?\\.(\\w+))'",
                   "  - tag_name: issuer\n"):
        assert needle in text, needle
    # Both gateways read the model from the body, which needs this flag on each Wasm filter.
    assert text.count("allow_on_headers_stop_iteration: true") == 2


def _envoy_validate(tmp_path, plugin_config: dict, clusters: dict[str, tuple[str, int]]) -> tuple[int, str]:
    return harness.validate(tmp_path, plugin_config, clusters)


ISSUERS = [
    {"issuer": "https://a.example", "jwks_url": "http://127.0.0.1:9/keys", "audience": ["api-a", "api-a2"],
     "user_id_jwt_field": "email", "team_id_jwt_field": "tid"},
    # No jwks_url: keys by OIDC discovery at https://b.example/.well-known/openid-configuration.
    {"issuer": "https://b.example", "disable_audience_validation": True, "user_email_jwt_field": "mail",
     "org_id_jwt_field": "org.id", "end_user_id_jwt_field": "cust"},
]


@pytest.mark.parametrize("place", ["top-level", "litellm_jwtauth"])
def test_issuers_config_passes_envoy_validate(tmp_path, place):
    config: dict = {"issuers": ISSUERS} if place == "top-level" else \
        {"general_settings": {"litellm_jwtauth": {"issuers": ISSUERS}}}
    # With discovery, `clusters` may route hosts that only a discovered jwks_uri names.
    config["clusters"] = {"keys.b.example": "b-keys"}
    code, output = _envoy_validate(tmp_path, config, {"127.0.0.1:9": ("127.0.0.1", 9),
                                                      "b.example:443": ("127.0.0.1", 9), "b-keys": ("127.0.0.1", 9)})
    assert code == 0, output
    assert "OK" in output, output


INVALID_ISSUERS = {
    "audience-and-disabled": (
        {"general_settings": {"litellm_jwtauth": {"issuers": [
            {"issuer": "https://a.example", "audience": "x", "disable_audience_validation": True}]}}},
        "general_settings.litellm_jwtauth.issuers[0]: set exactly one of audience and disable_audience_validation"),
    "neither": ({"issuers": [ISSUERS[0], {"issuer": "https://c.example"}]},
                "issuers[1]: set exactly one of audience and disable_audience_validation"),
    "both-places": ({"issuers": ISSUERS, "general_settings": {"litellm_jwtauth": {"issuers": ISSUERS}}},
                    "issuers: set either issuers or"),
}


@pytest.mark.parametrize("config, says", INVALID_ISSUERS.values(), ids=INVALID_ISSUERS.keys())
def test_invalid_issuers_config_is_refused_naming_the_field(tmp_path, config, says):
    code, output = _envoy_validate(tmp_path, config, {"127.0.0.1:9": ("127.0.0.1", 9)})
    assert code != 0, output
    assert says in output, output


def test_the_filter_says_which_build_runs_when_it_starts(envoys, idps, keyring):
    """The start-up line names the crate version and the commit build.rs stamped in."""
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    version = tomllib.loads((root / "Cargo.toml").read_text())["package"]["version"]
    key = keyring.get("config-version", "ES256")
    idp = idps.new([key])
    proxy = envoys.scenario("version", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url})
    assert_forwarded(proxy.request(key.sign(jf.claims("v"))), sub="v")
    found = re.search(r"llm-jwt-auth (\S+) \((\S+)\) configured: ", proxy.envoy.log_tail(10_000))
    assert found, proxy.envoy.log_tail()
    assert found.group(1) == version
    commit = found.group(2)
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?|unknown", commit), commit
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True)
    if head.returncode == 0 and not commit.endswith("-dirty") and commit != "unknown":
        assert commit == head.stdout.strip(), "the .wasm under test was built from another commit: make build"
