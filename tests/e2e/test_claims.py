"""Audience, issuer and leeway configuration."""

from __future__ import annotations

import pytest

import jwt_fixtures as jf
from checks import (
    AUDIENCE_MISMATCH, AUDIENCE_MISSING, INVALID_ISSUER, TOKEN_EXPIRED, assert_auth_error,
    assert_error, assert_forwarded,
)

AUDIENCE = "litellm-proxy"
ISSUER = "https://idp.example.test"


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("claims-rs256", "RS256")


@pytest.fixture(scope="module")
def idp(module_idps, key):
    return module_idps.new([key])


@pytest.fixture(scope="module")
def strict(module_envoys, idp):
    """audience + issuer configured."""
    return module_envoys.scenario(
        "aud-iss", jwks=[idp],
        plugin_config={"public_key_url": idp.jwks_url, "audience": AUDIENCE, "issuer": ISSUER},
    )


@pytest.fixture(scope="module")
def lenient(module_envoys, idp):
    """30 s leeway, no audience/issuer."""
    return module_envoys.scenario(
        "leeway", jwks=[idp], plugin_config={"public_key_url": [idp.jwks_url], "leeway": 30},
    )


# -- audience & issuer ---------------------------------------------------------------------


def test_matching_audience_and_issuer_are_accepted(strict, key):
    assert_forwarded(strict.request(key.sign(jf.claims(aud=AUDIENCE, iss=ISSUER))))


def test_audience_list_containing_the_audience_is_accepted(strict, key):
    token = key.sign(jf.claims(aud=["some-api", AUDIENCE], iss=ISSUER))
    assert_forwarded(strict.request(token))


def test_wrong_audience_is_refused(strict, key):
    token = key.sign(jf.claims(aud="another-service", iss=ISSUER))
    assert_auth_error(strict.request(token), AUDIENCE_MISMATCH)


def test_audience_list_without_the_audience_is_refused(strict, key):
    token = key.sign(jf.claims(aud=["some-api", "other-api"], iss=ISSUER))
    assert_auth_error(strict.request(token), AUDIENCE_MISMATCH)


def test_missing_audience_is_refused(strict, key):
    token = key.sign(jf.claims(iss=ISSUER))
    assert_auth_error(strict.request(token), AUDIENCE_MISSING)


def test_wrong_issuer_is_refused(strict, key):
    token = key.sign(jf.claims(aud=AUDIENCE, iss="https://evil.example.test"))
    assert_auth_error(strict.request(token), INVALID_ISSUER)


def test_expiry_is_still_checked_with_audience_and_issuer(strict, key):
    token = key.sign(jf.claims(aud=AUDIENCE, iss=ISSUER, exp_in=-10, iat_in=-60))
    assert_error(strict.request(token), 401, "expired_key", message=TOKEN_EXPIRED)


# -- leeway --------------------------------------------------------------------------------


def test_leeway_accepts_a_token_expired_within_it(lenient, key):
    assert_forwarded(lenient.request(key.sign(jf.claims(exp_in=-10, iat_in=-70))))


def test_leeway_does_not_accept_a_token_expired_beyond_it(lenient, key):
    token = key.sign(jf.claims(exp_in=-120, iat_in=-180))
    assert_error(lenient.request(token), 401, "expired_key", message=TOKEN_EXPIRED)


def test_leeway_accepts_nbf_and_iat_slightly_in_the_future(lenient, key):
    assert_forwarded(lenient.request(key.sign(jf.claims(nbf_in=10, iat_in=10))))


def test_leeway_config_accepts_any_audience_when_none_is_configured(lenient, key):
    assert_forwarded(lenient.request(key.sign(jf.claims(aud="whatever"))))
