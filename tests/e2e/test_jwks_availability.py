"""JWKS outages: no keys means 503 `auth_provider_unavailable` — never a 200, never a 401 —
failures are not cached, the fetch is retried no sooner than ~1 s later, and service recovers
on its own once the IdP is back.  One Envoy per test (each starts cold)."""

from __future__ import annotations

import os
import time

import pytest

import jwt_fixtures as jf
from checks import assert_forwarded, assert_unavailable

MIN_RETRY_GAP = 0.8  # contract: "no sooner than ~1 s"; allow for scheduling jitter
RECOVERY_DEADLINE = 6.0


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("availability", "ES256")


def _token(key):
    return key.sign(jf.claims("available"))


def _hammer_until(proxy, key, deadline: float, interval: float = 0.1, at_least: int = 5):
    """Requests until `deadline` and at least `at_least` of them (a loaded machine may answer
    slowly: the count is what the tests rely on, not the pace); every one must be a proper 503."""
    replies = []
    while time.monotonic() < deadline or len(replies) < at_least:
        reply = proxy.request(_token(key))
        assert_unavailable(reply)
        replies.append(reply)
        time.sleep(interval)
    return replies


def _wait_for_success(proxy, key, timeout: float = RECOVERY_DEADLINE):
    """Poll until a 200; everything before it must be a 503. Returns (reply, seconds waited)."""
    start = time.monotonic()
    while True:
        reply = proxy.request(_token(key))
        if reply.status == 200:
            return reply, time.monotonic() - start
        assert_unavailable(reply)
        assert time.monotonic() - start < timeout, f"still no 200 after {timeout}s: {reply!r}"
        time.sleep(0.15)


def _assert_retry_spacing(idp):
    times = idp.fetch_times
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap >= MIN_RETRY_GAP for gap in gaps), \
        f"JWKS re-fetched too soon after a failure: gaps {[round(g, 3) for g in gaps]}"


def test_jwks_server_down_at_start_gives_503_then_recovers(envoys, idps, key):
    idp = idps.new([key], start=False)  # port bound, not listening: connection refused
    proxy = envoys.scenario("jwks-down", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url})
    replies = _hammer_until(proxy, key, time.monotonic() + 1.5)
    assert len(replies) >= 5
    body = os.urandom(4096)
    assert_unavailable(proxy.request(_token(key), method="POST", data=body))

    idp.start()
    reply, waited = _wait_for_success(proxy, key)
    assert_forwarded(reply, sub="available")
    assert idp.fetch_count >= 1


def test_jwks_http_500_gives_503_is_not_cached_and_retries_are_spaced(envoys, idps, key):
    idp = idps.new([key])
    idp.fail_with(500)
    proxy = envoys.scenario("jwks-500", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url})
    started = time.monotonic()
    replies = _hammer_until(proxy, key, started + 2.5)
    elapsed = time.monotonic() - started
    assert idp.fetch_count >= 1, "the filter never asked the JWKS endpoint"
    _assert_retry_spacing(idp)
    # At most one fetch per retry interval (plus the first), however many requests came in.
    assert idp.fetch_count <= int(elapsed) + 2, \
        f"{idp.fetch_count} JWKS fetches for {len(replies)} requests in {elapsed:.1f} s of failures"

    idp.heal()
    reply, _ = _wait_for_success(proxy, key)
    assert_forwarded(reply, sub="available")
    _assert_retry_spacing(idp)


def test_jwks_non_json_gives_503_and_is_not_cached(envoys, idps, key):
    idp = idps.new([key])
    idp.serve_not_json()
    proxy = envoys.scenario("jwks-html", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url})
    _hammer_until(proxy, key, time.monotonic() + 1.2)
    assert idp.fetch_count >= 1

    idp.heal()
    reply, _ = _wait_for_success(proxy, key)
    assert_forwarded(reply, sub="available")


def test_jwks_fetch_slower_than_the_timeout_gives_503(envoys, idps, key):
    idp = idps.new([key])
    idp.delay = 3.0
    proxy = envoys.scenario(
        "jwks-slow", jwks=[idp],
        plugin_config={"public_key_url": idp.jwks_url, "jwks_fetch_timeout_ms": 300},
    )
    proxy.envoy  # started: the clock below measures the request only
    start = time.monotonic()
    reply = proxy.request(_token(key))
    elapsed = time.monotonic() - start
    assert_unavailable(reply)
    assert elapsed < 2.5, f"answered after {elapsed:.2f}s; jwks_fetch_timeout_ms is 300"

    idp.heal()
    reply, _ = _wait_for_success(proxy, key)
    assert_forwarded(reply, sub="available")


def test_jwks_outage_answers_503_even_for_an_invalid_token(envoys, idps, key):
    """No keys, no verdict: a forged token gets the same 503 (never a 200)."""
    idp = idps.new([key])
    idp.fail_with(502, b"bad gateway", "text/plain")
    proxy = envoys.scenario("jwks-502", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url})
    assert_unavailable(proxy.request(jf.forged_token(key, jf.claims())))
    assert_unavailable(proxy.request(_token(key)))


def test_cached_keys_keep_serving_through_an_outage_within_the_stale_window(envoys, idps, key):
    idp = idps.new([key])
    proxy = envoys.scenario("jwks-stale", jwks=[idp], plugin_config={
        "public_key_url": idp.jwks_url,
        "general_settings": {"litellm_jwtauth": {"public_key_ttl": 1, "public_key_stale_ttl": 30}}})
    assert_forwarded(proxy.request(key.sign(jf.claims("before-outage"))), sub="before-outage")
    idp.fail_with(500)         # the IdP fails...
    time.sleep(1.5)            # ...and the key set's TTL passes
    for i in range(5):         # new tokens (not in the verified-token cache) still verify
        sub = f"during-outage-{i}"
        assert_forwarded(proxy.request(key.sign(jf.claims(sub))), sub=sub)
        time.sleep(0.2)
    assert idp.fetch_count >= 2, "the filter must have tried to refresh (and failed)"


def test_without_a_stale_window_an_outage_after_the_ttl_fails_closed(envoys, idps, key):
    idp = idps.new([key])
    proxy = envoys.scenario("jwks-no-stale", jwks=[idp], plugin_config={
        "public_key_url": idp.jwks_url,
        "general_settings": {"litellm_jwtauth": {"public_key_ttl": 1, "public_key_stale_ttl": 0}}})
    assert_forwarded(proxy.request(key.sign(jf.claims("before-outage"))), sub="before-outage")
    idp.fail_with(500)
    time.sleep(1.5)
    reply = proxy.request(key.sign(jf.claims("after-ttl")))
    assert_unavailable(reply)


def test_jwks_body_over_the_size_cap_gives_503_and_is_not_cached(envoys, idps, key):
    idp = idps.new([key])
    # A valid key set padded past the 1 MiB cap: refused for its size, not parsed.
    padding = [{"kty": "oct", "kid": f"pad-{i}", "k": "A" * 200} for i in range(6000)]
    idp.set_jwks({"keys": [key.jwk(), *padding]})
    proxy = envoys.scenario("jwks-huge", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url})
    _hammer_until(proxy, key, time.monotonic() + 1.2)
    assert idp.fetch_count >= 1
    assert "larger than" in proxy.envoy.log_text()

    idp.set_keys([key])
    reply, _ = _wait_for_success(proxy, key)
    assert_forwarded(reply, sub="available")


@pytest.mark.parametrize("document", [
    {"keys": "not-a-list"},
    [{"kty": "EC"}],
    {"keys": None},
])
def test_jwks_that_is_not_a_key_set_gives_503(envoys, idps, key, document):
    idp = idps.new([key])
    idp.set_jwks(document)
    proxy = envoys.scenario("jwks-wrong-shape", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url})
    _hammer_until(proxy, key, time.monotonic() + 0.6, at_least=3)


def test_key_list_without_key_objects_finds_no_key(envoys, idps, key):
    # LiteLLM's parse_keys skips list members that are not objects: a set of nothing, so 401.
    idp = idps.new([key])
    idp.set_jwks({"keys": [1, "two", None]})
    proxy = envoys.scenario("jwks-no-objects", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url})
    reply = proxy.request(_token(key))
    assert reply.status == 401 and reply.headers.get("x-llm-jwt-auth-reason") == "unknown_kid", reply


def test_key_with_wrong_member_types_is_unusable_not_a_crash(envoys, idps, key):
    idp = idps.new([key])
    bad = {**key.jwk(), "x": 5, "y": True}
    idp.set_jwks({"keys": [bad]})
    proxy = envoys.scenario("jwks-wrong-types", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url})
    reply = proxy.request(_token(key))
    assert reply.status == 401, reply
    assert reply.headers.get("x-llm-jwt-auth-reason") == "unusable_key", reply
    idp.set_keys([key])  # the IdP fixes its document; the VM is alive and serves after the TTL
    assert proxy.request(_token(key)).status == 401  # still the cached (unusable) set
