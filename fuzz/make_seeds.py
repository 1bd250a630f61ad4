#!/usr/bin/env python3
"""Write the committed seed corpora, fuzz/seeds/<target>/, from tests/fixtures/unit_vectors.json
(PyJWT/cryptography-minted keys and tokens) plus small hand-written examples, and libFuzzer
dictionaries, fuzz/dicts/<target>.dict (without AddressSanitizer, libFuzzer cannot see string
comparisons, so the words the parsers look for are handed to it).

Run from anywhere: python3 fuzz/make_seeds.py. Seeds are named by content hash, so re-running
is idempotent; libFuzzer's own discoveries go to target/fuzz-corpus/, never here.
"""
import base64
import hashlib
import json
import re
import shutil
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
VECTORS = json.loads((FUZZ.parent / "tests/fixtures/unit_vectors.json").read_text())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seg(obj) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def as_bytes(seed) -> bytes:
    return seed if isinstance(seed, bytes) else seed.encode()


def write(target: str, seeds) -> None:
    out = FUZZ / "seeds" / target
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for seed in seeds:
        data = as_bytes(seed)
        (out / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


tokens = list(VECTORS["tokens"].values())
keys = VECTORS["keys"]
jwks = [k["jwk"] for k in keys.values()]
pems = [k[f] for k in keys.values() for f in ("pem", "cert") if f in k]


def structured(token: str) -> bytes:
    """A token as `header JSON \\n payload JSON \\n signature` (the fuzz targets' structured form)."""
    h, p, s = token.split(".")
    return unb64url(h) + b"\n" + unb64url(p) + b"\n" + unb64url(s)


hand_tokens = [
    f"{seg({'alg': 'none'})}.{seg({'sub': 'a'})}.",
    f"{seg({'alg': 'RS256', 'crit': ['b64'], 'b64': False})}.{seg({})}.c2ln",
    f"{seg({'alg': 'RS256', 'kid': 7})}.{seg({})}.c2ln",
    f"{seg({'alg': 'HS256'})}.{seg({})}.c2ln",
    b64url(b'{"alg":"RS256","alg":"none"}') + "." + seg({}) + ".c2ln",
    "a.b.c.d.e",
    "",
]
structured_hand = [
    b'{"alg":"ES256","kid":"ec-256"}\n{"sub":"a","exp":1e999}\n' + bytes(64),
    b'{"alg":"EdDSA","kid":"ed-1","jku":"http://evil"}\n{"aud":["x","api"],"iss":"idp"}\nsig',
    b'{"alg":"PS256"}\n[1]\n',
]
token_seeds = tokens + hand_tokens + [structured(t) for t in tokens] + structured_hand
write("jws", token_seeds)
write("authn", token_seeds)

write("strict_json", [
    *(json.dumps(j) for j in jwks),
    *(unb64url(t.split(".")[i]) for t in tokens[:3] for i in (0, 1)),
    b'{"a":1,"a":2}', b'[{"b":{"c":[1,2,{"d":null,"d":true}]}}]', b'{"n":-0.0,"m":1e308,"k":12345678901234567890}',
    b'"\\ud83d\\ude00\\u0000"', b'{"mo\\u0064el":"x"}', b"[" * 40 + b"]" * 40, b" 1 ", b"{}x",
])

rsa = keys["rsa"]["jwk"]
write("jwks", [
    json.dumps({"keys": jwks}),
    json.dumps({"keys": [rsa]}),
    json.dumps(keys["ed25519"]["jwk"]),
    json.dumps({"keys": ["junk", dict(rsa, alg="RS256", use="sig", key_ops=["verify"])]}),
    json.dumps({"keys": [dict(rsa, alg="ES256"), dict(rsa, use="enc"), {"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}),
    json.dumps({"keys": [dict(keys["p256"]["jwk"], kid="rsa-1"), rsa]}),
    json.dumps({"keys": [{"kty": "RSA", "n": b64url(b"\xc5" * 64), "e": "AQAB"}]}),
    '{"keys":{}}', '{"error":"boom"}', "<html>oops</html>", '{"keys":[]}',
])

ders = []
for pem in pems:
    body = "".join(l for l in pem.strip().splitlines() if not l.startswith("-----"))
    label = 2 if "CERTIFICATE" in pem else 0
    ders.append(bytes([label]) + base64.b64decode(body))
write("pem", [*pems, *ders, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "hello", b"\x01\x30\x00"])

url = "http://127.0.0.1:9090/.well-known/jwks.json"
write("config", [json.dumps(c) for c in [
    {"public_key_url": url},
    {"public_key_url": f" {url} , ,https://idp.example.com:8443/keys?x=1"},
    {"public_key_url": ["http://a/1", "http://c/2,http://d/3"], "clusters": {"a:80": "idp"}},
    {"public_keys": [keys["rsa"]["pem"], keys["p256"]["pem"]], "audience": "api", "issuer": "idp", "leeway": 30},
    {"public_key_url": "https://login.example.com/.well-known/openid-configuration", "mode": "report"},
    {"public_key_url": url, "max_body_bytes": 2048, "token_cache_size": 10, "jwks_fetch_timeout_ms": 500,
     "filter_state": True, "public_routes": ["/health*"]},
    {"public_key_url": url, "general_settings": {"litellm_jwtauth": {
        "public_key_ttl": 600, "admin_jwt_scope": "admin", "team_id_jwt_field": "llm_team",
        "user_email_jwt_field": "email", "roles_jwt_field": "roles", "enforce_rbac": True,
        "role_mappings": [{"role": "LLM-Admins", "internal_role": "proxy_admin"}],
        "team_allowed_routes": ["openai_routes", "/custom/*"]}}},
    {"public_key_url": url, "teams": [{"team_id": "t1", "models": ["gpt-4o"]}],
     "record_source": {"type": "litellm", "url": "http://litellm:4000", "master_key": "sk-1", "ttl": 60}},
    {"issuers": [{"issuer": "https://idp.example.com", "audience": ["api"]},
                 {"issuer": "other", "jwks_url": "http://other/jwks"}]},
    {"public_key_url": "ftp://a/j"}, {"public_key_url": "http://u:p@a/j"}, {"audiance": "x"}, {},
]] + ["", "[]", "null"])

write("model_json", [
    '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}', '{"model":null}', '{"model":7}',
    '{"model":"a","model":"b"}', '{"mo\\u0064el":"esc"}', '{"messages":[],"model":"m","stream":true}',
    '["gpt-4o"]', "  ", "", '{"model":"x"} trailing', '{"nested":{"model":"inner"},"x":"\\ud800"}',
])

write("usage", [b"\x80" + s.encode() for s in [
    '{"id":"c","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}',
    'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\ndata: {"choices":[],"usage":'
    '{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}\n\ndata: [DONE]\n\n',
    'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":25,'
    '"output_tokens":1}}}\n\nevent: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\n\n',
    'event: response.completed\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":20,'
    '"output_tokens":5,"total_tokens":25,"input_tokens_details":{"cached_tokens":0}}}}\n\n',
    '{"content":"\\"usage\\": {\\"total_tokens\\": 9}","usage":{"total_tokens":1}}',
]])

def form(boundary: str, parts) -> bytes:
    out = b""
    for name, value in parts:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()

write("model_multipart", [
    b"multipart/form-data; boundary=XyZ\n" + form("XyZ", [("file", b"RIFF\x00\x01"), ("model", b"whisper-1")]),
    b'Multipart/Form-Data; charset=utf-8; Boundary="q q"\n' + form("q q", [("model", b"m")]),
    b"multipart/form-data; boundary=b\n--b\r\nContent-Disposition: form-data; name=model\r\n\r\nw\r\n--b",
    b"application/json\nXyZ\nwhisper-1\nRIFF filler",
    b"multipart/form-data; boundary=\n----\r\n\r\n",
])

write("model_path", [
    "/openai/deployments/gpt-4o/chat/completions", "/engines/davinci/completions", "/v1/engines/x%2Fy/embeddings",
    "/v1beta/models/gemini-1.5-pro:generateContent", "/models/a:b:streamGenerateContent", "/v1/models/%ZZ:x",
    "/openai/deployments//x", "/v1/chat/completions", "gpt-4o", "caf\u00e9",
])

write("routes", [
    "/v1/chat/completions\n/health*\nopenai_routes\n\n/v1/chat/completions\n/healthz\n/threads/abc/messages\n/threads//messages",
    "llm_api_routes\nmanagement_routes\n\n/key/generate\n/v1beta/models/gemini/x:generateContent\n/team/a/b/callback",
    "info_routes\n\n/key/info\n/team/info\n/v1/traces/t/spans/s/error",
    "*\n\n\n/anything",
    "/exact\n/pre*fix*\n/sp ace",
    "mcp_routes\nagent_routes\n\n/v1/mcp/server/a/b/c\n/mcp/x",
])

def dictionary(target: str, words) -> None:
    def quote(word) -> str:
        data = as_bytes(word)
        return "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}" for b in data)
    out = FUZZ / "dicts"
    out.mkdir(exist_ok=True)
    unique = sorted({as_bytes(w) for w in words})
    (out / f"{target}.dict").write_text("".join(f'"{quote(w)}"\n' for w in unique))


ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "none", "HS256", "ES512"]
CLAIMS = ["alg", "kid", "typ", "crit", "b64", "jwk", "jku", "x5u", "x5c", "cty", "JWT",
          "exp", "nbf", "iat", "aud", "iss", "sub", "scope", "\"", "\":", "\",\"", "{\"", "\"}"]
JSON = ["true", "false", "null", "1e999", "-0", "\\u0000", "\\ud800", "[", "]", "{", "}", ",", ":"]
dictionary("jws", ALGS + CLAIMS + JSON + ["."])
dictionary("authn", ALGS + CLAIMS + JSON + ["."])
dictionary("strict_json", JSON + ["\"a\":1,\"a\":2"])
dictionary("jwks", ALGS + JSON + ["keys", "kty", "RSA", "EC", "OKP", "oct", "crv", "P-256", "P-384", "P-521",
                                  "Ed25519", "X25519", "n", "e", "x", "y", "d", "use", "sig", "enc", "key_ops",
                                  "verify", "AQAB", "kid", "alg"])
dictionary("pem", ["-----BEGIN ", "-----END ", "-----", "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE",
                   "PRIVATE KEY", b"\x30\x82", b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01",
                   b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01", b"\x06\x03\x2b\x65\x70"])
config_src = "".join(p.read_text() for p in sorted((FUZZ.parent / "src/config").glob("*.rs")))
config_words = set(re.findall(r'"([a-z][a-z0-9_]{1,40})"', config_src))
dictionary("config", sorted(config_words) + JSON + ["http://", "https://", "/.well-known/openid-configuration",
                                                    "general_settings", "litellm_jwtauth", "{id}"])
dictionary("model_json", JSON + ["model", "\"model\":", "mo\\u0064el", "messages"])
dictionary("model_multipart", ["multipart/form-data", "boundary=", "\r\n", "\r\n\r\n", "--",
                               "Content-Disposition: form-data; name=\"model\"", "name=model", "\n"])
dictionary("model_path", ["/openai/deployments/", "/engines/", "/v1/engines/", "/v1beta/models/", "/v1/models/",
                          "/models/", ":generateContent", "/chat/completions", "%2F", "%", "%ZZ", "/", ":"])
groups_src = (FUZZ.parent / "src/routes/groups.rs").read_text()
group_names = re.findall(r'^\s+"([a-z_]+)" => Some', groups_src, re.M)
dictionary("routes", group_names + ["\n", "\n\n", "*", "/", "/v1/", "{", "}", ":path}", "/threads/", "/key/"])
dictionary("usage", JSON + ["usage", "\"usage\":", "\"usage\":{", "prompt_tokens", "completion_tokens",
                           "total_tokens", "input_tokens", "output_tokens", "data: ", "\n\n", "event: ", "\\\""])
print("seeds and dictionaries written under", FUZZ)
