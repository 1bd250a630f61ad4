"""The JWKS cache: cold start, one fetch per Envoy process shared by all workers, key rotation
picked up after `public_key_ttl` (LiteLLM's way, `kid_refetch_interval: 0`) or at once through
one rate-limited refetch on an unknown kid.  One Envoy per test (each starts cold)."""

from __future__ import annotations

import hashlib
import os
import time

import jwt_fixtures as jf
from checks import NO_MATCHING_KEY, assert_auth_error, assert_forwarded, burst


def test_request_arriving_before_keys_are_fetched_waits_and_succeeds(envoys, idps, keyring):
    key = keyring.get("cold-start", "RS256")
    idp = idps.new([key])
    idp.delay = 2.0  # the JWKS answer takes 2 s
    proxy = envoys.scenario("cold-start", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url})
    proxy.envoy  # ready
    body = os.urandom(64 * 1024)
    sent = time.monotonic()
    reply = proxy.request(key.sign(jf.claims("early-bird")), method="POST", data=body,
                          headers={"content-type": "application/json"})
    received = time.monotonic()
    echo = assert_forwarded(reply, sub="early-bird")
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    served = idp.served_times
    assert served, "the JWKS was never served"
    assert sent < served[0] < received, (
        "the request should have been sent before the keys arrived and answered after: "
        f"sent={sent:.3f} jwks_served={served[0]:.3f} answered={received:.3f}")
    assert idp.fetch_count == 1


def test_workers_share_a_single_jwks_fetch_per_url_under_a_cold_start_burst(envoys, idps, keyring):
    key_a = keyring.get("burst-a", "RS256")
    key_b = keyring.get("burst-b", "EdDSA")
    idp_a = idps.new([key_a, keyring.get("burst-a-spare", "ES256")])
    idp_b = idps.new([key_b])
    for idp in (idp_a, idp_b):
        idp.delay = 1.0  # keep the fetch in flight while the burst lands
    proxy = envoys.scenario(
        "burst", jwks=[idp_a, idp_b], concurrency=2,
        plugin_config={"public_key_url": [idp_a.jwks_url, idp_b.jwks_url]},
    )
    proxy.envoy  # ready
    tokens = [(key_a if i % 2 else key_b).sign(jf.claims(f"burst-{i}")) for i in range(50)]
    replies = burst(proxy, tokens)
    for i, reply in enumerate(replies):
        assert_forwarded(reply, sub=f"burst-{i}")
    assert (idp_a.fetch_count, idp_b.fetch_count) == (1, 1), \
        f"JWKS fetches per URL: a={idp_a.fetch_count} b={idp_b.fetch_count}; expected exactly 1 each"

    for i in range(6):  # and the warm cache still needs no fetch, whichever worker answers
        assert_forwarded(proxy.request(tokens[i]), sub=f"burst-{i}")
    assert (idp_a.fetch_count, idp_b.fetch_count) == (1, 1)


def test_rotated_key_is_refused_until_the_ttl_expires_then_accepted(envoys, idps, keyring):
    ttl = 2
    old = keyring.get("rotation-old", "RS256")
    new = keyring.get("rotation-new", "RS256")
    idp = idps.new([old])
    proxy = envoys.scenario(
        "rotation", jwks=[idp],
        plugin_config={"public_key_url": idp.jwks_url, "kid_refetch_interval": 0,
                       "general_settings": {"litellm_jwtauth": {"public_key_ttl": ttl}}},
    )
    assert_forwarded(proxy.request(old.sign(jf.claims("before"))), sub="before")
    assert idp.fetch_count == 1
    first_fetch = idp.fetch_times[0]

    idp.set_keys([new])  # the IdP rotates
    reply = proxy.request(new.sign(jf.claims("after")))
    assert time.monotonic() - first_fetch < ttl, "test too slow to observe the cached key set"
    assert_auth_error(reply, prefix=NO_MATCHING_KEY, contains=["kid=rotation-new"])
    assert_forwarded(proxy.request(old.sign(jf.claims("still-cached"))), sub="still-cached")
    assert idp.fetch_count == 1, "an unknown kid must not trigger a refetch"

    deadline = first_fetch + ttl + 4
    while True:
        reply = proxy.request(new.sign(jf.claims("after")))
        if reply.status == 200:
            accepted_at = time.monotonic()
            break
        assert_auth_error(reply, prefix=NO_MATCHING_KEY, contains=["kid=rotation-new"])
        assert time.monotonic() < deadline, f"new key still refused {ttl + 4}s after the first fetch"
        time.sleep(0.1)
    assert_forwarded(reply, sub="after")
    assert accepted_at - first_fetch >= ttl - 0.3, \
        f"new key accepted {accepted_at - first_fetch:.2f}s after the first fetch, before the {ttl}s TTL"
    assert idp.fetch_count >= 2

    reply = proxy.request(old.sign(jf.claims("stale")))
    assert_auth_error(reply, prefix=NO_MATCHING_KEY, contains=["kid=rotation-old"])


def test_unknown_kid_refetches_once_per_interval_so_rotation_is_immediate_and_floods_are_cheap(
        envoys, idps, keyring):
    interval = 2
    old = keyring.get("refetch-old", "RS256")
    new = keyring.get("refetch-new", "RS256")
    idp = idps.new([old])
    proxy = envoys.scenario(
        "kid-refetch", jwks=[idp], concurrency=2,
        plugin_config={"public_key_url": idp.jwks_url, "kid_refetch_interval": interval},
    )
    assert_forwarded(proxy.request(old.sign(jf.claims("before"))), sub="before")
    assert idp.wait_for_fetches(1) and idp.fetch_count == 1
    first_fetch = idp.fetch_times[0]

    idp.set_keys([old, new])  # the IdP rotates a new key in
    reply = proxy.request(new.sign(jf.claims("too-soon")))
    if time.monotonic() - first_fetch < interval:
        # Keys fetched moments ago: no refetch yet, the kid is unknown.
        assert_auth_error(reply, prefix=NO_MATCHING_KEY, contains=["kid=refetch-new"])
        assert idp.fetch_count == 1, "no refetch within the interval of the last fetch"
    time.sleep(max(0.0, first_fetch + interval + 0.2 - time.monotonic()))

    # The first token with the new kid waits for one refetch and passes.
    assert_forwarded(proxy.request(new.sign(jf.claims("after"))), sub="after")
    assert idp.fetch_count == 2

    # A flood of made-up kids on both workers: refused, and no further fetch in the interval.
    flood_started = time.monotonic()
    replies = burst(proxy, [new.sign(jf.claims(f"flood-{i}"), kid=f"made-up-{i}") for i in range(40)])
    assert len(replies) == 40
    for reply in replies:
        assert_auth_error(reply, prefix=NO_MATCHING_KEY)
    if time.monotonic() - flood_started < interval:
        assert idp.fetch_count == 2, f"{idp.fetch_count - 2} refetches caused by made-up kids within the interval"
    assert idp.fetch_count <= 3, "at most one refetch per interval"
    assert_forwarded(proxy.request(old.sign(jf.claims("old-still-good"))), sub="old-still-good")
