#!/usr/bin/env python3
"""Soak: a million mixed requests through a real Envoy (`--concurrency 2`) running the built
filter, every decision checked, Envoy's memory watched, the Wasm VMs watched.

    .venv/bin/python bench/soak.py [--requests 1000000] [--quick] [--clients 3]
                                   [--connections 8] [--rss-bound-mib 24] [--output bench/SOAK.md]

What runs (all on loopback):
  * the demo IdP (`tests/servers/demo_idp.py`) serving the JWKS, refreshed every `public_key_ttl` = 60 s;
  * a LiteLLM-shaped record source (`tests/servers/record_source.py`) holding the teams, refreshed
    every `ttl` = 30 s, unknown teams re-asked every `negative_ttl` = 10 s;
  * an upstream Envoy answering every request itself (`direct_response`) and echoing the
    identity the filter forwarded (`x-echo-user`, `x-echo-team`) — the check that a 200 carries
    the identity of *its* token and no other;
  * the Envoy under test: `--concurrency 2`, the filter (a copy of the .wasm taken at start),
    `max_body_bytes` 8192, team ids from the `team_id` claim looked up at the source;
  * client processes (`--clients`), each keeping `--connections` keep-alive HTTP/1.1
    connections busy; they build every request up front and check every response.

Request categories (weights in `CATEGORIES`) and the decision each must get:
  valid_team    POST chat, one of ~6000 team tokens (more than the 4096-entry token cache)  200, its sub + team
  valid_admin   GET /key/info, a few hot admin-scope tokens (no team needed)            200, its sub
  expired       exp a minute ago                                                        401 expired
  forged        signed by an impostor key under the published kid                        401 bad_signature
  unknown_team  a team the source does not know (404, cached negative_ttl)              401 denied
  model_denied  a known team asking for a model it may not use                          401 forbidden_model
  oversize      a valid team token with a 12 KiB body (> max_body_bytes)                413 body_too_large
  no_token      no Authorization header                                                 401 missing_token
  public        GET /health/liveliness without a token                                  200, no identity
A denial must also carry the `x-llm-jwt-auth-reason` header and LiteLLM's error `type`; at the
end the filter's own counters (`requests_allowed`, `requests_public`, `requests_denied.<reason>`)
must have moved by exactly what the clients saw.

Pass/fail: every response must have its expected decision (zero wrong decisions, zero
transport errors), Envoy's RSS at the end may exceed the RSS after warm-up (the first
`--warmup` share of the requests) by at most `--rss-bound-mib`, Envoy's V8 VM count must
not change after warm-up, and the Envoy log must have no Wasm failure line (a VM that traps
or panics logs `Function: proxy_on_... failed` / `Wasm VM failed`). Speed never fails the run.

The RSS bound (default 24 MiB): everything the filter keeps is bounded — the verified-token
cache (4096 tokens per worker, filled during warm-up since the run cycles ~6000 valid
tokens), the JWKS and the ~60 records in shared data — so after warm-up RSS should only move
by allocator noise. A leak of 28 bytes per request over the 900,000 requests after warm-up
already exceeds 24 MiB.

Exit status: 0 pass, 1 a check failed (the report is still written), 2 setup error.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib.util
import json
import multiprocessing
import os
import random
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests" / "servers"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import harness  # noqa: E402
import jwt_fixtures as jf  # noqa: E402
from demo_idp import IdPServer  # noqa: E402
from record_source import RecordSource  # noqa: E402


def _load_bench():
    """bench/run.py's token minting and sized chat bodies (same shapes as the benchmark)."""
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["bench_run"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


MASTER_KEY = "sk-master"
MAX_BODY_BYTES = 8192
TEAMS = [f"soak-team-{i}" for i in range(4)]
TEAM_MODELS = ["gpt-4o", "gpt-4o-mini"]
DEFAULT_RSS_BOUND_MIB = 24
RSS_INTERVAL = 1.0
# Log lines that mean a VM failed (trap, panic, failed callback, failed (re)load).
CRASH_PATTERNS = re.compile(
    r"Function: proxy_on_\w+ failed|Wasm VM failed|panicked|wasm trap|Plugin .* failed to load|"
    r"Failed to configure|unreachable|stack overflow|out of bounds|Caught [A-Z]\w+|Backtrace \(", re.IGNORECASE)

# name: (weight, method, path, status, reason header, error type)
CATEGORIES: dict[str, tuple[int, str, str, int, str | None, str | None]] = {
    "valid_team": (40, "POST", "/v1/chat/completions", 200, None, None),
    "valid_admin": (10, "GET", "/key/info", 200, None, None),
    "expired": (10, "GET", "/v1/models", 401, "expired", "expired_key"),
    "forged": (10, "POST", "/v1/chat/completions", 401, "bad_signature", "auth_error"),
    "unknown_team": (9, "POST", "/v1/chat/completions", 401, "denied", "auth_error"),
    "model_denied": (5, "POST", "/v1/chat/completions", 401, "forbidden_model", "team_model_access_denied"),
    "oversize": (8, "POST", "/v1/chat/completions", 413, "body_too_large", "invalid_request_error"),
    "no_token": (4, "GET", "/v1/models", 401, "missing_token", "auth_error"),
    "public": (4, "GET", "/health/liveliness", 200, None, None),
}


@dataclass
class Template:
    """One prebuilt request and the decision it must get."""

    category: str
    raw: bytes
    status: int
    reason: str | None
    err_type: str | None
    user: str = ""  # x-litellm-user-id the upstream must have seen ("" = none)
    team: str = ""


# -- requests ---------------------------------------------------------------------------------


def _request(method: str, path: str, token: str | None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: soak", "user-agent: llm-jwt-auth-soak"]
    if token is not None:
        lines.append(f"authorization: Bearer {token}")
    if method == "POST":
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def build_templates(key: jf.SigningKey, bench: Any, *, team_tokens: int,
                    mint_workers: int) -> dict[str, list[Template]]:
    small = bench.chat_body(600, "gpt-4o")
    denied_body = bench.chat_body(600, "o1")
    big = bench.chat_body(12 * 1024, "gpt-4o")
    out: dict[str, list[Template]] = {name: [] for name in CATEGORIES}

    def add(name: str, token: str | None, body: bytes = b"", user: str = "", team: str = "") -> None:
        _, method, path, status, reason, err_type = CATEGORIES[name]
        out[name].append(Template(name, _request(method, path, token, body if method == "POST" else b""),
                                  status, reason, err_type, user, team))

    per_team = max(1, team_tokens // len(TEAMS))
    for team in TEAMS:
        prefix = f"soak-{team}"
        for i, token in enumerate(bench.mint_many(key, per_team, prefix, {"team_id": team}, workers=mint_workers)):
            add("valid_team", token, small, f"{prefix}-{i}", team)
        for i in range(8):
            sub = f"soak-denied-{team}-{i}"
            add("model_denied", key.sign(jf.claims(sub, exp_in=12 * 3600, team_id=team)), denied_body)
            sub = f"soak-big-{team}-{i}"
            add("oversize", key.sign(jf.claims(sub, exp_in=12 * 3600, team_id=team)), big)
    for i in range(16):
        sub = f"soak-admin-{i}"
        add("valid_admin", key.sign(jf.claims(sub, exp_in=12 * 3600, scope="litellm_proxy_admin")), user=sub)
    for i in range(200):
        add("expired", key.sign(jf.claims(f"soak-expired-{i}", exp_in=-60, iat_in=-3600)))
        add("forged", jf.forged_token(key, jf.claims(f"soak-forged-{i}", exp_in=12 * 3600)), small)
    for i in range(50):
        add("unknown_team", key.sign(jf.claims(f"soak-ghost-{i}", exp_in=12 * 3600, team_id=f"ghost-team-{i}")),
            small)
    add("no_token", None)
    add("public", None)
    return out


# -- the client -------------------------------------------------------------------------------


class _Conn:
    __slots__ = ("sock", "buf", "pending", "host", "port")

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.pending: Template | None = None

    def open(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.buf.clear()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


def _parse(buf: bytearray) -> tuple[int, dict[str, str], bytes, int] | None:
    """(status, headers, body, bytes consumed) once a whole response is in `buf`."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(head[0][9:12])
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", ""):
        raise ValueError("chunked response (the soak expects content-length)")
    length = int(headers.get("content-length", "0"))
    total = end + 4 + length
    if len(buf) < total:
        return None
    return status, headers, bytes(buf[end + 4:total]), total


def _check(t: Template, status: int, headers: dict[str, str], body: bytes) -> str | None:
    """None if the response is the expected decision, else what is wrong."""
    if status != t.status:
        return f"status {status}, expected {t.status}"
    if t.status == 200:
        if headers.get("x-soak-upstream") != "1":
            return "200 not from the upstream"
        user, team = headers.get("x-echo-user", ""), headers.get("x-echo-team", "")
        if user != t.user or team != t.team:
            return f"upstream saw user={user!r} team={team!r}, expected {t.user!r} {t.team!r}"
        return None
    reason = headers.get("x-llm-jwt-auth-reason")
    if reason != t.reason:
        return f"reason {reason!r}, expected {t.reason!r}"
    if headers.get("x-soak-upstream"):
        return "a denial reached the upstream"
    try:
        err_type = json.loads(body)["error"]["type"]
    except (ValueError, KeyError, TypeError):
        return f"not LiteLLM's error envelope: {body[:200]!r}"
    if err_type != t.err_type:
        return f"error type {err_type!r}, expected {t.err_type!r}"
    return None


def client_main(wid: int, port: int, templates: dict[str, list[Template]], requests: int, connections: int,
                seed: int, only: list[str], progress: Any, results: Any) -> None:
    """One client process: `requests` requests over `connections` keep-alive connections."""
    rng = random.Random(seed * 1000 + wid)
    names = [n for n in CATEGORIES if not only or n in only]
    weights = [CATEGORIES[n][0] for n in names]
    picks = rng.choices(names, weights=weights, k=requests)
    counts = {n: 0 for n in CATEGORIES}
    wrong = {n: 0 for n in CATEGORIES}
    samples: list[str] = []
    errors: list[str] = []
    reconnects = 0
    sel = selectors.DefaultSelector()
    conns = [_Conn("127.0.0.1", port) for _ in range(min(connections, requests))]
    sent = done = 0
    reported = 0
    started = time.monotonic()

    def send_next(c: _Conn) -> None:
        nonlocal sent
        name = picks[sent]
        sent += 1
        t = rng.choice(templates[name])
        c.pending = t
        assert c.sock is not None
        c.sock.sendall(t.raw)

    def reopen(c: _Conn) -> bool:
        """A fresh connection for `c`; False (connection retired) when Envoy is not accepting."""
        nonlocal reconnects
        if c.sock is not None:
            sel.unregister(c.sock)
        c.close()
        try:
            c.open()
        except OSError as exc:
            errors.append(f"cannot reconnect: {exc}")
            return False
        reconnects += 1
        sel.register(c.sock, selectors.EVENT_READ, c)  # type: ignore[arg-type]
        return True

    def retire(c: _Conn) -> None:
        nonlocal live
        if c.sock is not None:
            sel.unregister(c.sock)
        c.close()
        live -= 1

    live = len(conns)
    for c in conns:
        c.open()
        sel.register(c.sock, selectors.EVENT_READ, c)  # type: ignore[arg-type]
        send_next(c)
    while live:
        events = sel.select(timeout=30)
        if not events:
            errors.append(f"no response on any connection for 30 s ({done}/{requests} done)")
            break
        for key, _ in events:
            c: _Conn = key.data
            try:
                data = c.sock.recv(65536)  # type: ignore[union-attr]
            except OSError as exc:
                data, err = b"", exc
            else:
                err = None
            if not data:
                t = c.pending
                errors.append(f"connection closed before the response to a {t.category if t else '?'} request"
                              + (f" ({err})" if err else ""))
                if t is not None:
                    counts[t.category] += 1
                    done += 1
                c.pending = None
                if sent < requests and reopen(c):
                    send_next(c)
                else:
                    retire(c)
                continue
            c.buf += data
            try:
                parsed = _parse(c.buf)
            except ValueError as exc:
                errors.append(str(exc))
                parsed = None
                c.buf.clear()
            if parsed is None:
                continue
            status, headers, body, used = parsed
            del c.buf[:used]
            t = c.pending
            c.pending = None
            if t is None:
                errors.append(f"unsolicited response {status}")
                continue
            counts[t.category] += 1
            done += 1
            problem = _check(t, status, headers, body)
            if problem is not None:
                wrong[t.category] += 1
                if len(samples) < 20:
                    samples.append(f"{t.category}: {problem}; headers={headers}; body={body[:300]!r}")
            if done - reported >= 1000:
                with progress.get_lock():
                    progress.value += done - reported
                reported = done
            closing = "close" in headers.get("connection", "").lower()
            if sent < requests and (not closing or reopen(c)):
                send_next(c)
            else:
                retire(c)
    with progress.get_lock():
        progress.value += done - reported
    results.put({"wid": wid, "counts": counts, "wrong": wrong, "samples": samples, "errors": errors[:50],
                 "error_count": len(errors), "reconnects": reconnects, "done": done,
                 "seconds": time.monotonic() - started})


# -- Envoys -----------------------------------------------------------------------------------


class QuietEnvoy(harness.Envoy):
    """The harness's Envoy with the filter's log at info: at debug every denial is a log line,
    which over a million requests is the log, not the filter, being measured."""

    def command(self) -> list[str]:
        return ["wasm:info" if arg == "wasm:debug" else arg for arg in super().command()]


def upstream_bootstrap() -> dict:
    """An Envoy that answers everything itself and echoes the identity headers it received."""
    config = harness.render_bootstrap(upstream_port=1, plugin_config=None, wasm=None)
    listener = config["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
    route.pop("route")
    route["direct_response"] = {"status": 200, "body": {"inline_string": '{"object":"chat.completion"}'}}
    route["response_headers_to_add"] = [
        {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for k, v in (("x-soak-upstream", "1"), ("x-echo-user", "%REQ(x-litellm-user-id)%"),
                     ("x-echo-team", "%REQ(x-litellm-team-id)%"))]
    # Without a buffer, Envoy answers a POST before reading its body and closes the connection.
    hcm["http_filters"].insert(0, {
        "name": "envoy.filters.http.buffer",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                         "max_request_bytes": 1 << 20}})
    return config


def plugin_config(idp: IdPServer, source: RecordSource) -> dict:
    return {
        "public_key_url": idp.jwks_url,
        "max_body_bytes": MAX_BODY_BYTES,
        "record_source": {"type": "litellm", "url": source.url, "master_key": MASTER_KEY, "ttl": 30,
                          "negative_ttl": 10, "stale_ttl": 300, "timeout_ms": 2000},
        "general_settings": {"litellm_jwtauth": {"team_id_jwt_field": "team_id", "public_key_ttl": 60}},
    }


COUNTER_PREFIX = "wasmcustom.llm_jwt_auth."


def counter_for(category: str) -> str:
    """The filter's own counter that one request of `category` must move."""
    _, _, _, status, reason, _ = CATEGORIES[category]
    if reason is not None:
        return f"{COUNTER_PREFIX}requests_denied.{reason}"
    return COUNTER_PREFIX + ("requests_public" if category == "public" else "requests_allowed")


def filter_counters(envoy: harness.Envoy) -> dict[str, int]:
    return {k: v for k, v in envoy.stats(COUNTER_PREFIX).items() if v}


def counter_mismatch(before: dict[str, int], envoy: harness.Envoy, counts: dict[str, int]) -> dict[str, tuple[int, int]]:
    """{counter: (moved, expected)} where the filter counted otherwise than the clients saw.
    Counters are flushed on the filter's tick, so this polls for a few seconds."""
    expected: dict[str, int] = {}
    for name, n in counts.items():
        expected[counter_for(name)] = expected.get(counter_for(name), 0) + n
    deadline = time.monotonic() + 5
    while True:
        after = filter_counters(envoy)
        bad = {k: (after.get(k, 0) - before.get(k, 0), n) for k, n in expected.items()
               if after.get(k, 0) - before.get(k, 0) != n}
        if not bad or time.monotonic() > deadline:
            return bad
        time.sleep(0.2)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wasm_stats(envoy: harness.Envoy) -> dict[str, int]:
    return {k: v for k, v in envoy.stats().items() if k.startswith(("wasm.", "wasm_vm."))}


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Report:
    requests: int
    clients: int
    connections: int
    wasm: Path
    wasm_sha256: str
    envoy_version: str
    command: str = ""
    repo_head: str = ""
    only: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    wrong: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    rss: list[tuple[float, int, int]] = field(default_factory=list)  # (t, done, kib)
    rss_start: int = 0
    rss_warm: int = 0
    rss_end: int = 0
    rss_max: int = 0
    warmup_requests: int = 0
    rss_bound_mib: int = DEFAULT_RSS_BOUND_MIB
    wasm_warm: dict[str, int] = field(default_factory=dict)
    wasm_end: dict[str, int] = field(default_factory=dict)
    crash_lines: list[str] = field(default_factory=list)
    envoy_alive: bool = True
    source_requests: int = 0
    jwks_fetches: int = 0
    filter_stats: dict[str, int] = field(default_factory=dict)
    counter_mismatch: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def total_wrong(self) -> int:
        return sum(self.wrong.values())

    def vm_counts(self, stats: dict[str, int]) -> dict[str, int]:
        return {k: v for k, v in stats.items() if k.endswith((".created", ".active"))}

    def failures(self) -> list[str]:
        out = []
        if self.total != self.requests:
            out.append(f"{self.total} of {self.requests} requests answered")
        if self.total_wrong:
            out.append(f"{self.total_wrong} wrong decisions")
        if self.error_count:
            out.append(f"{self.error_count} transport errors")
        growth = self.rss_end - self.rss_warm
        if growth > self.rss_bound_mib * 1024:
            out.append(f"RSS grew {growth / 1024:.1f} MiB after warm-up (bound {self.rss_bound_mib} MiB)")
        if self.vm_counts(self.wasm_warm) != self.vm_counts(self.wasm_end):
            out.append(f"Wasm VMs changed after warm-up: {self.vm_counts(self.wasm_warm)} -> "
                       f"{self.vm_counts(self.wasm_end)}")
        if self.crash_lines:
            out.append(f"{len(self.crash_lines)} Wasm failure lines in the Envoy log")
        if not self.envoy_alive:
            out.append("Envoy exited during the run")
        elif self.counter_mismatch:
            out.append(f"the filter's counters disagree with the clients: {self.counter_mismatch}")
        return out

    def markdown(self, quick: bool) -> str:
        mib = lambda kib: f"{kib / 1024:.1f} MiB" if kib else "n/a (Envoy died first)"  # noqa: E731
        rate = self.total / self.seconds if self.seconds else 0.0
        verdict = "PASS" if not self.failures() else "FAIL: " + "; ".join(self.failures())
        lines = [
            "# Soak run" + (" (quick)" if quick else ""),
            "",
            f"Written by `{self.command}` on {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. "
            "What runs and what is checked: the docstring of `bench/soak.py`.",
            "",
            f"- **Verdict: {verdict}**",
            *([f"- Categories sent (`--only`): {', '.join(self.only)}"] if self.only else []),
            f"- Filter: `{self.wasm}` sha256 `{self.wasm_sha256[:16]}…` (repository at {self.repo_head}); "
            f"Envoy {self.envoy_version}, "
            "`--concurrency 2`; machine: "
            f"{os.cpu_count()} CPUs, shared with the clients, the upstream Envoy, the IdP and the record source",
            f"- Load: {self.clients} client processes × {self.connections} keep-alive connections; "
            f"{self.total:,} requests in {self.seconds:.0f} s = **{rate:,.0f} req/s**; "
            f"{self.reconnects:,} reconnects (Envoy closes the connection after refusing a request whose "
            "body it did not read)",
            f"- Dependencies during the run: {self.jwks_fetches} JWKS fetches, {self.source_requests} record-source "
            "requests",
            "",
            "| category | requests | expected | wrong |",
            "|---|---:|---|---:|",
        ]
        for name, (_, method, path, status, reason, err_type) in CATEGORIES.items():
            expected = f"{status}" + (f" `{reason}` / `{err_type}`" if reason else " from the upstream, identity checked")
            lines.append(f"| {name} ({method} {path}) | {self.counts.get(name, 0):,} | {expected} | "
                         f"{self.wrong.get(name, 0)} |")
        lines.append(f"| **total** | **{self.total:,}** | | **{self.total_wrong}** |")
        lines += [
            "",
            f"The RSS bound: the filter's caches are bounded and full after warm-up, so RSS should then only "
            f"move by allocator noise; {self.rss_bound_mib} MiB over the {self.requests - self.warmup_requests:,} "
            f"requests after warm-up is "
            f"{self.rss_bound_mib * 1024 * 1024 / max(1, self.requests - self.warmup_requests):.0f} bytes per request.",
            "",
            "| Envoy RSS | |",
            "|---|---:|",
            f"| at start (filter loaded, before traffic) | {mib(self.rss_start)} |",
            f"| after warm-up ({self.warmup_requests:,} requests) | {mib(self.rss_warm)} |",
            f"| end | {mib(self.rss_end)} |",
            f"| max during the run | {mib(self.rss_max)} |",
            f"| growth after warm-up (bound {self.rss_bound_mib} MiB) | "
            + (f"{(self.rss_end - self.rss_warm) / 1024:+.1f} MiB |" if self.rss_warm and self.rss_end else "n/a |"),
            "",
            f"- Transport errors: {self.error_count}; Wasm failure lines in the Envoy log: {len(self.crash_lines)}; "
            f"Envoy alive at the end: {'yes' if self.envoy_alive else 'NO'}; the filter's own counters "
            + ("agree with the clients' counts per category" if self.envoy_alive and not self.counter_mismatch
               else f"DISAGREE: {self.counter_mismatch}" if self.envoy_alive else "not read"),
            f"- Wasm VM stats after warm-up: `{self.vm_counts(self.wasm_warm)}`; end: `{self.vm_counts(self.wasm_end)}`",
        ]
        if self.filter_stats:
            lines.append("- Filter counters at the end: " + ", ".join(
                f"`{k}` {v:,}" for k, v in sorted(self.filter_stats.items())))
        if self.rss:
            lines += ["", "RSS samples (requests done → MiB), every ~10% of the run:", "", "```"]
            step = max(1, len(self.rss) // 10)
            for t, done, kib in self.rss[::step] + ([self.rss[-1]] if (len(self.rss) - 1) % step else []):
                lines.append(f"{t:7.1f} s  {done:>9,}  {kib / 1024:7.1f}")
            lines.append("```")
        for title, items in (("Wrong decisions (first 20)", self.samples), ("Transport errors (first 50)", self.errors),
                             ("Wasm failure lines", self.crash_lines[:20])):
            if items:
                lines += ["", f"### {title}", "", "```", *items, "```"]
        return "\n".join(lines) + "\n"


def preflight(envoy: harness.Envoy, templates: dict[str, list[Template]]) -> list[str]:
    """One request per category, sequentially: a wrong expectation shows here, not after a million."""
    problems = []
    for name, items in templates.items():
        t = items[0]
        deadline = time.monotonic() + 10
        while True:
            with socket.create_connection(("127.0.0.1", envoy.listener_port), timeout=10) as sock:
                sock.sendall(t.raw)
                buf = bytearray()
                parsed = None
                while parsed is None:
                    data = sock.recv(65536)
                    if not data:
                        break
                    buf += data
                    parsed = _parse(buf)
            if parsed is None:
                problem = "connection closed without a response"
            else:
                problem = _check(t, parsed[0], parsed[1], parsed[2])
            # The first requests may wait for the JWKS / records to load (503 while they fail).
            if problem is None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if problem:
            problems.append(f"{name}: {problem}" + (f"; headers={parsed[1]} body={parsed[2][:300]!r}" if parsed else ""))
    return problems


def run(args: argparse.Namespace) -> int:
    wasm_src = harness.require_wasm()
    workdir = Path(tempfile.mkdtemp(prefix="llm-jwt-auth-soak-"))
    wasm = workdir / "llm_jwt_auth.wasm"
    shutil.copyfile(wasm_src, wasm)  # a rebuild during the run cannot change what is measured
    wasm_sha = hashlib.sha256(wasm.read_bytes()).hexdigest()
    envoy_bin = harness.find_envoy()
    version = _envoy_version(envoy_bin)

    bench = _load_bench()
    key = jf.generate_key("RS256", "soak-rs256")
    print(f"soak: minting tokens ({args.team_tokens} team tokens)...", flush=True)
    templates = build_templates(key, bench, team_tokens=args.team_tokens, mint_workers=os.cpu_count() or 1)

    idp = IdPServer([key]).start()
    source = RecordSource(master_key=MASTER_KEY).start()
    for team in TEAMS:
        source.put_team(team, models=TEAM_MODELS)
    upstream = QuietEnvoy(upstream_bootstrap(), name="soak-upstream", concurrency=1, workdir=workdir / "upstream")
    envoy: harness.Envoy | None = None
    try:
        upstream.start()
        assert upstream.listener_port is not None
        config = harness.render_bootstrap(
            upstream_port=upstream.listener_port, plugin_config=plugin_config(idp, source), wasm=wasm,
            jwks_clusters={idp.authority: (idp.host, idp.port), source.authority: (source.host, source.port)})
        envoy = QuietEnvoy(config, name="soak", concurrency=2, workdir=workdir / "envoy")
        envoy.start()
        assert envoy.proc is not None and envoy.listener_port is not None
        pid = envoy.proc.pid
        report = Report(requests=args.requests, clients=args.clients, connections=args.connections,
                        wasm=wasm_src.relative_to(REPO) if wasm_src.is_relative_to(REPO) else wasm_src,
                        wasm_sha256=wasm_sha, envoy_version=version, rss_bound_mib=args.rss_bound_mib,
                        command=" ".join(["bench/soak.py", *sys.argv[1:]]), repo_head=_repo_head(), only=args.only)
        report.rss_start = rss_kib(pid)
        problems = preflight(envoy, templates)
        if problems:
            print("soak: setup error, a category does not get its expected decision:\n  " + "\n  ".join(problems),
                  file=sys.stderr)
            return 2
        report.warmup_requests = int(args.requests * args.warmup)
        time.sleep(0.3)  # the preflight's counts flushed (tick)
        counters_before = filter_counters(envoy)
        _drive(args, envoy, templates, report)
        report.envoy_alive = envoy.poll() is None
        if report.envoy_alive:
            report.wasm_end = wasm_stats(envoy)
            report.counter_mismatch = counter_mismatch(counters_before, envoy, report.counts)
            report.filter_stats = filter_counters(envoy)
        report.crash_lines = [line for line in envoy.log_text().splitlines() if CRASH_PATTERNS.search(line)]
        report.source_requests = len(source.requests)
        report.jwks_fetches = idp.fetch_count
    finally:
        if envoy is not None:
            envoy.stop()
        upstream.stop()
        idp.stop()
        source.stop()

    out = Path(args.output) if args.output else workdir / "SOAK.md"
    out.write_text(report.markdown(args.quick))
    _print_summary(report)
    failures = report.failures()
    if failures or args.keep_workdir or out.parent == workdir:
        print(f"soak: report written to {out}; Envoy logs in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)  # a pass needs no logs; a failure keeps them
        print(f"soak: report written to {out}")
    if failures:
        print("soak: FAIL: " + "; ".join(failures), file=sys.stderr)
        return 1
    print("soak: PASS")
    return 0


def _drive(args: argparse.Namespace, envoy: harness.Envoy, templates: dict[str, list[Template]],
           report: Report) -> None:
    ctx = multiprocessing.get_context("spawn")
    progress = ctx.Value("q", 0)
    results = ctx.Queue()
    share, extra = divmod(args.requests, args.clients)
    procs = [ctx.Process(target=client_main, name=f"soak-client-{w}",
                         args=(w, envoy.listener_port, templates, share + (w < extra), args.connections, args.seed,
                               args.only, progress, results))
             for w in range(args.clients)]
    assert envoy.proc is not None
    pid = envoy.proc.pid
    started = time.monotonic()
    for p in procs:
        p.start()
    gathered: list[dict] = []
    warm_done = False
    died_at: float | None = None
    next_print = started + 10
    try:
        while len(gathered) < len(procs):
            try:
                gathered.append(results.get(timeout=RSS_INTERVAL))
            except Exception:  # noqa: BLE001 - queue.Empty: time to sample
                pass
            now = time.monotonic()
            done = progress.value
            if envoy.poll() is not None:
                # The clients notice (refused reconnects) and report what they saw; give them a moment.
                if died_at is None:
                    died_at = now
                    report.errors.append(f"Envoy exited with status {envoy.poll()} after ~{done:,} requests")
                    report.error_count += 1
                if now - died_at > 30:
                    break
                continue
            kib = rss_kib(pid)
            report.rss.append((now - started, done, kib))
            report.rss_max = max(report.rss_max, kib)
            if not warm_done and done >= report.warmup_requests:
                warm_done = True
                report.rss_warm = kib
                report.wasm_warm = wasm_stats(envoy)
            if now >= next_print:
                next_print = now + 10
                rate = done / (now - started) if now > started else 0
                print(f"soak: {done:,}/{args.requests:,} requests, {rate:,.0f} req/s, RSS {kib / 1024:.1f} MiB",
                      flush=True)
            if all(not p.is_alive() for p in procs) and results.empty() and len(gathered) < len(procs):
                time.sleep(0.5)
                if results.empty():
                    report.errors.append("a client process died without reporting")
                    report.error_count += 1
                    break
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    report.seconds = time.monotonic() - started
    report.rss_end = rss_kib(pid) if envoy.poll() is None else 0
    if not warm_done:
        report.rss_warm = report.rss_end
        report.wasm_warm = wasm_stats(envoy) if envoy.poll() is None else {}
    for r in gathered:
        for name, n in r["counts"].items():
            report.counts[name] = report.counts.get(name, 0) + n
        for name, n in r["wrong"].items():
            report.wrong[name] = report.wrong.get(name, 0) + n
        report.samples += r["samples"]
        report.errors += r["errors"]
        report.error_count += r["error_count"]
        report.reconnects += r["reconnects"]


def _repo_head() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown commit"
    return f"`{head[:72]}`" if head else "unknown commit"


def _envoy_version(envoy_bin: str) -> str:
    try:
        out = subprocess.run([envoy_bin, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"version: \S+/(\d+\.\d+\.\d+)", out)
    return match.group(1) if match else out.strip()[:60]


def _print_summary(r: Report) -> None:
    rate = r.total / r.seconds if r.seconds else 0.0
    print(f"\n{'category':<14}{'requests':>11}{'wrong':>7}")
    for name in CATEGORIES:
        print(f"{name:<14}{r.counts.get(name, 0):>11,}{r.wrong.get(name, 0):>7}")
    print(f"{'total':<14}{r.total:>11,}{r.total_wrong:>7}")
    print(f"duration {r.seconds:.0f} s, {rate:,.0f} req/s, transport errors {r.error_count}, "
          f"reconnects {r.reconnects:,}")
    print(f"RSS start {r.rss_start / 1024:.1f} MiB, after warm-up {r.rss_warm / 1024:.1f} MiB, "
          f"end {r.rss_end / 1024:.1f} MiB, max {r.rss_max / 1024:.1f} MiB "
          f"(growth after warm-up {(r.rss_end - r.rss_warm) / 1024:+.1f} MiB, bound {r.rss_bound_mib} MiB)")
    print(f"Wasm VMs after warm-up {r.vm_counts(r.wasm_warm)}, end {r.vm_counts(r.wasm_end)}; "
          f"failure lines in the log: {len(r.crash_lines)}")
    for s in r.samples[:5]:
        print("  wrong:", s)
    for e in r.errors[:5]:
        print("  error:", e)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true",
                        help="20,000 requests; the report goes to the run's temp dir unless --output is given")
    parser.add_argument("--clients", type=int, default=3, help="client processes")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections per client")
    parser.add_argument("--warmup", type=float, default=0.1, help="share of the requests counted as warm-up")
    parser.add_argument("--rss-bound-mib", type=int, default=DEFAULT_RSS_BOUND_MIB,
                        help="allowed RSS growth from the end of warm-up to the end of the run")
    parser.add_argument("--team-tokens", type=int, default=6000, help="distinct valid team tokens")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep the temp dir (Envoy configs and logs) after a pass; a failure always keeps it")
    parser.add_argument("--only", type=lambda v: [c for c in v.split(",") if c], default=[],
                        help="comma-separated categories to send (default: all, weighted); for chasing a failure")
    parser.add_argument("--output", default=None, help="report (default bench/SOAK.md; --quick: the temp dir)")
    args = parser.parse_args(argv)
    unknown = [c for c in args.only if c not in CATEGORIES]
    if unknown:
        parser.error(f"unknown categories {unknown}; known: {', '.join(CATEGORIES)}")
    if args.quick:
        args.requests = min(args.requests, 20_000)
        args.team_tokens = min(args.team_tokens, 400)
    if args.output is None and not args.quick:
        args.output = str(REPO / "bench" / "SOAK.md")
    try:
        return run(args)
    except (harness.HarnessError, OSError) as exc:
        print(f"soak: setup error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
