"""Key generation, JWK export and token minting shared by the demo IdP and the e2e tests.

Everything here uses PyJWT and `cryptography` only.  A `SigningKey` holds one private key
together with the JWS algorithm it signs for and its `kid`; it can publish itself as a JWK,
as a SPKI PEM ("PUBLIC KEY") or as a self-signed X.509 certificate, and it mints tokens.

The deliberately broken tokens the tests and the demo need (alg "none", HS256 signed with the
RSA public key as the HMAC secret, a tampered signature, garbage segments) are built here too,
by hand where PyJWT would (rightly) refuse to produce them.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
# "Ed25519": RFC 9864's fully-specified name for EdDSA over Ed25519 (PyJWT does not know it:
# such tokens are signed with `cryptography` directly, see SigningKey.sign).
OKP_ALGORITHMS = ("EdDSA", "Ed25519")
ALGORITHMS = RSA_ALGORITHMS + tuple(EC_ALGORITHMS) + OKP_ALGORITHMS

_UNSET: Any = object()


def b64url(data: bytes | str) -> str:
    """Unpadded base64url, as JWS uses it."""
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def key_type(alg: str) -> str:
    """The JWK `kty` an algorithm needs."""
    if alg in RSA_ALGORITHMS:
        return "RSA"
    if alg in EC_ALGORITHMS:
        return "EC"
    if alg in OKP_ALGORITHMS:
        return "OKP"
    raise ValueError(f"unsupported algorithm {alg!r}; expected one of {', '.join(ALGORITHMS)}")


@dataclass
class SigningKey:
    """A private key, the algorithm it signs with, and the kid it is published under."""

    alg: str
    private_key: Any
    kid: str | None = None

    # -- public forms -------------------------------------------------------------------

    @property
    def kty(self) -> str:
        return key_type(self.alg)

    @property
    def public_key(self) -> Any:
        return self.private_key.public_key()

    def jwk(self, *, include_alg: bool = True, include_kid: bool = True, use: str | None = "sig") -> dict:
        """The public JWK (`kty`, key material, and `kid`/`alg`/`use` unless switched off)."""
        if self.kty == "RSA":
            body = RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        elif self.kty == "EC":
            body = ECAlgorithm.to_jwk(self.public_key, as_dict=True)
        else:
            body = OKPAlgorithm.to_jwk(self.public_key, as_dict=True)
        out: dict = {}
        if include_kid and self.kid is not None:
            out["kid"] = self.kid
        out["kty"] = body["kty"]
        if include_alg:
            out["alg"] = self.alg
        if use:
            out["use"] = use
        for member in ("n", "e", "crv", "x", "y"):
            if member in body:
                out[member] = body[member]
        return out

    def public_pem(self) -> str:
        """SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----")."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def private_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def certificate_pem(self, common_name: str = "llm-jwt-auth demo IdP", days: int = 365) -> str:
        """A self-signed X.509 certificate ("-----BEGIN CERTIFICATE-----") for this key."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _dt.datetime.now(_dt.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=days))
        )
        digest = None if self.kty == "OKP" else hashes.SHA256()
        cert = builder.sign(self.private_key, digest)
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    # -- tokens -------------------------------------------------------------------------

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        kid: str | None = _UNSET,
        alg: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A compact JWS of `claims`.

        `kid` defaults to this key's kid; pass `kid=None` for a header without kid, or any
        string to claim a different kid.  `alg` overrides the algorithm (it must still suit
        the key type, PyJWT checks that).
        """
        hdr = dict(headers or {})
        kid = self.kid if kid is _UNSET else kid
        if kid is not None:
            hdr["kid"] = kid
        alg = alg or self.alg
        if alg == "Ed25519":
            if not isinstance(self.private_key, ed25519.Ed25519PrivateKey):
                raise ValueError("alg Ed25519 needs an Ed25519 key")
            header = {"alg": "Ed25519", "typ": "JWT", **hdr}
            signing_input = f"{b64url_json(header)}.{b64url_json(dict(claims))}"
            return f"{signing_input}.{b64url(self.private_key.sign(signing_input.encode()))}"
        return jwt.encode(dict(claims), self.private_key, algorithm=alg, headers=hdr or None)


def generate_key(alg: str, kid: str | None = None) -> SigningKey:
    """A fresh key for `alg` (RSA 2048, P-256, P-384, P-521 or Ed25519)."""
    kty = key_type(alg)
    if kty == "RSA":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kty == "EC":
        private = ec.generate_private_key(EC_ALGORITHMS[alg]())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return SigningKey(alg=alg, private_key=private, kid=kid)


def load_key(pem: str | bytes, alg: str, kid: str | None = None) -> SigningKey:
    if isinstance(pem, str):
        pem = pem.encode()
    private = serialization.load_pem_private_key(pem, password=None)
    key = SigningKey(alg=alg, private_key=private, kid=kid)
    key.kty  # validates alg
    return key


def load_or_generate_keys(specs: Iterable[tuple[str, str]], directory: str | Path | None = None) -> list[SigningKey]:
    """Keys for `(kid, alg)` specs; with `directory`, reuse `<kid>.pem` files and save new ones there."""
    keys = []
    folder = Path(directory) if directory else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    for kid, alg in specs:
        path = folder / f"{kid}.pem" if folder else None
        if path and path.exists():
            keys.append(load_key(path.read_bytes(), alg, kid))
            continue
        key = generate_key(alg, kid)
        if path:
            path.write_text(key.private_pem())
            path.chmod(0o600)
        keys.append(key)
    return keys


def jwks(keys: Iterable[SigningKey | Mapping[str, Any]], **jwk_options: Any) -> dict:
    """`{"keys": [...]}` from SigningKeys (exported with `jwk_options`) and/or ready JWK dicts."""
    out = []
    for key in keys:
        out.append(dict(key) if isinstance(key, Mapping) else key.jwk(**jwk_options))
    return {"keys": out}


def claims(
    sub: str | None = "alice",
    *,
    exp_in: float | None = 3600,
    iat_in: float | None = 0,
    nbf_in: float | None = None,
    aud: str | list[str] | None = None,
    iss: str | None = None,
    scope: str | list[str] | None = None,
    now: float | None = None,
    **extra: Any,
) -> dict:
    """A claims set; times are offsets in seconds from now (negative = in the past), None = omit."""
    t = int(time.time() if now is None else now)
    out: dict[str, Any] = {}
    if sub is not None:
        out["sub"] = sub
    if iat_in is not None:
        out["iat"] = t + int(iat_in)
    if nbf_in is not None:
        out["nbf"] = t + int(nbf_in)
    if exp_in is not None:
        out["exp"] = t + int(exp_in)
    if aud is not None:
        out["aud"] = aud
    if iss is not None:
        out["iss"] = iss
    if scope is not None:
        out["scope"] = scope
    out.update(extra)
    return out


# -- hostile and malformed tokens --------------------------------------------------------


def unsigned_token(claims_: Mapping[str, Any], *, kid: str | None = None, alg: str = "none") -> str:
    """`alg: none` token with an empty signature segment."""
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    return f"{b64url_json(header)}.{b64url_json(dict(claims_))}."


def hmac_token(claims_: Mapping[str, Any], secret: bytes | str, *, kid: str | None = None, alg: str = "HS256") -> str:
    """HS256/384/512 token; built by hand because PyJWT refuses PEM-looking HMAC secrets.

    With `secret=<RSA public key PEM>` this is the classic RS/HS key-confusion attack.
    """
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    if isinstance(secret, str):
        secret = secret.encode()
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{b64url_json(header)}.{b64url_json(dict(claims_))}"
    sig = hmac.new(secret, signing_input.encode("ascii"), digest).digest()
    return f"{signing_input}.{b64url(sig)}"


def tamper_signature(token: str) -> str:
    """Same header and payload, signature with its bytes flipped (still valid base64url, right length)."""
    head, payload, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    flipped = bytes(b ^ 0xFF for b in raw[:8]) + raw[8:]
    return f"{head}.{payload}.{b64url(flipped)}"


def replace_payload(token: str, new_claims: Mapping[str, Any]) -> str:
    """Keep header and signature, swap the payload: the signature no longer matches."""
    head, _payload, sig = token.split(".")
    return f"{head}.{b64url_json(dict(new_claims))}.{sig}"


def forged_token(key: SigningKey, claims_: Mapping[str, Any]) -> str:
    """Signed by a fresh key of the same type but carrying `key`'s kid: a bad signature."""
    impostor = generate_key(key.alg, key.kid)
    return impostor.sign(claims_)


def decode_unverified(token: str) -> tuple[dict, dict]:
    """(header, claims) without verification, for logging and the demo."""
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
