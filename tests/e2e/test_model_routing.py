"""Routing by model: deploy/examples/model-routing.yaml as written, in Envoy with two workers.

Only the ports (the demo IdP's 9090, the two upstreams' 8081 and 8082, the listener and admin
ports) and the wasm path are replaced; the routes, the filter's configuration and the clusters
are the file's. Two echo upstreams stand in for the backends: each request is found in the one
that received it (by its `x-test-id`), with the headers it arrived with. Tokens are signed here
with PyJWT (tests/servers/jwt_fixtures.py), never by the filter's code.

What the example promises: gpt-* requests reach the `openai` cluster and claude-* the
`anthropic` one, by the model in the JSON body (else the /openai/deployments/{model}/ path); a
client's own x-litellm-model never picks the route nor reaches the upstream (with a body model,
without one, with no body); refused requests are refused and reach neither upstream. The last
test runs the same routes with team records from a record source, so that each request waits
and is let go from the filter's root context rather than its own callback.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

import examples
import harness
from checks import Reply, send
from echo_upstream import EchoServer

EXAMPLE = harness.REPO_ROOT / "deploy" / "examples" / "model-routing.yaml"
HEADER = "x-litellm-model"


def render(*, idp_port: int, openai_port: int, anthropic_port: int) -> str:
    """The example with the test's ports and the built wasm."""
    return examples.render(EXAMPLE, [
        ("port_value: 10002", "port_value: 0"),
        ("port_value: 9902", "port_value: 0"),
        ("port_value: 8081", f"port_value: {openai_port}"),
        ("port_value: 8082", f"port_value: {anthropic_port}"),
        ("127.0.0.1:9090", f"127.0.0.1:{idp_port}"),
        ("port_value: 9090", f"port_value: {idp_port}"),
    ])


def plugin_config(text: str) -> dict:
    block = text.split("value: |\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line.strip() and not line.startswith(" " * 20):
            break
        lines.append(line)
    return json.loads("\n".join(lines))


class Backends:
    def __init__(self, openai: EchoServer, anthropic: EchoServer) -> None:
        self.openai, self.anthropic = openai, anthropic

    def seen_by(self, reply: Reply) -> tuple[str, dict] | None:
        """Which upstream received the request (and the headers it got); None if neither."""
        found = [(name, copy) for name, server in (("openai", self.openai), ("anthropic", self.anthropic))
                 for copy in server.requests_with_header("x-test-id", reply.test_id)]
        assert len(found) <= 1, f"the request reached more than one upstream: {found}"
        return (found[0][0], found[0][1]["headers"]) if found else None


@pytest.fixture(scope="module")
def backends() -> Any:
    openai, anthropic = EchoServer(name="openai").start(), EchoServer(name="anthropic").start()
    yield Backends(openai, anthropic)
    openai.stop()
    anthropic.stop()


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("model-routing", "RS256")


@pytest.fixture(scope="module")
def example(module_idps, backends, key, tmp_path_factory):
    idp = module_idps.new([key])
    text = render(idp_port=idp.port, openai_port=backends.openai.port,
                  anthropic_port=backends.anthropic.port)
    envoy = examples.start(EXAMPLE, tmp_path_factory.mktemp("model-routing"), text, "model-routing")
    yield envoy
    envoy.stop()


def token(key, team: str | None = None, sub: str = "alice") -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + 600}
    if team:
        claims["team"] = team
    return key.sign(claims)


def chat(envoy: harness.Envoy, tok: str | None, body: dict | None, *, path: str = "/v1/chat/completions",
         client_model: str | None = None) -> Reply:
    headers = {"content-type": "application/json"}
    if client_model is not None:
        headers[HEADER] = client_model
    data = None if body is None else json.dumps(body).encode()
    return send(envoy, tok, method="POST" if body is not None else "GET", path=path, headers=headers, data=data)


def test_the_example_turns_routing_on_with_the_documented_header():
    config = plugin_config(EXAMPLE.read_text())
    assert config["model_routing"] == {"enabled": True, "header": HEADER}
    assert "allow_on_headers_stop_iteration: true" in EXAMPLE.read_text()
    assert re.search(rf"- name: {HEADER}\n\s+string_match: {{ prefix: \"gpt-\" }}", EXAMPLE.read_text())


@pytest.mark.parametrize("model,cluster", [
    ("gpt-4o", "openai"), ("gpt-4o-mini", "openai"),
    ("claude-3-5-sonnet", "anthropic"), ("claude-3-5-haiku", "anthropic"),
    ("o1", "openai"),  # no route names it: the default backend
])
def test_each_model_reaches_its_cluster_on_both_workers(example, backends, key, model, cluster):
    # Twenty requests, each on a new connection: Envoy spreads them over its two workers.
    for _ in range(20):
        reply = chat(example, token(key), {"model": model, "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status == 200, reply
        assert reply.json()["upstream"] == cluster, reply
        seen = backends.seen_by(reply)
        assert seen is not None and seen[0] == cluster, seen
        assert seen[1][HEADER] == model, seen
        assert seen[1]["x-litellm-user-id"] == "alice"


def test_the_paths_model_routes_a_body_without_one(example, backends, key):
    reply = chat(example, token(key), {"messages": []}, path="/openai/deployments/claude-3-5-haiku/chat/completions")
    assert reply.status == 200, reply
    assert backends.seen_by(reply) == ("anthropic", backends.seen_by(reply)[1])
    assert backends.seen_by(reply)[1][HEADER] == "claude-3-5-haiku"


@pytest.mark.parametrize("client,body_model,cluster", [
    ("claude-x", "gpt-4o", "openai"),
    ("gpt-4o", "claude-3-5-haiku", "anthropic"),
])
def test_a_clients_header_never_picks_the_route(example, backends, key, client, body_model, cluster):
    for _ in range(10):
        reply = chat(example, token(key), {"model": body_model, "messages": []}, client_model=client)
        assert reply.status == 200, reply
        name, headers = backends.seen_by(reply)
        assert (name, headers[HEADER]) == (cluster, body_model), headers


@pytest.mark.parametrize("body", [{"messages": []}, None], ids=["body-without-model", "no-body"])
def test_without_a_model_the_clients_header_is_gone_and_the_default_route_applies(example, backends, key, body):
    path = "/v1/chat/completions" if body is not None else "/v1/models"
    for _ in range(10):
        reply = chat(example, token(key), body, path=path, client_model="claude-x")
        assert reply.status == 200, reply
        name, headers = backends.seen_by(reply)
        assert name == "openai", f"routed by the client's header: {headers}"
        assert HEADER not in headers, headers


def test_refused_requests_are_refused_and_reach_no_upstream(example, backends, key):
    no_token = chat(example, None, {"model": "claude-3-5-sonnet", "messages": []}, client_model="claude-x")
    assert no_token.status == 401, no_token
    not_the_teams = chat(example, token(key, team="research"), {"model": "claude-3-5-sonnet", "messages": []})
    assert not_the_teams.status == 401, not_the_teams
    assert "claude-3-5-sonnet" in not_the_teams.json()["error"]["message"]
    forged = chat(example, token(key) + "x", {"model": "gpt-4o", "messages": []})
    assert forged.status == 401, forged
    for reply in (no_token, not_the_teams, forged):
        assert backends.seen_by(reply) is None, reply
    allowed = chat(example, token(key, team="research"), {"model": "claude-3-5-haiku", "messages": []})
    assert allowed.status == 200 and backends.seen_by(allowed)[0] == "anthropic", allowed


def test_routes_hold_when_the_request_resumes_from_the_root_context(module_idps, module_sources, backends, key,
                                                                    tmp_path_factory):
    """The example's routes and clusters with team records from a record source: each team's
    first request waits for its record and is let go by the filter's root context."""
    idp = module_idps.new([key])
    source = module_sources.new(master_key="sk-routing")
    teams = [f"team-{i}" for i in range(8)]
    for team in teams:
        source.put_team(team, models=["gpt-4o", "claude-3-5-haiku"])
    text = render(idp_port=idp.port, openai_port=backends.openai.port,
                  anthropic_port=backends.anthropic.port)
    config = plugin_config(text)
    del config["teams"]
    config["record_source"] = {"type": "litellm", "url": f"http://127.0.0.1:{source.port}", "master_key": "sk-routing"}
    old_block = text.split("value: |\n", 1)[1].split("          - name: envoy.filters.http.router", 1)[0]
    new_block = "".join(" " * 20 + line + "\n" for line in json.dumps(config, indent=1).splitlines())
    text = text.replace(old_block, new_block)
    text += f"""  - name: "127.0.0.1:{source.port}"
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: "127.0.0.1:{source.port}"
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {source.port} }}
"""
    envoy = examples.start(EXAMPLE, tmp_path_factory.mktemp("model-routing-records"), text, "model-routing-records")
    try:
        for i, team in enumerate(teams):
            model, cluster = [("gpt-4o", "openai"), ("claude-3-5-haiku", "anthropic")][i % 2]
            reply = chat(envoy, token(key, team=team, sub=f"user-{i}"), {"model": model, "messages": []},
                         client_model="claude-x" if cluster == "openai" else "gpt-4o")
            assert reply.status == 200, reply
            name, headers = backends.seen_by(reply)
            assert (name, headers[HEADER], headers["x-litellm-team-id"]) == (cluster, model, team), headers
    finally:
        envoy.stop()
