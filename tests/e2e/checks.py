"""Requests through Envoy and assertions on what the client and the upstream saw."""

from __future__ import annotations

import http.client
import threading
import uuid
from typing import Any, Callable, Iterable, Mapping, Sequence

import requests
from requests.structures import CaseInsensitiveDict

import harness
from echo_upstream import EchoServer

NO_API_KEY = "Authentication Error, No api key passed in."
INVALID_JWT = "Authentication Error, Invalid JWT: "
ALG_NOT_ALLOWED = "Authentication Error, Validation fails: The specified alg value is not allowed"
BAD_SIGNATURE = "Authentication Error, Validation fails: Signature verification failed"
TOKEN_EXPIRED = "Token Expired"
NOT_YET_VALID_NBF = "Authentication Error, Validation fails: The token is not yet valid (nbf)"
NOT_YET_VALID_IAT = "Authentication Error, Validation fails: The token is not yet valid (iat)"
AUDIENCE_MISMATCH = "Authentication Error, Validation fails: Audience doesn't match"
AUDIENCE_MISSING = 'Authentication Error, Validation fails: Token is missing the "aud" claim'
INVALID_ISSUER = "Authentication Error, Validation fails: Invalid issuer"
NO_MATCHING_KEY = "Authentication Error, No matching public key found."
JWKS_UNAVAILABLE = "Service Unavailable, the identity provider's JWKS endpoint is temporarily unreachable. Please retry."
JWKS_MISCONFIGURED = ("Service Unavailable, the gateway cannot fetch the identity provider's keys: it is misconfigured "
                      "(its log says what to fix).")
RECORDS_UNAVAILABLE = "Service Unavailable, the team/user source is temporarily unreachable. Please retry."


class Reply:
    """A response, the request id it was sent with, and the upstream it could have reached."""

    def __init__(self, response: requests.Response, test_id: str, upstream: EchoServer | None) -> None:
        self.response = response
        self.test_id = test_id
        self.upstream = upstream
        self.status = response.status_code
        self.headers = response.headers

    def json(self) -> Any:
        return self.response.json()

    @property
    def text(self) -> str:
        return self.response.text

    @property
    def sent_authorization(self) -> str | None:
        return self.response.request.headers.get("authorization")

    def upstream_copies(self) -> list[dict]:
        if self.upstream is None:
            raise AssertionError("this reply was sent without an upstream to check against")
        return self.upstream.requests_with_header("x-test-id", self.test_id)

    def __repr__(self) -> str:
        return f"<Reply {self.status} {dict(self.headers)!r} {self.text[:400]!r}>"


def send(envoy: harness.Envoy, token: str | None = None, *, upstream: EchoServer | None = None,
         method: str = "GET", path: str = "/v1/chat/completions",
         headers: Mapping[str, str] | None = None, authorization: str | None = None,
         data: bytes | None = None, timeout: float = 15) -> Reply:
    """One request through Envoy, tagged with a fresh `x-test-id`.

    `token` becomes `Authorization: Bearer <token>`; `authorization` sets the header verbatim.
    """
    test_id = uuid.uuid4().hex
    hdrs = {"x-test-id": test_id}
    if token is not None:
        hdrs["authorization"] = f"Bearer {token}"
    if authorization is not None:
        hdrs["authorization"] = authorization
    hdrs.update(headers or {})
    response = requests.request(method, envoy.url + path, headers=hdrs, data=data, timeout=timeout)
    return Reply(response, test_id, upstream)


def send_raw(envoy: harness.Envoy, headers: Sequence[tuple[str, str]], *, upstream: EchoServer | None = None,
             method: str = "GET", path: str = "/v1/chat/completions", timeout: float = 15) -> Reply:
    """One request whose header lines go out exactly as given, repeats included (`requests`
    folds a dict, so two `Authorization` headers need `http.client`); tagged with `x-test-id`.

    The Reply's `sent_authorization` is the first `Authorization` value sent.
    """
    test_id = uuid.uuid4().hex
    conn = http.client.HTTPConnection("127.0.0.1", envoy.listener_port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.putheader("x-test-id", test_id)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        raw = conn.getresponse()
        body = raw.read()
    finally:
        conn.close()
    response = requests.Response()
    response.status_code = raw.status
    response.headers = CaseInsensitiveDict(raw.getheaders())
    response._content = body
    response.encoding = "utf-8"
    response.url = envoy.url + path
    sent = requests.PreparedRequest()
    sent.method, sent.url = method, response.url
    sent.headers = CaseInsensitiveDict({"x-test-id": test_id})
    authorization = [value for name, value in headers if name.lower() == "authorization"]
    if authorization:
        sent.headers["authorization"] = authorization[0]
    response.request = sent
    return Reply(response, test_id, upstream)


def assert_error(reply: Reply, status: int, err_type: str, *, message: str | None = None,
                 prefix: str | None = None, contains: Iterable[str] = (), param: str | None = None,
                 token_accepted: bool = False) -> dict:
    """LiteLLM's error envelope with exactly this status, type, param (None unless given) and
    message (or message prefix); on 401 the RFC 6750 challenge — `invalid_token` when the token
    itself failed, a bare `Bearer` without a credential or when the token was fine and an
    authorization rule refused the request (`token_accepted`); and the request must not have
    reached the upstream."""
    assert reply.status == status, f"expected {status}, got {reply!r}"
    assert reply.headers.get("content-type", "").startswith("application/json"), reply
    body = reply.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["type"] == err_type, error
    assert error["param"] == param, error
    assert error["code"] == str(status), error
    assert isinstance(error["message"], str), error
    if message is not None:
        assert error["message"] == message, error
    if prefix is not None:
        assert error["message"].startswith(prefix), error
    for part in contains:
        assert part in error["message"], error
    if status == 401:
        challenge = reply.headers.get("www-authenticate")
        assert challenge is not None, f"401 without www-authenticate: {reply!r}"
        if (reply.sent_authorization or "").strip() and not token_accepted:
            assert challenge.startswith('Bearer error="invalid_token"'), challenge
            assert "error_description=" in challenge, challenge
        else:
            assert challenge.strip() == "Bearer", f"a valid token must not be called invalid: {challenge}"
    if status == 503:
        assert reply.headers.get("retry-after", "").isdigit(), f"503 without Retry-After: {reply!r}"
    if reply.upstream is not None:
        copies = reply.upstream_copies()
        assert not copies, f"the upstream received a request the filter should have stopped: {copies}"
    return error


def assert_auth_error(reply: Reply, message: str | None = None, **kwargs: Any) -> dict:
    """401 `auth_error`: the token itself failed."""
    return assert_error(reply, 401, "auth_error", message=message, **kwargs)


def assert_denied(reply: Reply, message: str | None = None, **kwargs: Any) -> dict:
    """401 `auth_error` for a token that verified but a LiteLLM rule refused (LiteLLM answers
    these with 401): the challenge must not call the token invalid."""
    return assert_error(reply, 401, "auth_error", message=message, token_accepted=True, **kwargs)


def assert_unavailable(reply: Reply) -> dict:
    """503 `auth_provider_unavailable` (no keys could be had)."""
    return assert_error(reply, 503, "auth_provider_unavailable", prefix=JWKS_UNAVAILABLE)


def assert_records_unavailable(reply: Reply) -> dict:
    """503 `no_db_connection` (the team/user source failed and no servable copy exists)."""
    return assert_error(reply, 503, "no_db_connection", prefix=RECORDS_UNAVAILABLE)


def assert_forwarded(reply: Reply, *, sub: str | None = "alice", role: str = "internal_user") -> dict:
    """200 from the echo upstream, which saw the token intact and the identity headers."""
    assert reply.status == 200, f"expected 200 from the upstream, got {reply!r}"
    body = reply.json()
    assert body.get("object") == "chat.completion" and "echo" in body, f"not the echo upstream: {body}"
    echo = body["echo"]
    if reply.upstream is not None:
        copies = reply.upstream_copies()
        assert len(copies) == 1, f"upstream saw {len(copies)} copies of the request"
    headers = echo["headers"]
    assert headers.get("authorization") == reply.sent_authorization, \
        "the authorization header must reach the upstream intact"
    if sub is not None:
        assert headers.get("x-litellm-user-id") == sub, headers
    assert headers.get("x-litellm-user-role") == role, headers
    return echo


def assert_forbidden(reply: Reply, message: str | None = None, **kwargs: Any) -> dict:
    """403 `auth_error` (a LiteLLM authorization rule refused the request), with the RFC 6750
    `insufficient_scope` challenge; the request must not have reached the upstream."""
    error = assert_error(reply, 403, "auth_error", message=message, **kwargs)
    challenge = reply.headers.get("www-authenticate")
    assert challenge is not None, f"403 without www-authenticate: {reply!r}"
    assert challenge.startswith('Bearer error="insufficient_scope"'), challenge
    return error


def assert_invalid_request(reply: Reply, status: int, *, message: str | None = None,
                           prefix: str | None = None, contains: Iterable[str] = ()) -> dict:
    """400 / 413 `invalid_request_error` (a body that had to be inspected could not be): no
    `www-authenticate` challenge, and the request must not have reached the upstream."""
    error = assert_error(reply, status, "invalid_request_error", message=message, prefix=prefix,
                         contains=contains)
    assert "www-authenticate" not in reply.headers, f"{status} with a challenge: {reply!r}"
    return error


def burst(proxy, tokens: Sequence[str]) -> list:
    """All tokens at once (released together by a barrier); the replies in order."""
    return burst_calls([lambda t=t: proxy.request(t) for t in tokens])


def burst_calls(calls: Sequence[Callable[[], Any]]) -> list:
    """All calls at once (released together by a barrier); their results in order."""
    barrier = threading.Barrier(len(calls))
    replies: list = [None] * len(calls)
    errors: list = []

    def fire(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            replies[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return replies
