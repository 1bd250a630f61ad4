"""Where keys come from: several JWKS URLs, custom cluster names, inline PEM keys and
certificates, the JWT_PUBLIC_KEY_URL / JWT_AUDIENCE environment fallback, and LiteLLM's
single-key `kid` matching rules."""

from __future__ import annotations

import pytest

import jwt_fixtures as jf
from checks import AUDIENCE_MISMATCH, BAD_SIGNATURE, NO_MATCHING_KEY, assert_auth_error, assert_forwarded


@pytest.fixture(scope="module")
def first(keyring):
    return keyring.get("src-first", "RS256")


@pytest.fixture(scope="module")
def second(keyring):
    return keyring.get("src-second", "ES256")


@pytest.fixture(scope="module")
def idp_first(module_idps, first, keyring):
    # Two keys, so a token without kid never matches here.
    return module_idps.new([first, keyring.get("src-first-spare", "RS256")])


@pytest.fixture(scope="module")
def idp_second(module_idps, second):
    return module_idps.new([second])


# -- several URLs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def comma_urls(module_envoys, idp_first, idp_second):
    return module_envoys.scenario(
        "urls-comma", jwks=[idp_first, idp_second],
        plugin_config={"public_key_url": f"{idp_first.jwks_url},{idp_second.jwks_url}"},
    )


@pytest.fixture(scope="module")
def list_urls(module_envoys, idp_first, idp_second):
    return module_envoys.scenario(
        "urls-list", jwks=[idp_first, idp_second],
        plugin_config={"public_key_url": [idp_first.jwks_url, idp_second.jwks_url]},
    )


def test_key_only_in_second_url_is_found_with_comma_separated_urls(comma_urls, second):
    assert_forwarded(comma_urls.request(second.sign(jf.claims("from-second"))), sub="from-second")


def test_key_in_first_url_is_found_with_comma_separated_urls(comma_urls, first):
    assert_forwarded(comma_urls.request(first.sign(jf.claims("from-first"))), sub="from-first")


def test_kid_in_no_url_is_refused_with_comma_separated_urls(comma_urls, keyring):
    stranger = keyring.get("src-stranger", "RS256")
    reply = comma_urls.request(stranger.sign(jf.claims()))
    assert_auth_error(reply, prefix=NO_MATCHING_KEY, contains=["kid=src-stranger"])


def test_key_only_in_second_url_is_found_with_url_list(list_urls, second):
    assert_forwarded(list_urls.request(second.sign(jf.claims("from-second"))), sub="from-second")


def test_key_in_first_url_is_found_with_url_list(list_urls, first):
    assert_forwarded(list_urls.request(first.sign(jf.claims("from-first"))), sub="from-first")


# -- custom cluster name -------------------------------------------------------------------


def test_clusters_map_routes_the_jwks_fetch_to_a_custom_cluster(module_envoys, module_idps, keyring):
    key = keyring.get("src-custom-cluster", "EdDSA")
    idp = module_idps.new([key])
    # No cluster named "127.0.0.1:<port>" exists: the fetch only works through the mapping.
    proxy = module_envoys.scenario(
        "custom-cluster",
        clusters={"jwks_idp_custom": (idp.host, idp.port)},
        plugin_config={"public_key_url": idp.jwks_url, "clusters": {idp.authority: "jwks_idp_custom"}},
    )
    assert_forwarded(proxy.request(key.sign(jf.claims("custom"))), sub="custom")
    assert idp.fetch_count == 1


# -- inline keys ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pem_key(keyring):
    return keyring.get("inline-rsa", "RS256")


@pytest.fixture(scope="module")
def inline_pem(module_envoys, pem_key):
    return module_envoys.scenario("inline-pem", plugin_config={"public_keys": [pem_key.public_pem()]})


def test_inline_public_key_pem_verifies_tokens_without_kid(inline_pem, pem_key):
    assert "-----BEGIN PUBLIC KEY-----" in pem_key.public_pem()
    assert_forwarded(inline_pem.request(pem_key.sign(jf.claims("pem-user"), kid=None)), sub="pem-user")


def test_inline_public_key_pem_refuses_another_keys_signature(inline_pem, keyring):
    other = keyring.get("inline-rsa-other", "RS256")
    reply = inline_pem.request(other.sign(jf.claims(), kid=None))
    assert_auth_error(reply, BAD_SIGNATURE)


def test_inline_certificate_pem_verifies_tokens_without_kid(module_envoys, keyring):
    key = keyring.get("inline-ec-cert", "ES256")
    cert = key.certificate_pem()
    assert "-----BEGIN CERTIFICATE-----" in cert
    proxy = module_envoys.scenario("inline-cert", plugin_config={"public_keys": [cert]})
    assert_forwarded(proxy.request(key.sign(jf.claims("cert-user"), kid=None)), sub="cert-user")
    reply = proxy.request(jf.tamper_signature(key.sign(jf.claims(), kid=None)))
    assert_auth_error(reply, BAD_SIGNATURE)


def test_inline_keys_are_the_fallback_when_no_jwks_key_matches(module_envoys, idp_first, first, pem_key):
    proxy = module_envoys.scenario(
        "inline-fallback", jwks=[idp_first],
        plugin_config={"public_key_url": idp_first.jwks_url, "public_keys": [pem_key.public_pem()]},
    )
    # kid published in the JWKS: the JWKS key verifies it.
    assert_forwarded(proxy.request(first.sign(jf.claims("jwks-user"))), sub="jwks-user")
    # No kid (the JWKS has two keys, so it cannot match): the inline key verifies it.
    assert_forwarded(proxy.request(pem_key.sign(jf.claims("no-kid"), kid=None)), sub="no-kid")
    # A kid the JWKS does not know: the inline key is the fallback.
    assert_forwarded(proxy.request(pem_key.sign(jf.claims("fallback"), kid="not-in-jwks")), sub="fallback")


# -- environment fallback ------------------------------------------------------------------


def test_public_key_url_and_audience_fall_back_to_vm_environment(module_envoys, idp_first, idp_second,
                                                                   second):
    proxy = module_envoys.scenario(
        "env-fallback", jwks=[idp_first, idp_second], plugin_config={},
        env={"JWT_PUBLIC_KEY_URL": f"{idp_first.jwks_url},{idp_second.jwks_url}", "JWT_AUDIENCE": "env-aud"},
    )
    assert_forwarded(proxy.request(second.sign(jf.claims("env-user", aud="env-aud"))), sub="env-user")
    reply = proxy.request(second.sign(jf.claims("env-user", aud="not-env-aud")))
    assert_auth_error(reply, AUDIENCE_MISMATCH)


# -- single-key JWKS matching (LiteLLM parse_keys) -----------------------------------------


@pytest.fixture(scope="module")
def solo_key(keyring):
    return keyring.get("solo", "PS256")


@pytest.fixture(scope="module")
def solo(module_envoys, module_idps, solo_key):
    idp = module_idps.new([solo_key])
    return module_envoys.scenario("single-key", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url})


def test_single_key_set_matches_a_token_without_kid(solo, solo_key):
    assert_forwarded(solo.request(solo_key.sign(jf.claims("solo-nokid"), kid=None)), sub="solo-nokid")


def test_single_key_set_matches_a_token_with_the_same_kid(solo, solo_key):
    assert_forwarded(solo.request(solo_key.sign(jf.claims("solo-kid"))), sub="solo-kid")


def test_single_key_set_refuses_a_token_with_another_kid(solo, solo_key):
    reply = solo.request(solo_key.sign(jf.claims(), kid="someone-else"))
    assert_auth_error(reply, prefix=NO_MATCHING_KEY, contains=["kid=someone-else"])


def test_single_key_without_kid_matches_only_tokens_without_kid(module_envoys, module_idps, keyring):
    key = keyring.get("anonymous-key", "ES384")
    idp = module_idps.new()
    idp.set_jwks(jf.jwks([key], include_kid=False))
    proxy = module_envoys.scenario("single-key-nokid", jwks=[idp], plugin_config={"public_key_url": idp.jwks_url})
    assert_forwarded(proxy.request(key.sign(jf.claims("anon"), kid=None)), sub="anon")
    reply = proxy.request(key.sign(jf.claims(), kid="anonymous-key"))
    assert_auth_error(reply, prefix=NO_MATCHING_KEY, contains=["kid=anonymous-key"])
