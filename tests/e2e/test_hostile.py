"""The hostile-token corpus (`tests/e2e/hostile_corpus.py`), end to end through one Envoy.

One Envoy for the module (`--concurrency 2`): plugin config `{"public_key_url": <jwks>,
"audience": "api://llm"}`; the JWKS holds rsa-1 (RS256, with `x5c`), rsa-any (RSA, no `alg`),
ec-1 (ES256) and ed-1 (EdDSA).  An attacker server on loopback serves the attacker's JWKS at
every path and counts requests; it has an Envoy cluster like a JWKS server, so a filter that
followed a token's `jku`/`x5u` could reach it.

Every corpus case must get 401 with LiteLLM's error envelope and never reach the upstream;
the reason text is asserted only for the canonical cases (alg none, bit-flipped signature,
expired, nbf/iat in the future).  Then the whole corpus goes out concurrently three times, and
the filter must still be alive and correct, with nothing alarming and no token text in its log.
"""

from __future__ import annotations

import hashlib

import json
import os
import re
import threading
import urllib.request
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import hostile_corpus as hc
from checks import BAD_SIGNATURE, Reply, assert_error, assert_forwarded

AUDIENCE = hc.DEFAULT_AUDIENCE
NAMES = hc.case_names()
BURST_ROUNDS = 3
BURST_WORKERS = 8
# What a crashed or trapped filter leaves in Envoy's log.
ALARMS = re.compile(r"panic|wasm trap|Function: proxy_on_\w+ failed", re.IGNORECASE)


# -- the attacker's key server ------------------------------------------------------------------


class AttackerServer:
    """Loopback HTTP server that answers every GET with the attacker's JWKS and counts requests."""

    def __init__(self, body: bytes, host: str = "127.0.0.1") -> None:
        self.host = host
        self.body = body
        self._lock = threading.Lock()
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                with server._lock:
                    server.paths.append(self.path)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            do_POST = do_HEAD = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=f"attacker-{self.port}")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.paths)

    def reset(self) -> None:
        with self._lock:
            self.paths.clear()

    def start(self) -> "AttackerServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys():
    return hc.Keys.generate()


@pytest.fixture(scope="module")
def attacker(keys):
    server = AttackerServer(json.dumps(keys.attacker_jwks()).encode()).start()
    with urllib.request.urlopen(server.url + "/.well-known/jwks.json", timeout=2) as resp:
        assert resp.status == 200  # the server works, so "0 requests" below means something
    server.reset()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ctx(keys, attacker):
    return hc.Context(keys, audience=AUDIENCE, attacker_url=attacker.url)


@pytest.fixture(scope="module")
def corpus(ctx) -> dict[str, hc.Case]:
    cases = hc.build(ctx)
    assert list(cases) == NAMES
    hc.corpus_size_check(cases)
    return cases


@pytest.fixture(scope="module")
def idp(module_idps, keys):
    server = module_idps.new()
    server.set_jwks(keys.jwks())
    return server


@pytest.fixture(scope="module")
def proxy(module_envoys, idp, attacker):
    return module_envoys.scenario(
        "hostile", jwks=[idp, attacker], concurrency=2,
        plugin_config={"public_key_url": idp.jwks_url, "audience": AUDIENCE},
    )


@pytest.fixture(scope="module")
def sent() -> set[str]:
    """Names of the cases that went through Envoy at least once in this module."""
    return set()


# -- sending and checking ------------------------------------------------------------------------


def send_case(proxy, case: hc.Case) -> Reply:
    if case.authorization is not None:
        return proxy.request_raw([("authorization", value) for value in case.authorization])
    return proxy.request(case.token)


def assert_refused(reply: Reply, case: hc.Case) -> None:
    """The case's `Expect`: LiteLLM's envelope, 401 (or Envoy's own 400 where the codec may
    refuse first), never the upstream, and no injected response header."""
    expect = case.expect
    if expect.codec_may_refuse and reply.status == 400 and "www-authenticate" not in reply.headers:
        assert not reply.upstream_copies(), f"the upstream received {case.name}"
        return
    assert_error(reply, expect.status, expect.err_type, message=expect.message, prefix=expect.prefix)
    for name, value in reply.headers.items():
        assert not any(ch in value for ch in "\r\n\0"), f"{case.name}: control character in {name}: {value!r}"
        assert name.lower() not in case.forbid_response_headers, f"{case.name}: injected header {name}: {value!r}"
        for probe in case.forbid_in_response_headers:
            assert probe not in value, f"{case.name}: {probe!r} in response header {name}: {value!r}"


def ensure_sent(proxy, corpus: dict[str, hc.Case], sent: set[str], names: list[str] | None = None) -> None:
    """Send the cases not yet sent (checking them is the per-case test's job), so a test run
    on its own still has the whole corpus behind it."""
    for name in names or list(corpus):
        if name not in sent:
            sent.add(name)
            send_case(proxy, corpus[name])


def alarms(log: str) -> list[str]:
    return [line for line in log.splitlines() if ALARMS.search(line)]


# -- the corpus, one case at a time ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_hostile_token_is_refused(proxy, corpus, sent, name):
    case = corpus[name]
    sent.add(name)
    assert_refused(send_case(proxy, case), case)


def test_key_urls_in_tokens_are_never_fetched(proxy, corpus, sent, attacker):
    injection = [name for name, case in corpus.items() if case.group == "injection"]
    assert any(name.startswith("jku_") for name in injection) and any(name.startswith("x5u_") for name in injection)
    ensure_sent(proxy, corpus, sent, injection)
    time.sleep(0.3)  # a fetch the filter started would have arrived by now
    assert attacker.count == 0, f"the filter fetched attacker URLs: {attacker.paths}"


# -- everything at once -----------------------------------------------------------------------------


def test_corpus_burst_leaves_the_filter_alive_and_correct(proxy, corpus, sent, ctx, attacker):
    envoy = proxy.envoy
    pid = envoy.proc.pid
    ensure_sent(proxy, corpus, sent)
    work = [case for _ in range(BURST_ROUNDS) for case in corpus.values()]

    def one(case: hc.Case) -> str | None:
        try:
            assert_refused(send_case(proxy, case), case)
        except AssertionError as exc:
            return f"{case.name}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a transport error is a failure too
            return f"{case.name}: {type(exc).__name__}: {exc}"
        return None

    with ThreadPoolExecutor(max_workers=BURST_WORKERS) as pool:
        failures = [f for f in pool.map(one, work) if f]
    assert not failures, f"{len(failures)} of {len(work)} burst requests misbehaved:\n" + "\n".join(failures[:20])

    for alg, token in hc.valid_tokens(ctx).items():
        assert_forwarded(proxy.request(token), sub=f"ok-{alg.lower()}")
    forged = corpus["sig_rs256_bitflip_last_byte"].token
    assert_error(proxy.request(forged), 401, "auth_error", prefix=BAD_SIGNATURE)

    assert envoy.poll() is None, f"envoy (pid {pid}) exited with {envoy.poll()}"
    os.kill(pid, 0)  # still there
    log = envoy.log_text()
    assert not alarms(log), "\n".join(alarms(log)[:20])
    assert attacker.count == 0, f"the filter fetched attacker URLs: {attacker.paths}"


# -- the log --------------------------------------------------------------------------------------


def test_log_holds_no_token_material(proxy, corpus, sent, ctx):
    envoy = proxy.envoy
    ensure_sent(proxy, corpus, sent)
    time.sleep(0.25)  # two log flush intervals
    log = envoy.log_path.read_text(errors="replace") + envoy.output_path.read_text(errors="replace")
    assert "decision=deny reason=" in log, "no debug lines from the filter: is wasm:debug logging on?"
    # Tokens are named by the first 8 hex digits of their SHA-256 instead.
    named = [t for case in corpus.values() for t in case.texts()
             if f"token={hashlib.sha256(t.encode()).hexdigest()[:8]}" in log]
    assert named, "denial lines should name tokens by their short hash"
    leaks = []
    tokens = [text for case in corpus.values() for text in case.texts()] + list(hc.valid_tokens(ctx).values())
    for token in tokens:
        if len(token) > 40 and token in log:
            leaks.append(f"whole token {token[:24]}…")
            continue
        parts = token.split(".")
        for label, segment in (("payload", parts[1] if len(parts) > 2 else ""), ("signature", parts[-1])):
            if len(segment) > 40 and (segment[:41] in log or segment[-41:] in log):
                leaks.append(f"{label} segment {segment[:24]}…")
    assert not leaks, f"{len(leaks)} token segments in Envoy's log, e.g. {leaks[:5]}"
    assert not alarms(log), "\n".join(alarms(log)[:20])


# -- beyond the 401 contract -----------------------------------------------------------------------


@pytest.mark.parametrize("empty_first", [False, True], ids=["valid_then_empty", "empty_then_valid"])
def test_empty_second_authorization_header_cannot_split_filter_and_upstream(proxy, ctx, empty_first):
    """Envoy drops an empty `Authorization` line, so only one credential exists: refused, or
    forwarded with exactly the credential the filter verified (never a second one upstream)."""
    valid = f"Bearer {ctx.keys.rsa.sign(ctx.claims())}"
    lines = [("authorization", ""), ("authorization", valid)]
    reply = proxy.request_raw(lines if empty_first else lines[::-1])
    if reply.status == 401:
        assert_error(reply, 401, "auth_error")
        return
    copies = reply.upstream_copies()
    assert reply.status == 200 and len(copies) == 1, f"expected 401 or 200, got {reply!r}"
    assert copies[0]["headers"]["authorization"] == valid, copies[0]["headers"]


INJECTING_SUBS = {
    "crlf_role": "alice\r\nx-litellm-user-role: proxy_admin",
    "lf_header": "alice\nx-injected: 1",
    "nul": "alice\u0000admin",
}


@pytest.mark.parametrize("sub", INJECTING_SUBS.values(), ids=INJECTING_SUBS.keys())
def test_control_characters_in_sub_cannot_inject_upstream_headers(proxy, ctx, sub):
    """A correctly signed token whose `sub` carries CR/LF/NUL: whatever the answer, nothing
    reaches the upstream with a split header or a raised role."""
    reply = proxy.request(ctx.keys.rsa.sign(ctx.claims(sub)))
    for copy in reply.upstream_copies():
        headers = copy["headers"]
        assert "x-injected" not in headers, headers
        assert headers.get("x-litellm-user-role") == "internal_user", headers
        assert not any(ch in headers.get("x-litellm-user-id", "") for ch in "\r\n\x00"), headers


@pytest.mark.parametrize("sub", INJECTING_SUBS.values(), ids=INJECTING_SUBS.keys())
def test_control_characters_in_sub_are_refused_by_the_filter(proxy, ctx, sub):
    """Such a `sub` cannot become `x-litellm-user-id`; the filter must say so itself (401 with
    LiteLLM's envelope), not hand Envoy a header value it then refuses with a bare 503."""
    reply = proxy.request(ctx.keys.rsa.sign(ctx.claims(sub)))
    assert_error(reply, 401, "auth_error")
