#!/usr/bin/env python3
"""Demo identity provider: serves a JWKS and mints tokens for the llm-jwt-auth filter.

    python tools/demo_idp.py --host 127.0.0.1 --port 9090 [--keys-dir DIR]

Endpoints
  GET /.well-known/jwks.json   the public keys (kid, kty, alg, use + key material)
  GET <issuer path>/.well-known/openid-configuration
                               OIDC discovery document: {"issuer": ..., "jwks_uri": <JWKS URL>}
  GET /mint?sub=alice&exp_in=3600&alg=RS256&scope=...&aud=...&iss=...&kid=...&nbf_in=...
                               a signed token (text/plain); `format=json` returns the token
                               with its decoded header and claims
  GET /mint?expired=1          a token that expired a minute ago
  GET /mint?forged=1           bad signature: signed by an impostor key under a published kid
  GET /mint?forge=none|hs256|signature
                               alg "none"; HS256 keyed with the RSA public key PEM (key
                               confusion); or the same as forged=1
  GET /healthz                 "ok"

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
        """Token for the /mint query parameters (see the module docstring)."""

        def num(name: str, default: float | None) -> float | None:
            raw = params.get(name)
            return default if raw in (None, "") else float(raw)

        key = self.key_for(alg=params.get("alg") or None, kid=params.get("kid") or None)
        aud = params.get("aud")
        auds = aud.split(",") if aud else None
        body = jf.claims(
            params.get("sub", "alice"),
            exp_in=num("exp_in", 3600),
            nbf_in=num("nbf_in", None),
            aud=(auds[0] if auds and len(auds) == 1 else auds),
            iss=params.get("iss", self.issuer),
            scope=params.get("scope") or None,
        )
        if params.get("expired") in ("1", "true", "yes"):
            body["iat"] = int(time.time()) - 120
            body["exp"] = int(time.time()) - 60
        forge = params.get("forge") or ("signature" if params.get("forged") in ("1", "true", "yes") else "")
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
            params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            try:
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
