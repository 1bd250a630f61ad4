#!/usr/bin/env python3
"""Demo identity provider: serves a JWKS and mints tokens for the llm-jwt-auth filter.

    python tests/servers/demo_idp.py --host 127.0.0.1 --port 9090 [--keys-dir DIR]

Endpoints
  GET /.well-known/jwks.json   the public keys (kid, kty, alg, use + key material)
  GET <issuer path>/.well-known/openid-configuration
                               OIDC discovery document: {"issuer": ..., "jwks_uri": <JWKS URL>}
  GET /mint?<parameters>       a signed token (text/plain); `format=json` returns the token
                               with its decoded header and claims
  GET /healthz                 "ok"

/mint parameters (each at most once; any other name is refused with 400 and the list below):
  sub=alice                    `sub` (default alice)
  team=research                `team`: a string (envoy.yaml's team_id_jwt_field)
  teams=a,b   groups=a,b       `teams` / `groups`: lists (for a team_ids_jwt_field)
  roles=llm-user,x             `roles`: a list (envoy.yaml's roles_jwt_field on :10001)
  scope=llm.pro                `scope`: one space-separated string; commas also separate,
                               so scope=a,b gives "a b" (litellm_proxy_admin: a proxy admin)
  email=  org=  end_user=      `email`, `org`, `end_user`: strings (envoy.yaml's
                               user_email_jwt_field, org_id_jwt_field, end_user_id_jwt_field)
  aud=a,b                      `aud`: a string, or a list when comma-separated
  iss=...                      `iss` (default: the IdP's issuer, its base URL)
  exp_in=3600  nbf_in=...      lifetime and not-before, seconds from now (negative: past)
  alg=RS256  kid=demo-rsa      which published key signs (RS256 PS256 ES256 ES384 EdDSA)
  expired=1                    a token that expired a minute ago (not with exp_in)
  forged=1                     bad signature: signed by an impostor key under a published kid
  forge=none|hs256|signature   alg "none"; HS256 keyed with the RSA public key PEM (key
                               confusion); or the same as forged=1
  format=json|text             the answer's shape (default text: the token alone)
An empty value leaves the claim out (sub= gives an empty sub, as before). Flags take 1/0,
true/false, yes/no.

`IdPServer` is importable: the e2e tests drive it directly (fetch counter, swapping the key
set, answering the JWKS with 500 / non-JSON / a delay, stopping and starting on the same port,
or holding the port bound but not listening so connections are refused). The discovery document
has its own counter and faults (any document, 500, non-JSON), independent of the JWKS's.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jwt_fixtures as jf  # noqa: E402
from loopback_server import LoopbackServer  # noqa: E402

JWKS_PATH = "/.well-known/jwks.json"
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"

DEMO_KEY_SPECS = (
    ("demo-rsa", "RS256"),
    ("demo-rsa-pss", "PS256"),
    ("demo-ec256", "ES256"),
    ("demo-ec384", "ES384"),
    ("demo-ed25519", "EdDSA"),
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a burst of concurrent connections from
    # Envoy would overflow it and show up as upstream connect timeouts.
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (e.g. Envoy's JWKS fetch timeout during an injected delay)
        # is expected; anything else is still reported.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class IdPServer(LoopbackServer):
    """A JWKS endpoint plus a token mint, with knobs for failure injection.

    `keys` are SigningKeys; the published JWKS is built from them unless `set_jwks()` put a
    raw document in place.  All knobs may be changed while the server runs.
    """

    def __init__(
        self,
        keys: Iterable[jf.SigningKey] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        issuer: str | None = None,
        jwks_path: str = JWKS_PATH,
    ) -> None:
        super().__init__(_Server, _Handler, host, port)
        self.jwks_path = jwks_path
        self._issuer = issuer
        self._lock = threading.Lock()
        self._keys: list[jf.SigningKey] = list(keys)
        self._jwks_doc: Any = None  # raw override (dict or bytes)
        self._failure: tuple[int, str, bytes] | None = None
        self.delay = 0.0
        self._fetch_times: list[float] = []  # time.monotonic() when each JWKS request arrived
        self._served_times: list[float] = []  # when each JWKS answer was written
        self._discovery_doc: Any = None  # raw override of the discovery document (dict or bytes)
        self._discovery_failure: tuple[int, str, bytes] | None = None
        self._discovery_times: list[float] = []  # when each discovery request arrived
        self.discovery_delay = 0.0

    owner_attr = "idp"
    thread_name = "idp"

    @property
    def jwks_url(self) -> str:
        return self.base_url + self.jwks_path

    @property
    def issuer(self) -> str:
        return self._issuer or self.base_url

    @issuer.setter
    def issuer(self, value: str | None) -> None:
        """Tokens' `iss` (None: the base URL); set after binding to use a URL with this server's
        port, e.g. a realm-style issuer `<base_url>/realms/acme`."""
        self._issuer = value

    @property
    def discovery_path(self) -> str:
        """Where the discovery document is served: `<issuer path>/.well-known/openid-configuration`
        when the issuer is a URL on this server (a realm-style issuer keeps its path), else at the
        root — the place OIDC clients look for it."""
        base = self.base_url
        issuer = self.issuer.rstrip("/")
        prefix = issuer[len(base):] if issuer.startswith(base) and issuer[len(base):len(base) + 1] in ("", "/") else ""
        return prefix + DISCOVERY_SUFFIX

    @property
    def discovery_url(self) -> str:
        return self.base_url + self.discovery_path

    # -- knobs ----------------------------------------------------------------------------

    @property
    def keys(self) -> list[jf.SigningKey]:
        with self._lock:
            return list(self._keys)

    def set_keys(self, keys: Iterable[jf.SigningKey]) -> None:
        """Publish these keys (and drop any raw JWKS override)."""
        with self._lock:
            self._keys = list(keys)
            self._jwks_doc = None

    def set_jwks(self, document: Mapping[str, Any] | bytes) -> None:
        """Serve this exact JWKS document (dict → JSON, bytes → as is)."""
        with self._lock:
            self._jwks_doc = document

    def jwks(self) -> Any:
        with self._lock:
            if self._jwks_doc is not None:
                return self._jwks_doc
            return jf.jwks(self._keys)

    def fail_with(self, status: int = 500, body: bytes = b'{"error": "jwks backend exploded"}',
                  content_type: str = "application/json") -> None:
        """Answer JWKS requests with this status/body until `heal()`."""
        with self._lock:
            self._failure = (status, content_type, body)

    def serve_not_json(self) -> None:
        """Answer JWKS requests 200 with an HTML body until `heal()`."""
        self.fail_with(200, b"<html><body>Sign in to continue</body></html>", "text/html")

    def heal(self) -> None:
        with self._lock:
            self._failure = None
            self.delay = 0.0

    # discovery document knobs (independent of the JWKS's: `heal()` leaves them alone)

    def discovery_document(self) -> Any:
        """The document served now: the override, else issuer and `jwks_uri` (this JWKS)."""
        with self._lock:
            if self._discovery_doc is not None:
                return self._discovery_doc
        return {"issuer": self.issuer, "jwks_uri": self.jwks_url,
                "id_token_signing_alg_values_supported": sorted({k.alg for k in self.keys})}

    def set_discovery(self, document: Mapping[str, Any] | bytes | None) -> None:
        """Serve this exact discovery document (dict → JSON, bytes → as is); None restores the
        default one."""
        with self._lock:
            self._discovery_doc = document

    def fail_discovery_with(self, status: int = 500, body: bytes = b'{"error": "discovery backend exploded"}',
                            content_type: str = "application/json") -> None:
        """Answer discovery requests with this status/body until `heal_discovery()`."""
        with self._lock:
            self._discovery_failure = (status, content_type, body)

    def serve_discovery_not_json(self) -> None:
        """Answer discovery requests 200 with an HTML body until `heal_discovery()`."""
        self.fail_discovery_with(200, b"<html><body>Sign in to continue</body></html>", "text/html")

    def heal_discovery(self) -> None:
        """Drop discovery faults and overrides: the default document again, no delay."""
        with self._lock:
            self._discovery_failure = None
            self._discovery_doc = None
            self.discovery_delay = 0.0

    def discovery_failure(self) -> tuple[int, str, bytes] | None:
        with self._lock:
            return self._discovery_failure

    def failure(self) -> tuple[int, str, bytes] | None:
        with self._lock:
            return self._failure

    # -- observation ----------------------------------------------------------------------

    def _record_fetch(self) -> None:
        with self._lock:
            self._fetch_times.append(time.monotonic())

    def _record_served(self) -> None:
        with self._lock:
            self._served_times.append(time.monotonic())

    @property
    def fetch_count(self) -> int:
        with self._lock:
            return len(self._fetch_times)

    @property
    def fetch_times(self) -> list[float]:
        with self._lock:
            return list(self._fetch_times)

    @property
    def served_times(self) -> list[float]:
        with self._lock:
            return list(self._served_times)

    def _record_discovery(self) -> None:
        with self._lock:
            self._discovery_times.append(time.monotonic())

    @property
    def discovery_count(self) -> int:
        with self._lock:
            return len(self._discovery_times)

    @property
    def discovery_times(self) -> list[float]:
        with self._lock:
            return list(self._discovery_times)

    def reset_counters(self) -> None:
        with self._lock:
            self._fetch_times.clear()
            self._served_times.clear()
            self._discovery_times.clear()

    def wait_for_fetches(self, n: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.fetch_count >= n:
                return True
            time.sleep(0.02)
        return self.fetch_count >= n

    # -- minting --------------------------------------------------------------------------

    def key_for(self, *, alg: str | None = None, kid: str | None = None) -> jf.SigningKey:
        keys = self.keys
        for key in keys:
            if (kid is None or key.kid == kid) and (alg is None or key.alg == alg):
                return key
        raise LookupError(f"no key with alg={alg!r} kid={kid!r}; have {[(k.kid, k.alg) for k in keys]}")

    def mint(self, params: Mapping[str, str]) -> str:
        """Token for the /mint query parameters (see the module docstring); ValueError (a 400)
        for an unknown parameter or a bad value, LookupError for no such key."""
        check_mint_params(params)

        def num(name: str, default: float | None) -> float | None:
            raw = params.get(name)
            if raw in (None, ""):
                return default
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a number of seconds") from None

        key = self.key_for(alg=params.get("alg") or None, kid=params.get("kid") or None)
        expired = flag(params, "expired")
        if expired and params.get("exp_in"):
            raise ValueError("expired=1 and exp_in contradict each other; give one")
        auds = split_list(params.get("aud"))
        scopes = split_list((params.get("scope") or "").replace(" ", ","))
        body = jf.claims(
            params.get("sub", "alice"),
            exp_in=num("exp_in", 3600),
            nbf_in=num("nbf_in", None),
            aud=(auds[0] if len(auds) == 1 else auds) if auds else None,
            iss=params.get("iss", self.issuer),
            scope=" ".join(scopes) or None,
            **mint_extra_claims(params),
        )
        if expired:
            body["iat"] = int(time.time()) - 120
            body["exp"] = int(time.time()) - 60
        forge = params.get("forge") or ("signature" if flag(params, "forged") else "")
        if forge == "signature":
            return jf.forged_token(key, body)
        if forge == "none":
            return jf.unsigned_token(body, kid=key.kid)
        if forge == "hs256":
            rsa_key = key if key.kty == "RSA" else self.key_for(alg="RS256")
            return jf.hmac_token(body, rsa_key.public_pem(), kid=rsa_key.kid)
        if forge:
            raise ValueError(f"unknown forge={forge!r}; use signature, none or hs256")
        return key.sign(body)


# -- /mint parameters ---------------------------------------------------------------------

#: Every /mint query parameter, with what it does (the 400 for an unknown one lists them).
MINT_PARAMS: dict[str, str] = {
    "sub": "subject (default alice)",
    "team": "team claim, a string",
    "teams": "teams claim, a comma-separated list",
    "groups": "groups claim, a comma-separated list",
    "roles": "roles claim, a comma-separated list",
    "scope": "scope claim, scopes separated by spaces or commas",
    "email": "email claim",
    "org": "org claim",
    "end_user": "end_user claim",
    "aud": "aud claim (comma-separated: a list)",
    "iss": "iss claim (default: the IdP's issuer)",
    "exp_in": "lifetime in seconds (default 3600)",
    "nbf_in": "nbf, seconds from now",
    "alg": "signing algorithm: picks the key",
    "kid": "signing key id",
    "expired": "1: expired a minute ago",
    "forged": "1: signed by an impostor key",
    "forge": "none | hs256 | signature",
    "format": "json | text",
}

#: Query parameter → (claim name, is a list). The claim names are the ones envoy.yaml reads.
MINT_CLAIMS: dict[str, tuple[str, bool]] = {
    "team": ("team", False),
    "teams": ("teams", True),
    "groups": ("groups", True),
    "roles": ("roles", True),
    "email": ("email", False),
    "org": ("org", False),
    "end_user": ("end_user", False),
}

_TRUE = ("1", "true", "yes")
_FALSE = ("", "0", "false", "no")


def check_mint_params(params: Mapping[str, str]) -> None:
    """ValueError naming the unknown parameters and listing the accepted ones."""
    unknown = sorted(set(params) - set(MINT_PARAMS))
    if unknown:
        raise ValueError(
            f"unknown /mint parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"accepted: {', '.join(MINT_PARAMS)}"
        )
    fmt = params.get("format")
    if fmt not in (None, "", "json", "text"):
        raise ValueError(f"format={fmt!r}: use json or text")
    for name in ("expired", "forged"):
        flag(params, name)


def parse_mint_query(query: str) -> dict[str, str]:
    """The /mint query string as one value per parameter; ValueError for a parameter given
    twice, an unknown one, or a bad value."""
    values: dict[str, list[str]] = parse_qs(query, keep_blank_values=True)
    twice = sorted(k for k, v in values.items() if len(v) > 1)
    if twice:
        raise ValueError(f"/mint parameter given more than once: {', '.join(twice)}")
    params = {k: v[0] for k, v in values.items()}
    check_mint_params(params)
    return params


def flag(params: Mapping[str, str], name: str) -> bool:
    raw = (params.get(name) or "").lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name}={params.get(name)!r}: use 1 or 0 (true/false, yes/no)")


def split_list(raw: str | None) -> list[str]:
    """A comma-separated parameter as a list: entries trimmed, empty ones dropped."""
    return [item.strip() for item in (raw or "").split(",") if item.strip()]


def mint_extra_claims(params: Mapping[str, str]) -> dict[str, Any]:
    """The identity claims of /mint's parameters (an empty value leaves its claim out)."""
    out: dict[str, Any] = {}
    for param, (claim, is_list) in MINT_CLAIMS.items():
        raw = params.get(param)
        if not raw:
            continue
        out[claim] = split_list(raw) if is_list else raw
    return out


class _Handler(BaseHTTPRequestHandler):
    # Headers and body are separate writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "demo-idp/1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet unless asked
        if getattr(self.server, "verbose", False):
            sys.stderr.write("demo-idp: " + (fmt % args) + "\n")

    @property
    def idp(self) -> IdPServer:
        return self.server.idp  # type: ignore[attr-defined]

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path == self.idp.jwks_path:
            self._jwks()
        elif url.path == self.idp.discovery_path:
            self._discovery()
        elif url.path == "/mint":
            try:
                params = parse_mint_query(url.query)
                token = self.idp.mint(params)
            except (LookupError, ValueError) as exc:
                self._send(400, json.dumps({"error": str(exc)}).encode())
                return
            if params.get("format") == "json":
                header, body = jf.decode_unverified(token)
                payload = {"token": token, "header": header, "claims": body}
                self._send(200, json.dumps(payload, indent=2).encode() + b"\n")
            else:
                self._send(200, token.encode() + b"\n", "text/plain")
        elif url.path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        else:
            self._send(404, b'{"error": "not found"}')

    def _jwks(self) -> None:
        idp = self.idp
        idp._record_fetch()
        if idp.delay:
            time.sleep(idp.delay)
        failure = idp.failure()
        if failure:
            status, ctype, body = failure
            self._send(status, body, ctype)
        else:
            doc = idp.jwks()
            body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
            self._send(200, body)
        idp._record_served()

    def _discovery(self) -> None:
        idp = self.idp
        idp._record_discovery()
        if idp.discovery_delay:
            time.sleep(idp.discovery_delay)
        failure = idp.discovery_failure()
        if failure:
            status, ctype, body = failure
            self._send(status, body, ctype)
            return
        doc = idp.discovery_document()
        self._send(200, doc if isinstance(doc, bytes) else json.dumps(doc).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--keys-dir", help="load <kid>.pem private keys from here (new ones are saved)")
    parser.add_argument("--issuer", help="iss claim for minted tokens (default: the server's base URL)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    keys = jf.load_or_generate_keys(DEMO_KEY_SPECS, args.keys_dir)
    idp = IdPServer(keys, host=args.host, port=args.port, issuer=args.issuer)
    idp.start()
    assert idp._httpd is not None
    idp._httpd.verbose = args.verbose  # type: ignore[attr-defined]
    print(f"demo-idp: JWKS at {idp.jwks_url}  discovery at {idp.discovery_url}  mint at {idp.base_url}/mint  "
          f"(kids: {', '.join(k.kid or '-' for k in keys)})", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    idp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
