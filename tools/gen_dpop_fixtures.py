"""Generate the DPoP (RFC 9449) proof vectors the native Rust unit tests use.

Proofs are signed here with PyJWT + cryptography, independently of the crates the filter
verifies with. Run: python tools/gen_dpop_fixtures.py > tests/fixtures/dpop_vectors.json
The output is committed so `cargo test` needs no Python.
"""
import base64
import hashlib
import json
import sys

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

NOW = 1_800_000_000  # the fixed "now" the Rust tests use
URL = "https://gw.example/v1/chat/completions"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(alg_cls, key) -> dict:
    return json.loads(alg_cls.to_jwk(key.public_key()))


def thumbprint(jwk: dict) -> str:
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64(hashlib.sha256(canonical.encode()).digest())


def main():
    client = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    rsa_client = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = public_jwk(ECAlgorithm, client)
    rsa_jwk = public_jwk(RSAAlgorithm, rsa_client)
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode({"sub": "svc", "exp": NOW + 600, "cnf": {"jkt": thumbprint(jwk)}}, issuer_key, algorithm="ES256",
                       headers={"kid": "dpop-issuer"})
    ath = b64(hashlib.sha256(token.encode()).digest())

    def proof(key=client, header_jwk=None, alg="ES256", typ="dpop+jwt", **overrides):
        claims = {"htm": "GET", "htu": URL, "iat": NOW, "jti": "jti-" + str(len(overrides)) + alg, "ath": ath}
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        headers = {"typ": typ, "jwk": header_jwk or jwk}
        return jwt.encode(claims, key, algorithm=alg, headers=headers)

    out = {
        "now": NOW,
        "url": URL,
        "token": token,
        "issuer_jwks": {"keys": [{**public_jwk(ECAlgorithm, issuer_key), "kid": "dpop-issuer"}]},
        "jkt": thumbprint(jwk),
        "rsa_jkt": thumbprint(rsa_jwk),
        "proofs": {
            "good": proof(),
            "good_query_in_htu": proof(htu=URL + "?x=1", jti="q"),
            "wrong_htm": proof(htm="POST"),
            "wrong_htu": proof(htu="https://gw.example/v1/embeddings"),
            "wrong_ath": proof(ath=b64(hashlib.sha256(b"another token").digest())),
            "no_ath": proof(ath=None),
            "no_jti": proof(jti=None),
            "stale_iat": proof(iat=NOW - 600),
            "future_iat": proof(iat=NOW + 60),
            "typ_jwt": proof(typ="JWT"),
            "private_jwk": proof(header_jwk={**jwk, "d": b64(client.private_numbers().private_value.to_bytes(32, "big"))}),
            "signed_by_other_key": proof(key=other),
            "other_clients_key": proof(key=other, header_jwk=public_jwk(ECAlgorithm, other)),
            "rsa_ps256": proof(key=rsa_client, header_jwk=rsa_jwk, alg="PS256"),
        },
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
