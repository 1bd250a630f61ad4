"""Metrics in Envoy's admin `/stats` and `/stats/prometheus` after known traffic: allowed,
denied by reason, public routes, JWKS fetches, verified-token cache hits and misses, record
store hits, misses and fetches."""

from __future__ import annotations

import re
import time

import pytest

import jwt_fixtures as jf
from checks import assert_forwarded
from record_source import RecordSource


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("metrics-rs256", "RS256")


@pytest.fixture(scope="module")
def proxy(module_envoys, module_idps, key):
    idp = module_idps.new([key])
    # One worker, so cache hits and misses are exact.
    return module_envoys.scenario("metrics", jwks=[idp], concurrency=1,
                                  plugin_config={"public_key_url": idp.jwks_url})


def stats(proxy) -> dict[str, str]:
    status, body = proxy.envoy.admin_get("/stats")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else body
    return dict(line.split(": ", 1) for line in text.splitlines() if line.startswith("wasmcustom.llm_jwt_auth."))


def counter(values: dict[str, str], name: str) -> int:
    return int(values.get(f"wasmcustom.llm_jwt_auth.{name}", "0"))


def settled(proxy, before: dict[str, str], expected: dict[str, int], timeout: float = 5.0) -> dict[str, str]:
    """Stats once every expected delta is reached (the filter publishes counters every 100 ms),
    or the last reading after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        after = stats(proxy)
        if all(counter(after, n) - counter(before, n) >= v for n, v in expected.items()) \
                or time.monotonic() > deadline:
            return after
        time.sleep(0.1)


def test_counters_follow_known_traffic(proxy, key):
    before = stats(proxy)
    token = key.sign(jf.claims("m-1"))
    for _ in range(3):
        assert_forwarded(proxy.request(token), sub="m-1")
    assert proxy.request(None).status == 401                       # missing token
    assert proxy.request("sk-not-a-jwt").status == 401             # malformed
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert proxy.request(forged).status == 401                     # bad signature (or malformed)
    assert proxy.request(None, path="/health/liveliness").status == 200  # public route

    deadline = time.monotonic() + 5
    while True:  # Envoy's admin view of counters is immediate, but be tolerant of flushing
        after = stats(proxy)
        delta = {name: counter(after, name) - counter(before, name) for name in (
            "requests_allowed", "requests_public", "requests_denied.missing_token",
            "requests_denied.malformed_token", "token_cache_hit", "token_cache_miss")}
        denied_forged = sum(counter(after, n) - counter(before, n) for n in (
            "requests_denied.bad_signature", "requests_denied.malformed_token"))
        if delta["requests_allowed"] == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert delta["requests_allowed"] == 3, delta
    assert delta["requests_public"] == 1, delta
    assert delta["requests_denied.missing_token"] == 1, delta
    assert denied_forged == 2, (delta, after)
    assert delta["token_cache_miss"] >= 1 and delta["token_cache_hit"] >= 2, delta
    assert counter(after, "jwks_fetch_success") >= 1
    assert counter(after, "jwks_fetch_failure") == 0


def test_metrics_are_in_prometheus_format(proxy, key):
    assert_forwarded(proxy.request(key.sign(jf.claims("m-2"))), sub="m-2")
    status, body = proxy.envoy.admin_get("/stats/prometheus")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else body
    # Envoy drops the `wasmcustom.` prefix in the Prometheus view: llm_jwt_auth_<name>.
    assert re.search(r"^llm_jwt_auth_requests_allowed\{\} [1-9]", text, re.M), \
        [line for line in text.splitlines() if "llm_jwt_auth" in line][:20]
    assert re.search(r"^# TYPE llm_jwt_auth_verify_us histogram", text, re.M)


@pytest.fixture(scope="module")
def shadow(module_envoys, module_idps, key):
    idp = module_idps.new([key])
    return module_envoys.scenario("shadow", jwks=[idp], concurrency=1,
                                  plugin_config={"public_key_url": idp.jwks_url, "mode": "report"})


def test_report_mode_lets_a_forged_token_through_but_counts_it(shadow, key):
    token = key.sign(jf.claims("shadow-1"))
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-6]}{'A' * 6 if not signature.endswith('A' * 6) else 'B' * 6}"
    before = stats(shadow)
    reply = shadow.request(forged, headers={"x-llm-jwt-auth-reason": "spoofed"})
    assert reply.status == 200, reply
    echo = reply.json()["echo"]
    assert echo["headers"].get("x-llm-jwt-auth-reason") == "bad_signature", echo["headers"]
    assert "x-litellm-user-id" not in echo["headers"], "a refused token carries no identity"
    assert_forwarded(shadow.request(token), sub="shadow-1")
    after = settled(shadow, before, {"requests_denied.bad_signature": 1,
                                     "requests_reported_not_enforced": 1, "requests_allowed": 1})
    assert counter(after, "requests_denied.bad_signature") - counter(before, "requests_denied.bad_signature") == 1
    assert counter(after, "requests_reported_not_enforced") - counter(before, "requests_reported_not_enforced") == 1
    assert counter(after, "requests_allowed") - counter(before, "requests_allowed") == 1


def test_enforce_mode_reply_carries_the_reason_code(proxy):
    reply = proxy.request(None)
    assert reply.status == 401
    assert reply.headers.get("x-llm-jwt-auth-reason") == "missing_token"


@pytest.fixture(scope="module")
def team_source():
    source = RecordSource(master_key="sk-metrics")
    source.start()
    source.put_team("team-metrics", models=[])
    yield source
    source.stop()


def test_record_store_counts_misses_fetches_and_hits(module_envoys, module_idps, key, team_source):
    idp = module_idps.new([key])
    proxy = module_envoys.scenario(
        "metrics-records", jwks=[idp], concurrency=1,
        clusters={team_source.authority: (team_source.host, team_source.port)},
        plugin_config={"public_key_url": idp.jwks_url,
                       "record_source": {"type": "litellm", "url": team_source.url, "master_key": "sk-metrics"},
                       "general_settings": {"litellm_jwtauth": {"team_id_jwt_field": "team"}}})
    before = stats(proxy)
    for i in range(3):
        assert_forwarded(proxy.request(key.sign(jf.claims(f"r-{i}", team="team-metrics"))), sub=f"r-{i}")
    after = settled(proxy, before, {"record_store_hit": 2, "record_fetch_success": 1})
    delta = {n: counter(after, n) - counter(before, n)
             for n in ("record_store_miss", "record_store_hit", "record_fetch_success", "record_fetch_failure")}
    assert delta["record_fetch_success"] == 1, delta  # one fetch for the team, then the store answers
    assert delta["record_store_miss"] >= 1, delta
    assert delta["record_store_hit"] >= 3, delta      # the first request after its fetch, then two more
    assert delta["record_fetch_failure"] == 0, delta
