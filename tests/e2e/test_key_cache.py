"""The JWKS cache: cold start, one fetch per Envoy process shared by all workers, and key
rotation picked up only after `public_key_ttl`.  One Envoy per test (each starts cold)."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import jwt_fixtures as jf
from checks import NO_MATCHING_KEY, assert_auth_error, assert_forwarded


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
    barrier = threading.Barrier(len(tokens))
    replies: list = [None] * len(tokens)
    errors: list = []

    def fire(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            replies[i] = proxy.request(tokens[i])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
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
        plugin_config={"public_key_url": idp.jwks_url,
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
