"""Token verification against a JWKS holding one key per supported algorithm.

One Envoy for the module: plugin config `{"public_key_url": <jwks>}` (no audience, no issuer,
default TTL), so every test below also relies on the JWKS being fetched once and cached.
"""

from __future__ import annotations

import hashlib
import os

import pytest

import jwt_fixtures as jf
from checks import (
    ALG_NOT_ALLOWED, BAD_SIGNATURE, INVALID_JWT, NO_API_KEY, NO_MATCHING_KEY, NOT_YET_VALID_IAT,
    NOT_YET_VALID_NBF, TOKEN_EXPIRED, assert_auth_error, assert_error, assert_forwarded,
)


@pytest.fixture(scope="module")
def keys(keyring):
    return keyring.per_algorithm()


@pytest.fixture(scope="module")
def rsa_no_alg(keyring):
    """An RSA key published without an `alg` member."""
    return keyring.get("test-rsa-noalg", "RS256")


@pytest.fixture(scope="module")
def idp(module_idps, keys, rsa_no_alg):
    server = module_idps.new()
    server.set_jwks(jf.jwks([*keys.values(), rsa_no_alg.jwk(include_alg=False)]))
    return server


@pytest.fixture(scope="module")
def proxy(module_envoys, idp):
    return module_envoys.scenario("tokens", plugin_config={"public_key_url": idp.jwks_url}, jwks=[idp])


@pytest.fixture(scope="module")
def rs256(keys):
    return keys["RS256"]


# -- accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", jf.ALGORITHMS)
def test_valid_token_of_each_algorithm_is_forwarded_with_identity(proxy, keys, alg):
    token = keys[alg].sign(jf.claims(f"user-{alg.lower()}"))
    assert_forwarded(proxy.request(token), sub=f"user-{alg.lower()}")


def test_lowercase_bearer_scheme_is_accepted(proxy, rs256):
    reply = proxy.request(authorization=f"bearer {rs256.sign(jf.claims())}")
    assert_forwarded(reply)


@pytest.mark.parametrize("alg", ["RS256", "RS512", "PS384"])
def test_jwk_without_alg_accepts_any_rsa_algorithm(proxy, rsa_no_alg, alg):
    token = rsa_no_alg.sign(jf.claims("noalg"), alg=alg)
    assert_forwarded(proxy.request(token), sub="noalg")


def test_audience_and_issuer_are_not_checked_when_not_configured(proxy, rs256):
    token = rs256.sign(jf.claims(aud="some-other-service", iss="https://elsewhere.example"))
    assert_forwarded(proxy.request(token))


@pytest.mark.parametrize("scope", ["openid litellm_proxy_admin", ["profile", "litellm_proxy_admin"]],
                         ids=["string", "list"])
def test_litellm_proxy_admin_scope_gives_proxy_admin_role(proxy, rs256, scope):
    token = rs256.sign(jf.claims("root", scope=scope))
    # LiteLLM's default admin_allowed_routes: management, spend and info routes (not LLM calls).
    assert_forwarded(proxy.request(token, path="/key/generate"), sub="root", role="proxy_admin")


def test_other_scopes_give_internal_user_role(proxy, rs256):
    token = rs256.sign(jf.claims("bob", scope="openid profile email"))
    assert_forwarded(proxy.request(token), sub="bob", role="internal_user")


def test_spoofed_litellm_headers_are_replaced_and_stripped(proxy, rs256):
    token = rs256.sign(jf.claims("alice"))
    reply = proxy.request(token, headers={
        "x-litellm-user-id": "mallory",
        "X-LiteLLM-User-Role": "proxy_admin",
        # (x-litellm-team-id is a team selection, refused unless the token has the team:
        # test_team_selection.py.)
        "x-litellm-anything": "spoofed",
    })
    echo = assert_forwarded(reply, sub="alice", role="internal_user")
    litellm = {k: v for k, v in echo["headers"].items() if k.startswith("x-litellm-")}
    assert litellm == {"x-litellm-user-id": "alice", "x-litellm-user-role": "internal_user"}


def test_post_body_reaches_upstream_byte_identical(proxy, rs256):
    body = os.urandom(256 * 1024)
    reply = proxy.request(rs256.sign(jf.claims()), method="POST", data=body,
                          headers={"content-type": "application/octet-stream"})
    echo = assert_forwarded(reply)
    assert echo["method"] == "POST"
    assert echo["path"] == "/v1/chat/completions"
    assert echo["body_len"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_jwks_is_fetched_once_and_cached(proxy, idp, keys):
    assert_forwarded(proxy.request(keys["ES256"].sign(jf.claims())))
    before = idp.fetch_count
    for alg in ("RS256", "PS512", "ES384", "EdDSA"):
        assert_forwarded(proxy.request(keys[alg].sign(jf.claims())))
    assert idp.fetch_count == before == 1, f"JWKS fetched {idp.fetch_count} times with a 600 s TTL"


# -- no token / not a token ----------------------------------------------------------------


def test_missing_authorization_is_refused(proxy):
    reply = proxy.request()
    assert_auth_error(reply, NO_API_KEY)


def test_empty_authorization_is_refused(proxy):
    reply = proxy.request(authorization="")
    assert_auth_error(reply, NO_API_KEY)


def test_api_key_that_is_not_a_jwt_is_refused(proxy):
    reply = proxy.request("sk-1234")
    assert_auth_error(reply, prefix=INVALID_JWT)


MALFORMED = {
    "two_segments": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9",
    "four_segments": "aaaa.bbbb.cccc.dddd",
    "garbage": "garbage%in*the~token",
    "bad_base64": "!!!.###.$$$",
    "non_json_header": jf.b64url("this is not json") + "." + jf.b64url_json({"sub": "alice"}) + ".c2ln",
    "header_not_an_object": jf.b64url("[1, 2, 3]") + "." + jf.b64url_json({"sub": "alice"}) + ".c2ln",
}


@pytest.mark.parametrize("token", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_token_is_invalid_jwt(proxy, token):
    reply = proxy.request(token)
    assert_auth_error(reply, prefix=INVALID_JWT)


# -- refused algorithms --------------------------------------------------------------------


def test_alg_none_is_refused(proxy, rs256):
    token = jf.unsigned_token(jf.claims(), kid=rs256.kid)
    assert_auth_error(proxy.request(token), ALG_NOT_ALLOWED)


def test_hs256_signed_with_the_rsa_public_key_is_refused(proxy, rs256):
    """RS256/HS256 key confusion: the HMAC secret is the published RSA public key PEM."""
    token = jf.hmac_token(jf.claims(), rs256.public_pem(), kid=rs256.kid)
    assert_auth_error(proxy.request(token), ALG_NOT_ALLOWED)


def test_alg_not_fitting_the_key_type_is_refused(proxy, keys, rs256):
    # An ES256 signature presented under the RSA key's kid.
    token = keys["ES256"].sign(jf.claims(), kid=rs256.kid)
    assert_auth_error(proxy.request(token), ALG_NOT_ALLOWED)


def test_alg_differing_from_the_jwk_alg_is_refused(proxy, rs256):
    # Same RSA key, valid RS384 signature, but the JWK says alg RS256.
    token = rs256.sign(jf.claims(), alg="RS384")
    assert_auth_error(proxy.request(token), ALG_NOT_ALLOWED)


# -- signatures ----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES384", "EdDSA"])
def test_tampered_signature_is_refused(proxy, keys, alg):
    token = jf.tamper_signature(keys[alg].sign(jf.claims()))
    assert_auth_error(proxy.request(token), BAD_SIGNATURE)


def test_token_signed_by_an_impostor_key_under_a_known_kid_is_refused(proxy, rs256):
    token = jf.forged_token(rs256, jf.claims())
    assert_auth_error(proxy.request(token), BAD_SIGNATURE)


def test_payload_swapped_after_signing_is_refused(proxy, rs256):
    token = jf.replace_payload(rs256.sign(jf.claims("alice")), jf.claims("root", scope="litellm_proxy_admin"))
    assert_auth_error(proxy.request(token), BAD_SIGNATURE)


# -- time claims ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_expired_token_is_refused_as_expired_key(proxy, keys, alg):
    token = keys[alg].sign(jf.claims(exp_in=-30, iat_in=-90))
    assert_error(proxy.request(token), 401, "expired_key", message=TOKEN_EXPIRED)


def test_token_not_yet_valid_by_nbf_is_refused(proxy, rs256):
    token = rs256.sign(jf.claims(nbf_in=300))
    assert_auth_error(proxy.request(token), NOT_YET_VALID_NBF)


def test_token_issued_in_the_future_is_refused(proxy, rs256):
    token = rs256.sign(jf.claims(iat_in=300))
    assert_auth_error(proxy.request(token), NOT_YET_VALID_IAT)


def test_token_without_exp_is_refused_by_default(proxy, rs256):
    # It would never expire. (PyJWT, and so LiteLLM, accept it: `require_exp: false`.)
    token = rs256.sign(jf.claims("timeless", exp_in=None, iat_in=None))
    assert_auth_error(proxy.request(token), 'Authentication Error, Validation fails: Token is missing the "exp" claim')


# -- key selection -------------------------------------------------------------------------


def test_unknown_kid_is_refused_naming_the_kid(proxy, keyring):
    stranger = keyring.get("nobody-knows-me", "RS256")
    reply = proxy.request(stranger.sign(jf.claims()))
    assert_auth_error(reply, prefix=NO_MATCHING_KEY, contains=["kid=nobody-knows-me"])


def test_token_without_kid_matches_nothing_in_a_multi_key_set(proxy, rs256):
    reply = proxy.request(rs256.sign(jf.claims(), kid=None))
    assert_auth_error(reply, prefix=NO_MATCHING_KEY)
