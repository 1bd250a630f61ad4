"""`llm-jwt-auth explain` against the filter in Envoy: for the repository's two documented
gateways (envoy.yaml's teams and RBAC plugin configurations, as `make run` serves them), the
same tokens and requests go to a real Envoy and to the command line tool, and the answers must
be the same — decision, status, reason, the reply body and challenge, the identity upstream.

Also `explain check` against Envoy's own load of a bad configuration, and `--unsigned`.
The tool is built by `make cli` (`make e2e` does it): target/debug/llm-jwt-auth.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest

import envoy_yaml
import harness
import jwt_fixtures as jf

CLI = harness.REPO_ROOT / "target" / "debug" / "llm-jwt-auth"
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def cli() -> Path:
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing: `make cli` builds it (make e2e does)", pytrace=False)
    return CLI


def run(cli: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(cli), "explain", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("explain", "RS256")


@pytest.fixture(scope="module")
def idp(module_idps, key):
    return module_idps.new([key])


@pytest.fixture(scope="module")
def jwks_file(idp, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("explain") / "jwks.json"
    path.write_text(json.dumps(idp.jwks()))
    return path


def gateway(index: int, idp) -> dict:
    """envoy.yaml's plugin configuration `index`, with the test IdP's key URL."""
    config = copy.deepcopy(envoy_yaml.plugin_configs()[index])
    config["public_key_url"] = idp.jwks_url
    return config


@pytest.fixture(scope="module")
def gateways(module_envoys, idp, tmp_path_factory):
    out = {}
    for index, name in enumerate(["teams", "rbac"]):
        config = gateway(index, idp)
        path = tmp_path_factory.mktemp(f"explain-{name}") / "plugin.json"
        path.write_text(json.dumps(config))
        out[name] = (module_envoys.scenario(f"explain-{name}", jwks=[idp], plugin_config=config), path)
    return out


def claims(**extra):
    return jf.claims(**extra)


# (gateway, name, claims or None (no token), method, path, model)
CASES = [
    ("teams", "team-model-allowed", dict(sub="alice", team="research", email="alice@corp.example"), "POST", CHAT, "gpt-4o-mini"),
    ("teams", "team-model-refused", dict(sub="alice", team="research"), "POST", CHAT, "gpt-4o"),
    ("teams", "default-team", dict(sub="bob"), "POST", CHAT, "gpt-4o"),
    ("teams", "over-budget", dict(sub="carol", team="interns"), "POST", CHAT, "gpt-4o-mini"),
    ("teams", "blocked-team", dict(sub="dave", team="legacy"), "POST", CHAT, "gpt-4o-mini"),
    ("teams", "unknown-team", dict(sub="erin", team="nope"), "POST", CHAT, "gpt-4o-mini"),
    ("teams", "management-route-non-admin", dict(sub="alice", team="research"), "POST", "/team/new", None),
    ("teams", "admin-scope", dict(sub="root", scope="litellm_proxy_admin"), "GET", "/team/list", None),
    ("teams", "no-token", None, "GET", "/v1/models", None),
    ("teams", "expired", dict(sub="alice", exp_in=-60), "GET", "/v1/models", None),
    ("teams", "public", None, "GET", "/health", None),
    ("teams", "org-and-end-user", dict(sub="fay", team="research", org="acme", end_user="cust-1"), "POST", CHAT, "gpt-4o-mini"),
    ("rbac", "role-and-pro-scope", dict(sub="alice", roles=["llm-user"], scope="llm.pro"), "POST", CHAT, "gpt-4o"),
    ("rbac", "basic-scope-refused", dict(sub="alice", roles=["llm-user"], scope="llm.basic"), "POST", CHAT, "gpt-4o"),
    ("rbac", "no-role", dict(sub="alice", scope="llm.pro"), "POST", CHAT, "gpt-4o"),
    ("rbac", "route-not-allowed", dict(sub="alice", roles=["llm-user"], scope="llm.pro"), "GET", "/key/list", None),
]


def envoy_answer(reply) -> dict:
    if reply.status == 200:
        [copy_] = reply.upstream_copies()
        return {"decision": "allow", "identity": {k: v for k, v in copy_["headers"].items() if k.startswith("x-litellm-")}}
    return {
        "decision": "deny",
        "status": reply.status,
        "reason": reply.headers.get("x-llm-jwt-auth-reason"),
        "www-authenticate": reply.headers.get("www-authenticate"),
        "body": reply.json(),
    }


def explain_answer(out: dict) -> dict:
    if out["decision"] == "allow":
        return {"decision": "allow", "identity": out["upstream_identity"]}
    reply = out["reply"]
    return {
        "decision": out["decision"],
        "status": reply["status"],
        "reason": out["reason"],
        "www-authenticate": reply["headers"].get("www-authenticate"),
        "body": reply["body"],
    }


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_explain_answers_as_the_filter_in_envoy(cli, gateways, key, jwks_file, case):
    name, _, token_claims, method, path, model = case
    proxy, config_path = gateways[name]
    token = key.sign(claims(**token_claims)) if token_claims is not None else None
    body = json.dumps({"model": model}).encode() if model else None
    headers = {"content-type": "application/json"} if body else {}
    in_envoy = envoy_answer(proxy.request(token, method=method, path=path, data=body, headers=headers))
    args = ["--config", str(config_path), "--jwks", str(jwks_file), "--method", method, "--path", path, "--json"]
    if token:
        args += ["--token", token]
    if model:
        args += ["--model", model]
    result = run(cli, *args)
    assert result.returncode in (0, 1), result.stderr
    explained = json.loads(result.stdout)
    assert explain_answer(explained) == in_envoy, explained
    assert result.returncode == (0 if in_envoy["decision"] == "allow" else 1)
    assert explained["stage"], explained


def test_explain_check_says_what_envoy_says(cli, tmp_path):
    bad = {"public_key_url": "http://127.0.0.1:9/jwks", "teams": [{"team_id": "t", "modles": ["gpt-4o"]}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = subprocess.run([str(cli), "explain", "check", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    message = result.stdout.strip().split(": ", 1)[1]
    code, log = harness.validate(tmp_path, bad, {"127.0.0.1:9": ("127.0.0.1", 9)})
    assert code != 0 and message in log, (message, log[-2000:])
    ok = subprocess.run([str(cli), "explain", "check", "--config", str(harness.REPO_ROOT / "envoy.yaml")],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.count(": ok") == 2, ok


def test_unsigned_claims_run_every_rule_but_the_signature(cli, gateways):
    _, config_path = gateways["teams"]
    base = ["--config", str(config_path), "--unsigned", "--json", "--model", "gpt-4o"]
    allowed = json.loads(run(cli, *base, "--claims", json.dumps(claims(sub="zed", team="research", model="x") | {"team": "demo-team"})).stdout)
    assert allowed["decision"] == "allow" and allowed["upstream_identity"]["x-litellm-team-id"] == "demo-team", allowed
    refused = json.loads(run(cli, *base, "--claims", json.dumps(claims(sub="zed", team="research"))).stdout)
    assert (refused["decision"], refused["reason"]) == ("deny", "forbidden_model"), refused
    expired = json.loads(run(cli, *base, "--claims", json.dumps(claims(sub="zed", exp_in=-5))).stdout)
    assert expired["reason"] == "expired", expired
