"""The demo IdP's /mint (tests/servers/demo_idp.py): which query parameters it takes, the claims they
become, that anything else is a 400 naming the accepted ones, and that the claim names are the
ones the repository's envoy.yaml reads. No Envoy: the parsing is called directly, and the HTTP
answer is read from an IdP on a loopback port."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import jwt
import pytest

import envoy_yaml
from demo_idp import MINT_CLAIMS, MINT_PARAMS, IdPServer, parse_mint_query

ISSUER = "https://idp.demo.test"


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("mint-parse-rs256", "RS256")


@pytest.fixture(scope="module")
def idp(key, keyring):
    # Not started: mint() needs no socket when the issuer is given.
    return IdPServer([key, keyring.get("mint-parse-es256", "ES256")], issuer=ISSUER)


def claims_of(idp: IdPServer, query: str) -> dict:
    token = idp.mint(parse_mint_query(query))
    return jwt.decode(token, options={"verify_signature": False})


# -- the claims ------------------------------------------------------------------------------


def test_defaults_are_alice_for_an_hour_from_the_idp(idp):
    before = int(time.time())
    claims = claims_of(idp, "")
    assert set(claims) == {"sub", "iat", "exp", "iss"}, claims
    assert claims["sub"] == "alice" and claims["iss"] == ISSUER
    assert before <= claims["iat"] <= before + 2 and claims["exp"] - claims["iat"] == 3600


def test_identity_claims_have_the_names_envoy_yaml_reads(idp):
    claims = claims_of(idp, "sub=bob&team=research&email=bob@example.com&org=acme&end_user=customer-7")
    assert {k: claims[k] for k in ("sub", "team", "email", "org", "end_user")} == {
        "sub": "bob", "team": "research", "email": "bob@example.com", "org": "acme", "end_user": "customer-7"}


@pytest.mark.parametrize("param", ["teams", "groups", "roles"])
def test_list_claims_are_comma_separated(idp, param):
    claims = claims_of(idp, f"{param}=research,%20marketing,,ops")
    assert claims[param] == ["research", "marketing", "ops"]  # trimmed, empty entries dropped
    assert claims_of(idp, f"{param}=solo")[param] == ["solo"]  # one entry is still a list


def test_scope_is_one_space_separated_string(idp):
    assert claims_of(idp, "scope=llm.pro")["scope"] == "llm.pro"
    assert claims_of(idp, "scope=llm.basic+llm.pro")["scope"] == "llm.basic llm.pro"
    assert claims_of(idp, "scope=llm.basic,llm.pro")["scope"] == "llm.basic llm.pro"
    assert claims_of(idp, "scope=litellm_proxy_admin")["scope"] == "litellm_proxy_admin"


def test_audience_issuer_and_lifetime(idp):
    claims = claims_of(idp, "aud=llm-gateway&iss=https://other.test&exp_in=60&nbf_in=-5")
    assert claims["aud"] == "llm-gateway" and claims["iss"] == "https://other.test"
    assert claims["exp"] - claims["iat"] == 60 and claims["nbf"] == claims["iat"] - 5
    assert claims_of(idp, "aud=a,b")["aud"] == ["a", "b"]
    assert claims_of(idp, "exp_in=-30")["exp"] < time.time()


def test_an_empty_value_leaves_the_claim_out(idp):
    claims = claims_of(idp, "team=&teams=&roles=&email=&org=&end_user=&scope=&aud=")
    assert set(claims) == {"sub", "iat", "exp", "iss"}, claims


def test_expired_forged_and_alg_keep_working(idp, key):
    expired = idp.mint(parse_mint_query("expired=1&team=research"))
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(expired, key.public_key, algorithms=["RS256"])
    assert jwt.decode(expired, options={"verify_signature": False})["team"] == "research"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(idp.mint(parse_mint_query("forged=true")), key.public_key, algorithms=["RS256"])
    assert jwt.get_unverified_header(idp.mint(parse_mint_query("forge=none")))["alg"] == "none"
    assert jwt.get_unverified_header(idp.mint(parse_mint_query("alg=ES256")))["kid"] == "mint-parse-es256"
    assert jwt.get_unverified_header(idp.mint(parse_mint_query("kid=mint-parse-rs256")))["alg"] == "RS256"


# -- what is refused -------------------------------------------------------------------------


def test_unknown_parameter_is_refused_listing_the_accepted_ones(idp):
    with pytest.raises(ValueError) as exc:
        parse_mint_query("sub=alice&tenant=acme&Team=x")
    message = str(exc.value)
    assert "unknown /mint parameters Team, tenant" in message, message
    for name in MINT_PARAMS:
        assert name in message.split("accepted:", 1)[1], (name, message)
    with pytest.raises(ValueError, match="unknown /mint parameter tenant;"):
        idp.mint({"tenant": "acme"})  # direct callers too


@pytest.mark.parametrize("query, says", [
    ("sub=a&sub=b", "given more than once: sub"),
    ("expired=maybe", "expired='maybe'"),
    ("forged=2", "forged='2'"),
    ("format=xml", "format='xml'"),
    ("exp_in=soon", "exp_in='soon' is not a number"),
    ("expired=1&exp_in=60", "contradict"),
    ("forge=rot13", "unknown forge='rot13'"),
])
def test_bad_values_are_refused(idp, query, says):
    with pytest.raises(ValueError) as exc:
        idp.mint(parse_mint_query(query))
    assert says in str(exc.value), exc.value


def test_unknown_algorithm_is_a_lookup_error(idp):
    with pytest.raises(LookupError):
        idp.mint(parse_mint_query("alg=HS256"))


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("content-type", "")


def test_http_answers_400_with_the_message(idps, key):
    server = idps.new([key])
    status, body, ctype = _get(f"{server.base_url}/mint?sub=alice&tenant=acme")
    assert (status, ctype) == (400, "application/json"), body
    error = json.loads(body)["error"]
    assert error.startswith("unknown /mint parameter tenant; accepted: sub, team, teams, groups, roles, scope, "), error
    status, body, _ = _get(f"{server.base_url}/mint?sub=a&sub=b")
    assert status == 400 and "more than once" in json.loads(body)["error"]
    status, body, ctype = _get(f"{server.base_url}/mint?sub=alice&team=research&format=json")
    assert (status, ctype) == (200, "application/json")
    doc = json.loads(body)
    assert doc["claims"]["team"] == "research" and doc["claims"]["iss"] == server.base_url
    assert jwt.decode(doc["token"], key.public_key, algorithms=["RS256"])["sub"] == "alice"
    status, body, ctype = _get(f"{server.base_url}/mint?team=research")
    assert (status, ctype) == (200, "text/plain") and body.decode().strip().count(".") == 2


# -- the claim names are envoy.yaml's --------------------------------------------------------


def test_every_claim_envoy_yaml_reads_can_be_minted():
    mintable = {"sub", "scope"} | {claim for claim, _ in MINT_CLAIMS.values()}
    configs = envoy_yaml.plugin_configs()
    assert len(configs) == 2, "envoy.yaml: expected the teams and the RBAC gateway's configurations"
    for config in configs:
        for setting, claim in envoy_yaml.claim_fields(config).items():
            assert claim in mintable, f"envoy.yaml reads {setting}={claim!r}, which /mint cannot set"
    read = {claim for c in configs for claim in envoy_yaml.claim_fields(c).values()}
    # The other way round: each identity claim /mint sets for the demo is read by a gateway
    # (teams / groups are lists for a team_ids_jwt_field, which the demo does not configure).
    assert {"team", "roles", "email", "org", "end_user", "scope"} <= read, read


def test_the_mint_parameter_table_and_the_docstring_agree():
    import demo_idp
    doc = demo_idp.__doc__ or ""
    for name in MINT_PARAMS:
        assert f"{name}=" in doc, f"tests/servers/demo_idp.py's docstring does not mention {name}="
    assert set(MINT_CLAIMS) <= set(MINT_PARAMS)
