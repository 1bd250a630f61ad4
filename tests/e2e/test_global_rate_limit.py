"""Fleet-wide rate limits: deploy/examples/global-rate-limit.yaml as written, in Envoy with two
workers, with Envoy's own global rate limit filter asking a rate limit service over Envoy's
gRPC protocol (tests/servers/ratelimit_service.py). The descriptor is the team this filter
selected; a client's own `x-litellm-team-id` never reaches the service; the service's answer
is enforced; a service that cannot be asked refuses rather than admits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import examples
import harness
from checks import send
from echo_upstream import EchoServer
from ratelimit_service import RateLimitService, decode_request, fields

EXAMPLE = harness.REPO_ROOT / "deploy" / "examples" / "global-rate-limit.yaml"
LIMIT = 2


def render(*, idp_port: int, upstream_port: int, ratelimit_port: int) -> str:
    return examples.render(EXAMPLE, [
        ("port_value: 10003", "port_value: 0"),
        ("port_value: 9903", "port_value: 0"),
        ("port_value: 8081", f"port_value: {upstream_port}"),
        ("port_value: 8181", f"port_value: {ratelimit_port}"),
        ("127.0.0.1:9090", f"127.0.0.1:{idp_port}"),
        ("port_value: 9090", f"port_value: {idp_port}"),
    ])


@pytest.fixture(scope="module")
def service():
    rls = RateLimitService({("team", "research"): LIMIT, ("team", "support"): 1000}).start()
    yield rls
    rls.stop()


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("global-rate-limit", "RS256")


def start(tmp: Path, text: str) -> harness.Envoy:
    return examples.start(EXAMPLE, tmp, text, "global-rate-limit")


@pytest.fixture(scope="module")
def example(module_idps, upstream: EchoServer, service, key, tmp_path_factory):
    idp = module_idps.new([key])
    text = render(idp_port=idp.port, upstream_port=upstream.port, ratelimit_port=service.port)
    envoy = start(tmp_path_factory.mktemp("global-rate-limit"), text)
    yield envoy
    envoy.stop()


def token(key, team: str, sub: str = "alice") -> str:
    now = int(time.time())
    return key.sign({"sub": sub, "team": team, "iat": now, "exp": now + 600})


def chat(envoy, upstream, tok: str, headers: dict | None = None):
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
    return send(envoy, tok, upstream=upstream, method="POST", data=body,
                headers={"content-type": "application/json", **(headers or {})})


def seen(reply) -> list[dict]:
    """The copies of the request the upstream received."""
    return reply.upstream_copies()


def test_the_wire_decoder_reads_envoys_field_numbers():
    # domain "llm", one descriptor [("team", "t")], hits_addend 3: encoded by hand from rls.proto.
    entry = b"\x0a\x04team\x12\x01t"
    descriptor = b"\x0a" + bytes([len(entry)]) + entry
    request = b"\x0a\x03llm\x12" + bytes([len(descriptor)]) + descriptor + b"\x18\x03"
    assert fields(b"\x08\x02") == [(1, 2)]
    assert decode_request(request) == {"domain": "llm", "descriptors": [(("team", "t"),)], "hits_addend": 3}


def test_the_service_counts_the_team_the_filter_selected_and_its_429_holds(example, upstream, service, key):
    # The minute may turn during the test: a fresh window then admits LIMIT again. Retry once.
    for _attempt in range(2):
        service.requests.clear()
        minute = int(time.time() // 60)
        tok = token(key, "research")
        replies = [chat(example, upstream, tok) for _ in range(LIMIT + 2)]
        if int(time.time() // 60) != minute:
            continue
        assert [r.status for r in replies] == [200] * LIMIT + [429] * 2, replies
        for r in replies[:LIMIT]:
            copies = seen(r)
            assert len(copies) == 1 and copies[0]["headers"]["x-litellm-team-id"] == "research", copies
        assert all(seen(r) == [] for r in replies[LIMIT:]), "a refused request reached the upstream"
        assert [q["descriptors"] for q in service.requests] == [[(("team", "research"),)]] * (LIMIT + 2)
        assert {q["domain"] for q in service.requests} == {"llm"}
        return
    pytest.fail("the minute turned twice during the test")


def test_a_spoofed_team_header_never_reaches_the_service(example, upstream, service, key):
    service.requests.clear()
    reply = chat(example, upstream, token(key, "support"), headers={"x-litellm-team-id": "research"})
    # The header names a team outside the token's: LiteLLM's 403, before the service is asked.
    assert reply.status == 403, reply
    assert service.requests == []
    reply = chat(example, upstream, token(key, "support"))
    assert reply.status == 200, reply
    assert [q["descriptors"] for q in service.requests] == [[(("team", "support"),)]]


def test_a_service_that_cannot_be_asked_refuses(module_idps, upstream, key, tmp_path_factory):
    idp = module_idps.new([key])
    dead = RateLimitService({})  # bound, never started: connections are refused
    text = render(idp_port=idp.port, upstream_port=upstream.port, ratelimit_port=dead.port)
    envoy = start(tmp_path_factory.mktemp("global-rate-limit-down"), text)
    try:
        reply = chat(envoy, upstream, token(key, "research"))
        assert reply.status == 500, reply
        assert seen(reply) == []
    finally:
        envoy.stop()
        dead.stop()
