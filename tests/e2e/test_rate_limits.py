"""Rate limits in a real Envoy with two workers (docs/rate-limits.md): the records' `rpm_limit`,
`tpm_limit` and `max_parallel_requests`, counted per Envoy process in shared data.

The judges are not this filter's own reading: the official OpenAI SDK parses the streams and
raises `RateLimitError` from the 429s, its parsed `usage` is what the token counts are checked
against, the fake backend counts what reached it, and the bytes a client gets through the
filter are compared with the bytes the backend sends straight.

- a burst on two workers admits exactly the rpm limit, repeated so that a lost update would show;
- a parallel slot is held while a stream runs and given back when it ends, complete or cut;
- streamed and JSON `usage` counts toward the tpm limit, and the stream is not changed;
- every admitted answer carries LiteLLM's `x-ratelimit-*` headers.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

import jwt_fixtures as jf
from checks import burst_calls
from test_openai_sdk import (  # noqa: F401 - fixtures are used by name
    PROMPT, SDK_MISSING, TIMEOUT, backend, chat, idp, key, openai, sdk, sdk_envoys,
)

WORKERS = 2
BURST_ROUNDS = 3
BURST = 30
RPM = 10
TEAMS = [
    *({"team_id": f"rpm-burst-{i}", "rpm_limit": RPM} for i in range(BURST_ROUNDS)),
    {"team_id": "parallel-2", "max_parallel_requests": 2},
    {"team_id": "tpm-team", "tpm_limit": 20},
    {"team_id": "tpm-bytes", "tpm_limit": 1_000_000},
    {"team_id": "per-model", "metadata": {"model_rpm_limit": {"gpt-4o": 1}}},
    {"team_id": "plain"},
    {"team_id": "members", "team_memberships": [{"user_id": "alice", "litellm_budget_table": {"rpm_limit": 1}}]},
]
USERS = [{"user_id": "alice"}, {"user_id": "bob"}, {"user_id": "user-rpm1", "rpm_limit": 1}]


@pytest.fixture(autouse=True)
def _sdk_installed() -> None:
    if SDK_MISSING:
        pytest.fail(SDK_MISSING, pytrace=False)


@pytest.fixture(scope="module")
def sign(key):
    def mint(team_id: str | None, sub: str = "alice") -> str:
        extra = {"team_id": team_id} if team_id is not None else {}
        return key.sign(jf.claims(sub, **extra))

    return mint


@pytest.fixture(scope="module")
def gateway(sdk_envoys, idp):
    return sdk_envoys.scenario("rate-limits", jwks=[idp], concurrency=WORKERS, plugin_config={
        "public_key_url": idp.jwks_url, "teams": TEAMS, "users": USERS,
        "general_settings": {"litellm_jwtauth": {"team_id_jwt_field": "team_id", "user_id_jwt_field": "sub"}}})


def post_chat(gateway, token: str, test_id: str, *, model: str = "gpt-4o-mini", stream: bool = False,
              timeout: float = TIMEOUT) -> requests.Response:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": stream}
    return requests.post(gateway.url + "/v1/chat/completions", data=json.dumps(body), timeout=timeout, stream=stream,
                         headers={"authorization": f"Bearer {token}", "content-type": "application/json",
                                  "x-test-id": test_id})


def rate_limited(exc: "openai.RateLimitError", key: str, value: str, kind: str, limit: int) -> None:
    """LiteLLM's 429 as the SDK reads it."""
    assert exc.status_code == 429
    assert exc.body["type"] == "rate_limit_error" and exc.body["code"] == "429", exc.body
    assert exc.body["message"].startswith(
        f"Rate limit exceeded for {key}: {value}. Limit type: {kind}. Current limit: {limit}, Remaining: 0. "
        "Limit resets at: "), exc.body
    headers = exc.response.headers
    assert headers["rate_limit_type"] == kind and headers["retry-after"].isdigit(), headers
    assert headers["reset_at"].endswith(" UTC"), headers


def eventually_admitted(call, within: float = 3.0):
    """The slot of a request that just ended is given back when Envoy destroys its stream,
    a moment after the client saw the end: retry until admitted (or fail)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return call()
        except openai.RateLimitError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_a_burst_on_two_workers_admits_exactly_the_rpm_limit(gateway, backend, sign):
    for round_ in range(BURST_ROUNDS):
        team, test_id = f"rpm-burst-{round_}", uuid.uuid4().hex
        token = sign(team)
        gateway.envoy  # started before the burst
        replies = burst_calls([lambda: post_chat(gateway, token, test_id)] * BURST)
        statuses = sorted(r.status_code for r in replies)
        assert statuses == [200] * RPM + [429] * (BURST - RPM), f"round {round_}: {statuses}"
        assert len(backend.received(test_id)) == RPM, f"round {round_}"
        remaining = sorted(int(r.headers["x-ratelimit-team-remaining-requests"]) for r in replies if r.status_code == 200)
        assert remaining == list(range(RPM)), f"round {round_}: each admission saw its own count: {remaining}"
        refused = [r for r in replies if r.status_code == 429]
        assert all(r.json()["error"]["message"].startswith(f"Rate limit exceeded for team: {team}.") for r in refused)


def test_the_sdk_raises_rate_limit_error_for_a_users_rpm(gateway, backend, sign):
    client = sdk(gateway, sign("plain", sub="user-rpm1"))
    assert chat(client).choices[0].message.content == f"echo: {PROMPT}"
    with pytest.raises(openai.RateLimitError) as refused:
        chat(client)
    rate_limited(refused.value, "user", "user-rpm1", "requests", 1)
    assert len(client.received(backend)) == 1


def test_a_team_members_own_limit_counts_that_member_only(gateway, backend, sign):
    alice = sdk(gateway, sign("members"))
    chat(alice)
    with pytest.raises(openai.RateLimitError) as refused:
        chat(alice)
    rate_limited(refused.value, "team_member", "members:alice", "requests", 1)
    bob = sdk(gateway, sign("members", sub="bob"))
    for _ in range(3):
        chat(bob)


def test_a_per_model_team_limit_counts_only_that_model(gateway, backend, sign):
    client = sdk(gateway, sign("per-model"))
    chat(client, model="gpt-4o")
    with pytest.raises(openai.RateLimitError) as refused:
        chat(client, model="gpt-4o")
    rate_limited(refused.value, "model_per_team", "per-model:gpt-4o", "requests", 1)
    for _ in range(3):
        chat(client, model="gpt-4o-mini")


def test_a_parallel_slot_is_held_while_a_stream_runs_and_given_back_when_it_ends_or_is_cut(gateway, backend, sign):
    token = sign("parallel-2")
    first, second, third = (sdk(gateway, token) for _ in range(3))
    gates = [backend.lockstep(c.test_id, timeout=5) for c in (first, second)]
    streams = [chat(c, stream=True) for c in (first, second)]
    for s in streams:
        next(iter(s))  # both streams are open, held by the backend
    with pytest.raises(openai.RateLimitError) as refused:
        chat(third)
    rate_limited(refused.value, "team", "parallel-2", "max_parallel_requests", 2)
    # The first stream completes: its slot is back before the client has seen the end.
    gates[0].ack()
    for _chunk in streams[0]:
        gates[0].ack()
    assert gates[0].finished.wait(5)
    chat(third)
    # The second is cut by its client mid-stream: its slot comes back too (once Envoy has
    # destroyed the stream, a moment after the client closed it).
    streams[1].response.close()
    eventually_admitted(lambda: chat(sdk(gateway, token)))
    # Nothing leaked and nothing was given back twice: exactly two fit at once again.
    again = [sdk(gateway, token) for _ in range(2)]
    for c in again:
        backend.lockstep(c.test_id, timeout=5)
    held = [chat(c, stream=True) for c in again]
    for s in held:
        next(iter(s))
    with pytest.raises(openai.RateLimitError):
        chat(sdk(gateway, token))
    for s in held:
        s.response.close()


def test_streamed_and_json_usage_count_toward_the_tpm_limit(gateway, backend, sign):
    """Tokens are what the SDK itself parsed from the answers' `usage`."""
    token = sign("tpm-team")
    client = sdk(gateway, token)
    used = 0
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}))
    used += chunks[-1].usage.total_tokens
    raw = client.api.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}])
    assert int(raw.headers["x-ratelimit-team-remaining-tokens"]) == 20 - used
    assert raw.headers["x-ratelimit-team-limit-tokens"] == "20"
    used += raw.parse().usage.total_tokens
    assert used >= 20, f"the fixture's answers should use the limit up in two requests ({used})"
    with pytest.raises(openai.RateLimitError) as refused:
        chat(client)
    rate_limited(refused.value, "team", "tpm-team", "tokens", 20)
    assert len(client.received(backend)) == 2


def test_a_counted_stream_reaches_the_client_byte_for_byte(gateway, backend, sign):
    token = sign("tpm-bytes")
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": PROMPT}]})
    straight = requests.post(backend.url + "/v1/chat/completions", data=body, timeout=TIMEOUT,
                             headers={"content-type": "application/json"})
    through = requests.post(gateway.url + "/v1/chat/completions", data=body, timeout=TIMEOUT,
                            headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    assert through.status_code == 200 and through.headers["x-ratelimit-team-limit-tokens"] == "1000000"
    assert through.content == straight.content
    assert b'"usage": {"prompt_tokens"' in through.content
