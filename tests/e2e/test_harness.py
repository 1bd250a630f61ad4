"""Checks of the test harness and demo tools themselves — these run without the wasm.

They make a failure elsewhere in the suite attributable: if these pass, Envoy boots with the
rendered configuration, the cluster naming works, and the IdP/upstream behave as the filter
tests assume.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request

import jwt
import pytest

import harness
import jwt_fixtures as jf


def _get(url: str) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_envoy_without_the_filter_boots_and_proxies_to_the_upstream(envoys, idps, upstream):
    idp = idps.new()
    proxy = envoys.scenario("no-filter", plugin_config=None, jwks=[idp], with_wasm=False, concurrency=2)
    body = os.urandom(100_000)
    reply = proxy.request("whatever", method="POST", path="/v1/embeddings?x=1", data=body)
    assert reply.status == 200, reply
    echo = reply.json()["echo"]
    assert echo["path"] == "/v1/embeddings?x=1"
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert echo["headers"]["authorization"] == "Bearer whatever"
    assert len(reply.upstream_copies()) == 1
    # The JWKS cluster is named after the URL authority (':' and all); stats spell it with '_'.
    status, text = proxy.envoy.admin_get("/clusters?format=json")
    names = {c["name"] for c in json.loads(text)["cluster_statuses"]}
    assert {"upstream", idp.authority} <= names, names


def test_rendered_wasm_filter_config_has_the_contract_shape(tmp_path):
    config = harness.render_bootstrap(
        upstream_port=1, wasm=tmp_path / "f.wasm", plugin_config={"public_key_url": "http://h:1/j"},
        jwks_clusters={"h:1": ("127.0.0.1", 1)}, env={"JWT_AUDIENCE": "a"},
    )
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    wasm, router = hcm["http_filters"]
    assert router["name"] == "envoy.filters.http.router"
    assert wasm["name"] == "envoy.filters.http.wasm"
    plugin = wasm["typed_config"]["config"]
    assert plugin["name"] == plugin["root_id"] == plugin["vm_config"]["vm_id"] == "llm_jwt_auth"
    assert plugin["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    assert plugin["vm_config"]["environment_variables"] == {"key_values": {"JWT_AUDIENCE": "a"}}
    assert plugin["configuration"]["@type"] == "type.googleapis.com/google.protobuf.StringValue"
    assert json.loads(plugin["configuration"]["value"]) == {"public_key_url": "http://h:1/j"}
    assert [c["name"] for c in config["static_resources"]["clusters"]] == ["upstream", "h:1"]


def test_missing_wasm_is_reported_as_a_failure_not_a_skip(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_JWT_AUTH_WASM", str(tmp_path / "absent.wasm"))
    with pytest.raises(harness.WasmMissing, match="absent.wasm"):
        harness.require_wasm()


def test_idp_serves_a_jwks_that_verifies_its_minted_tokens(idps):
    from demo_idp import DEMO_KEY_SPECS
    keys = jf.load_or_generate_keys(DEMO_KEY_SPECS)
    idp = idps.new(keys)
    status, raw, headers = _get(idp.jwks_url)
    assert status == 200 and headers["content-type"] == "application/json"
    published = {k["kid"]: k for k in json.loads(raw)["keys"]}
    assert set(published) == {kid for kid, _ in DEMO_KEY_SPECS}
    for kid, alg in DEMO_KEY_SPECS:
        jwk = published[kid]
        assert {"kid", "kty", "alg", "use"} <= set(jwk) and jwk["alg"] == alg and jwk["use"] == "sig"
        status, token, _ = _get(f"{idp.base_url}/mint?sub=carol&alg={alg}&aud=x&scope=litellm_proxy_admin")
        assert status == 200
        token = token.decode().strip()
        assert jwt.get_unverified_header(token)["kid"] == kid
        public = jwt.PyJWK(jwk).key
        claims = jwt.decode(token, public, algorithms=[alg], audience="x")
        assert claims["sub"] == "carol" and claims["scope"] == "litellm_proxy_admin"
        assert claims["iss"] == idp.base_url
    assert idp.fetch_count == 1


def test_idp_mints_expired_and_forged_tokens(idps, keyring):
    key = keyring.get("mint-check", "RS256")
    idp = idps.new([key])
    public = key.public_key

    def mint(query: str) -> str:
        status, token, _ = _get(f"{idp.base_url}/mint?{query}")
        assert status == 200, token
        return token.decode().strip()

    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(mint("expired=1"), public, algorithms=["RS256"])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(mint("forged=1"), public, algorithms=["RS256"])
    assert jwt.get_unverified_header(mint("forge=none"))["alg"] == "none"
    hs = mint("forge=hs256")
    assert jwt.get_unverified_header(hs) == {"alg": "HS256", "typ": "JWT", "kid": "mint-check"}
    assert jf.hmac_token(jwt.decode(hs, options={"verify_signature": False}), key.public_pem(),
                         kid="mint-check") == hs
    assert _get(f"{idp.base_url}/mint?alg=HS256")[0] == 400


def test_idp_failure_knobs(idps, keyring):
    idp = idps.new([keyring.get("knobs", "ES256")], start=False)
    with pytest.raises(urllib.error.URLError):
        _get(idp.jwks_url)  # bound but not listening: refused
    idp.start()
    idp.fail_with(500)
    assert _get(idp.jwks_url)[0] == 500
    idp.serve_not_json()
    status, raw, _ = _get(idp.jwks_url)
    assert status == 200 and raw.startswith(b"<html>")
    idp.heal()
    assert _get(idp.jwks_url)[0] == 200
    assert idp.fetch_count == 3  # the refused attempt never reached the handler
    port = idp.port
    idp.stop()
    with pytest.raises(urllib.error.URLError):
        _get(idp.jwks_url)
    idp.start()
    assert idp.port == port and _get(idp.jwks_url)[0] == 200
