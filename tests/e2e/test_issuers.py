"""Several issuers (LiteLLM's `litellm_jwtauth.issuers`) and OIDC discovery, through Envoy.

Issuers: the token's unverified `iss` picks the issuer, whose keys alone may verify it, whose
audience applies and whose claim fields name the identity. Tokens of other issuers take the
global configuration when there is one, else are refused (`unknown_issuer`) without any fetch.

Discovery: a key URL ending in `/.well-known/openid-configuration` (an issuer without
`jwks_url`, or a `public_key_url`) is a discovery document whose `jwks_uri` holds the keys: one
discovery fetch and one key fetch per Envoy, a broken document is a 503 (never a 200) until it
is fixed, and a changed `jwks_uri` is picked up once the remembered one expires.

Two module Envoys (issuers only; issuers plus global keys); one Envoy per discovery test.
"""

from __future__ import annotations

import json
import time
from typing import Any, Mapping

import jwt
import pytest

import jwt_fixtures as jf
from checks import (
    AUDIENCE_MISMATCH,
    AUDIENCE_MISSING,
    BAD_SIGNATURE,
    NO_MATCHING_KEY,
    assert_auth_error, assert_denied,
    assert_forwarded,
    JWKS_MISCONFIGURED,
    assert_error,
    assert_unavailable,
    burst,
)

REASON = "x-llm-jwt-auth-reason"
UNKNOWN_ISSUER = "Authentication Error, Validation fails: Token issuer is not a configured issuer"
NO_TEAM_ID = ("Authentication Error, No team found in token. Checked team_id field '{field}' and team_alias "
              "field 'None'.")
METRIC = "wasmcustom.llm_jwt_auth."
RECOVERY_DEADLINE = 6.0
MIN_RETRY_GAP = 0.8  # failures are retried no sooner than ~1 s; allow for scheduling jitter


# -- helpers ------------------------------------------------------------------------------


def refused(reply, reason: str, message: str | None = None, **kwargs: Any) -> dict:
    """401 with this reason code (and LiteLLM's message), never reaching the upstream."""
    error = assert_auth_error(reply, message, **kwargs)
    assert reply.headers.get(REASON) == reason, reply
    return error


def unavailable(reply, *in_log: str, proxy=None, misconfigured: bool | None = False) -> dict:
    """503 `keys_unavailable`: the client is told only whether retrying helps; the cause (these
    fragments: URLs, statuses, clusters) is in Envoy's log, never in the answer."""
    if misconfigured is None:  # either kind (waiting for a fix)
        misconfigured = reply.headers.get("retry-after") == "60"
    if misconfigured:
        error = assert_error(reply, 503, "auth_provider_unavailable", message=JWKS_MISCONFIGURED)
        assert reply.headers.get("retry-after") == "60", reply
    else:
        error = assert_unavailable(reply)
        assert reply.headers.get("retry-after") == "1", reply
    assert reply.headers.get(REASON) == "keys_unavailable", reply
    for part in in_log:
        assert part not in reply.text, f"{part!r} reaches the client: {reply.text}"
    if proxy is not None and in_log:
        deadline = time.monotonic() + 2
        while not all(part in proxy.envoy.log_text() for part in in_log) and time.monotonic() < deadline:
            time.sleep(0.1)
        log = proxy.envoy.log_text()
        for part in in_log:
            assert part in log, f"the log does not say {part!r}"
    return error


def identity(reply) -> dict:
    """The `x-litellm-*` headers the echo upstream received (after `assert_forwarded`)."""
    echo = assert_forwarded(reply, sub=None)
    return {k: v for k, v in echo["headers"].items() if k.startswith("x-litellm-")}


def user(user_id: str | None, **more: str) -> dict:
    out = {} if user_id is None else {"x-litellm-user-id": user_id}
    out.update({f"x-litellm-{k.replace('_', '-')}": v for k, v in more.items()})
    out["x-litellm-user-role"] = "internal_user"
    return out


def counters(proxy) -> dict[str, int]:
    return {k[len(METRIC):]: v for k, v in proxy.envoy.stats(METRIC).items()}


def quiet_counters(proxy, timeout: float = 5.0) -> dict[str, int]:
    """Counters once earlier traffic has been published (two readings 300 ms apart agree)."""
    deadline = time.monotonic() + timeout
    last = counters(proxy)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = counters(proxy)
        if now == last:
            return now
        last = now
    return last


def settled(proxy, before: Mapping[str, int], expected: Mapping[str, int], timeout: float = 5.0) -> dict[str, int]:
    """Counters once every expected delta is reached (the filter publishes them periodically),
    or the last reading after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        after = counters(proxy)
        if all(after.get(n, 0) - before.get(n, 0) >= v for n, v in expected.items()) or time.monotonic() > deadline:
            return after
        time.sleep(0.1)


def wait_for_success(proxy, token: str, timeout: float = RECOVERY_DEADLINE, *contains: str):
    """Poll until a 200; everything before it must be a proper 503. Returns the 200 reply."""
    start = time.monotonic()
    while True:
        reply = proxy.request(token)
        if reply.status == 200:
            return reply
        unavailable(reply, *contains, proxy=proxy, misconfigured=None)
        assert time.monotonic() - start < timeout, f"still no 200 after {timeout}s: {reply!r}"
        time.sleep(0.15)


def spaced(times: list[float]) -> None:
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap >= MIN_RETRY_GAP for gap in gaps), f"re-fetched too soon after a failure: {gaps}"


# -- keys and IdPs ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(keyring):
    return {
        "a": keyring.get("iss-a-rs", "RS256"),
        "a2": keyring.get("iss-a-es", "ES256"),
        "b": keyring.get("iss-b-rs", "RS256"),
        "c": keyring.get("iss-c-ed", "EdDSA"),
        "global": keyring.get("iss-global-rs", "RS256"),
    }


@pytest.fixture(scope="module")
def idp_a(module_idps, keys):
    return module_idps.new([keys["a"], keys["a2"]])


@pytest.fixture(scope="module")
def idp_b(module_idps, keys):
    return module_idps.new([keys["b"]])


@pytest.fixture(scope="module")
def idp_c(module_idps, keys):
    return module_idps.new([keys["c"]])


@pytest.fixture(scope="module")
def idp_global(module_idps, keys):
    return module_idps.new([keys["global"]])


def issuer_a(idp) -> dict:
    return {"issuer": idp.issuer, "jwks_url": idp.jwks_url, "audience": "api-a",
            "user_id_jwt_field": "email", "team_id_jwt_field": "tid"}


def issuer_b(idp) -> dict:
    return {"issuer": idp.issuer, "jwks_url": idp.jwks_url, "audience": ["api-b", "api-b2"],
            "user_id_jwt_field": "sub"}


def issuer_c(idp) -> dict:
    return {"issuer": idp.issuer, "jwks_url": idp.jwks_url, "disable_audience_validation": True,
            "user_email_jwt_field": "mail", "org_id_jwt_field": "org.id", "end_user_id_jwt_field": "cust"}


@pytest.fixture(scope="module")
def only_issuers(module_envoys, idp_a, idp_b, idp_c):
    """Three issuers under `general_settings.litellm_jwtauth.issuers`, no global keys; one worker
    so metric deltas are exact."""
    return module_envoys.scenario("issuers-only", jwks=[idp_a, idp_b, idp_c], concurrency=1, plugin_config={
        "general_settings": {"litellm_jwtauth": {
            "issuers": [issuer_a(idp_a), issuer_b(idp_b), issuer_c(idp_c)],
        }},
    })


@pytest.fixture(scope="module")
def with_global(module_envoys, idp_a, idp_b, idp_global):
    """Top-level `issuers` A and B plus global keys, audience and claim field for other tokens."""
    return module_envoys.scenario("issuers-global", jwks=[idp_a, idp_b, idp_global], plugin_config={
        "issuers": [issuer_a(idp_a), issuer_b(idp_b)],
        "public_key_url": idp_global.jwks_url,
        "audience": "global-api",
        "general_settings": {"litellm_jwtauth": {"user_id_jwt_field": "uid"}},
    })


def sign(key, iss: Any, sub: str = "s-1", **claims: Any) -> str:
    body = jf.claims(sub, iss=iss, **claims)
    if iss is None or isinstance(iss, str):
        return key.sign(body)
    # PyJWT's JWT layer refuses a non-string iss; its JWS layer signs any payload.
    return jwt.api_jws.encode(json.dumps(body).encode(), key.private_key, algorithm=key.alg,
                              headers={"kid": key.kid})


# -- 1. issuers with separate keys ---------------------------------------------------------


def test_each_issuers_token_passes_with_its_own_keys(only_issuers, keys, idp_a, idp_b, idp_c):
    assert_forwarded(only_issuers.request(sign(keys["a"], idp_a.issuer, aud="api-a", email="a@x", tid="t")),
                     sub="a@x")
    assert_forwarded(only_issuers.request(sign(keys["a2"], idp_a.issuer, aud="api-a", email="a2@x", tid="t")),
                     sub="a2@x")
    assert_forwarded(only_issuers.request(sign(keys["b"], idp_b.issuer, "bob", aud="api-b")), sub="bob")
    # Issuer c maps the user id (global `uid`) and email (`mail`); carol's token has neither.
    assert "x-litellm-user-id" not in assert_forwarded(only_issuers.request(sign(keys["c"], idp_c.issuer, "carol")),
                                                       sub=None)["headers"]


def test_a_token_claiming_one_issuer_signed_by_anothers_key_is_refused(only_issuers, keys, idp_a, idp_b):
    # B's key under B's kid: A's key set has no such kid (B's keys are never consulted).
    reply = only_issuers.request(sign(keys["b"], idp_a.issuer, aud="api-a", email="m@x", tid="t"))
    error = refused(reply, "unknown_kid", prefix=NO_MATCHING_KEY, contains=["kid=iss-b-rs"])
    assert "iss-a-rs" in error["message"] and "iss-b-rs, " not in error["message"], error
    # B's key under A's kid (same algorithm): A's key does not verify it.
    reply = only_issuers.request(keys["b"].sign(jf.claims("m", iss=idp_a.issuer, aud="api-a", tid="t"),
                                                kid="iss-a-rs"))
    refused(reply, "bad_signature", BAD_SIGNATURE)
    # And the other way round: A's key cannot pass for B, under its own kid (B's one-key set
    # needs the token's kid to match, LiteLLM's parse_keys) or under B's.
    reply = only_issuers.request(sign(keys["a"], idp_b.issuer, aud="api-b"))
    refused(reply, "unknown_kid", prefix=NO_MATCHING_KEY, contains=["kid=iss-a-rs", "keys=[iss-b-rs]"])
    reply = only_issuers.request(keys["a"].sign(jf.claims("m", iss=idp_b.issuer, aud="api-b"), kid="iss-b-rs"))
    refused(reply, "bad_signature", BAD_SIGNATURE)


def test_each_issuer_has_its_own_audience(only_issuers, keys, idp_a, idp_b):
    a = keys["a"]
    refused(only_issuers.request(sign(a, idp_a.issuer, aud="api-b", email="a@x", tid="t")), "audience",
            AUDIENCE_MISMATCH)
    refused(only_issuers.request(sign(a, idp_a.issuer, email="a@x", tid="t")), "audience", AUDIENCE_MISSING)
    assert_forwarded(only_issuers.request(sign(a, idp_a.issuer, aud=["x", "api-a"], email="a@x", tid="t")),
                     sub="a@x")
    # B accepts either of its two audiences, and not A's.
    b = keys["b"]
    for aud in ("api-b", "api-b2", ["api-b2", "y"]):
        assert_forwarded(only_issuers.request(sign(b, idp_b.issuer, "bob", aud=aud)), sub="bob")
    refused(only_issuers.request(sign(b, idp_b.issuer, "bob", aud="api-a")), "audience", AUDIENCE_MISMATCH)


def test_issuer_with_audience_validation_disabled_accepts_any_audience(only_issuers, keys, idp_c):
    for aud in (None, "anything", ["api-a", "api-b"]):
        assert_forwarded(only_issuers.request(sign(keys["c"], idp_c.issuer, "carol", aud=aud)), sub=None)
    # The time claims still apply.
    reply = only_issuers.request(sign(keys["c"], idp_c.issuer, "carol", exp_in=-120, iat_in=-300))
    assert reply.status == 401 and reply.headers.get(REASON) == "expired", reply


@pytest.mark.parametrize("iss", ["https://elsewhere.example", None, "trailing-slash", "case", 7],
                         ids=["other", "none", "trailing-slash", "case", "number"])
def test_unknown_issuer_without_global_keys_is_refused(only_issuers, keys, idp_a, iss):
    if iss == "trailing-slash":
        iss = idp_a.issuer + "/"
    elif iss == "case":
        iss = idp_a.issuer.upper()
    # Signed by A's key: the issuer, not the key, decides.
    reply = only_issuers.request(sign(keys["a"], iss, "m", aud="api-a", tid="t"))
    refused(reply, "unknown_issuer", UNKNOWN_ISSUER)


def test_with_global_keys_other_issuers_take_the_global_rules(with_global, keys, idp_a, idp_b):
    g = keys["global"]
    # No iss, or one no issuer claims: global keys, global audience, global claim field.
    assert identity(with_global.request(sign(g, None, aud="global-api", uid="u-9"))) == user("u-9")
    assert identity(with_global.request(sign(g, "https://other.example", aud="global-api", uid="u-8"))) \
        == user("u-8")
    refused(with_global.request(sign(g, "https://other.example", aud="api-a", uid="u-8")), "audience",
            AUDIENCE_MISMATCH)
    # An issuer's token keeps its own audience and fields (the global ones do not apply).
    assert identity(with_global.request(sign(keys["a"], idp_a.issuer, aud="api-a", email="a@x", tid="t7",
                                             uid="not-this"))) == user("a@x", team_id="t7")
    refused(with_global.request(sign(keys["a"], idp_a.issuer, aud="global-api", email="a@x", tid="t7")),
            "audience", AUDIENCE_MISMATCH)
    assert identity(with_global.request(sign(keys["b"], idp_b.issuer, "bob", aud="api-b"))) == user("bob")


def test_with_global_keys_no_token_crosses_between_global_and_issuer_keys(with_global, keys, idp_a):
    # A global-key token claiming an issuer's iss: that issuer's keys only.
    reply = with_global.request(sign(keys["global"], idp_a.issuer, aud="api-a", email="m@x", tid="t"))
    refused(reply, "unknown_kid", prefix=NO_MATCHING_KEY, contains=["kid=iss-global-rs"])
    reply = with_global.request(keys["global"].sign(jf.claims("m", iss=idp_a.issuer, aud="api-a", tid="t"),
                                                    kid="iss-a-rs"))
    refused(reply, "bad_signature", BAD_SIGNATURE)
    # An issuer's key on a token of another issuer: the global keys only.
    reply = with_global.request(sign(keys["a"], "https://other.example", aud="global-api"))
    refused(reply, "unknown_kid", prefix=NO_MATCHING_KEY, contains=["kid=iss-a-rs", "keys=[iss-global-rs]"])
    reply = with_global.request(sign(keys["a"], None, aud="global-api"))
    refused(reply, "unknown_kid", prefix=NO_MATCHING_KEY, contains=["kid=iss-a-rs"])


def test_global_inline_keys_and_issuer_serve_other_tokens(envoys, idps, keyring):
    """Global keys may also be inline PEM keys, and the global `issuer` rule applies to tokens
    no configured issuer claims."""
    ka, inline = keyring.get("iss-a-rs", "RS256"), keyring.get("iss-inline", "ES256")
    a = idps.new([ka, keyring.get("iss-a-es", "ES256")])
    proxy = envoys.scenario("issuers-inline-global", jwks=[a], plugin_config={
        "issuers": [{"issuer": a.issuer, "jwks_url": a.jwks_url, "audience": "api-a"}],
        "public_keys": [inline.public_pem()],
        "issuer": "https://global.example",
    })
    assert_forwarded(proxy.request(inline.sign(jf.claims("g-1", iss="https://global.example"), kid=None)),
                     sub="g-1")
    refused(proxy.request(inline.sign(jf.claims("g-2", iss="https://other.example"), kid=None)), "issuer",
            "Authentication Error, Validation fails: Invalid issuer")
    # The inline key cannot pass for issuer A (A's two-key set needs a kid it knows).
    refused(proxy.request(inline.sign(jf.claims("g-3", iss=a.issuer, aud="api-a"), kid=None)), "unknown_kid",
            prefix=NO_MATCHING_KEY)
    assert_forwarded(proxy.request(sign(ka, a.issuer, "ann", aud="api-a")), sub="ann")


def test_an_unknown_iss_url_is_never_fetched_from(envoys, idps, keyring):
    """The keys of configured issuers are fetched (at start, once); an unknown `iss` that is a
    URL — reachable through an Envoy cluster and serving a discovery document — is not."""
    ka, kx = keyring.get("iss-a-rs", "RS256"), keyring.get("iss-attacker", "RS256")
    a, attacker = idps.new([ka]), idps.new([kx])
    proxy = envoys.scenario("issuers-no-stray-fetch", jwks=[a, attacker], plugin_config={"issuers": [
        {"issuer": a.issuer, "audience": "api-a"},
    ]})
    assert_forwarded(proxy.request(sign(ka, a.issuer, "ann", aud="api-a")), sub="ann")
    for iss in (attacker.issuer, attacker.issuer + "/", attacker.jwks_url):
        refused(proxy.request(sign(kx, iss, "m", aud="api-a")), "unknown_issuer", UNKNOWN_ISSUER)
    assert_forwarded(proxy.request(sign(ka, a.issuer, "ann-2", aud="api-a")), sub="ann-2")
    assert (attacker.discovery_count, attacker.fetch_count) == (0, 0)
    assert (a.discovery_count, a.fetch_count) == (1, 1)


# -- 2. per-issuer claim mapping ----------------------------------------------------------


def test_each_issuer_maps_the_identity_with_its_own_claim_fields(only_issuers, keys, idp_a, idp_b, idp_c):
    claims = {"email": "ann@corp.example", "tid": "team-7", "mail": "ann@mail.example", "org": {"id": "org-3"},
              "cust": "cust-5"}
    # A: user id from `email`, team from `tid`.
    assert identity(only_issuers.request(sign(keys["a"], idp_a.issuer, "s-1", aud="api-a", **claims))) \
        == user("ann@corp.example", team_id="team-7")
    # B: user id from `sub`, no team field.
    assert identity(only_issuers.request(sign(keys["b"], idp_b.issuer, "s-1", aud="api-b", **claims))) \
        == user("s-1")
    # C: email, org and end user from its own fields; with no user id field the user id is
    # the user email (the filter's fallback, see test_authorization.py), here C's `mail`.
    assert identity(only_issuers.request(sign(keys["c"], idp_c.issuer, "s-1", **claims))) \
        == user("ann@mail.example", org_id="org-3", end_user_id="cust-5", user_email="ann@mail.example")
    assert identity(only_issuers.request(sign(keys["c"], idp_c.issuer, "s-1"))) == user(None), "sub never stands in"


def test_an_issuers_required_team_field_is_its_own(only_issuers, keys, idp_a, idp_b):
    reply = only_issuers.request(sign(keys["a"], idp_a.issuer, aud="api-a", email="a@x"))
    assert_denied(reply, NO_TEAM_ID.format(field="tid"))
    assert identity(only_issuers.request(sign(keys["b"], idp_b.issuer, "bob", aud="api-b"))) == user("bob")


def test_spoofed_identity_headers_are_replaced_per_issuer(only_issuers, keys, idp_b):
    reply = only_issuers.request(sign(keys["b"], idp_b.issuer, "bob", aud="api-b", email="e@x"),
                                 headers={"x-litellm-user-id": "mallory", "x-litellm-user-role": "proxy_admin"})
    assert identity(reply) == user("bob")


# -- 4. metrics ---------------------------------------------------------------------------


def test_unknown_issuer_denials_are_counted(only_issuers, keys, idp_a):
    before = quiet_counters(only_issuers)
    for iss in ("https://m1.example", "https://m2.example", None):
        refused(only_issuers.request(keys["a"].sign(jf.claims("m", iss=iss, aud="api-a"))), "unknown_issuer",
                UNKNOWN_ISSUER)
    assert_forwarded(only_issuers.request(sign(keys["a"], idp_a.issuer, aud="api-a", email="a@x", tid="t")),
                     sub="a@x")
    name = "requests_denied.unknown_issuer"
    after = settled(only_issuers, before, {name: 3, "requests_allowed": 1})
    assert after.get(name, 0) - before.get(name, 0) == 3, (before, after)
    assert after.get("requests_allowed", 0) - before.get("requests_allowed", 0) == 1, (before, after)
    for other in ("requests_denied.unknown_kid", "requests_denied.bad_signature"):
        assert after.get(other, 0) == before.get(other, 0), (other, before, after)
    status, text = only_issuers.envoy.admin_get("/stats/prometheus")
    assert status == 200
    line = next((ln for ln in text.splitlines() if ln.startswith("llm_jwt_auth_requests_denied_unknown_issuer")),
                None)
    assert line is not None and int(line.split()[-1]) >= 3, line


# -- 3. OIDC discovery --------------------------------------------------------------------


def discovering(envoys, idp, name: str, *, extra_jwks=(), concurrency: int = 1, **config: Any):
    """An Envoy with one issuer for `idp` that has no jwks_url (keys found by discovery)."""
    plugin = {"issuers": [{"issuer": idp.issuer, "audience": "api-d", "user_id_jwt_field": "sub"}], **config}
    return envoys.scenario(name, jwks=[idp, *extra_jwks], concurrency=concurrency, plugin_config=plugin)


def test_issuer_without_jwks_url_discovers_its_keys_once(envoys, idps, keyring):
    key = keyring.get("disc-rs", "RS256")
    idp = idps.new([key])
    proxy = discovering(envoys, idp, "discovery")
    for i in range(4):
        assert_forwarded(proxy.request(sign(key, idp.issuer, f"d-{i}", aud="api-d")), sub=f"d-{i}")
    assert (idp.discovery_count, idp.fetch_count) == (1, 1)
    assert idp.discovery_times[0] < idp.fetch_times[0], "the document is read before the keys"
    after = settled(proxy, {}, {"jwks_fetch_success": 1})
    assert after.get("jwks_fetch_success") == 1 and after.get("jwks_fetch_failure", 0) == 0, after


def test_realm_style_issuer_is_discovered_under_its_path(envoys, idps, keyring):
    key = keyring.get("disc-realm", "ES256")
    idp = idps.new([key], start=False)
    idp.issuer = idp.base_url + "/realms/acme/"  # trailing slash: not doubled in the discovery URL
    idp.start()
    assert idp.discovery_path == "/realms/acme/.well-known/openid-configuration"
    proxy = discovering(envoys, idp, "discovery-realm")
    assert_forwarded(proxy.request(sign(key, idp.issuer, "r-1", aud="api-d")), sub="r-1")
    assert (idp.discovery_count, idp.fetch_count) == (1, 1)


def test_cold_start_burst_makes_one_discovery_and_one_key_fetch_per_envoy(envoys, idps, keyring):
    key = keyring.get("disc-burst", "ES256")
    idp = idps.new([key])
    # The filter starts fetching as soon as it runs: slow answers keep both steps in flight
    # while the burst lands.
    idp.discovery_delay = 1.5
    idp.delay = 1.5
    proxy = discovering(envoys, idp, "discovery-burst", concurrency=2)
    proxy.envoy  # ready
    tokens = [sign(key, idp.issuer, f"b-{i}", aud="api-d") for i in range(30)]
    sent = time.monotonic()
    for i, reply in enumerate(burst(proxy, tokens)):
        assert_forwarded(reply, sub=f"b-{i}")
    assert idp.served_times and sent < idp.served_times[0], \
        "the burst should have been sent before the keys were served (it must wait for them)"
    assert (idp.discovery_count, idp.fetch_count) == (1, 1), \
        f"discovery fetches {idp.discovery_count}, JWKS fetches {idp.fetch_count}; expected 1 each"
    for i in range(6):  # warm, whichever worker answers
        assert_forwarded(proxy.request(tokens[i]), sub=f"b-{i}")
    assert (idp.discovery_count, idp.fetch_count) == (1, 1)


def test_public_key_url_naming_a_discovery_document_works(envoys, idps, keyring):
    key = keyring.get("disc-global", "EdDSA")
    idp = idps.new([key])
    proxy = envoys.scenario("discovery-global", jwks=[idp], plugin_config={"public_key_url": idp.discovery_url})
    for i in range(3):
        assert_forwarded(proxy.request(key.sign(jf.claims(f"g-{i}"))), sub=f"g-{i}")
    assert (idp.discovery_count, idp.fetch_count) == (1, 1)


def test_discovered_jwks_uri_on_another_host_uses_the_clusters_map(envoys, idps, keyring):
    """The document names a host Envoy has no `host:port` cluster for; `clusters` routes it."""
    key = keyring.get("disc-keys-host", "RS256")
    doc_idp = idps.new([])
    keys_idp = idps.new([key])
    doc_idp.set_discovery({"issuer": doc_idp.issuer, "jwks_uri": f"https://keys.internal.example{keys_idp.jwks_path}"})
    proxy = envoys.scenario(
        "discovery-clusters", jwks=[doc_idp], clusters={"keys-cluster": (keys_idp.host, keys_idp.port)},
        plugin_config={
            "issuers": [{"issuer": doc_idp.issuer, "disable_audience_validation": True}],
            "clusters": {"keys.internal.example": "keys-cluster"},
        })
    assert_forwarded(proxy.request(sign(key, doc_idp.issuer, "k-1")), sub="k-1")
    assert (doc_idp.discovery_count, doc_idp.fetch_count, keys_idp.fetch_count) == (1, 0, 1)


def test_discovered_jwks_uri_on_another_host_port_uses_its_default_cluster(envoys, idps, keyring):
    key = keyring.get("disc-keys-host", "RS256")
    doc_idp = idps.new([])
    keys_idp = idps.new([key])
    doc_idp.set_discovery({"issuer": doc_idp.issuer, "jwks_uri": keys_idp.jwks_url})
    proxy = discovering(envoys, doc_idp, "discovery-default-cluster", extra_jwks=[keys_idp])
    assert_forwarded(proxy.request(sign(key, doc_idp.issuer, "k-2", aud="api-d")), sub="k-2")
    assert (doc_idp.discovery_count, doc_idp.fetch_count, keys_idp.fetch_count) == (1, 0, 1)


FAULTS = {
    "no-jwks-uri": (lambda idp: idp.set_discovery({"issuer": idp.issuer}), "has no jwks_uri"),
    "status-500": (lambda idp: idp.fail_discovery_with(500), "returned status 500"),
    "not-json": (lambda idp: idp.serve_discovery_not_json(), "is not JSON"),
    "jwks-uri-not-http": (lambda idp: idp.set_discovery({"issuer": idp.issuer, "jwks_uri": "file:///etc/passwd"}),
                          "not an http(s) URL"),
    "jwks-uri-number": (lambda idp: idp.set_discovery({"issuer": idp.issuer, "jwks_uri": 5}), "not a string"),
    "array": (lambda idp: idp.set_discovery(b"[]"), "not a JSON object"),
    "status-404": (lambda idp: idp.fail_discovery_with(404, b"not found", "text/plain"), "returned status 404"),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_broken_discovery_document_gives_503_then_recovers(envoys, idps, keyring, fault):
    breaks, says = fault
    key = keyring.get("disc-broken", "ES256")
    idp = idps.new([key])
    breaks(idp)
    proxy = discovering(envoys, idp, "discovery-broken")
    token = sign(key, idp.issuer, "x-1", aud="api-d")
    started = time.monotonic()
    replies = 0
    while time.monotonic() < started + 1.5 or replies < 4:
        unavailable(proxy.request(token), "OIDC discovery", idp.discovery_url, says, proxy=proxy)
        replies += 1
        time.sleep(0.1)
    assert idp.discovery_count >= 1 and idp.fetch_count == 0, (idp.discovery_count, idp.fetch_count)
    spaced(idp.discovery_times)
    assert settled(proxy, {}, {"jwks_fetch_failure": 1}).get("jwks_fetch_failure", 0) >= 1

    idp.heal_discovery()
    assert_forwarded(wait_for_success(proxy, token), sub="x-1")
    assert idp.fetch_count == 1
    # A bad token is still refused once the keys are in: recovery opens nothing.
    refused(proxy.request(keyring.get("disc-other", "ES256").sign(jf.claims("x", iss=idp.issuer, aud="api-d"))),
            "unknown_kid", prefix=NO_MATCHING_KEY)


def test_discovered_jwks_uri_failing_gives_503_then_recovers(envoys, idps, keyring):
    key = keyring.get("disc-jwks-500", "RS256")
    idp = idps.new([key])
    idp.fail_with(500)
    proxy = discovering(envoys, idp, "discovery-jwks-500")
    token = sign(key, idp.issuer, "j-1", aud="api-d")
    for _ in range(4):
        unavailable(proxy.request(token), "returned status 500", proxy=proxy)
    assert idp.discovery_count >= 1 and idp.fetch_count >= 1
    idp.heal()
    assert_forwarded(wait_for_success(proxy, token), sub="j-1")


BAD_JWKS_URIS = {
    # Envoy has no cluster for the discovered host: the gateway is misconfigured (critical log,
    # "retry later" answer), not a transient failure.
    "no-cluster": (lambda idp: "http://no-such-cluster.example:8443/keys", 'refused to call cluster "no-such-cluster', True),
    "not-found": (lambda idp: idp.base_url + "/moved-keys", "returned status 404", False),
}


@pytest.mark.parametrize("bad", BAD_JWKS_URIS.values(), ids=BAD_JWKS_URIS.keys())
def test_document_naming_a_useless_jwks_uri_gives_503_until_fixed_and_ttl_passed(envoys, idps, keyring, bad):
    """A `jwks_uri` that cannot be called (no Envoy cluster) or answers 404: 503, never a 200.
    Once the document is fixed, the keys come back — at the latest when the remembered
    `jwks_uri` expires (public_key_ttl; the next test asserts "at once")."""
    uri, says, misconfigured = bad
    ttl = 3
    key = keyring.get("disc-useless", "RS256")
    idp = idps.new([key])
    idp.set_discovery({"issuer": idp.issuer, "jwks_uri": uri(idp)})
    proxy = discovering(envoys, idp, "discovery-useless-uri",
                        general_settings={"litellm_jwtauth": {"public_key_ttl": ttl}})
    token = sign(key, idp.issuer, "n-1", aud="api-d")
    for _ in range(4):
        unavailable(proxy.request(token), says, proxy=proxy, misconfigured=misconfigured)
        time.sleep(0.1)
    assert idp.fetch_count == 0
    idp.heal_discovery()
    assert_forwarded(wait_for_success(proxy, token, ttl + RECOVERY_DEADLINE), sub="n-1")
    assert idp.fetch_count == 1 and idp.discovery_count >= 2


@pytest.mark.parametrize("bad", BAD_JWKS_URIS.values(), ids=BAD_JWKS_URIS.keys())
def test_document_naming_a_useless_jwks_uri_recovers_as_soon_as_it_is_fixed(envoys, idps, keyring, bad):
    """A failed key fetch forgets the discovered `jwks_uri`, so the next try reads the
    (fixed) document again instead of waiting for public_key_ttl (600 s here)."""
    uri, says, misconfigured = bad
    key = keyring.get("disc-useless", "RS256")
    idp = idps.new([key])
    idp.set_discovery({"issuer": idp.issuer, "jwks_uri": uri(idp)})
    proxy = discovering(envoys, idp, "discovery-useless-uri-default-ttl")
    token = sign(key, idp.issuer, "n-2", aud="api-d")
    for _ in range(3):
        unavailable(proxy.request(token), says, proxy=proxy, misconfigured=misconfigured)
    idp.heal_discovery()
    assert_forwarded(wait_for_success(proxy, token), sub="n-2")


def test_a_changed_jwks_uri_is_picked_up_after_public_key_ttl(envoys, idps, keyring):
    ttl = 2
    old, new = keyring.get("disc-ttl-old", "RS256"), keyring.get("disc-ttl-new", "RS256")
    idp = idps.new([old])
    moved = idps.new([new])
    proxy = discovering(envoys, idp, "discovery-ttl", extra_jwks=[moved],
                        general_settings={"litellm_jwtauth": {"public_key_ttl": ttl}})
    assert_forwarded(proxy.request(sign(old, idp.issuer, "o-1", aud="api-d")), sub="o-1")
    assert (idp.discovery_count, idp.fetch_count) == (1, 1)

    idp.set_discovery({"issuer": idp.issuer, "jwks_uri": moved.jwks_url})  # the IdP moves its keys
    token = sign(new, idp.issuer, "n-1", aud="api-d")
    deadline = time.monotonic() + 3 * ttl + 4
    while True:
        reply = proxy.request(token)
        if reply.status == 200:
            break
        refused(reply, "unknown_kid", prefix=NO_MATCHING_KEY, contains=["kid=disc-ttl-new"])
        assert time.monotonic() < deadline, "the new jwks_uri was never used"
        time.sleep(0.2)
    assert_forwarded(reply, sub="n-1")
    assert idp.discovery_count >= 2 and moved.fetch_count >= 1
    refused(proxy.request(sign(old, idp.issuer, "o-2", aud="api-d")), "unknown_kid", prefix=NO_MATCHING_KEY)
