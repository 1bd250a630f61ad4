"""The official OpenAI Python SDK (`openai`, tests/e2e/requirements-sdk.txt, `make sdk-deps`) as the
client: SDK → Envoy with the filter → a fake OpenAI-compatible backend (tests/servers/fake_openai.py).

Successes: chat completions plain and streamed (SSE chunks delivered one by one, usage chunk,
`[DONE]`), embeddings (the SDK's default base64 encoding), `models.list`, and the async client;
the SDK parses the answers, the backend sees the token, the `x-litellm-*` identity and the
body byte for byte as the SDK sent it.

Refusals: each of the filter's LiteLLM-shaped errors surfaces as the SDK's own exception class
for its status, with LiteLLM's message, type, param and code readable from it; the SDK does
not retry 4xx and does retry the 503 (honouring `Retry-After`), counted at the client and at
the filter. Missing credentials are caught by the SDK itself before anything is sent. A team's
rpm limit is LiteLLM's 429, raised as `RateLimitError` (more in test_rate_limits.py).

What the SDK does that a reader might not expect is asserted, not assumed (see `_status_error`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

import jwt_fixtures as jf
from checks import BAD_SIGNATURE, JWKS_UNAVAILABLE, NO_API_KEY, TOKEN_EXPIRED
from fake_openai import MODELS, STREAM_PIECES, FakeOpenAI, vector

import requests

try:
    import openai
    from openai.types import CreateEmbeddingResponse, Model
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
except ImportError as exc:  # every test fails with this message: nothing is skipped
    openai = None  # type: ignore[assignment]
    SDK_MISSING = f"the openai SDK is not installed in this venv ({exc}): run `make sdk-deps`"
else:
    SDK_MISSING = ""

WORKERS = 2
TIMEOUT = 10.0
PROMPT = "Say hello — grüße, ✓"  # non-ASCII: the UTF-8 body must arrive byte for byte
TEAM = "team-sdk"
TEAM_MODELS = ["gpt-4o-mini", "text-embedding-3-small"]
TEAMS = [
    {"team_id": TEAM, "team_alias": "SDK Team", "models": TEAM_MODELS},
    {"team_id": "team-broke", "models": ["gpt-4o-mini"], "max_budget": 10.0, "spend": 12.5},
    # Enforced (docs/rate-limits.md) and forwarded as x-litellm-team-rpm-limit.
    {"team_id": "team-rpm1", "models": ["gpt-4o-mini"], "rpm_limit": 1},
]
JWTAUTH = {
    "team_id_jwt_field": "team_id",
    "enforce_scope_based_access": True,
    "scope_mappings": [{"scope": "llm.chat", "models": ["gpt-4o-mini", "gpt-4o"]},
                       {"scope": "llm.embed", "models": ["text-embedding-3-small"]}],
}
SCOPES = "llm.chat llm.embed"
IDENTITY = {"x-litellm-user-id": "alice", "x-litellm-team-id": TEAM, "x-litellm-team-alias": "SDK Team",
            "x-litellm-user-role": "internal_user"}


def permitted_models() -> list[str]:
    """The backend's models a token of TEAM with SCOPES may call (test_model_list.py)."""
    scoped = {m for mapping in JWTAUTH["scope_mappings"] for m in mapping["models"]}
    return [m for m in MODELS if m in TEAM_MODELS and m in scoped]


def model_not_available(model: str) -> str:
    return (f"The requested model '{model}' is not available for this API key, or the model name is "
            "invalid. Check the models available to you and try again.")


def team_model_denied(models: list[str], model: str) -> str:
    allowed = "[" + ", ".join(repr(m) for m in models) + "]"
    return f"team not allowed to access model. This team can only access models={allowed}. Tried to access {model}"


@pytest.fixture(autouse=True)
def _sdk_installed() -> None:
    if SDK_MISSING:
        pytest.fail(SDK_MISSING, pytrace=False)


# -- servers and Envoys --------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend():
    server = FakeOpenAI().start()
    yield server
    server.stop()


# conftest's `Envoys` (taken from its fixture rather than imported: `conftest` is no importable
# module name under every pytest import mode) with the fake backend as Envoy's `upstream` cluster.


@pytest.fixture(scope="module")
def sdk_envoys(module_envoys, backend, tmp_path_factory):
    envoys = type(module_envoys)(backend, tmp_path_factory)
    yield envoys
    envoys.close()


@pytest.fixture()
def test_envoys(module_envoys, backend, tmp_path_factory):
    envoys = type(module_envoys)(backend, tmp_path_factory)
    yield envoys
    envoys.close()


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("sdk-rs256", "RS256")


@pytest.fixture(scope="module")
def idp(module_idps, key):
    return module_idps.new([key])


@pytest.fixture(scope="module")
def sign(key):
    """`sign(sub="alice", team_id=TEAM, scope=SCOPES, **claims)`: a valid RS256 token."""

    def mint(sub: str = "alice", *, team_id: str | None = TEAM, scope: str | None = SCOPES, **extra: Any) -> str:
        if team_id is not None:
            extra["team_id"] = team_id
        return key.sign(jf.claims(sub, scope=scope, **extra))

    return mint


@pytest.fixture(scope="module")
def gateway(sdk_envoys, idp):
    """The gateway most tests talk to: static teams, team_id_jwt_field, scope → model mappings."""
    return sdk_envoys.scenario("sdk-gateway", jwks=[idp], concurrency=WORKERS, plugin_config={
        "public_key_url": idp.jwks_url, "teams": TEAMS, "general_settings": {"litellm_jwtauth": JWTAUTH}})


@pytest.fixture(scope="module")
def idp_down(module_idps, key):
    """An IdP whose port is bound but never listens: every JWKS fetch is refused."""
    return module_idps.new([key], start=False)


@pytest.fixture(scope="module")
def dark_gateway(sdk_envoys, idp_down):
    return sdk_envoys.scenario("sdk-idp-down", jwks=[idp_down], concurrency=WORKERS,
                               plugin_config={"public_key_url": idp_down.jwks_url})


# -- the client ----------------------------------------------------------------------------


@dataclass
class SDK:
    """An `openai.OpenAI` / `openai.AsyncOpenAI` aimed at an Envoy (`base_url` = listener + `/v1`),
    tagging its requests with one `x-test-id` and keeping every request it put on the wire
    (an httpx request hook: headers, body bytes, time), retries included."""

    api: Any
    test_id: str
    sent: list[dict] = field(default_factory=list)

    def received(self, backend: FakeOpenAI) -> list[dict]:
        return backend.received(self.test_id)


def sdk(proxy, api_key: str, *, max_retries: int = 0, asynchronous: bool = False, **options: Any) -> SDK:
    test_id = uuid.uuid4().hex
    client = SDK(None, test_id)

    def record(request) -> None:
        client.sent.append({"method": request.method, "path": request.url.path, "headers": dict(request.headers),
                            "body": request.content, "time": time.monotonic()})

    if asynchronous:
        async def hook(request) -> None:
            record(request)

        http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [hook]})
        cls = openai.AsyncOpenAI
    else:
        http = openai.DefaultHttpxClient(event_hooks={"request": [record]})
        cls = openai.OpenAI
    headers = {"x-test-id": test_id, **options.pop("default_headers", {})}
    client.api = cls(api_key=api_key, base_url=proxy.url + "/v1", max_retries=max_retries, timeout=TIMEOUT,
                     default_headers=headers, http_client=http, **options)
    return client


def chat(client: SDK, model: str = "gpt-4o-mini", **kwargs: Any):
    return client.api.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}], **kwargs)


def assert_reached_backend(client: SDK, backend: FakeOpenAI, token: str, *, method: str, path: str,
                           identity: dict | None = None) -> dict:
    """Exactly one request reached the backend: the one the SDK sent (one attempt), with the token
    intact, exactly the expected `x-litellm-*` headers, the SDK's own headers kept and the body
    byte-identical."""
    assert len(client.sent) == 1, client.sent
    got = client.received(backend)
    assert len(got) == 1, f"backend saw {len(got)} copies: {got}"
    seen, sent = got[0], client.sent[0]
    assert (seen["method"], seen["path"]) == (method, path), seen
    assert seen["headers"].get("authorization") == f"Bearer {token}"
    litellm = {k: v for k, v in seen["headers"].items() if k.startswith("x-litellm-")}
    assert litellm == (IDENTITY if identity is None else identity), seen["headers"]
    assert seen["headers"].get("x-stainless-lang") == "python", "the SDK's own headers must pass"
    assert seen["headers"].get("user-agent", "").endswith(f"OpenAI/Python {openai.__version__}"), seen["headers"]
    assert seen["body"] == sent["body"], "the body must reach the backend byte for byte as the SDK sent it"
    return seen


def stat(proxy, name: str) -> int:
    return proxy.envoy.stats("wasmcustom.llm_jwt_auth.").get(f"wasmcustom.llm_jwt_auth.{name}", 0)


def stat_delta(proxy, name: str, before: int, expected: int, timeout: float = 3.0) -> int:
    """The counter's increase once it reached `expected` (the filter publishes every 100 ms) and
    stayed there a little longer, or whatever it is after `timeout`."""
    deadline = time.monotonic() + timeout
    while stat(proxy, name) - before < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    return stat(proxy, name) - before


def _status_error(exc_info, cls, status: int, err_type: str, message: str, *, param: str | None = None) -> Any:
    """The SDK raised `cls` (an APIStatusError) with LiteLLM's envelope readable from it. What the
    SDK makes of LiteLLM's body, asserted so that a change in the SDK shows:
    - `e.body` is the *inner* object (the SDK unwraps `{"error": {...}}`), so
      `e.body["message"]` is LiteLLM's message and `e.type` / `e.code` / `e.param` its fields
      (`code` stays LiteLLM's string, `"401"`);
    - `e.message` (= `str(e)`) is not LiteLLM's message alone: `Error code: <status> - <repr of
      the whole decoded body>` in SDK 1.x/2.x (the pinned one), `Error code: <status> - <message>`
      from 3.0 on."""
    exc = exc_info.value
    assert type(exc) is cls, f"expected {cls.__name__}, got {type(exc).__name__}: {exc}"
    assert isinstance(exc, openai.APIStatusError)
    assert exc.status_code == status
    assert exc.body == {"message": message, "type": err_type, "param": param, "code": str(status)}, exc.body
    assert (exc.type, exc.code, exc.param) == (err_type, str(status), param)
    envelope = exc.response.json()
    assert envelope == {"error": exc.body}
    detail = envelope if int(openai.__version__.split(".")[0]) < 3 else message
    assert exc.message == f"Error code: {status} - {detail}" == str(exc)
    assert message in exc.message
    assert exc.response.headers["content-type"].startswith("application/json")
    return exc


# ==========================================================================================
# Successes
# ==========================================================================================


def test_chat_completion_is_parsed_and_reaches_the_backend_intact(gateway, backend, sign):
    token = sign()
    client = sdk(gateway, token)
    reply = chat(client, temperature=0, max_tokens=20, user="end-user-1")
    assert isinstance(reply, ChatCompletion)
    assert reply.object == "chat.completion" and reply.model == "gpt-4o-mini"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == f"echo: {PROMPT}"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    seen = assert_reached_backend(client, backend, token, method="POST", path="/v1/chat/completions")
    body = json.loads(seen["body"])
    assert body["messages"] == [{"role": "user", "content": PROMPT}] and body["user"] == "end-user-1"
    assert PROMPT.encode() in seen["body"], "the SDK sends UTF-8 JSON, not \\u escapes: it must arrive as sent"


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage", "no-usage"])
def test_chat_stream_arrives_chunk_by_chunk_and_completes(gateway, backend, sign, include_usage):
    """The backend holds the stream after every event until the client has received it
    (lockstep): a filter or proxy buffering the answer would stall the backend."""
    token = sign()
    client = sdk(gateway, token)
    gate = backend.lockstep(client.test_id)
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = chat(client, stream=True, **options)
    assert isinstance(stream, openai.Stream)
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    chunks, arrived = [], []
    for chunk in stream:
        arrived.append(time.monotonic())
        chunks.append(chunk)
        gate.ack()
    assert gate.finished.wait(5), "the backend never finished the stream"
    assert gate.stalled == [], f"events {gate.stalled} were not delivered before the backend sent the next"
    # every event but [DONE] became one chunk, in order, each before the backend wrote the next
    assert len(chunks) == len(gate.sent) - 1 and gate.sent[-1][0] == "[DONE]"
    for i, (chunk, (data, _sent)) in enumerate(zip(chunks, gate.sent)):
        assert isinstance(chunk, ChatCompletionChunk)
        assert chunk.model_dump(mode="json", exclude_unset=True) == json.loads(data), i
        assert arrived[i] < gate.sent[i + 1][1], f"chunk {i} arrived after the backend wrote chunk {i + 1}"
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(content) == "".join(STREAM_PIECES)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    if include_usage:
        last = chunks[-1]
        assert last.choices == [] and last.usage is not None
        assert last.usage.completion_tokens == len("".join(STREAM_PIECES).split())
        assert all(c.usage is None for c in chunks[:-1])
    else:
        assert all(c.choices and c.usage is None for c in chunks)
    seen = assert_reached_backend(client, backend, token, method="POST", path="/v1/chat/completions")
    body = json.loads(seen["body"])
    assert body["stream"] is True
    assert body.get("stream_options") == ({"include_usage": True} if include_usage else None)


def test_lockstep_control_a_buffering_client_stalls_the_backend(gateway, backend, sign):
    """Control for the stream test: a client that reads the whole answer before acknowledging
    (what a buffering hop would do) leaves the backend waiting after every event, and the
    gate records it."""
    token = sign()
    test_id = uuid.uuid4().hex
    gate = backend.lockstep(test_id, timeout=0.1)
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    reply = requests.post(gateway.url + "/v1/chat/completions", data=body, timeout=TIMEOUT,
                          headers={"authorization": f"Bearer {token}", "content-type": "application/json",
                                   "x-test-id": test_id})
    assert reply.status_code == 200 and reply.text.endswith("data: [DONE]\n\n")
    assert len(gate.sent) == 1 + len(STREAM_PIECES) + 1 + 1  # role, pieces, finish, [DONE]
    assert gate.stalled == list(range(len(gate.sent) - 1))


@pytest.mark.parametrize("encoding", [None, "float"], ids=["sdk-default", "float"])
def test_embeddings_are_decoded(gateway, backend, sign, encoding):
    """Without `encoding_format` the SDK asks for base64 on its own (the body says so) and decodes
    the float32 vectors itself; with "float" the backend answers JSON numbers."""
    token = sign()
    client = sdk(gateway, token)
    texts = [PROMPT, "second input"]
    extra = {} if encoding is None else {"encoding_format": encoding}
    reply = client.api.embeddings.create(model="text-embedding-3-small", input=texts, dimensions=6, **extra)
    assert isinstance(reply, CreateEmbeddingResponse)
    assert [d.index for d in reply.data] == [0, 1]
    assert [list(d.embedding) for d in reply.data] == [vector(t, 6) for t in texts]
    assert reply.usage.total_tokens == sum(len(t.split()) for t in texts)
    seen = assert_reached_backend(client, backend, token, method="POST", path="/v1/embeddings")
    assert json.loads(seen["body"])["encoding_format"] == (encoding or "base64")


def test_models_list_is_a_get_with_the_identity(gateway, backend, sign):
    """The list shows what the caller may call: the team's models that its scopes map to."""
    token = sign()
    client = sdk(gateway, token)
    page = client.api.models.list()
    models = list(page)
    assert all(isinstance(m, Model) for m in models)
    assert [m.id for m in models] == permitted_models() == ["gpt-4o-mini", "text-embedding-3-small"]
    assert {m.owned_by for m in models} == {"fake-openai"}
    seen = assert_reached_backend(client, backend, token, method="GET", path="/v1/models")
    assert seen["body"] == b""


def test_async_client_concurrent_calls(gateway, backend, sign):
    """AsyncOpenAI: a chat, a lockstep stream, embeddings and models.list at once, then a refusal."""
    token = sign()
    clients = {name: sdk(gateway, token, asynchronous=True) for name in ("chat", "stream", "embed", "models")}
    clients["bad"] = sdk(gateway, jf.tamper_signature(token), asynchronous=True, max_retries=2)
    gate = backend.lockstep(clients["stream"].test_id)

    async def stream() -> list:
        chunks = []
        async for chunk in await chat(clients["stream"], stream=True, stream_options={"include_usage": True}):
            chunks.append(chunk)
            gate.ack()
        return chunks

    async def models() -> list:
        return [m async for m in clients["models"].api.models.list()]

    async def main():
        results = await asyncio.gather(
            chat(clients["chat"]), stream(),
            clients["embed"].api.embeddings.create(model="text-embedding-3-small", input="one"), models())
        with pytest.raises(openai.AuthenticationError) as refused:
            await chat(clients["bad"])
        for c in clients.values():
            await c.api.close()
        return results, refused

    (reply, chunks, embedding, listed), refused = asyncio.run(asyncio.wait_for(main(), 30))
    assert isinstance(reply, ChatCompletion) and reply.choices[0].message.content == f"echo: {PROMPT}"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(STREAM_PIECES)
    assert chunks[-1].usage is not None and gate.stalled == [] and gate.finished.is_set()
    assert isinstance(embedding, CreateEmbeddingResponse) and list(embedding.data[0].embedding) == vector("one")
    assert [m.id for m in listed] == permitted_models()
    for name, method, path in (("chat", "POST", "/v1/chat/completions"), ("stream", "POST", "/v1/chat/completions"),
                               ("embed", "POST", "/v1/embeddings"), ("models", "GET", "/v1/models")):
        seen = assert_reached_backend(clients[name], backend, token, method=method, path=path)
        assert seen["headers"].get("x-stainless-async", "").startswith("async:"), seen["headers"]
    _status_error(refused, openai.AuthenticationError, 401, "auth_error", BAD_SIGNATURE)
    assert len(clients["bad"].sent) == 1 and clients["bad"].received(backend) == []


# ==========================================================================================
# Refusals as the SDK's exception classes
# ==========================================================================================


def bad_token(kind: str, key, sign) -> str:
    if kind == "expired":
        return key.sign(jf.claims("alice", exp_in=-60, iat_in=-120, scope=SCOPES, team_id=TEAM))
    return jf.forged_token(key, jf.claims("alice", scope=SCOPES, team_id=TEAM))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind, message, err_type", [("expired", TOKEN_EXPIRED, "expired_key"),
                                                     ("forged", BAD_SIGNATURE, "auth_error")])
def test_bad_token_raises_authentication_error(gateway, backend, key, sign, kind, message, err_type, stream):
    """401 → AuthenticationError, raised by `create()` itself even with `stream=True` (the SDK
    checks the status before it builds a Stream); 4xx are not retried although max_retries=2."""
    client = sdk(gateway, bad_token(kind, key, sign), max_retries=2)
    with pytest.raises(openai.APIStatusError) as info:
        chat(client, stream=stream)
    exc = _status_error(info, openai.AuthenticationError, 401, err_type, message)
    assert exc.response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert len(client.sent) == 1, "the SDK must not retry a 401"
    assert client.received(backend) == []


def test_team_not_allowed_the_model_raises_authentication_error(gateway, backend, sign):
    """LiteLLM answers a team's model refusal with 401 `team_model_access_denied`, so the SDK
    raises AuthenticationError for a token that verified fine (the challenge says so: plain
    `Bearer`, no `invalid_token`); `e.param` is "model"."""
    before = stat(gateway, "requests_denied.forbidden_model")
    client = sdk(gateway, sign(), max_retries=2)
    with pytest.raises(openai.APIStatusError) as info:
        chat(client, model="gpt-4o")
    exc = _status_error(info, openai.AuthenticationError, 401, "team_model_access_denied",
                        team_model_denied(TEAM_MODELS, "gpt-4o"), param="model")
    assert exc.response.headers["www-authenticate"].strip() == "Bearer"
    assert len(client.sent) == 1 and client.received(backend) == []
    assert stat_delta(gateway, "requests_denied.forbidden_model", before, 1) == 1


def test_scope_mapped_model_refused_raises_permission_denied(gateway, backend, sign):
    """A token whose scopes map to no entry allowing the model: 403 → PermissionDeniedError."""
    client = sdk(gateway, sign(scope="llm.chat"), max_retries=2)
    with pytest.raises(openai.APIStatusError) as info:
        client.api.embeddings.create(model="text-embedding-3-small", input="x")
    exc = _status_error(info, openai.PermissionDeniedError, 403, "auth_error",
                        model_not_available("text-embedding-3-small"))
    assert exc.response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    assert len(client.sent) == 1 and client.received(backend) == []


def test_team_over_budget_raises_bad_request(gateway, backend, sign):
    client = sdk(gateway, sign(team_id="team-broke"), max_retries=2)
    with pytest.raises(openai.APIStatusError) as info:
        chat(client)
    exc = _status_error(info, openai.BadRequestError, 400, "budget_exceeded",
                        "Budget has been exceeded! Team=team-broke Current cost: 12.5, Max budget: 10.0")
    assert "www-authenticate" not in exc.response.headers
    assert len(client.sent) == 1 and client.received(backend) == []


@pytest.mark.parametrize("api_key", [None, ""], ids=["unset", "empty"])
def test_missing_api_key_is_refused_by_the_sdk_before_sending(gateway, backend, monkeypatch, api_key):
    """No key at all never reaches the filter: the SDK's constructor raises OpenAIError (not an
    APIStatusError / AuthenticationError), with OPENAI_API_KEY unset."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    before = len(backend.requests), stat(gateway, "requests_denied.missing_token")
    with pytest.raises(openai.OpenAIError) as info:
        openai.OpenAI(api_key=api_key, base_url=gateway.url + "/v1", max_retries=0)
    assert not isinstance(info.value, openai.APIError)
    assert "Missing credentials" in str(info.value)
    assert (len(backend.requests), stat(gateway, "requests_denied.missing_token")) == before


def test_request_without_authorization_raises_authentication_error(gateway, backend):
    """The SDK sends no Authorization only when a request says so (`extra_headers=
    {"Authorization": openai.Omit()}`; the same on the client's `default_headers` makes the SDK
    raise TypeError before sending). The filter's 401 `No api key passed in.` is then
    AuthenticationError, with a bare `Bearer` challenge."""
    omitted = {"Authorization": openai.Omit()}
    client = sdk(gateway, "placeholder-never-sent", max_retries=2, default_headers=omitted)
    with pytest.raises(TypeError, match="Could not resolve authentication method"):
        chat(client)
    assert client.sent == []
    client = sdk(gateway, "placeholder-never-sent", max_retries=2)
    with pytest.raises(openai.APIStatusError) as info:
        chat(client, extra_headers=omitted)
    exc = _status_error(info, openai.AuthenticationError, 401, "auth_error", NO_API_KEY)
    assert "authorization" not in {k.lower() for k in client.sent[0]["headers"]}
    assert exc.response.headers["www-authenticate"].strip() == "Bearer"
    assert len(client.sent) == 1 and client.received(backend) == []


# -- 503: the IdP is down --------------------------------------------------------------------


@pytest.mark.parametrize("max_retries", [0, 2])
def test_idp_down_raises_internal_server_error_after_the_sdk_retries(dark_gateway, backend, sign, max_retries):
    """503 `auth_provider_unavailable` with `Retry-After: 1` → InternalServerError (the SDK has
    no class of its own for 503: every status >= 500 is InternalServerError, a subclass of
    APIStatusError). The SDK retries 5xx: max_retries + 1 attempts, counted by the client
    (`x-stainless-retry-count` 0, 1, 2) and by the filter, spaced by the server's
    `Retry-After` (1 s) rather than the SDK's own 0.5 s-based backoff."""
    before = stat(dark_gateway, "requests_denied.keys_unavailable")
    client = sdk(dark_gateway, sign(), max_retries=max_retries)
    with pytest.raises(openai.APIStatusError) as info:
        chat(client)
    elapsed = time.monotonic() - client.sent[0]["time"]  # not the SDK's lazy imports before it
    exc = _status_error(info, openai.InternalServerError, 503, "auth_provider_unavailable", JWKS_UNAVAILABLE)
    assert exc.response.headers["retry-after"] == "1"
    attempts = max_retries + 1
    assert [s["headers"].get("x-stainless-retry-count") for s in client.sent] == [str(i) for i in range(attempts)]
    assert exc.request.headers["x-stainless-retry-count"] == str(max_retries), "the error is the last attempt's"
    gaps = [b["time"] - a["time"] for a, b in zip(client.sent, client.sent[1:])]
    assert all(0.95 <= g < 2.0 for g in gaps), f"retries not spaced by Retry-After: {gaps}"
    assert elapsed < max_retries * 1.0 + 2.0, elapsed
    assert stat_delta(dark_gateway, "requests_denied.keys_unavailable", before, attempts) == attempts
    assert client.received(backend) == []


def test_sdk_retries_do_not_multiply_idp_fetches(test_envoys, idps, backend, key, sign):
    """The IdP answers 500: four SDK clients retrying at once (12 attempts, all refused 503 by
    the filter) cost the IdP the filter's own one fetch a second, not one per attempt."""
    idp = idps.new([key])
    idp.fail_with(500)
    proxy = test_envoys.scenario("sdk-idp-500", jwks=[idp], concurrency=WORKERS,
                                 plugin_config={"public_key_url": idp.jwks_url})
    proxy.envoy
    before = stat(proxy, "requests_denied.keys_unavailable")
    clients = [sdk(proxy, sign(), max_retries=2) for _ in range(4)]
    errors: list = [None] * len(clients)

    def call(i: int) -> None:
        try:
            chat(clients[i])
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors[i] = exc

    fetches_before = idp.fetch_count
    started = time.monotonic()
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    elapsed = time.monotonic() - started
    fetches = idp.fetch_count - fetches_before
    assert all(type(e) is openai.InternalServerError and e.status_code == 503 for e in errors), errors
    assert [len(c.sent) for c in clients] == [3] * len(clients)
    assert stat_delta(proxy, "requests_denied.keys_unavailable", before, 12) == 12
    assert 1 <= fetches <= elapsed + 1.5 < 12, (fetches, elapsed)
    assert all(c.received(backend) == [] for c in clients)


def test_sdk_retries_ride_out_a_short_idp_outage(test_envoys, idps, backend, key, sign):
    """The IdP comes up while the SDK waits to retry: the same `create()` call succeeds, the
    backend sees one request (a retry: `x-stainless-retry-count` >= 1), the filter counted the
    503s the SDK absorbed."""
    idp = idps.new([key], start=False)
    proxy = test_envoys.scenario("sdk-idp-outage", jwks=[idp], concurrency=WORKERS,
                                 plugin_config={"public_key_url": idp.jwks_url})
    proxy.envoy  # started while the IdP refuses connections
    before = stat(proxy, "requests_denied.keys_unavailable")
    token = sign()
    client = sdk(proxy, token, max_retries=4)
    timer = threading.Timer(0.3, idp.start)
    timer.start()
    try:
        reply = chat(client)
    finally:
        timer.cancel()
    assert reply.choices[0].message.content == f"echo: {PROMPT}"
    retries = len(client.sent) - 1
    assert 1 <= retries <= 3, client.sent
    got = client.received(backend)
    assert len(got) == 1 and got[0]["headers"]["x-stainless-retry-count"] == str(retries)
    assert got[0]["headers"]["x-litellm-user-id"] == "alice"
    assert stat_delta(proxy, "requests_denied.keys_unavailable", before, retries) == retries
    assert idp.fetch_count >= 1


# -- 429: rate limits -------------------------------------------------------------------------


def test_team_rpm_limit_raises_rate_limit_error(gateway, backend, sign):
    """A static team record with `rpm_limit: 1`: the second request in the minute is LiteLLM's
    429 (parallel_request_limiter_v3: `Rate limit exceeded for team: <id>. Limit type: requests.
    Current limit: 1, Remaining: 0. Limit resets at: …`, headers `retry-after`, `rate_limit_type`,
    `reset_at`), which the SDK raises as RateLimitError. max_retries=0: the SDK retries 429s."""
    token = sign(team_id="team-rpm1", scope="llm.chat")
    first = sdk(gateway, token)
    assert chat(first).choices[0].message.content == f"echo: {PROMPT}"
    seen = first.received(backend)
    assert len(seen) == 1 and seen[0]["headers"]["x-litellm-team-rpm-limit"] == "1"
    second = sdk(gateway, token)
    with pytest.raises(openai.RateLimitError) as raised:
        chat(second)
    refused = raised.value
    assert refused.status_code == 429
    assert isinstance(refused.body, dict)
    assert refused.body["message"].startswith(
        "Rate limit exceeded for team: team-rpm1. Limit type: requests. Current limit: 1, Remaining: 0."), refused.body
    headers = refused.response.headers
    assert headers.get("retry-after", "").isdigit(), headers
    assert headers.get("rate_limit_type") == "requests", headers
    assert "reset_at" in headers, headers
    assert len(second.sent) == 1 and second.received(backend) == []
