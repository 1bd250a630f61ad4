"""Where the token comes from, and non-JWT API keys, through Envoy.

Token locations (`from_headers` with `value_prefix`, `from_params`, `from_cookies`): each one
verified; a credential in two accepted places, or twice in one place, refused as smuggling
(401 `malformed_token`); `forward: false` removes the credential before the request goes
upstream (header removed, query parameter cut out of `:path` with the other parameters kept,
cookie cut out of `cookie` with the other cookies kept); the default configuration reads only
`Authorization: Bearer`.

`api_keys`: `refuse` (default) answers a non-JWT credential with 401; `pass_through` lets it
through untouched and without identity (client-sent `x-litellm-*` still stripped), counted in
`requests_api_key_pass_through`; a JWT-shaped credential is still verified.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

import pytest

import jwt_fixtures as jf
from checks import NO_API_KEY, INVALID_JWT, BAD_SIGNATURE, Reply, assert_auth_error

REASON = "x-llm-jwt-auth-reason"
SMUGGLED = "send exactly one credential"
PARAM = "access_token"
COOKIE = "session"
HEADER = "x-api-token"

LOCATIONS = {
    "from_headers": [{"name": "X-Api-Token", "value_prefix": "Token "},
                     {"name": "authorization", "value_prefix": "Bearer "}],
    "from_params": [PARAM],
    "from_cookies": [COOKIE],
}


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("token-locations-rs256", "RS256")


@pytest.fixture(scope="module")
def idp(module_idps, key):
    return module_idps.new([key])


@pytest.fixture(scope="module")
def make(module_envoys, idp):
    def scenario(name: str, **top: Any):
        return module_envoys.scenario(name, jwks=[idp], plugin_config={"public_key_url": idp.jwks_url, **top})

    return scenario


@pytest.fixture(scope="module")
def located(make):
    """Every kind of location; the credential is forwarded (default)."""
    return make("locations", **LOCATIONS)


@pytest.fixture(scope="module")
def stripped(make):
    """The same locations with `forward: false`."""
    return make("locations-strip", forward=False, **LOCATIONS)


@pytest.fixture(scope="module")
def default(make):
    return make("locations-default")


@pytest.fixture(scope="module")
def pass_through(make):
    return make("api-keys-pass", api_keys="pass_through",
                rules=[{"match": {"prefix": "/internal/"}, "deny": True},
                       {"match": {"path": "/model/info"}, "require": {"admin": True}},
                       {"match": {"path": "/v1/models"}, "require": {"claims": [{"claim": "sub", "any_of": ["alice"]}]}}])


@pytest.fixture(scope="module")
def token(key):
    return key.sign(jf.claims("alice"))


# -- assertions ----------------------------------------------------------------------------


def identity_headers(echo: dict) -> dict:
    return {k: v for k, v in echo["headers"].items() if k.startswith("x-litellm-")}


def forwarded(reply: Reply, *, sub: str | None = "alice") -> dict:
    """200 from the echo upstream, reached once; with `sub`, the verified identity headers."""
    assert reply.status == 200, f"expected 200 from the upstream, got {reply!r}"
    echo = reply.json()["echo"]
    assert len(reply.upstream_copies()) == 1, "the upstream must see the request exactly once"
    if sub is None:
        assert identity_headers(echo) == {}, echo["headers"]
    else:
        assert identity_headers(echo) == {"x-litellm-user-id": sub, "x-litellm-user-role": "internal_user"}, \
            echo["headers"]
    return echo


def refused(reply: Reply, reason: str, *, message: str | None = None, prefix: str | None = None,
            contains: Iterable[str] = ()) -> dict:
    """401 in LiteLLM's envelope with this reason, the RFC 6750 challenge (no error code for a
    missing credential), not forwarded. The credential may be anywhere, so the challenge is
    checked against the reason, not against the Authorization header."""
    assert reply.status == 401, f"expected 401, got {reply!r}"
    assert reply.headers.get(REASON) == reason, reply
    body = reply.json()
    assert set(body) == {"error"} and body["error"]["type"] == "auth_error" and body["error"]["code"] == "401", body
    msg = body["error"]["message"]
    if message is not None:
        assert msg == message, msg
    if prefix is not None:
        assert msg.startswith(prefix), msg
    for part in contains:
        assert part in msg, msg
    challenge = reply.headers.get("www-authenticate", "")
    if reason in ("missing_token", "denied", "forbidden_model"):
        # No credential, or a valid one an authorization rule refused: no error code.
        assert challenge == "Bearer", challenge
    else:
        assert challenge.startswith('Bearer error="invalid_token"'), challenge
    assert not reply.upstream_copies(), "a refused request must not reach the upstream"
    return body["error"]


def smuggled(reply: Reply) -> None:
    refused(reply, "malformed_token", prefix=INVALID_JWT, contains=[SMUGGLED])


# ==========================================================================================
# each location
# ==========================================================================================


@pytest.mark.parametrize("value", ["Token {t}", "token {t}", "TOKEN   {t} "], ids=["as-configured", "lower", "spaces"])
def test_custom_header_with_prefix(located, token, value):
    echo = forwarded(located.request(None, headers={HEADER: value.format(t=token)}))
    assert echo["headers"][HEADER] == value.format(t=token).strip(), "forwarded as sent (forward: true)"


@pytest.mark.parametrize("value", ["{t}", "Bearer {t}", "Token ", "Tokenx{t}"],
                         ids=["no-prefix", "other-prefix", "empty", "glued"])
def test_custom_header_without_its_prefix_is_no_credential(located, token, value):
    refused(located.request(None, headers={HEADER: value.format(t=token)}), "missing_token", message=NO_API_KEY)


def test_listed_authorization_header(located, token):
    echo = forwarded(located.request(token))
    assert echo["headers"]["authorization"] == f"Bearer {token}"


def test_query_parameter(located, token):
    echo = forwarded(located.request(None, path=f"/v1/chat/completions?api-version=1&{PARAM}={token}"))
    assert echo["path"] == f"/v1/chat/completions?api-version=1&{PARAM}={token}", "forwarded as sent"


def test_query_parameter_route_is_the_path_without_the_query(located, token):
    # The query does not make /key/generate an LLM route: LiteLLM's admin-only answer.
    reply = located.request(None, method="POST", path=f"/key/generate?{PARAM}={token}&x=/v1/chat/completions")
    refused(reply, "denied", prefix="Authentication Error, Only proxy admin can be used")


@pytest.mark.parametrize("cookie", ["theme=dark; {c}={t}; lang=en", "{c}={t}", '{c}="{t}"'],
                         ids=["among-others", "alone", "quoted"])
def test_cookie(located, token, cookie):
    value = cookie.format(c=COOKIE, t=token)
    echo = forwarded(located.request(None, headers={"cookie": value}))
    assert echo["headers"]["cookie"] == value, "forwarded as sent"


@pytest.mark.parametrize("where", ["header", "param", "cookie"])
def test_a_forged_token_is_refused_in_every_location(located, token, where):
    forged = jf.tamper_signature(token)
    kwargs: dict[str, Any] = {
        "header": {"headers": {HEADER: f"Token {forged}"}},
        "param": {"path": f"/v1/models?{PARAM}={forged}"},
        "cookie": {"headers": {"cookie": f"{COOKIE}={forged}"}},
    }[where]
    refused(located.request(None, **kwargs), "bad_signature", message=BAD_SIGNATURE)


def test_empty_locations_are_no_credential(located):
    reply = located.request(None, path=f"/v1/models?{PARAM}=&other=1", headers={"cookie": f"{COOKIE}=; a=b"})
    refused(reply, "missing_token", message=NO_API_KEY)


def test_unlisted_names_are_not_read(located, token):
    reply = located.request(None, path=f"/v1/models?token={token}",
                            headers={"cookie": f"sessionid={token}", "x-api-token-2": f"Token {token}"})
    refused(reply, "missing_token", message=NO_API_KEY)


# ==========================================================================================
# smuggling: one credential, one place
# ==========================================================================================


@pytest.mark.parametrize("places", [
    ("header", "param"), ("header", "cookie"), ("param", "cookie"), ("authorization", "header"),
    ("authorization", "cookie"),
])
def test_the_same_token_in_two_locations_is_refused(located, token, places):
    headers: dict[str, str] = {}
    path = "/v1/chat/completions"
    for place in places:
        if place == "header":
            headers[HEADER] = f"Token {token}"
        elif place == "authorization":
            headers["authorization"] = f"Bearer {token}"
        elif place == "cookie":
            headers["cookie"] = f"{COOKIE}={token}"
        else:
            path += f"?{PARAM}={token}"
    smuggled(located.request(None, path=path, headers=headers))


def test_two_different_tokens_in_two_locations_are_refused(located, key, token):
    other = key.sign(jf.claims("mallory"))
    smuggled(located.request(None, path=f"/v1/models?{PARAM}={other}", headers={HEADER: f"Token {token}"}))


@pytest.mark.parametrize("same", [True, False], ids=["same-token", "two-tokens"])
def test_a_parameter_twice_is_refused(located, key, token, same):
    second = token if same else key.sign(jf.claims("mallory"))
    smuggled(located.request(None, path=f"/v1/models?{PARAM}={token}&a=1&{PARAM}={second}"))


def test_a_percent_encoded_parameter_name_is_the_same_parameter(located, key, token):
    # Envoy decodes percent-encoded unreserved characters before the filter runs, so the
    # filter and the upstream see the same names: an encoded second copy is a second copy.
    other = key.sign(jf.claims("mallory"))
    smuggled(located.request(None, path=f"/v1/models?access%5Ftoken={other}&{PARAM}={token}"))
    echo = forwarded(located.request(None, path=f"/v1/models?%61ccess%5ftoken={token}"))
    assert echo["path"] == f"/v1/models?{PARAM}={token}", echo["path"]


@pytest.mark.parametrize("same", [True, False], ids=["same-token", "two-tokens"])
def test_a_cookie_twice_in_one_header_is_refused(located, key, token, same):
    second = token if same else key.sign(jf.claims("mallory"))
    smuggled(located.request(None, headers={"cookie": f"{COOKIE}={token}; theme=dark; {COOKIE}={second}"}))


def test_a_cookie_in_two_cookie_headers_is_refused(located, token):
    reply = located.request_raw([("cookie", f"{COOKIE}={token}"), ("cookie", f"theme=dark; {COOKIE}={token}")])
    smuggled(reply)


def test_two_cookie_headers_with_one_token_are_fine(located, token):
    forwarded(located.request_raw([("cookie", "theme=dark"), ("cookie", f"{COOKIE}={token}")]))


def test_a_custom_header_twice_is_refused(located, token):
    reply = located.request_raw([(HEADER, f"Token {token}"), (HEADER, f"Token {token}")])
    smuggled(reply)


# ==========================================================================================
# forward: false
# ==========================================================================================


def test_strip_header(stripped, token):
    echo = forwarded(stripped.request(None, headers={HEADER: f"Token {token}", "x-other": "kept"}))
    assert HEADER not in echo["headers"], echo["headers"]
    assert echo["headers"]["x-other"] == "kept"


def test_strip_authorization_when_it_is_the_location(stripped, token):
    echo = forwarded(stripped.request(token))
    assert "authorization" not in echo["headers"], echo["headers"]


@pytest.mark.parametrize("query,kept", [
    ("a=1&{p}={t}&b=2", "?a=1&b=2"),
    ("{p}={t}", ""),
    ("{p}={t}&b=2", "?b=2"),
    ("a=1&{p}={t}", "?a=1"),
    ("{p}x=1&{p}={t}", "?{p}x=1"),
], ids=["middle", "alone", "first", "last", "similar-name-kept"])
def test_strip_query_parameter_keeps_the_others(stripped, token, query, kept):
    reply = stripped.request(None, path="/v1/chat/completions?" + query.format(p=PARAM, t=token))
    echo = forwarded(reply)
    assert echo["path"] == "/v1/chat/completions" + kept.format(p=PARAM), echo["path"]
    assert token not in echo["path"]


@pytest.mark.parametrize("cookie,kept", [
    ("theme=dark; {c}={t}; lang=en", "theme=dark; lang=en"),
    ("{c}={t}; lang=en", "lang=en"),
    ("{c}={t}", None),
    ("{c}x=1; {c}={t}", "{c}x=1"),
], ids=["middle", "first", "alone", "similar-name-kept"])
def test_strip_cookie_keeps_the_others(stripped, token, cookie, kept):
    echo = forwarded(stripped.request(None, headers={"cookie": cookie.format(c=COOKIE, t=token)}))
    assert echo["headers"].get("cookie") == (kept.format(c=COOKIE) if kept is not None else None), echo["headers"]


def test_strip_cookie_across_two_cookie_headers(stripped, token):
    echo = forwarded(stripped.request_raw([("cookie", "theme=dark"), ("cookie", f"{COOKIE}={token}; lang=en")]))
    assert echo["headers"].get("cookie") == "theme=dark; lang=en", echo["headers"]
    assert token not in str(echo["headers"])


def test_strip_still_refuses_smuggling(stripped, token):
    smuggled(stripped.request(None, path=f"/v1/models?{PARAM}={token}", headers={HEADER: f"Token {token}"}))


# ==========================================================================================
# default: Authorization only
# ==========================================================================================


def test_default_reads_authorization(default, token):
    echo = forwarded(default.request(token))
    assert echo["headers"]["authorization"] == f"Bearer {token}"


@pytest.mark.parametrize("where", ["param", "cookie", "header"])
def test_default_ignores_other_locations(default, token, where):
    kwargs: dict[str, Any] = {
        "param": {"path": f"/v1/models?{PARAM}={token}"},
        "cookie": {"headers": {"cookie": f"{COOKIE}={token}"}},
        "header": {"headers": {HEADER: f"Token {token}"}},
    }[where]
    reply = default.request(None, **kwargs)
    assert_auth_error(reply, NO_API_KEY)
    assert reply.headers.get(REASON) == "missing_token"


def test_default_ignores_a_second_copy_elsewhere(default, token):
    # Only Authorization is a location, so a token also in the query is not a second credential.
    echo = forwarded(default.request(token, path=f"/v1/models?{PARAM}={token}"))
    assert echo["path"] == f"/v1/models?{PARAM}={token}"


def test_custom_locations_without_authorization_do_not_read_it(make, token):
    only_cookie = make("locations-cookie-only", from_cookies=[COOKIE])
    refused(only_cookie.request(token), "missing_token", message=NO_API_KEY)
    forwarded(only_cookie.request(None, headers={"cookie": f"{COOKIE}={token}"}))


# ==========================================================================================
# api_keys
# ==========================================================================================


@pytest.mark.parametrize("credential", ["sk-1234", "sk-proj-abc.def"])
def test_api_key_refused_by_default(default, credential):
    reply = default.request(credential)
    assert_auth_error(reply, prefix=INVALID_JWT)
    assert reply.headers.get(REASON) == "malformed_token"


def stats(proxy) -> dict[str, int]:
    return proxy.envoy.stats("wasmcustom.llm_jwt_auth.")


def settled_stats(proxy) -> dict[str, int]:
    """Counters once no earlier count is still on its way (the filter flushes every 100 ms)."""
    before = stats(proxy)
    while True:
        time.sleep(0.3)
        again = stats(proxy)
        if again == before:
            return again
        before = again


def counter(values: Mapping[str, int], name: str) -> int:
    return values.get(f"wasmcustom.llm_jwt_auth.{name}", 0)


@pytest.mark.parametrize("credential", ["sk-1234", "sk-proj-abc.def", "a.b.c.d.e"], ids=["sk", "one-dot", "five-parts"])
def test_api_key_pass_through(pass_through, credential):
    spoof = {"x-litellm-user-id": "admin", "x-litellm-user-role": "proxy_admin", REASON: "none"}
    before = settled_stats(pass_through)
    for _ in range(2):
        reply = pass_through.request(credential, headers=spoof)
        echo = forwarded(reply, sub=None)
        assert echo["headers"]["authorization"] == f"Bearer {credential}", "the key reaches the upstream untouched"
        assert REASON not in echo["headers"], echo["headers"]
        assert REASON not in reply.headers
    deadline = time.monotonic() + 5
    while True:
        after = stats(pass_through)
        done = counter(after, "requests_api_key_pass_through") - counter(before, "requests_api_key_pass_through")
        if done >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert done == 2, after
    assert counter(after, "requests_allowed") == counter(before, "requests_allowed"), "not counted as verified"


def test_pass_through_still_verifies_jwts(pass_through, key, token):
    forwarded(pass_through.request(token))
    refused(pass_through.request(jf.tamper_signature(token)), "bad_signature", message=BAD_SIGNATURE)
    forged = jf.forged_token(key, jf.claims("root", scope="litellm_proxy_admin"))
    refused(pass_through.request(forged), "bad_signature", message=BAD_SIGNATURE)


def test_pass_through_refuses_jwt_shaped_garbage(pass_through):
    refused(pass_through.request("sk-1234.abc.def"), "malformed_token", prefix=INVALID_JWT)


def test_pass_through_still_needs_a_credential(pass_through):
    refused(pass_through.request(None), "missing_token", message=NO_API_KEY)


def test_pass_through_does_not_open_a_denied_route(pass_through):
    reply = pass_through.request("sk-1234", path="/internal/x")
    assert reply.status == 403 and reply.headers.get(REASON) == "route_rule", reply
    assert not reply.upstream_copies()


@pytest.mark.parametrize("path", ["/model/info", "/v1/models"])
def test_pass_through_keys_cannot_meet_a_route_requirement(pass_through, path, token):
    # A rule's requirements are checked on a verified JWT only: an opaque key is refused there.
    reply = pass_through.request("sk-1234", path=path)
    assert reply.status == 403 and reply.headers.get(REASON) == "route_rule", reply
    assert "API keys are not accepted" in reply.json()["error"]["message"]
    assert not reply.upstream_copies()
    if path == "/v1/models":
        forwarded(pass_through.request(token, path=path))
