"""A failing team/user source, the way test_jwks_availability.py treats a failing JWKS endpoint:
whatever the source does wrong, a request that needs a record gets 503 `no_db_connection` —
never a 200 without its record, never a "not found" verdict — the failure is not cached, and
service comes back on its own when the source heals.

test_records.py already covers: connection refused at start (with retry spacing), HTTP 500 and
401 answers, a LiteLLM source slower than `timeout_ms`, the stale window through a refused
connection, and the groups path's 503. This module adds: what still works while the source
is down (tokens are checked first; requests needing no record pass), every other kind of bad
answer (5xx/429 pages, non-JSON, HTML, empty, huge, cut short, hang-up, wrong shapes and
wrong-typed fields, a record for another id) for teams and users, from the LiteLLM and the
plain JSON source; a burst against a source slower than its timeout; the stale copy
outliving bad answers (and giving way to an authoritative "not found"); and concurrent
denials released by record fetches on two workers.

Module Envoys (`--concurrency 2`) are shared; every test uses its own record ids and the
source's per-id knobs (`fail_ids`, `slow_ids`, `break_ids`).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest

import jwt_fixtures as jf
from checks import assert_auth_error, assert_denied, assert_forwarded, assert_records_unavailable

MASTER_KEY = "sk-master"
CHAT = "/v1/chat/completions"
TIMEOUT_MS = 500
REQUEST_TIMEOUT = 8.0
RECOVERY_DEADLINE = 6.0
MIN_RETRY_GAP = 0.8  # contract: a failed fetch is retried no sooner than ~1 s later
HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def team_not_found(team_id: str) -> str:
    return f"Authentication Error, Team doesn't exist in db. Team={team_id}. Create team via `/team/new` call."


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key(keyring):
    return keyring.get("record-failures", "ES256")


@pytest.fixture(scope="module")
def idp(module_idps, key):
    return module_idps.new([key])


@pytest.fixture(scope="module")
def sign(key):
    def mint(sub: str = "alice", **claims: Any) -> str:
        return key.sign(jf.claims(sub, **claims))

    return mint


JWTAUTH = {"team_id_jwt_field": "team_id", "user_id_jwt_field": "uid"}
HTTP_PATHS = {"team": "/teams/{id}", "user": "/users/{id}", "org": "/orgs/{id}", "end_user": "/customers/{id}"}


def scenario(factory, idp, source, name: str, *, kind: str = "litellm", **settings: Any):
    if kind == "litellm":
        record_source = {"type": "litellm", "url": source.url, "master_key": MASTER_KEY, **settings}
    else:
        record_source = {"type": "http", "url": source.plain_url, "paths": HTTP_PATHS, **settings}
    return factory.scenario(
        name, jwks=[idp], clusters={source.authority: (source.host, source.port)}, concurrency=2,
        plugin_config={"public_key_url": idp.jwks_url, "record_source": record_source,
                       "general_settings": {"litellm_jwtauth": JWTAUTH}})


@pytest.fixture(scope="module")
def litellm_src(module_sources):
    return module_sources.new(master_key=MASTER_KEY)


@pytest.fixture(scope="module")
def http_src(module_sources):
    return module_sources.new(master_key=None)


@pytest.fixture(scope="module")
def proxies(module_envoys, idp, litellm_src, http_src):
    """source type → (Envoy scenario, its source); long TTLs: every test asks for new ids."""
    lifetimes = {"ttl": 60, "negative_ttl": 1, "stale_ttl": 300, "timeout_ms": TIMEOUT_MS}
    return {
        "litellm": (scenario(module_envoys, idp, litellm_src, "rsf-litellm", **lifetimes), litellm_src),
        "http": (scenario(module_envoys, idp, http_src, "rsf-http", kind="http", **lifetimes), http_src),
    }


# -- requests ------------------------------------------------------------------------------


def post(proxy, token: str, model: str = "gpt-4o", timeout: float = REQUEST_TIMEOUT):
    return proxy.request(token, method="POST", path=CHAT, data=json.dumps({"model": model, "messages": []}).encode(),
                         headers={"content-type": "application/json"}, timeout=timeout)


def assert_admitted(reply, *, team: str, user: str | None = None) -> dict:
    """Forwarded, with the team the token named (and no other), and the token's `uid` as the
    user id — none without one (`sub` never stands in for a configured user id field)."""
    echo = assert_forwarded(reply, sub=user)
    assert echo["headers"].get("x-litellm-user-id") == user, echo["headers"]
    assert echo["headers"].get("x-litellm-team-id") == team, echo["headers"]
    return echo


def wait_for_success(proxy, token: str, team: str, user: str | None = None, timeout: float = RECOVERY_DEADLINE):
    """Poll until a 200; everything before it must be a proper 503."""
    started = time.monotonic()
    while True:
        reply = post(proxy, token)
        if reply.status == 200:
            return assert_admitted(reply, team=team, user=user)
        assert_records_unavailable(reply)
        assert time.monotonic() - started < timeout, f"still no 200 {timeout}s after the source healed: {reply!r}"
        time.sleep(0.15)


def paths_for(src, kind: str, record_id: str) -> str:
    if src.master_key is None:
        return f"/api/{'teams' if kind == 'team' else 'users'}/{record_id}"
    return f"/{kind}/info?{kind}_id={record_id}"


# ==========================================================================================
# Down at start: records fail closed, everything else is decided as usual
# ==========================================================================================


def test_source_down_at_start_fails_closed_only_where_a_record_is_needed(envoys, sources, idp, key, sign):
    src = sources.new(master_key=MASTER_KEY, start=False)  # port bound, not listening: refused
    team = "down-team"
    src.put_team(team)
    proxy = scenario(envoys, idp, src, "rsf-down", timeout_ms=TIMEOUT_MS)
    token = sign(team_id=team)
    for _ in range(3):
        assert_records_unavailable(post(proxy, token))
        assert_records_unavailable(proxy.request(token, path="/v1/models", timeout=REQUEST_TIMEOUT))
    # The token is judged before any record is needed: a forged or expired one is a 401.
    reply = post(proxy, jf.forged_token(key, jf.claims("alice", team_id=team)))
    assert_auth_error(reply)
    assert reply.headers.get("x-llm-jwt-auth-reason") == "bad_signature", reply
    reply = post(proxy, sign(team_id=team, exp_in=-60, iat_in=-3600))
    assert reply.status == 401 and reply.headers.get("x-llm-jwt-auth-reason") == "expired", reply
    # Requests that need no record do not depend on the source.
    # (An admin with a uid would have its user record looked up: LiteLLM checks admins' budgets.)
    echo = assert_forwarded(proxy.request(sign("root", scope="litellm_proxy_admin"), path="/key/info"),
                            sub=None, role="proxy_admin")
    assert "x-litellm-user-id" not in echo["headers"]
    assert proxy.request(None, path="/health/liveliness").status == 200

    src.start()
    wait_for_success(proxy, token, team)
    assert src.count(f"/team/info?team_id={team}") >= 1


# ==========================================================================================
# Bad answers: 503, not cached, recovery
# ==========================================================================================

BIG_ROW_PAD = 2 * 1024 * 1024  # the filter refuses record answers over 1 MiB

FAULTS: dict[str, dict[str, Any]] = {
    "502-html-page": {"fail": (502, HTML, "text/html")},
    "503-text": {"fail": (503, b"upstream connect error or disconnect/reset before headers", "text/plain")},
    "504-empty": {"fail": (504, b"", "text/plain")},
    "429-rate-limited": {"fail": (429, b'{"detail": "rate limited"}')},
    "200-not-json": {"fail": (200, b"internal error, see logs", "text/plain")},
    "200-html": {"fail": (200, HTML, "text/html")},
    "200-empty": {"fail": (200, b"")},
    "200-json-array": {"fail": (200, b"[]")},
    "200-json-string": {"fail": (200, b'"ok"')},
    "200-nan": {"fail": (200, b'{"team_id": "x", "spend": NaN}')},
    "200-huge": {"huge": True},
    "hang-up": {"break": "hang_up"},
    "truncated": {"break": "truncate"},
}


def apply_fault(src, record_id: str, fault: dict[str, Any]) -> None:
    if "fail" in fault:
        src.fail_ids[record_id] = fault["fail"]
    elif "break" in fault:
        src.break_ids[record_id] = fault["break"]
    elif fault.get("huge"):
        row = {"team_id": record_id, "user_id": record_id, "metadata": {"pad": "x" * BIG_ROW_PAD}}
        src.fail_ids[record_id] = (200, json.dumps({"team_id": record_id, "team_info": row, "user_id": record_id,
                                                    "user_info": row} if src.master_key else row).encode())


def clear_fault(src, record_id: str) -> None:
    src.fail_ids.pop(record_id, None)
    src.break_ids.pop(record_id, None)


def fault_params() -> list:
    out = []
    for name, fault in FAULTS.items():
        for kind in ("team", "user"):
            for source in ("litellm", "http"):
                out.append(pytest.param(fault, kind, source, id=f"{name}-{kind}-{source}"))
    return out


@pytest.mark.parametrize("fault,kind,source", fault_params())
def test_bad_answer_is_503_is_not_cached_and_recovers(proxies, sign, source, kind, fault):
    proxy, src = proxies[source]
    team, user = uid(f"bad-{kind}-team"), uid(f"bad-{kind}-user")
    src.put_team(team)
    src.put_user(user)
    broken = team if kind == "team" else user
    apply_fault(src, broken, fault)
    token = sign("alice", team_id=team, uid=user)
    assert_records_unavailable(post(proxy, token))
    assert src.count(paths_for(src, kind, broken)) >= 1, f"the filter never asked the source: {src.counts()}"
    first = src.requests_for(paths_for(src, kind, broken))[0]["at"]
    assert_records_unavailable(post(proxy, token))
    if time.monotonic() - first < MIN_RETRY_GAP:
        assert src.count(paths_for(src, kind, broken)) == 1, "a failed fetch is retried no sooner than ~1 s later"

    clear_fault(src, broken)
    wait_for_success(proxy, token, team, user=user)
    times = [r["at"] for r in src.requests_for(paths_for(src, kind, broken))]
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:])]
    assert all(g >= MIN_RETRY_GAP for g in gaps), f"refetched too soon after a failure: gaps {gaps}"


@pytest.mark.parametrize("source", ["litellm", "http"])
def test_record_just_under_the_size_cap_is_served(proxies, sign, source):
    """The cap refuses what is over 1 MiB, not what is merely large."""
    proxy, src = proxies[source]
    team = uid("large-team")
    src.put_team(team, metadata={"pad": "x" * (900 * 1024)})
    assert_admitted(post(proxy, sign(team_id=team)), team=team)


# ==========================================================================================
# Wrong shapes and wrong-typed fields: a restriction the filter cannot read fails closed
# ==========================================================================================

WRONG_TYPED: dict[str, dict[str, Any]] = {
    "models-string": {"models": "o1"},
    "models-number": {"models": 5},
    "models-list-of-numbers": {"models": [1]},
    "models-null": {"models": None},
    "blocked-string-true": {"blocked": "true"},
    "blocked-string-false": {"blocked": "false"},
    "blocked-number": {"blocked": 1},
    "blocked-null": {"blocked": None},
    "max_budget-string": {"max_budget": "1", "spend": 5.0},
    "spend-string": {"max_budget": 1.0, "spend": "5"},
    "spend-null": {"max_budget": 1.0, "spend": None},
    "tpm_limit-string": {"tpm_limit": "100"},
    "organization_id-number": {"organization_id": 7},
}


@pytest.mark.parametrize("source", ["litellm", "http"])
@pytest.mark.parametrize("fields", WRONG_TYPED.values(), ids=WRONG_TYPED.keys())
def test_wrong_typed_team_field_is_503(proxies, sign, source, fields):
    proxy, src = proxies[source]
    team = uid("typed-team")
    src.put_team(team, **fields)
    assert_records_unavailable(post(proxy, sign(team_id=team)))
    src.put_team(team)  # fixed at the source: served once the retry interval has passed
    wait_for_success(proxy, sign(team_id=team), team)


@pytest.mark.parametrize("fields", [{"models": "o1"}, {"max_budget": "1", "spend": 5.0}, {"user_role": 7}],
                         ids=["models-string", "max_budget-string", "user_role-number"])
def test_wrong_typed_user_field_is_503(proxies, sign, fields):
    proxy, src = proxies["litellm"]
    team, user = uid("typed-user-team"), uid("typed-user")
    src.put_team(team)
    src.put_user(user, **fields)
    assert_records_unavailable(post(proxy, sign(team_id=team, uid=user)))


@pytest.mark.parametrize("source", ["litellm", "http"])
def test_budget_table_with_a_string_max_budget_is_not_ignored(proxies, sign, source):
    """LiteLLM (pydantic) reads "2" as 2.0 and refuses spend 5; the filter may refuse it as a
    budget or as an unreadable record, but must not admit it."""
    proxy, src = proxies[source]
    team = uid("bt-team")
    src.put_team(team, spend=5.0, litellm_budget_table={"max_budget": "2"})
    reply = post(proxy, sign(team_id=team))
    assert reply.status in (400, 503), f"an over-budget team was admitted: {reply!r}"


def _litellm_answer(row: Any, record_id: str) -> bytes:
    return json.dumps({"team_id": record_id, "team_info": row, "keys": []}).encode()


# A row that is not the record asked for (LiteLLM: inside `team_info`; plain source: the answer).
MISMATCHED_ROWS = {
    "row-of-another-team": {"team_id": "someone-else", "team_alias": "Other"},
    "row-without-team_id": {"team_alias": "Nameless"},
    "empty-row": {},
}


def mismatch_params() -> list:
    out = [pytest.param(source, row, id=f"{name}-{source}")
           for name, row in MISMATCHED_ROWS.items() for source in ("litellm", "http")]
    # No `team_info` at all: the top-level object of a /team/info answer is not a team row.
    out.append(pytest.param("litellm", None, id="no-team_info-litellm"))
    return out


@pytest.mark.parametrize("source,row", mismatch_params())
def test_record_that_is_not_the_one_asked_for_is_503(proxies, sign, source, row):
    proxy, src = proxies[source]
    team = uid("mismatch-team")
    if source == "http":
        answer = json.dumps(row).encode()
    elif row is None:
        answer = json.dumps({"team_id": team, "keys": []}).encode()
    else:
        answer = _litellm_answer(row, team)
    src.fail_ids[team] = (200, answer)
    assert_records_unavailable(post(proxy, sign(team_id=team)))


@pytest.mark.parametrize("row", [[], "x", 5], ids=["list", "string", "number"])
def test_team_info_that_is_not_an_object_is_503(proxies, sign, row):
    proxy, src = proxies["litellm"]
    team = uid("shape-team")
    src.fail_ids[team] = (200, _litellm_answer(row, team))
    assert_records_unavailable(post(proxy, sign(team_id=team)))


# ==========================================================================================
# A burst against a source slower than its timeout
# ==========================================================================================


def test_burst_against_a_source_slower_than_its_timeout_is_503_with_few_fetches(proxies, sign):
    proxy, src = proxies["litellm"]
    team = uid("slow-burst")
    src.put_team(team)
    src.slow_ids[team] = TIMEOUT_MS / 1000 + 1.5
    proxy.envoy  # started: the burst measures requests only
    n = 16
    tokens = [sign(f"burst-{i}", team_id=team) for i in range(n)]
    barrier = threading.Barrier(n)
    replies: list = [None] * n
    errors: list = []

    def fire(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            # POSTs: parked with their bodies, then refused from the tick once the fetch times out.
            replies[i] = post(proxy, tokens[i], timeout=15)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=fire, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    elapsed = time.monotonic() - started
    assert not errors, errors
    for reply in replies:
        assert_records_unavailable(reply)
    fetches = src.count(f"/team/info?team_id={team}")
    assert 1 <= fetches <= int(elapsed) + 2, f"{fetches} fetches for {n} concurrent requests in {elapsed:.1f}s"

    del src.slow_ids[team]
    wait_for_success(proxy, sign("after", team_id=team), team)


# ==========================================================================================
# The stale copy outlives bad answers; "not found" is an answer
# ==========================================================================================

STALE_TTL, STALE_WINDOW = 1.0, 30


@pytest.fixture(scope="module")
def stale(module_envoys, idp, litellm_src):
    return scenario(module_envoys, idp, litellm_src, "rsf-stale", ttl=STALE_TTL, stale_ttl=STALE_WINDOW,
                    negative_ttl=1, timeout_ms=TIMEOUT_MS)


STALE_FAULTS = {
    "500": {"fail": (500, b'{"detail": "db down"}')},
    "200-not-json": FAULTS["200-not-json"],
    "200-html": FAULTS["200-html"],
    "wrong-typed-models": {"fail_row": {"models": "o1"}},
    "hang-up": FAULTS["hang-up"],
    "truncated": FAULTS["truncated"],
    "slower-than-timeout": {"slow": TIMEOUT_MS / 1000 + 1.0},
}


@pytest.mark.parametrize("fault", STALE_FAULTS.values(), ids=STALE_FAULTS.keys())
def test_stale_copy_outlives_bad_answers_then_fresh_data_returns(stale, litellm_src, sign, fault):
    src = litellm_src
    team = uid("stale-team")
    src.put_team(team, team_alias="Before")
    token = sign(team_id=team)
    echo = assert_admitted(post(stale, token), team=team)
    assert echo["headers"].get("x-litellm-team-alias") == "Before"
    fetched = src.requests_for(f"/team/info?team_id={team}")[0]["at"]

    if "fail_row" in fault:
        src.put_team(team, team_alias="Unreadable", **fault["fail_row"])
    elif "slow" in fault:
        src.slow_ids[team] = fault["slow"]
    else:
        apply_fault(src, team, fault)
    while time.monotonic() < fetched + STALE_TTL + 0.3:
        time.sleep(0.05)
    served = 0
    until = time.monotonic() + 2.0
    while time.monotonic() < until or served < 5:
        echo = assert_admitted(post(stale, token), team=team)
        assert echo["headers"].get("x-litellm-team-alias") == "Before", "a bad answer replaced the good copy"
        served += 1
        time.sleep(0.1)
    assert src.count(f"/team/info?team_id={team}") >= 2, "the filter must have tried to refresh"

    clear_fault(src, team)
    src.slow_ids.pop(team, None)
    src.put_team(team, team_alias="After")
    deadline = time.monotonic() + RECOVERY_DEADLINE
    while True:
        echo = assert_admitted(post(stale, token), team=team)
        if echo["headers"].get("x-litellm-team-alias") == "After":
            break
        assert time.monotonic() < deadline, "the fresh record never replaced the stale copy"
        time.sleep(0.15)


def test_not_found_after_the_ttl_replaces_the_stale_copy(stale, litellm_src, sign):
    """A deleted team is an answer, not an outage: after the TTL it is refused, never served
    from the stale copy for the whole stale window, and never a 503."""
    team = uid("deleted-team")
    litellm_src.put_team(team)
    token = sign(team_id=team)
    assert_admitted(post(stale, token), team=team)
    litellm_src.delete("team", team)
    deadline = time.monotonic() + STALE_TTL + RECOVERY_DEADLINE
    while True:
        reply = post(stale, token)
        if reply.status != 200:
            break
        assert_admitted(reply, team=team)
        assert time.monotonic() < deadline, "a deleted team is still served from the stale copy"
        time.sleep(0.15)
    assert_denied(reply, team_not_found(team))


# ==========================================================================================
# Denials released by a record fetch, on two workers, with request bodies
# ==========================================================================================


def test_denials_released_by_record_fetches_do_not_crash_envoy(envoys, sources, idp, sign):
    """Many POSTs for teams the source does not know, answered slowly: the requests park, the
    records arrive (on either worker), every parked request is denied. Envoy must stay up and
    every answer must be the "team doesn't exist" 401.

    Regression: Envoy 1.40 died with SIGSEGV (nearly every run) when the filter read the request
    body buffer from another context's callback (a record fetch's response or a tick) to decide
    a parked request. The model is now read in the request's own body callback."""
    ROUNDS = 80  # noqa: N806 - with 24 clients, enough to hit the crash nearly every run
    src = sources.new(master_key=MASTER_KEY)
    src.delay = 0.2
    proxy = scenario(envoys, idp, src, "rsf-parked-denials", negative_ttl=1, timeout_ms=2000)
    envoy = proxy.envoy
    teams = [uid("ghost") for _ in range(50)]
    tokens = {t: sign(team_id=t) for t in teams}
    body = json.dumps({"model": "gpt-4o", "messages": []}).encode()
    outcomes: Counter = Counter()
    wrong: list = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", envoy.listener_port, timeout=15)
        for i in range(ROUNDS):
            team = teams[(seed * 7 + i * 13) % len(teams)]
            try:
                conn.request("POST", CHAT, body=body, headers={"authorization": f"Bearer {tokens[team]}",
                                                               "content-type": "application/json"})
                resp = conn.getresponse()
                text = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    outcomes[type(exc).__name__] += 1
                return
            with lock:
                outcomes[resp.status] += 1
                if resp.status != 401 or team_not_found(team).encode() not in text:
                    wrong.append((resp.status, text[:200]))
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", envoy.listener_port, timeout=15)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert envoy.poll() is None, f"Envoy died (status {envoy.poll()}) after {dict(outcomes)}\n{envoy.log_tail(6000)}"
    assert not wrong, wrong[:5]
    assert outcomes == Counter({401: 24 * ROUNDS}), outcomes
