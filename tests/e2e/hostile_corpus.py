#!/usr/bin/env python3
"""The hostile-token corpus: forged, confused, malformed and smuggled credentials.

    python tests/e2e/hostile_corpus.py --out DIR [--audience api://llm] [--attacker-url URL] [--keys-dir DIR]

writes `DIR/jwks.json` (the trusted key set), `DIR/attacker-jwks.json` (what the attacker's
`jku`/`x5u` server would serve) and `DIR/corpus.jsonl` (one case a line: name, group, the token
or the raw `Authorization` values, the expected status/type) — for replaying the corpus against
another verifier (LiteLLM itself, say).  The e2e suite (`tests/e2e/test_hostile.py`) imports it.

Everything is built with PyJWT and `cryptography` (via `jwt_fixtures`) and, where PyJWT
rightly refuses, by hand: the JWS text is assembled here byte by byte and signed with
`cryptography`, so a case can carry a *correct* signature over a header or payload no library
would produce (duplicate members, trailing garbage, padded or standard-alphabet base64, …).
Nothing here uses the filter's code.

The trusted key set (`Keys`):
  rsa-1    RSA-2048, JWK `alg: RS256`, published with an `x5c` certificate
  rsa-any  RSA-2048, JWK without `alg` (any RSA algorithm may be tried against it)
  ec-1     P-256, `alg: ES256`
  ed-1     Ed25519, `alg: EdDSA`
and two attacker keys (RSA, P-256) that are never published.

Every case is a token that is valid except for the one thing the case is about (`sub`, `iat`
now, `exp` in an hour, `aud` the configured audience), and every case must be refused with 401
(`Expect`); the few exceptions say so in their `Expect`.  Case names are known without keys
(`case_names()`), so a test can parametrize over them before building the corpus.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature  # noqa: E402

import jwt_fixtures as jf  # noqa: E402
from jwt_fixtures import b64url  # noqa: E402

DEFAULT_AUDIENCE = "api://llm"

# Message texts the filter shares with LiteLLM, for the few cases whose reason is asserted.
ALG_NOT_ALLOWED = "Authentication Error, Validation fails: The specified alg value is not allowed"
BAD_SIGNATURE = "Authentication Error, Validation fails: Signature verification failed"
NOT_YET_VALID = "Authentication Error, Validation fails: The token is not yet valid"
TOKEN_EXPIRED = "Token Expired"

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED25519_L = 2**252 + 27742317777372353535851937790883648493
HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
HMAC_DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


# -- what a case is and what must happen to it -----------------------------------------------


@dataclass(frozen=True)
class Expect:
    """The answer a case must get.  `prefix`/`message` only for the canonical cases; other
    reasons may legitimately differ between verifiers.  `codec_may_refuse`: Envoy's HTTP codec
    may reject the request itself (400, its own body) before the filter runs."""

    status: int = 401
    err_type: str = "auth_error"
    message: str | None = None
    prefix: str | None = None
    codec_may_refuse: bool = False


REFUSED = Expect()


@dataclass(frozen=True)
class Case:
    name: str
    group: str
    # The credential: `token` goes out as `Authorization: Bearer <token>`; `authorization`
    # (when set) are raw header values, each its own `Authorization` header.
    token: str | None
    authorization: tuple[str, ...] | None = None
    expect: Expect = REFUSED
    note: str = ""
    # Injection probes: response header names that must not exist, and text no response
    # header value may contain.
    forbid_response_headers: tuple[str, ...] = ()
    forbid_in_response_headers: tuple[str, ...] = ()

    @property
    def header_values(self) -> tuple[str, ...]:
        return self.authorization if self.authorization is not None else (f"Bearer {self.token}",)

    def texts(self) -> list[str]:
        """The token texts this case sends (for log-leak checks)."""
        if self.token is not None:
            return [self.token]
        out = []
        for value in self.authorization or ():
            for part in value.replace(",", " ").split():
                if part.lower() != "bearer":
                    out.append(part)
        return out


# -- keys --------------------------------------------------------------------------------------


@dataclass
class Keys:
    rsa: jf.SigningKey
    rsa_any: jf.SigningKey
    ec: jf.SigningKey
    ed: jf.SigningKey
    attacker_rsa: jf.SigningKey
    attacker_ec: jf.SigningKey
    rsa_cert_pem: str = ""
    attacker_cert_pem: str = ""

    @classmethod
    def generate(cls, directory: str | Path | None = None) -> "Keys":
        specs = (("rsa-1", "RS256"), ("rsa-any", "RS256"), ("ec-1", "ES256"), ("ed-1", "EdDSA"),
                 ("attacker-1", "RS256"), ("attacker-ec", "ES256"))
        rsa, rsa_any, ec_, ed, attacker_rsa, attacker_ec = jf.load_or_generate_keys(specs, directory)
        return cls(rsa, rsa_any, ec_, ed, attacker_rsa, attacker_ec,
                   rsa_cert_pem=rsa.certificate_pem("llm-jwt-auth hostile corpus IdP"),
                   attacker_cert_pem=attacker_rsa.certificate_pem("attacker"))

    @property
    def trusted(self) -> list[jf.SigningKey]:
        return [self.rsa, self.rsa_any, self.ec, self.ed]

    def rsa_jwk(self) -> dict:
        """rsa-1 as published: with `alg` and an `x5c` chain (as Entra ID / Auth0 publish)."""
        jwk = self.rsa.jwk()
        jwk["x5c"] = [_x5c(self.rsa_cert_pem)]
        return jwk

    def jwks(self) -> dict:
        """The trusted JWKS: rsa-1 (alg, x5c), rsa-any (no alg), ec-1, ed-1."""
        return jf.jwks([self.rsa_jwk(), self.rsa_any.jwk(include_alg=False), self.ec, self.ed])

    def attacker_jwks(self) -> dict:
        """What the attacker serves at its `jku`: its own key, under the victim's kid too."""
        own = self.attacker_rsa.jwk()
        as_victim = dict(own, kid=self.rsa.kid)
        return {"keys": [own, as_victim]}


def _pem_to_der(pem: str) -> bytes:
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    return base64.b64decode(body)


def _x5c(cert_pem: str) -> str:
    """A certificate as an `x5c` entry (standard base64 DER)."""
    return base64.b64encode(_pem_to_der(cert_pem)).decode()


@dataclass
class Context:
    keys: Keys
    audience: str = DEFAULT_AUDIENCE
    attacker_url: str = "http://127.0.0.1:9"
    now: int = field(default_factory=lambda: int(time.time()))

    def claims(self, sub: str = "alice", **overrides: Any) -> dict:
        """A valid claims set; `name=DROP` removes a claim."""
        out: dict[str, Any] = {"sub": sub, "iat": self.now, "exp": self.now + 3600, "aud": self.audience}
        for name, value in overrides.items():
            if value is DROP:
                out.pop(name, None)
            else:
                out[name] = value
        return out

    def claims_text(self, sub: str = "alice", **overrides: Any) -> str:
        return compact(self.claims(sub, **overrides))


DROP: Any = object()


# -- hand-built JWS ----------------------------------------------------------------------------


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _bytes(part: Mapping[str, Any] | str | bytes) -> bytes:
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode()
    return compact(dict(part)).encode()


Signer = Callable[[bytes], bytes]


def rs_signer(key: jf.SigningKey, bits: str = "256") -> Signer:
    return lambda msg: key.private_key.sign(msg, padding.PKCS1v15(), HASHES[bits]())


def ps_signer(key: jf.SigningKey, bits: str = "256", salt: int | None = None) -> Signer:
    h = HASHES[bits]()
    pss = padding.PSS(mgf=padding.MGF1(HASHES[bits]()), salt_length=h.digest_size if salt is None else salt)
    return lambda msg: key.private_key.sign(msg, pss, HASHES[bits]())


def es_der_signer(key: jf.SigningKey) -> Signer:
    return lambda msg: key.private_key.sign(msg, ec.ECDSA(hashes.SHA256()))


def es_signer(key: jf.SigningKey) -> Signer:
    """JWS ES256: raw r || s, 32 bytes each (RFC 7518 §3.4)."""
    def sign(msg: bytes) -> bytes:
        r, s = decode_dss_signature(key.private_key.sign(msg, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return sign


def ed_signer(key: jf.SigningKey) -> Signer:
    return lambda msg: key.private_key.sign(msg)


def hs_signer(secret: bytes, alg: str = "HS256") -> Signer:
    return lambda msg: hmac.new(secret, msg, HMAC_DIGESTS[alg]).digest()


def jws(header: Mapping[str, Any] | str | bytes, payload: Mapping[str, Any] | str | bytes,
        signer: Signer | bytes | None) -> str:
    """`b64url(header).b64url(payload).b64url(signature)`; the signer signs exactly the first
    two segments as they appear in the token, so a signature is correct even over odd text."""
    head, body = b64url(_bytes(header)), b64url(_bytes(payload))
    signing_input = f"{head}.{body}"
    if signer is None:
        sig = b""
    elif isinstance(signer, bytes):
        sig = signer
    else:
        sig = signer(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(sig)}"


def signed(head: str, body: str, signer: Signer) -> str:
    """A token over literal, already-encoded segments."""
    return f"{head}.{body}.{b64url(signer(f'{head}.{body}'.encode('latin-1')))}"


def split(token: str) -> tuple[str, str, str]:
    head, body, sig = token.split(".")
    return head, body, sig


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def with_signature(token: str, sig: bytes) -> str:
    head, body, _ = split(token)
    return f"{head}.{body}.{b64url(sig)}"


def rs_header(kid: Any = "rsa-1", alg: Any = "RS256", **extra: Any) -> dict:
    out: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not DROP:
        out["kid"] = kid
    out.update(extra)
    return out


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def stray_bits(segment: str) -> str:
    """The same bytes with a non-zero unused bit in the last character (non-canonical)."""
    if len(segment) % 4 not in (2, 3):
        raise ValueError("segment has no unused bits")
    last = _ALPHABET.index(segment[-1])
    return segment[:-1] + _ALPHABET[last | 1]


def std_alphabet(segment: str) -> str:
    return segment.replace("-", "+").replace("_", "/")


def padded(segment: str) -> str:
    return segment + "=" * (-len(segment) % 4)


def _filler_until(build: Callable[[str], str], ok: Callable[[str], bool], chars: str = "x?>~") -> str:
    """`build(filler)` for the first filler for which `ok` holds (to shape a segment)."""
    for n in range(0, 64):
        for c in chars:
            text = build(c * n)
            if ok(text):
                return text
    raise RuntimeError("could not shape the segment")


# -- the registry ------------------------------------------------------------------------------


Builder = Callable[[Context], "str | Case"]
_REGISTRY: dict[str, tuple[str, Expect, str, Builder, dict[str, tuple[str, ...]]]] = {}


def _add(name: str, group: str, build: Builder, expect: Expect = REFUSED, note: str = "",
         forbid_headers: tuple[str, ...] = (), forbid_in_headers: tuple[str, ...] = ()) -> None:
    if name in _REGISTRY:
        raise ValueError(f"duplicate case {name}")
    _REGISTRY[name] = (group, expect, note, build, {"forbid_response_headers": forbid_headers,
                                                     "forbid_in_response_headers": forbid_in_headers})


def case_names() -> list[str]:
    return list(_REGISTRY)


def groups() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, (group, *_rest) in _REGISTRY.items():
        out.setdefault(group, []).append(name)
    return out


def build(ctx: Context) -> dict[str, Case]:
    """Every case, by name, in registration order."""
    out: dict[str, Case] = {}
    for name, (group, expect, note, builder, forbid) in _REGISTRY.items():
        made = builder(ctx)
        if isinstance(made, Case):
            out[name] = made
        else:
            out[name] = Case(name, group, made, expect=expect, note=note, **forbid)
    return out


def valid_rs256(ctx: Context, sub: str = "alice", **claims: Any) -> str:
    return ctx.keys.rsa.sign(ctx.claims(sub, **claims))


# -- alg -----------------------------------------------------------------------------------------

for spelling in ("none", "None", "NONE", "nOnE"):
    _add(f"alg_{spelling}_empty_sig", "alg",
         lambda c, a=spelling: jws(rs_header(alg=a), c.claims(), None),
         Expect(prefix=ALG_NOT_ALLOWED) if spelling == "none" else REFUSED)
    _add(f"alg_{spelling}_with_sig", "alg",
         lambda c, a=spelling: jws(rs_header(alg=a), c.claims(), rs_signer(c.keys.rsa)),
         note="signature is a real RS256 signature over the alg-none signing input")
_add("alg_none_no_kid", "alg", lambda c: jws(rs_header(kid=DROP, alg="none"), c.claims(), None))
_add("alg_missing", "alg", lambda c: jws({"typ": "JWT", "kid": "rsa-1"}, c.claims(), rs_signer(c.keys.rsa)))
for label, value in (("number", 256), ("null", None), ("bool", True), ("list", ["RS256"]),
                     ("object", {"RS256": True})):
    _add(f"alg_{label}", "alg", lambda c, v=value: jws(rs_header(alg=v), c.claims(), rs_signer(c.keys.rsa)))
for label, value in (("empty_string", ""), ("lowercase_rs256", "rs256"), ("trailing_space", "RS256 "),
                     ("trailing_nul", "RS256\u0000"), ("fullwidth_digits", "RS\uff12\uff15\uff16"),
                     ("es512", "ES512")):
    _add(f"alg_{label}", "alg", lambda c, v=value: jws(rs_header(alg=v), c.claims(), rs_signer(c.keys.rsa)),
         note="signed RS256 by the real rsa-1 key")


# -- signatures ---------------------------------------------------------------------------------


def _sig_cases(label: str, key_of: Callable[[Keys], jf.SigningKey]) -> None:
    def mutated(change: Callable[[bytes], bytes]) -> Builder:
        def make(c: Context) -> str:
            token = key_of(c.keys).sign(c.claims())
            return with_signature(token, change(unb64(split(token)[2])))
        return make

    def transplanted(c: Context) -> str:
        donor = key_of(c.keys).sign(c.claims("alice"))
        return with_signature(key_of(c.keys).sign(c.claims("admin")), unb64(split(donor)[2]))

    _add(f"sig_{label}_empty", "signature", mutated(lambda s: b""))
    if label != "es256":  # the ES256 all-zero signature is the psychic-signature case below
        _add(f"sig_{label}_zeros", "signature", mutated(lambda s: bytes(len(s))))
    _add(f"sig_{label}_truncated_last_byte", "signature", mutated(lambda s: s[:-1]))
    _add(f"sig_{label}_truncated_half", "signature", mutated(lambda s: s[: len(s) // 2]))
    _add(f"sig_{label}_bitflip_first_byte", "signature", mutated(lambda s: bytes([s[0] ^ 0x01]) + s[1:]),
         Expect(prefix=BAD_SIGNATURE))
    _add(f"sig_{label}_bitflip_last_byte", "signature", mutated(lambda s: s[:-1] + bytes([s[-1] ^ 0x01])),
         Expect(prefix=BAD_SIGNATURE))
    _add(f"sig_{label}_transplanted", "signature", transplanted,
         note="signature of another valid token (sub alice) on a token for sub admin")
    _add(f"sig_{label}_appended_byte", "signature", mutated(lambda s: s + b"\x00"))
    _add(f"sig_{label}_prepended_zero_byte", "signature", mutated(lambda s: b"\x00" + s))


_sig_cases("rs256", lambda k: k.rsa)
_sig_cases("es256", lambda k: k.ec)
_sig_cases("eddsa", lambda k: k.ed)
_add("sig_rs256_forged_by_attacker_key", "signature",
     lambda c: c.keys.attacker_rsa.sign(c.claims(), kid="rsa-1"))
_add("sig_es256_forged_by_attacker_key", "signature",
     lambda c: c.keys.attacker_ec.sign(c.claims(), kid="ec-1"))


def _rs_plus_modulus(c: Context) -> str:
    token = valid_rs256(c)
    s = int.from_bytes(unb64(split(token)[2]), "big")
    n = c.keys.rsa.public_key.public_numbers().n
    return with_signature(token, (s + n).to_bytes(257, "big"))


_add("sig_rs256_plus_modulus", "signature", _rs_plus_modulus, note="s + n: the same residue, not reduced")
_add("sig_es256_der_encoded", "signature",
     lambda c: jws({"alg": "ES256", "typ": "JWT", "kid": "ec-1"}, c.claims(), es_der_signer(c.keys.ec)),
     note="a valid ECDSA signature, but ASN.1 DER instead of JWS's raw r||s")


def _ed_s_plus_l(c: Context) -> str:
    token = c.keys.ed.sign(c.claims())
    sig = unb64(split(token)[2])
    s = int.from_bytes(sig[32:], "little") + ED25519_L
    return with_signature(token, sig[:32] + s.to_bytes(32, "little"))


_add("sig_eddsa_s_plus_l", "signature", _ed_s_plus_l, note="Ed25519 malleability: S + L (non-canonical S)")


# -- HMAC with the public key as the secret (RS/HS key confusion) -------------------------------


def _rsa_secrets(keys: Keys) -> dict[str, bytes]:
    pub = keys.rsa.public_key
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pkcs1 = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    jwk = keys.rsa_jwk()
    return {
        "spki_pem": pem,
        "spki_pem_no_newline": pem.rstrip(b"\n"),
        "spki_pem_crlf": pem.replace(b"\n", b"\r\n"),
        "pkcs1_pem": pkcs1,
        "spki_der": pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "pkcs1_der": pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1),
        "x509_cert_pem": keys.rsa_cert_pem.encode(),
        "x509_cert_der": _pem_to_der(keys.rsa_cert_pem),
        "jwk_json": json.dumps(jwk).encode(),
        "jwk_json_compact": compact(jwk).encode(),
        "modulus_bytes": unb64(jwk["n"]),
        "modulus_b64url": jwk["n"].encode(),
    }


_SECRET_NAMES = ("spki_pem", "spki_pem_no_newline", "spki_pem_crlf", "pkcs1_pem", "spki_der", "pkcs1_der",
                 "x509_cert_pem", "x509_cert_der", "jwk_json", "jwk_json_compact", "modulus_bytes",
                 "modulus_b64url")
for hs in ("HS256", "HS384", "HS512"):
    for secret_name in _SECRET_NAMES:
        _add(f"{hs.lower()}_secret_{secret_name}", "hmac",
             lambda c, a=hs, s=secret_name: jws(rs_header(alg=a), c.claims(), hs_signer(_rsa_secrets(c.keys)[s], a)),
             note=f"kid rsa-1, HMAC key = rsa-1's public key as {secret_name}")
_add("hs256_secret_spki_pem_kid_rsa_any", "hmac",
     lambda c: jws(rs_header(kid="rsa-any", alg="HS256"), c.claims(),
                   hs_signer(c.keys.rsa_any.public_pem().encode())), note="the alg-less RSA key")
_add("hs256_secret_spki_pem_no_kid", "hmac",
     lambda c: jws(rs_header(kid=DROP, alg="HS256"), c.claims(), hs_signer(c.keys.rsa.public_pem().encode())))
_add("hs256_secret_ec_pem_kid_ec1", "hmac",
     lambda c: jws(rs_header(kid="ec-1", alg="HS256"), c.claims(), hs_signer(c.keys.ec.public_pem().encode())))
_add("hs256_secret_ed_pem_kid_ed1", "hmac",
     lambda c: jws(rs_header(kid="ed-1", alg="HS256"), c.claims(), hs_signer(c.keys.ed.public_pem().encode())))
_add("hs256_secret_ed_raw_kid_ed1", "hmac",
     lambda c: jws(rs_header(kid="ed-1", alg="HS256"), c.claims(),
                   hs_signer(unb64(c.keys.ed.jwk()["x"]))))
_add("hs256_empty_secret", "hmac", lambda c: jws(rs_header(alg="HS256"), c.claims(), hs_signer(b"")))


# -- header injection: keys and key URLs carried by the token itself -----------------------------


def _attacker_signed(c: Context, kid: Any, **extra: Any) -> str:
    return jws(rs_header(kid=kid, **extra), c.claims(), rs_signer(c.keys.attacker_rsa))


for kid_label, kid in (("kid_rsa1", "rsa-1"), ("no_kid", DROP), ("kid_attacker", "attacker-1")):
    _add(f"jwk_header_attacker_rsa_{kid_label}", "injection",
         lambda c, k=kid: _attacker_signed(c, k, jwk=c.keys.attacker_rsa.jwk(include_kid=False)),
         note="embedded attacker public JWK, signed with the attacker's private key")
    _add(f"jku_attacker_{kid_label}", "injection",
         lambda c, k=kid: _attacker_signed(c, k, jku=f"{c.attacker_url}/.well-known/jwks.json"),
         note="jku points at the attacker's loopback JWKS (must never be fetched)")
    _add(f"x5u_attacker_{kid_label}", "injection",
         lambda c, k=kid: _attacker_signed(c, k, x5u=f"{c.attacker_url}/attacker.pem"),
         note="x5u points at the attacker's loopback server (must never be fetched)")
    _add(f"x5c_attacker_cert_{kid_label}", "injection",
         lambda c, k=kid: _attacker_signed(c, k, x5c=[_x5c(c.keys.attacker_cert_pem)]),
         note="x5c carries the attacker's self-signed certificate")
_add("jwk_header_attacker_ec_kid_ec1", "injection",
     lambda c: jws({"alg": "ES256", "typ": "JWT", "kid": "ec-1", "jwk": c.keys.attacker_ec.jwk(include_kid=False)},
                   c.claims(), es_signer(c.keys.attacker_ec)))
_add("jwk_header_with_jku_and_x5u_kid_rsa1", "injection",
     lambda c: _attacker_signed(c, "rsa-1", jwk=c.keys.attacker_rsa.jwk(include_kid=False),
                                jku=f"{c.attacker_url}/jwks", x5u=f"{c.attacker_url}/cert.pem"))


# -- kid -------------------------------------------------------------------------------------------

_RSA_KIDS = {
    "path_traversal": "../../etc/passwd",
    "sql_injection": "' OR 1=1 --",
    "empty": "",
    "nul_suffix": "rsa-1\u0000",
    "nul_then_traversal": "rsa-1\u0000../../etc/passwd",
    "case_variant": "RSA-1",
    "trailing_space": "rsa-1 ",
    "leading_space": " rsa-1",
    "homoglyph": "rs\u0430-1",  # Cyrillic а
    "prefix": "rsa-",
    "with_wildcard": "rsa-*",
    "10kb": "k" * 10240,
    "ec_for_rs256": "ec-1",
    "ed_for_rs256": "ed-1",
}
for label, kid in _RSA_KIDS.items():
    _add(f"kid_{label}", "kid", lambda c, k=kid: c.keys.rsa.sign(c.claims(), kid=k),
         note="signed by the real rsa-1 key; only the kid is off")
for label, kid in (("number", 1), ("null", None), ("bool", True), ("object", {"kid": "rsa-1"}),
                   ("list", ["rsa-1"])):
    _add(f"kid_{label}", "kid", lambda c, k=kid: jws(rs_header(kid=k), c.claims(), rs_signer(c.keys.rsa)),
         note="signed by the real rsa-1 key")
_add("kid_rsa_for_es256", "kid", lambda c: c.keys.ec.sign(c.claims(), kid="rsa-1"))
_add("kid_rsa_for_eddsa", "kid", lambda c: c.keys.ed.sign(c.claims(), kid="rsa-1"))
_add("kid_ec_for_eddsa", "kid", lambda c: c.keys.ed.sign(c.claims(), kid="ec-1"))
_add("kid_traversal_dev_null_hs256_empty_key", "kid",
     lambda c: jws(rs_header(kid="../../../../../../dev/null", alg="HS256"), c.claims(), hs_signer(b"")))
_add("kid_sql_union_hs256", "kid",
     lambda c: jws(rs_header(kid="x' UNION SELECT 'key' --", alg="HS256"), c.claims(), hs_signer(b"key")))
_add("kid_crlf_header_injection", "kid",
     lambda c: c.keys.rsa.sign(c.claims(), kid="x\r\nx-injected: 1\r\n"),
     forbid_headers=("x-injected",), note="unknown kid echoed in the error: it must not split headers")
_add("kid_quote_injection", "kid",
     lambda c: c.keys.rsa.sign(c.claims(), kid='x", error="none'),
     forbid_in_headers=('error="none"',), note="unknown kid echoed in www-authenticate: quotes must not escape")


# -- ECDSA psychic signatures (CVE-2022-21449) --------------------------------------------------


def _es256(c: Context, sig: bytes) -> str:
    return with_signature(c.keys.ec.sign(c.claims()), sig)


_add("es256_psychic_r0_s0_raw", "psychic", lambda c: _es256(c, bytes(64)))
_add("es256_psychic_r0_s0_der", "psychic", lambda c: _es256(c, bytes.fromhex("3006020100020100")))
_add("es256_psychic_r_s_order", "psychic", lambda c: _es256(c, P256_ORDER.to_bytes(32, "big") * 2))
_add("es256_psychic_r0_s0_no_kid", "psychic",
     lambda c: with_signature(c.keys.ec.sign(c.claims(), kid=None), bytes(64)))


# -- RSA algorithm swaps -------------------------------------------------------------------------

for kid in ("rsa-1", "rsa-any"):
    tag = kid.replace("-", "")
    _add(f"swap_ps256_header_rs256_sig_{tag}", "swap",
         lambda c, k=kid: jws(rs_header(kid=k, alg="PS256"), c.claims(), rs_signer(_rsa_by_kid(c, k))))
    _add(f"swap_rs256_header_ps256_sig_{tag}", "swap",
         lambda c, k=kid: jws(rs_header(kid=k, alg="RS256"), c.claims(), ps_signer(_rsa_by_kid(c, k))))
    _add(f"swap_rs256_header_rs384_sig_{tag}", "swap",
         lambda c, k=kid: jws(rs_header(kid=k, alg="RS256"), c.claims(), rs_signer(_rsa_by_kid(c, k), "384")))
    _add(f"swap_ps256_header_ps512_sig_{tag}", "swap",
         lambda c, k=kid: jws(rs_header(kid=k, alg="PS256"), c.claims(), ps_signer(_rsa_by_kid(c, k), "512")))
_add("pss_salt_length_max_rsaany", "swap",
     lambda c: jws(rs_header(kid="rsa-any", alg="PS256"), c.claims(),
                   ps_signer(c.keys.rsa_any, "256", salt=padding.PSS.MAX_LENGTH)),
     note="RFC 7518 §3.5: the PSS salt is as long as the hash; this one is maximal")
_add("pss_salt_length_zero_rsaany", "swap",
     lambda c: jws(rs_header(kid="rsa-any", alg="PS256"), c.claims(), ps_signer(c.keys.rsa_any, "256", salt=0)))


def _rsa_by_kid(c: Context, kid: str) -> jf.SigningKey:
    return c.keys.rsa if kid == "rsa-1" else c.keys.rsa_any


# -- crit ----------------------------------------------------------------------------------------

_add("crit_unknown_member", "crit",
     lambda c: jws(rs_header(crit=["x-unknown"], **{"x-unknown": 1}), c.claims(), rs_signer(c.keys.rsa)))


def _b64_false(c: Context) -> str:
    head = b64url(compact(rs_header(b64=False, crit=["b64"])))
    body = c.claims_text()
    assert "." not in body
    # RFC 7797 §3: the signing input is ASCII(BASE64URL(header)) || '.' || the raw payload.
    return f"{head}.{body}.{b64url(rs_signer(c.keys.rsa)(f'{head}.{body}'.encode()))}"


_add("crit_b64_false_unencoded_payload", "crit", _b64_false,
     note="RFC 7797, signed correctly over the unencoded payload")
_add("crit_b64_false_encoded_payload", "crit",
     lambda c: jws(rs_header(b64=False, crit=["b64"]), c.claims(), rs_signer(c.keys.rsa)),
     note="b64:false in crit but the payload base64url-encoded and signed as usual")
_add("crit_empty_list", "crit", lambda c: jws(rs_header(crit=[]), c.claims(), rs_signer(c.keys.rsa)))
_add("crit_string", "crit", lambda c: jws(rs_header(crit="exp"), c.claims(), rs_signer(c.keys.rsa)))
_add("crit_registered_name", "crit", lambda c: jws(rs_header(crit=["alg"]), c.claims(), rs_signer(c.keys.rsa)))


# -- duplicate JSON members (signed correctly over the duplicate-carrying text) ------------------

_DUP_HEADERS = {
    "alg_rs256_then_none": '{"alg":"RS256","kid":"rsa-1","alg":"none"}',
    "alg_none_then_rs256": '{"alg":"none","kid":"rsa-1","alg":"RS256"}',
    "alg_hs256_then_rs256": '{"alg":"HS256","kid":"rsa-1","alg":"RS256"}',
    "kid_unknown_then_rsa1": '{"alg":"RS256","kid":"nobody","kid":"rsa-1"}',
    "kid_rsa1_then_unknown": '{"alg":"RS256","kid":"rsa-1","kid":"nobody"}',
    "alg_escaped_key": '{"alg":"none","kid":"rsa-1","\\u0061lg":"RS256"}',
}
for label, text in _DUP_HEADERS.items():
    _add(f"dup_header_{label}", "duplicate", lambda c, t=text: jws(t, c.claims(), rs_signer(c.keys.rsa)))


def _dup_claims(c: Context, template: str) -> str:
    text = template.format(now=c.now, exp=c.now + 3600, past=c.now - 3600, aud=json.dumps(c.audience))
    return jws(rs_header(), text, rs_signer(c.keys.rsa))


_DUP_CLAIMS = {
    "sub": '{{"sub":"alice","sub":"admin","iat":{now},"exp":{exp},"aud":{aud}}}',
    "sub_escaped_key": '{{"sub":"alice","s\\u0075b":"admin","iat":{now},"exp":{exp},"aud":{aud}}}',
    "exp_past_then_future": '{{"sub":"alice","iat":{now},"exp":{past},"exp":{exp},"aud":{aud}}}',
    "exp_future_then_past": '{{"sub":"alice","iat":{now},"exp":{exp},"exp":{past},"aud":{aud}}}',
    "aud_other_then_ours": '{{"sub":"alice","iat":{now},"exp":{exp},"aud":"api://other","aud":{aud}}}',
    "scope_admin": '{{"sub":"alice","iat":{now},"exp":{exp},"aud":{aud},"scope":"openid",'
                   '"scope":"litellm_proxy_admin"}}',
}
for label, template in _DUP_CLAIMS.items():
    _add(f"dup_claim_{label}", "duplicate", lambda c, t=template: _dup_claims(c, t))


# -- JSON shape and text (signed correctly) --------------------------------------------------------

_HEADER = compact(rs_header())


def _rs(c: Context, header: str | bytes, payload: str | bytes) -> str:
    return jws(header, payload, rs_signer(c.keys.rsa))


_add("header_trailing_garbage", "json", lambda c: _rs(c, _HEADER + "garbage", c.claims_text()))
_add("header_trailing_second_object", "json", lambda c: _rs(c, _HEADER + '{"alg":"none"}', c.claims_text()))
_add("header_trailing_nul", "json", lambda c: _rs(c, _HEADER.encode() + b"\x00", c.claims_text()))
_add("payload_trailing_garbage", "json", lambda c: _rs(c, _HEADER, c.claims_text() + "garbage"))
_add("payload_trailing_second_object", "json",
     lambda c: _rs(c, _HEADER, c.claims_text() + '{"sub":"admin"}'))
_add("payload_trailing_nul", "json", lambda c: _rs(c, _HEADER, c.claims_text().encode() + b"\x00"))
_add("payload_js_comment", "json",
     lambda c: _rs(c, _HEADER, c.claims_text()[:-1] + ',/*"sub":"admin"*/"x":1}'))
_add("payload_single_quotes", "json", lambda c: _rs(c, _HEADER, c.claims_text().replace('"', "'")))
for label, text in (("list", "[]"), ("string", '"x"'), ("number", "1"), ("null", "null"), ("empty", "")):
    _add(f"header_json_{label}", "json", lambda c, t=text: _rs(c, t, c.claims_text()))
    _add(f"payload_json_{label}", "json", lambda c, t=text: _rs(c, _HEADER, t))
_add("payload_json_list_of_claims", "json", lambda c: _rs(c, _HEADER, compact([c.claims()])))
_add("payload_invalid_utf8", "json",
     lambda c: _rs(c, _HEADER, c.claims_text("SUBX").encode().replace(b"SUBX", b"alice\xff")),
     note="sub is the raw byte 0xFF")
_add("payload_overlong_utf8", "json",
     lambda c: _rs(c, _HEADER, c.claims_text("ALICE").encode().replace(b"ALICE", b"alice\xc0\xaf")),
     note="sub ends in an overlong encoding of '/'")
_add("header_invalid_utf8", "json",
     lambda c: _rs(c, _HEADER.encode().replace(b'"JWT"', b'"JWT\xfe"'), c.claims_text()))
_add("payload_lone_surrogate_escape", "json",
     lambda c: _rs(c, _HEADER, c.claims_text("SUB").replace("SUB", "alice\\ud800")),
     note="JSON escape of a lone surrogate: no Unicode string, cannot become a header value")


def _deep(c: Context, text: str) -> str:
    return _rs(c, _HEADER, c.claims_text()[:-1] + f',"deep":{text}}}')


_add("payload_deep_array_unclosed_10000", "json", lambda c: _deep(c, "[" * 10000))
_add("payload_deep_array_balanced_5000", "json", lambda c: _deep(c, "[" * 5000 + "]" * 5000))
_add("payload_deep_object_2000", "json", lambda c: _deep(c, '{"":' * 2000 + "1" + "}" * 2000))
_add("header_deep_array_5000", "json",
     lambda c: _rs(c, _HEADER[:-1] + ',"deep":' + "[" * 5000 + "]" * 5000 + "}", c.claims_text()))


# -- structure: JWE, nesting, segment counts ------------------------------------------------------


def _jwe(c: Context, header: dict, key_len: int) -> str:
    return ".".join([b64url(compact(header)), b64url(bytes(range(key_len))), b64url(bytes(12)),
                     b64url(c.claims_text().encode()), b64url(bytes(16))])


_add("jwe_rsa_oaep_five_segments", "structure",
     lambda c: _jwe(c, {"alg": "RSA-OAEP", "enc": "A256GCM", "kid": "rsa-1"}, 256))
_add("jwe_dir_five_segments", "structure", lambda c: _jwe(c, {"alg": "dir", "enc": "A256GCM", "kid": "rsa-1"}, 0))
_add("nested_jwt_cty_jwt", "structure",
     lambda c: jws(rs_header(cty="JWT"), valid_rs256(c).encode(), rs_signer(c.keys.rsa)),
     note="outer JWS signed correctly; its payload is a valid inner JWT, not a claims object")
_add("two_segments_of_a_valid_token", "structure", lambda c: ".".join(split(valid_rs256(c))[:2]))
_add("valid_token_trailing_dot", "structure", lambda c: valid_rs256(c) + ".")
_add("valid_token_leading_dot", "structure", lambda c: "." + valid_rs256(c))
_add("valid_token_doubled_dot", "structure", lambda c: valid_rs256(c).replace(".", "..", 1))


# -- base64url variants (each signed correctly over the exact text sent) -----------------------------


def _shaped_header(ok: Callable[[str], bool]) -> str:
    return _filler_until(lambda f: b64url(compact(rs_header(**({"x-pad": f} if f else {})))), ok)


def _shaped_payload(c: Context, ok: Callable[[str], bool]) -> str:
    return _filler_until(lambda f: b64url(compact(c.claims(**({"pad": f} if f else {})))), ok)


def _needs_pad(seg: str) -> bool:
    return len(seg) % 4 != 0


def _has_urlsafe_chars(seg: str) -> bool:
    return "-" in seg or "_" in seg


def _signature_with(c: Context, ok: Callable[[str], bool]) -> str:
    for n in range(200):
        token = valid_rs256(c, jti=str(n))
        if ok(split(token)[2]):
            return token
    raise RuntimeError("no suitable signature")


_add("b64_padding_header", "base64",
     lambda c: signed(padded(_shaped_header(_needs_pad)), b64url(c.claims_text()), rs_signer(c.keys.rsa)))
_add("b64_padding_payload", "base64",
     lambda c: signed(b64url(_HEADER), padded(_shaped_payload(c, _needs_pad)), rs_signer(c.keys.rsa)))
_add("b64_padding_signature", "base64", lambda c: padded(_signature_with(c, _needs_pad)),
     note="RSA-2048 signature: 342 chars + '=='")
_add("b64_std_alphabet_header", "base64",
     lambda c: signed(std_alphabet(_shaped_header(_has_urlsafe_chars)), b64url(c.claims_text()),
                      rs_signer(c.keys.rsa)))
_add("b64_std_alphabet_payload", "base64",
     lambda c: signed(b64url(_HEADER), std_alphabet(_shaped_payload(c, _has_urlsafe_chars)), rs_signer(c.keys.rsa)))


def _std_sig(c: Context) -> str:
    head, body, sig = split(_signature_with(c, _has_urlsafe_chars))
    return f"{head}.{body}.{std_alphabet(sig)}"


_add("b64_std_alphabet_signature", "base64", _std_sig)


def _inside(c: Context, where: int, what: str) -> str:
    parts = list(split(valid_rs256(c)))
    seg = parts[where]
    parts[where] = seg[: len(seg) // 2] + what + seg[len(seg) // 2:]
    return ".".join(parts)


_add("b64_space_inside_signature", "base64", lambda c: _inside(c, 2, " "))
_add("b64_tab_inside_payload", "base64", lambda c: _inside(c, 1, "\t"))
_add("b64_space_around_dot", "base64", lambda c: valid_rs256(c).replace(".", " . ", 1))


def _obs_fold(c: Context) -> Case:
    head, body, sig = split(valid_rs256(c))
    return Case("b64_newline_obs_fold", "base64", None, authorization=(f"Bearer {head}.{body}.\r\n {sig}",),
                expect=Expect(codec_may_refuse=True),
                note="CRLF + space inside the token (obs-fold); Envoy's codec may answer 400 itself")


_add("b64_newline_obs_fold", "base64", _obs_fold, Expect(codec_may_refuse=True))
_add("b64_stray_bits_signature", "base64",
     lambda c: (lambda h, p, s: f"{h}.{p}.{stray_bits(s)}")(*split(_signature_with(c, _needs_pad))),
     note="the signature decodes to the same bytes with a lenient decoder")
_add("b64_stray_bits_payload", "base64",
     lambda c: signed(b64url(_HEADER), stray_bits(_shaped_payload(c, _needs_pad)), rs_signer(c.keys.rsa)))
_add("b64_stray_bits_header", "base64",
     lambda c: signed(stray_bits(_shaped_header(_needs_pad)), b64url(c.claims_text()), rs_signer(c.keys.rsa)))
_add("b64_percent_encoded_padding", "base64", lambda c: valid_rs256(c) + "%3D%3D")


# -- time claims -----------------------------------------------------------------------------------


def _with_claim_text(c: Context, name: str, literal: str) -> str:
    claims = c.claims()
    claims[name] = "__LITERAL__"
    text = compact(claims).replace('"__LITERAL__"', literal)
    return _rs(c, _HEADER, text)


for claim, offset in (("exp", 3600), ("nbf", -60), ("iat", -60)):
    _add(f"{claim}_as_string", "time", lambda c, n=claim, o=offset: valid_rs256(c, **{n: str(c.now + o)}),
         note="otherwise-valid time as a JSON string")
    _add(f"{claim}_as_bool", "time", lambda c, n=claim: valid_rs256(c, **{n: True}))
    _add(f"{claim}_as_null", "time", lambda c, n=claim: valid_rs256(c, **{n: None}))
    _add(f"{claim}_as_list", "time", lambda c, n=claim, o=offset: valid_rs256(c, **{n: [c.now + o]}))
    _add(f"{claim}_as_1e999", "time", lambda c, n=claim: _with_claim_text(c, n, "1e999"),
         note="overflows to infinity in lenient parsers")
    _add(f"{claim}_as_nan_literal", "time", lambda c, n=claim: _with_claim_text(c, n, "NaN"))
    _add(f"{claim}_as_infinity_literal", "time", lambda c, n=claim: _with_claim_text(c, n, "Infinity"))
_add("exp_as_minus_1e999", "time", lambda c: _with_claim_text(c, "exp", "-1e999"))
_add("nbf_as_minus_infinity_literal", "time", lambda c: _with_claim_text(c, "nbf", "-Infinity"))
_add("exp_negative", "time", lambda c: valid_rs256(c, exp=-1),
     expect=Expect(err_type="expired_key", message=TOKEN_EXPIRED))
_add("exp_zero", "time", lambda c: valid_rs256(c, exp=0),
     expect=Expect(err_type="expired_key", message=TOKEN_EXPIRED))
_add("exp_one_second_ago", "time", lambda c: valid_rs256(c, exp=c.now - 1),
     expect=Expect(err_type="expired_key", message=TOKEN_EXPIRED))
_add("nbf_far_future", "time", lambda c: valid_rs256(c, nbf=c.now + 10 * 365 * 86400),
     expect=Expect(prefix=NOT_YET_VALID))
_add("iat_far_future", "time", lambda c: valid_rs256(c, iat=c.now + 10 * 365 * 86400),
     expect=Expect(prefix=NOT_YET_VALID))


# -- audience near-misses --------------------------------------------------------------------------

_AUDS: dict[str, Any] = {
    "uppercase": "API://LLM",
    "trailing_slash": "api://llm/",
    "truncated": "api://ll",
    "suffixed": "api://llm2",
    "leading_space": " api://llm",
    "nul_suffix": "api://llm\u0000",
    "list_without_it": ["api://other", "api://llm2"],
    "nested_list": [["api://llm"]],
    "empty_list": [],
    "number": 1,
    "null": None,
    "object": {"api://llm": True},
    "missing": DROP,
}
for label, aud in _AUDS.items():
    _add(f"aud_{label}", "audience", lambda c, a=aud: valid_rs256(c, aud=a))


# -- smuggling: more than one credential ------------------------------------------------------------


def _smuggle(name: str, values: Callable[[Context], tuple[str, ...]], note: str = "") -> None:
    _add(name, "smuggling", lambda c: Case(name, "smuggling", None, authorization=values(c), note=note))


_smuggle("two_authorization_headers_valid_valid",
         lambda c: (f"Bearer {valid_rs256(c)}", f"Bearer {valid_rs256(c, 'admin')}"))
_smuggle("two_authorization_headers_forged_then_valid",
         lambda c: (f"Bearer {jws(rs_header(alg='none'), c.claims('admin'), None)}", f"Bearer {valid_rs256(c)}"))
_smuggle("two_authorization_headers_valid_then_forged",
         lambda c: (f"Bearer {valid_rs256(c)}", f"Bearer {jws(rs_header(alg='none'), c.claims('admin'), None)}"))
_smuggle("two_authorization_headers_bearer_then_basic",
         lambda c: (f"Bearer {valid_rs256(c)}", "Basic YWRtaW46YWRtaW4="))
_smuggle("authorization_comma_joined_valid_valid",
         lambda c: (f"Bearer {valid_rs256(c)}, Bearer {valid_rs256(c, 'admin')}",))
_smuggle("authorization_two_tokens_space_separated",
         lambda c: (f"Bearer {valid_rs256(c)} {valid_rs256(c, 'admin')}",))


# -- size ---------------------------------------------------------------------------------------------

_add("size_20kib_signed", "size", lambda c: valid_rs256(c, blob="A" * 15200),
     note="a correctly signed token of ~20 KiB")


def corpus_size_check(cases: Mapping[str, Case]) -> None:
    big = cases["size_20kib_signed"].token or ""
    if not 20 * 1024 <= len(big) < 24 * 1024:
        raise AssertionError(f"size_20kib_signed is {len(big)} bytes")


# -- controls -----------------------------------------------------------------------------------------


def valid_tokens(ctx: Context) -> dict[str, str]:
    """One accepted token per trusted algorithm family (sub = `ok-<alg>`), for liveness checks."""
    k = ctx.keys
    return {
        "RS256": k.rsa.sign(ctx.claims("ok-rs256")),
        "ES256": k.ec.sign(ctx.claims("ok-es256")),
        "EdDSA": k.ed.sign(ctx.claims("ok-eddsa")),
    }


# -- command line -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for jwks.json, attacker-jwks.json, corpus.jsonl")
    parser.add_argument("--audience", default=DEFAULT_AUDIENCE)
    parser.add_argument("--attacker-url", default="http://127.0.0.1:9", help="base URL put in jku/x5u")
    parser.add_argument("--keys-dir", help="reuse <kid>.pem private keys from here (new ones are saved)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(Keys.generate(args.keys_dir), audience=args.audience, attacker_url=args.attacker_url)
    cases = build(ctx)
    corpus_size_check(cases)
    (out / "jwks.json").write_text(json.dumps(ctx.keys.jwks(), indent=2) + "\n")
    (out / "attacker-jwks.json").write_text(json.dumps(ctx.keys.attacker_jwks(), indent=2) + "\n")
    with open(out / "corpus.jsonl", "w") as fh:
        for case in cases.values():
            fh.write(json.dumps(asdict(case)) + "\n")
        for alg, token in valid_tokens(ctx).items():
            fh.write(json.dumps({"name": f"control_valid_{alg.lower()}", "group": "control", "token": token,
                                 "expect": {"status": 200}}) + "\n")
    print(f"{len(cases)} hostile cases in {len(groups())} groups -> {out}/corpus.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
