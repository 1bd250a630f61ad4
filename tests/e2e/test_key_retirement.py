"""A key retired from the JWKS stops being trusted once `public_key_ttl` has run out — on every
worker, whether the token kept coming (verified-token cache) or not (idle), in every run.

While the IdP answers, no key set older than the TTL (plus one fetch timeout) may be used, and
no cached verification may outlive the key set it was made under. The race this guards against
was a 1-in-3 one (which of Envoy's root contexts won the refresh lease decided whether a
worker's token cache noticed the new key set), so each case runs on several fresh Envoys.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import jwt_fixtures as jf
from checks import NO_MATCHING_KEY, assert_auth_error, assert_forwarded

TTL = 2
RUNS = 6
# After the first JWKS fetch that no longer has the key, how long workers may take to see it:
# one tick (100 ms) plus request latency on a loaded 2-core machine.
NOTICE_S = 0.5


def _one_run(n: int, envoys, idps, keyring, *, concurrency: int, traffic: bool) -> list[str]:
    """One fresh Envoy: admit with key A, retire A at the IdP, then A must be refused. Returns
    the violations seen (empty: the run held the rule)."""
    old = keyring.get("retire-a", "RS256")
    new = keyring.get("retire-b", "RS256")
    idp = idps.new([old, new])
    proxy = envoys.scenario(
        f"retire-{concurrency}-{int(traffic)}-{n}", jwks=[idp], concurrency=concurrency,
        plugin_config={"public_key_url": idp.jwks_url,
                       "general_settings": {"litellm_jwtauth": {"public_key_ttl": TTL}}})
    token = old.sign(jf.claims(f"retiree-{n}", exp_in=600))
    # Every worker verifies and caches the token (new connection per request; Envoy spreads them).
    for _ in range(8):
        assert_forwarded(proxy.request(token), sub=f"retiree-{n}")
    # Let at least one background refresh happen, so whichever root context won that lease
    # is the one that refreshes next: the race the old code lost.
    time.sleep(TTL * 0.6)

    idp.set_keys([new])  # the IdP retires key A
    swapped = time.monotonic()
    admitted_after: list[float] = []
    if traffic:
        stop = swapped + TTL + 1.5
        while time.monotonic() < stop:
            reply = proxy.request(token)
            if reply.status == 200:
                admitted_after.append(time.monotonic())
            else:
                assert_auth_error(reply, prefix=NO_MATCHING_KEY)
            time.sleep(0.05)
    else:
        time.sleep(TTL + 1.5)

    violations = []
    # The first fetch after the swap served the key set without A.
    refetches = [t for t in idp.fetch_times if t > swapped]
    if not refetches:
        return [f"run {n}: no JWKS fetch in the {TTL + 1.5:.1f}s after the swap (TTL {TTL}s)"]
    first = refetches[0]
    if first - swapped > TTL + 0.3:
        violations.append(f"run {n}: key set refreshed {first - swapped:.2f}s after the swap (TTL {TTL}s)")
    late = [t - first for t in admitted_after if t > first + NOTICE_S]
    if late:
        violations.append(f"run {n}: retired key admitted {len(late)}x, up to {max(late):.2f}s after the "
                          "key set without it was fetched")
    # Then, on several connections (both workers), it is refused every time.
    statuses = []
    for _ in range(6):
        statuses.append(proxy.request(token).status)
        time.sleep(0.15)
    if any(s != 401 for s in statuses):
        violations.append(f"run {n}: {time.monotonic() - swapped:.1f}s after the swap: statuses {statuses}")
    proxy.stop()
    return violations


@pytest.mark.parametrize("traffic", [True, False], ids=["traffic", "idle"])
@pytest.mark.parametrize("concurrency", [1, 2], ids=["1-worker", "2-workers"])
def test_a_retired_key_is_refused_on_every_worker_once_the_ttl_has_run_out(
        concurrency, traffic, envoys, idps, keyring):
    lock = threading.Lock()
    violations: list[str] = []

    def run(n: int) -> None:
        found = _one_run(n, envoys, idps, keyring, concurrency=concurrency, traffic=traffic)
        with lock:
            violations.extend(found)

    # Three Envoys at a time: parallel enough to be quick, light enough for 2 cores.
    with ThreadPoolExecutor(max_workers=3) as pool:
        for future in [pool.submit(run, n) for n in range(RUNS)]:
            future.result()
    assert not violations, "\n".join(violations)
