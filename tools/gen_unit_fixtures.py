"""Generate the fixed key/token vectors the native Rust unit tests use.

Tokens are minted here with PyJWT + cryptography, an implementation independent of the
crates the filter verifies with. Run: python tools/gen_unit_fixtures.py > tests/fixtures/unit_vectors.json
The output is committed so `cargo test` needs no Python.
"""
import base64
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

NOW = 1_800_000_000  # the fixed "now" the Rust tests use
CLAIMS = {"sub": "alice", "iat": NOW - 10, "exp": NOW + 3600, "scope": "read write"}


def pem(pub):
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def cert_pem(priv, pub):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unit-test-idp")])
    now = datetime.datetime(2026, 1, 1)
    c = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pub)
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=36500))
        .sign(priv, hashes.SHA256())
    )
    return c.public_bytes(serialization.Encoding.PEM).decode()


def main():
    out = {"now": NOW, "keys": {}, "tokens": {}}
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p256 = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    p521 = ec.generate_private_key(ec.SECP521R1())
    ed = ed25519.Ed25519PrivateKey.generate()

    def jwk(alg_cls, pub, kid):
        d = json.loads(alg_cls.to_jwk(pub))
        d["kid"] = kid
        return d

    out["keys"]["rsa"] = {"jwk": jwk(RSAAlgorithm, rsa_key.public_key(), "rsa-1"), "pem": pem(rsa_key.public_key()),
                          "cert": cert_pem(rsa_key, rsa_key.public_key())}
    out["keys"]["rsa_other"] = {"jwk": jwk(RSAAlgorithm, rsa_other.public_key(), "rsa-2")}
    out["keys"]["p256"] = {"jwk": jwk(ECAlgorithm, p256.public_key(), "ec-256"), "pem": pem(p256.public_key())}
    out["keys"]["p384"] = {"jwk": jwk(ECAlgorithm, p384.public_key(), "ec-384")}
    out["keys"]["p521"] = {"jwk": jwk(ECAlgorithm, p521.public_key(), "ec-521"), "pem": pem(p521.public_key())}
    out["keys"]["ed25519"] = {"jwk": jwk(OKPAlgorithm, ed.public_key(), "ed-1"), "pem": pem(ed.public_key())}

    t = out["tokens"]
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]:
        t[alg] = jwt.encode(CLAIMS, rsa_key, algorithm=alg, headers={"kid": "rsa-1"})
    t["ES256"] = jwt.encode(CLAIMS, p256, algorithm="ES256", headers={"kid": "ec-256"})
    t["ES384"] = jwt.encode(CLAIMS, p384, algorithm="ES384", headers={"kid": "ec-384"})
    t["ES512"] = jwt.encode(CLAIMS, p521, algorithm="ES512", headers={"kid": "ec-521"})
    t["EdDSA"] = jwt.encode(CLAIMS, ed, algorithm="EdDSA", headers={"kid": "ed-1"})
    # RFC 9864's fully-specified name; PyJWT does not know it, so cryptography signs it.
    header = base64.urlsafe_b64encode(json.dumps({"alg": "Ed25519", "kid": "ed-1", "typ": "JWT"}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(CLAIMS).encode()).rstrip(b"=")
    signing_input = header + b"." + payload
    t["Ed25519"] = (signing_input + b"." + base64.urlsafe_b64encode(ed.sign(signing_input)).rstrip(b"=")).decode()
    t["RS256_nokid"] = jwt.encode(CLAIMS, rsa_key, algorithm="RS256")
    t["RS256_by_other_key"] = jwt.encode(CLAIMS, rsa_other, algorithm="RS256", headers={"kid": "rsa-1"})
    t["HS256_rsa_pem_secret"] = jwt.encode(
        CLAIMS, "secret-not-a-key", algorithm="HS256", headers={"kid": "rsa-1"})
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
