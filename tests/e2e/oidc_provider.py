"""panva/oidc-provider (OpenID Certified) as a test IdP: the Node process, a counting proxy in
front of it, and the client side (client_credentials, the authorization code flow, DPoP proofs).

    provider = OidcProvider(workdir).start()          # node tests/oidc/provider.mjs, port 0
    token = provider.client_credentials(alg="PS256", resource="https://llm.example/")
    id_token = provider.id_token(alg="ES256", login_hint="alice")
    provider.restart(keyset="k2")                       # same port, new keys: a key rotation
    provider.stop()                                     # an outage

`Idp` pairs a provider with a `CountingProxy`: Envoy's STATIC cluster is named by the
provider's authority (`127.0.0.1:<provider port>`, the host in its issuer and `jwks_uri`) and
points at the proxy, which counts what the filter fetched — also while the provider is down
(the proxy then answers 502, as a load balancer in front of a dead IdP does) — or refuses
connections (`refuse=True`: nothing listening at all). Tokens are fetched by the tests directly
from the provider, not through the proxy, so the proxy's counts are the filter's fetches only.

The Node side needs `tests/oidc/node_modules` (`make oidc-deps`, i.e. `npm ci` in tests/oidc/):
without it, `OidcProvider.start()` fails (a test failure naming the command, never a skip).
Environment: `NODE` (default `node` on PATH).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import warnings
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "servers"))

from loopback_server import LoopbackServer, TrackingHTTPServer  # noqa: E402

OIDC_DIR = HERE.parents[1] / "tests" / "oidc"
PROVIDER_JS = OIDC_DIR / "provider.mjs"
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks"
REDIRECT_URI = "http://127.0.0.1/cb"  # the default clients' (never contacted: the code is read off the redirect)
DEFAULT_RESOURCE = "https://llm-gateway.example/"
ALGS = ("RS256", "PS256", "ES256", "EdDSA", "Ed25519")


class ProviderError(RuntimeError):
    pass


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode(token: str) -> tuple[dict, dict]:
    """(header, claims) of a JWS, unverified."""
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 (what oidc-provider makes a key's kid when it has none)."""
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def client_id(alg: str) -> str:
    """The default client whose tokens are signed with `alg` (provider.mjs)."""
    return f"client-{alg.lower()}"


def client_secret(alg: str) -> str:
    return f"secret-{alg.lower()}"


# -- the provider process ---------------------------------------------------------------------


def _process_state(pid: int) -> str:
    """What a process is doing (its state and kernel wait channel), for a hung start's report."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        state = next((line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith("State:")), "?")
        wchan = Path(f"/proc/{pid}/wchan").read_text().strip() or "-"
        return f"state {state}, waiting in {wchan}"
    except OSError as exc:
        return f"state unknown ({exc})"


class OidcProvider:
    """One `node tests/oidc/provider.mjs` process at a time, always on the same port once it has
    one (the issuer, and Envoy's cluster, name the port)."""

    def __init__(self, workdir: Path | str, *, config: Mapping[str, Any] | None = None, keyset: str = "k1",
                 port: int = 0, host: str = "127.0.0.1", name: str = "oidc", start_timeout: float = 30.0) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = dict(config or {})
        self.keyset = keyset
        self.host = host
        self._port = port
        self.name = name
        self.start_timeout = start_timeout
        self._hung_starts = 0  # starts that hung before their port line (one is retried)
        self.keys_dir = self.workdir / "keys"
        self.config_path = self.workdir / "provider.json"
        self.log_path = self.workdir / "provider.log"
        self.proc: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}
        self._metadata: dict[str, Any] | None = None
        self.starts = 0

    # lifecycle ----------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [os.environ.get("NODE", "node"), str(PROVIDER_JS), "--config", str(self.config_path),
                "--host", self.host, "--port", str(self._port), "--keyset", self.keyset,
                "--keys-dir", str(self.keys_dir), "--log-requests"]

    def start(self, keyset: str | None = None) -> "OidcProvider":
        """Start the process (with this key set, remembered for restarts) and wait for its port line."""
        if self.proc is not None:
            raise ProviderError(f"{self.name}: already running")
        if not (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
            raise ProviderError(
                f"oidc-provider is not installed in {OIDC_DIR / 'node_modules'}: run `make oidc-deps` "
                f"(npm ci in tests/oidc/, from its package-lock.json)")
        if keyset is not None:
            self.keyset = keyset
        self.config_path.write_text(json.dumps(self.config, indent=2))
        log = open(self.log_path, "ab")
        log.write(f"--- start {self.starts + 1}: keyset {self.keyset} ---\n".encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(self.command(), cwd=OIDC_DIR, stdout=subprocess.PIPE, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise ProviderError(f"{self.name}: cannot run node ({exc}); set NODE=/path/to/node") from exc
        finally:
            log.close()
        self.starts += 1
        line = self._first_line(self.proc, self.start_timeout)
        if line is None:
            # A start that hangs before its port line (twice in CI, never alone; the provider log
            # shows the phase it stopped in) is test infrastructure failing, not the filter:
            # started once more, and a second hang fails the test.
            warnings.warn(f"{self.name}: provider.mjs printed nothing in {self.start_timeout:.0f}s; starting it again")
            return self.start()

        try:
            info = json.loads(line)
            port = int(info["port"])
        except (ValueError, KeyError, TypeError) as exc:
            self.stop()
            raise ProviderError(f"{self.name}: bad first line {line!r}\n{self.log_text()}") from exc
        if self._port and port != self._port:
            self.stop()
            raise ProviderError(f"{self.name}: asked for port {self._port}, got {port}")
        self._port = port
        self.info = info
        self._metadata = None
        return self

    def _first_line(self, proc: subprocess.Popen, timeout: float) -> str | None:
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not out or not out[0]:
            code = proc.poll()
            stuck = "" if code is not None else _process_state(proc.pid)
            self.stop()
            if code is None and not self._hung_starts:
                self._hung_starts += 1
                with open(self.log_path, "a") as log:
                    log.write(f"--- hung before its port line: {stuck} ---\n")
                return None
            state = f"exited with status {code}" if code is not None else f"printed nothing in {timeout:.0f}s ({stuck})"
            raise ProviderError(f"{self.name}: provider.mjs {state}\n{self.log_text()}")
        # Nothing else is read from stdout: keep draining it so the process never blocks.
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        return out[0].decode(errors="replace").strip()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()

    def restart(self, keyset: str | None = None) -> "OidcProvider":
        """Stop and start again on the same port; a new `keyset` name is a key rotation (the old
        keys are no longer published)."""
        self.stop()
        return self.start(keyset)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no provider log)"

    # addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self._port:
            raise ProviderError(f"{self.name}: not started yet")
        return self._port

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def issuer(self) -> str:
        return f"http://{self.authority}"

    @property
    def discovery_url(self) -> str:
        return self.issuer + DISCOVERY_PATH

    @property
    def metadata(self) -> dict[str, Any]:
        """The discovery document (read from the running provider once per start)."""
        if self._metadata is None:
            resp = requests.get(self.discovery_url, timeout=5)
            resp.raise_for_status()
            self._metadata = resp.json()
        return self._metadata

    def jwks(self) -> dict[str, Any]:
        resp = requests.get(self.metadata["jwks_uri"], timeout=5)
        resp.raise_for_status()
        return resp.json()

    def kid(self, alg: str) -> str:
        """The kid of the key that signs `alg` (from the port line; the first key set's keys sign)."""
        for key in self.info.get("keys", []):
            if alg in key.get("signs", []):
                return key["kid"]
        raise LookupError(f"no key signs {alg}: {self.info.get('keys')}")

    def kids(self) -> set[str]:
        return {key["kid"] for key in self.info.get("keys", [])}

    def private_jwk(self, alg: str) -> dict[str, Any]:
        """The signing key for `alg` from the key set file (first set), with its published kid."""
        keyset = self.keyset.split(",")[0].strip()
        for jwk in json.loads((self.keys_dir / f"{keyset}.json").read_text())["keys"]:
            fits = {"RSA": jwk.get("alg") == alg, "EC": alg == "ES256" and jwk.get("crv") == "P-256",
                    "OKP": alg == "EdDSA" and jwk.get("crv") == "Ed25519"}.get(jwk["kty"], False)
            if fits:
                return {**jwk, "kid": thumbprint(jwk)}
        raise LookupError(f"no private key for {alg} in key set {keyset}")

    def sign(self, claims: Mapping[str, Any], *, alg: str = "ES256", typ: str | None = None) -> str:
        """A token signed with the provider's own key (what oidc-provider itself does not issue:
        e.g. an explicit `typ`); the header carries the published kid."""
        jwk = self.private_jwk(alg)
        headers: dict[str, Any] = {"kid": jwk["kid"]}
        if typ is not None:
            headers["typ"] = typ
        return jwt.encode(dict(claims), jwt.PyJWK(jwk, algorithm=alg).key, algorithm=alg, headers=headers)

    # tokens -------------------------------------------------------------------------------

    def token_request(self, alg: str, data: Mapping[str, str], *, dpop: str | None = None,
                      client: tuple[str, str] | None = None) -> requests.Response:
        headers = {"DPoP": dpop} if dpop else {}
        return requests.post(self.metadata["token_endpoint"], data=dict(data), headers=headers,
                             auth=client or (client_id(alg), client_secret(alg)), timeout=10)

    def client_credentials_response(self, *, alg: str = "RS256", resource: str | None = DEFAULT_RESOURCE,
                                    scope: str | None = None, dpop_key: "DPoPKey | None" = None) -> dict[str, Any]:
        data = {"grant_type": "client_credentials"}
        if resource is not None:
            data["resource"] = resource
        if scope is not None:
            data["scope"] = scope
        dpop = dpop_key.proof("POST", self.metadata["token_endpoint"]) if dpop_key else None
        resp = self.token_request(alg, data, dpop=dpop)
        if resp.status_code != 200:
            raise ProviderError(f"client_credentials ({alg}, {resource}) refused: {resp.status_code} {resp.text}")
        return resp.json()

    def client_credentials(self, **kwargs: Any) -> str:
        """A client_credentials access token (a JWT: the resource makes it one)."""
        return self.client_credentials_response(**kwargs)["access_token"]

    def login(self, *, alg: str = "RS256", login_hint: str = "alice", scope: str = "openid email",
              resource: str | None = None, nonce: str | None = None) -> dict[str, Any]:
        """The authorization code flow, driven like a browser would (the provider's interaction
        logs `login_hint` in and grants what was asked), then the code at the token endpoint.
        Returns the token response (id_token, access_token, ...)."""
        meta = self.metadata
        verifier = b64url(secrets.token_bytes(32))
        state = uuid.uuid4().hex
        params = {
            "client_id": client_id(alg), "response_type": "code", "scope": scope, "redirect_uri": REDIRECT_URI,
            "state": state, "nonce": nonce or uuid.uuid4().hex, "login_hint": login_hint,
            "code_challenge": b64url(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256",
        }
        if resource is not None:
            params["resource"] = resource
        browser = requests.Session()
        resp = browser.get(meta["authorization_endpoint"], params=params, allow_redirects=False, timeout=10)
        for _ in range(10):
            location = resp.headers.get("location")
            if resp.status_code not in (302, 303) or not location:
                raise ProviderError(f"authorization flow stopped at {resp.url}: {resp.status_code} {resp.text[:500]}")
            if location.startswith(REDIRECT_URI):
                break
            resp = browser.get(urljoin(resp.url, location), allow_redirects=False, timeout=10)
        else:
            raise ProviderError("authorization flow: too many redirects")
        query = {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}
        if "code" not in query or query.get("state") != state:
            raise ProviderError(f"authorization flow ended without a code: {location}")
        resp = self.token_request(alg, {"grant_type": "authorization_code", "code": query["code"],
                                        "redirect_uri": REDIRECT_URI, "code_verifier": verifier})
        if resp.status_code != 200:
            raise ProviderError(f"code exchange ({alg}) refused: {resp.status_code} {resp.text}")
        return resp.json()

    def id_token(self, **kwargs: Any) -> str:
        return self.login(**kwargs)["id_token"]


# -- DPoP (RFC 9449) ------------------------------------------------------------------------


class DPoPKey:
    """A client's DPoP key (EC P-256) and the proofs it signs."""

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key()))
        self.jwk.pop("key_ops", None)

    @property
    def jkt(self) -> str:
        """RFC 7638 thumbprint (what `cnf.jkt` holds)."""
        canonical = {k: self.jwk[k] for k in ("crv", "kty", "x", "y")}
        return b64url(hashlib.sha256(json.dumps(canonical, separators=(",", ":"), sort_keys=True).encode()).digest())

    def proof(self, htm: str, htu: str, *, access_token: str | None = None, iat: int | None = None,
              jti: str | None = None, ath: str | None = None, jwk: Mapping[str, Any] | None = None,
              **claims: Any) -> str:
        """A DPoP proof JWT: header typ dpop+jwt, alg ES256, jwk (this key's unless given);
        claims htm, htu, iat (now), jti (fresh), ath (hash of `access_token`, or as given)."""
        body: dict[str, Any] = {"htm": htm, "htu": htu, "iat": int(time.time()) if iat is None else iat,
                                "jti": jti or uuid.uuid4().hex}
        if ath is not None:
            body["ath"] = ath
        elif access_token is not None:
            body["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
        body.update(claims)
        headers = {"typ": "dpop+jwt", "jwk": dict(jwk or self.jwk)}
        return jwt.encode(body, self.private_key, algorithm="ES256", headers=headers)


# -- the counting proxy --------------------------------------------------------------------


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
               "content-length"}


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        proxy: CountingProxy = self.server.proxy  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        proxy._record(self.command, path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            conn = http.client.HTTPConnection(proxy.target_host, proxy.target_port, timeout=10)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                status, reply_headers, payload = resp.status, resp.getheaders(), resp.read()
            finally:
                conn.close()
        except OSError as exc:
            proxy._record_failure(path)
            status, reply_headers = 502, [("content-type", "application/json")]
            payload = json.dumps({"error": "bad_gateway", "detail": f"provider unreachable: {exc}"}).encode()
        self.send_response(status)
        for name, value in reply_headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = _forward


class CountingProxy(LoopbackServer):
    """HTTP forwarder to the provider that records every request (method, path, arrival time)."""

    owner_attr = "proxy"
    thread_name = "oidc-proxy"

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(TrackingHTTPServer, _ProxyHandler, host, port)
        self.target_host = target_host
        self.target_port = target_port
        self._lock = threading.Lock()
        self._log: list[tuple[float, str, str]] = []
        self._failures: list[tuple[float, str]] = []

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self._log.append((time.monotonic(), method, path))

    def _record_failure(self, path: str) -> None:
        with self._lock:
            self._failures.append((time.monotonic(), path))

    def times(self, path: str, since: float = 0.0) -> list[float]:
        with self._lock:
            return [t for t, _, p in self._log if p == path and t >= since]

    def count(self, path: str, since: float = 0.0) -> int:
        return len(self.times(path, since))

    def requests(self) -> list[tuple[float, str, str]]:
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        with self._lock:
            self._log.clear()
            self._failures.clear()

    def refuse(self) -> None:
        """Stop listening but keep the port bound: connections are refused."""
        self.stop()
        self.bind()


# -- provider + proxy ----------------------------------------------------------------------


class Idp:
    """A provider and the counting proxy Envoy reaches it through."""

    def __init__(self, workdir: Path | str, *, config: Mapping[str, Any] | None = None, keyset: str = "k1",
                 name: str = "oidc") -> None:
        self.provider = OidcProvider(Path(workdir), config=config, keyset=keyset, name=name)
        self.proxy: CountingProxy | None = None

    def start(self, *, provider_up: bool = True) -> "Idp":
        """Start the provider (to learn its port and create its keys) and the proxy; with
        `provider_up=False` the provider is stopped again and the proxy refuses connections:
        an IdP that is down when Envoy starts."""
        self.provider.start()
        self.proxy = CountingProxy(self.provider.host, self.provider.port).start()
        if not provider_up:
            self.down(refuse=True)
        return self

    def up(self, keyset: str | None = None) -> "Idp":
        if not self.provider.running:
            self.provider.start(keyset)
        elif keyset is not None and keyset != self.provider.keyset:
            self.provider.restart(keyset)
        assert self.proxy is not None
        if not self.proxy.running:
            self.proxy.start()
        return self

    def down(self, *, refuse: bool = False) -> None:
        """Stop the provider. The proxy then answers 502 (and still counts), or with
        `refuse=True` stops listening too (connections refused)."""
        self.provider.stop()
        if refuse and self.proxy is not None:
            self.proxy.refuse()

    def rotate(self, keyset: str) -> "Idp":
        """Restart the provider with another key set (its old keys are gone)."""
        self.provider.restart(keyset)
        return self

    def stop(self) -> None:
        self.provider.stop()
        if self.proxy is not None:
            self.proxy.stop()

    @property
    def clusters(self) -> dict[str, tuple[str, int]]:
        """For `Scenario(clusters=...)`: the cluster named by the provider's authority, whose
        endpoint is the proxy."""
        assert self.proxy is not None
        return {self.provider.authority: (self.proxy.host, self.proxy.port)}

    def fetches(self, since: float = 0.0) -> tuple[int, int]:
        """(discovery document requests, JWKS requests) the filter made since `since`."""
        assert self.proxy is not None
        return self.proxy.count(DISCOVERY_PATH, since), self.proxy.count(JWKS_PATH, since)


class Idps:
    """Creates `Idp`s under one directory and stops them all at teardown (a fixture's body)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._idps: list[Idp] = []

    def new(self, name: str = "oidc", *, provider_up: bool = True, **kwargs: Any) -> Idp:
        idp = Idp(self.root / f"{name}-{len(self._idps)}", name=name, **kwargs)
        self._idps.append(idp)
        try:
            return idp.start(provider_up=provider_up)
        except Exception:
            idp.stop()
            raise

    def close(self) -> None:
        for idp in self._idps:
            idp.stop()

    def live(self) -> list[Idp]:
        return list(self._idps)
