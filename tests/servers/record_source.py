#!/usr/bin/env python3
"""Team/user record source for the llm-jwt-auth filter: LiteLLM's management API, or a plain
JSON service, backed by in-memory tables.

    python tests/servers/record_source.py --host 127.0.0.1 --port 4000 --master-key sk-master

LiteLLM management API (every request needs `authorization: Bearer <master key>`, else 401):
  GET  /team/info?team_id=<id>                 200 {"team_id", "team_info": <team row>, "keys": [], ...}
  GET  /user/info?user_id=<id>                 200 {"user_id", "user_info": <user row>, "keys": [], "teams": []}
  GET  /organization/info?organization_id=<id> 200 <organization row>
  GET  /customer/info?end_user_id=<id>         200 <end-user row>
                                               404 {"detail": ...} when the record does not exist
                                               (or, with `null_not_found`, team/user: 200 with
                                               `team_info` / `user_info` null)
  POST /team/new {"team_id", ...}              creates the team; 200 with its row
  POST /user/new {"user_id", "user_email", ...} creates the user; 200 with its row

Plain JSON service (under `plain_prefix`, default `/api`; `plain_headers` must be present):
  GET  /api/teams/<id>  /api/users/<id>  /api/orgs/<id>  /api/customers/<id>   the row itself, or 404

Rows are LiteLLM's table rows (`LiteLLM_TeamTable`, `…UserTable`, `…OrganizationTable`,
`…EndUserTable`) with their default columns filled in by `team_row()`, `user_row()`, `org_row()`
and `customer_row()`.

`RecordSource` is importable: the e2e tests put rows in, change them while Envoy runs, count
the requests per path, read what was received (headers, bodies), make answers slow or fail
with a status, body and content type (all of them, or per record id), hang up or cut an
answer short (`break_with` / `break_ids`), or stop listening (connections refused, open
connections dropped) and start again on the same port.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loopback_server import LoopbackServer, TrackingHTTPServer  # noqa: E402

KINDS = ("team", "user", "org", "customer")

_LITELLM_INFO = {  # path → (kind, query parameter)
    "/team/info": ("team", "team_id"),
    "/user/info": ("user", "user_id"),
    "/organization/info": ("org", "organization_id"),
    "/customer/info": ("customer", "end_user_id"),
}
# LiteLLM's searches by alias: path → (kind, query parameter, the row's alias column)
_LITELLM_ALIAS_LISTS = {
    "/v2/team/list": ("team", "team_alias", "team_alias"),
    "/organization/list": ("org", "org_alias", "organization_alias"),
}
_PLAIN = {"teams": "team", "users": "user", "orgs": "org", "customers": "customer"}
_STAMP = "2025-01-01T00:00:00Z"
# What the source can do instead of answering: close the connection having read the request
# ("hang_up"), or announce the whole answer in content-length, send half of it and close
# ("truncate").
BREAKAGES = ("hang_up", "truncate")


# -- LiteLLM rows ---------------------------------------------------------------------------


def team_row(team_id: str, **fields: Any) -> dict:
    """A `LiteLLM_TeamTable` row as `/team/info` returns it (defaults + `fields`)."""
    row: dict[str, Any] = {
        "team_id": team_id, "team_alias": None, "organization_id": None, "admins": [], "members": [],
        "members_with_roles": [], "metadata": {}, "tpm_limit": None, "rpm_limit": None,
        "max_budget": None, "budget_duration": None, "models": [], "blocked": False, "spend": 0.0,
        "max_parallel_requests": None, "budget_reset_at": None, "model_id": None,
        "litellm_model_table": None, "litellm_budget_table": None, "object_permission_id": None,
        "created_at": _STAMP, "updated_at": _STAMP,
    }
    row.update(fields)
    return row


def user_row(user_id: str, **fields: Any) -> dict:
    """A `LiteLLM_UserTable` row as `/user/info` returns it."""
    row: dict[str, Any] = {
        "user_id": user_id, "user_alias": None, "team_id": None, "sso_user_id": None,
        "organization_id": None, "teams": [], "user_role": "internal_user", "max_budget": None,
        "spend": 0.0, "user_email": None, "models": [], "metadata": {}, "max_parallel_requests": None,
        "tpm_limit": None, "rpm_limit": None, "budget_duration": None, "budget_reset_at": None,
        "allowed_cache_controls": [], "model_spend": {}, "model_max_budget": {},
        "created_at": _STAMP, "updated_at": _STAMP,
    }
    row.update(fields)
    return row


def org_row(organization_id: str, **fields: Any) -> dict:
    """A `LiteLLM_OrganizationTable` row as `/organization/info` returns it."""
    row: dict[str, Any] = {
        "organization_id": organization_id, "organization_alias": None, "budget_id": "budget-x",
        "metadata": {}, "models": [], "spend": 0.0, "model_spend": {}, "created_at": _STAMP,
        "created_by": "admin", "updated_at": _STAMP, "updated_by": "admin",
        "litellm_budget_table": None, "teams": [], "users": [], "members": [],
    }
    row.update(fields)
    return row


def customer_row(user_id: str, **fields: Any) -> dict:
    """A `LiteLLM_EndUserTable` row as `/customer/info` returns it."""
    row: dict[str, Any] = {
        "user_id": user_id, "alias": None, "spend": 0.0, "allowed_model_region": None,
        "default_model": None, "budget_id": None, "litellm_budget_table": None, "blocked": False,
    }
    row.update(fields)
    return row


_ROW_MAKERS = {"team": team_row, "user": user_row, "org": org_row, "customer": customer_row}


# -- the server -----------------------------------------------------------------------------


class RecordSource(LoopbackServer):
    """In-memory LiteLLM management API + plain JSON record service, with knobs.

    Tables hold rows by id per kind (`team`, `user`, `org`, `customer`); every knob may be
    changed while the server runs.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, master_key: str | None = "sk-master",
                 plain_prefix: str = "/api", plain_headers: Mapping[str, str] | None = None) -> None:
        super().__init__(TrackingHTTPServer, _Handler, host, port)
        self.master_key = master_key
        self.plain_prefix = plain_prefix.rstrip("/")
        self.plain_headers = {k.lower(): v for k, v in (plain_headers or {}).items()}
        self._lock = threading.Lock()
        self._tables: dict[str, dict[str, dict]] = {kind: {} for kind in KINDS}
        self._requests: list[dict] = []
        self._failure: tuple[int, bytes, str] | None = None
        self.delay = 0.0
        # Answer a missing team/user with 200 and `team_info`/`user_info` null instead of 404:
        # True for every id, or a collection of ids.
        self.null_not_found: bool | set[str] = False
        # Per-record knobs, by record id (any kind): answer with (status, body) or
        # (status, body, content type), or this late.
        self.fail_ids: dict[str, tuple[int, bytes] | tuple[int, bytes, str]] = {}
        self.slow_ids: dict[str, float] = {}
        # Misbehaviour instead of an answer (see BREAKAGES), for every request or per record id.
        self._breakage: str | None = None
        self.break_ids: dict[str, str] = {}

    owner_attr = "source"
    thread_name = "record-source"

    @property
    def url(self) -> str:
        return self.base_url

    @property
    def plain_url(self) -> str:
        return self.url + self.plain_prefix

    # -- tables ---------------------------------------------------------------------------

    def put(self, kind: str, record_id: str, **fields: Any) -> dict:
        """Store (replace) the row `kind`/`record_id`: LiteLLM's defaults plus `fields`."""
        row = _ROW_MAKERS[kind](record_id, **fields)
        with self._lock:
            self._tables[kind][record_id] = row
        return row

    def put_team(self, team_id: str, **fields: Any) -> dict:
        return self.put("team", team_id, **fields)

    def put_user(self, user_id: str, **fields: Any) -> dict:
        return self.put("user", user_id, **fields)

    def put_org(self, organization_id: str, **fields: Any) -> dict:
        return self.put("org", organization_id, **fields)

    def put_customer(self, user_id: str, **fields: Any) -> dict:
        return self.put("customer", user_id, **fields)

    def update(self, kind: str, record_id: str, **fields: Any) -> dict:
        """Change some fields of an existing row."""
        with self._lock:
            row = self._tables[kind][record_id]
            row.update(fields)
            return dict(row)

    def delete(self, kind: str, record_id: str) -> None:
        with self._lock:
            self._tables[kind].pop(record_id, None)

    def get(self, kind: str, record_id: str) -> dict | None:
        with self._lock:
            row = self._tables[kind].get(record_id)
            return dict(row) if row is not None else None

    # -- knobs ----------------------------------------------------------------------------

    def fail_with(self, status: int = 500, body: bytes = b'{"detail": "database connection lost"}',
                  content_type: str = "application/json") -> None:
        """Answer every record request with this status/body until `heal()`."""
        with self._lock:
            self._failure = (status, body, content_type)

    def break_with(self, breakage: str) -> None:
        """Misbehave on every request until `heal()`: one of BREAKAGES."""
        if breakage not in BREAKAGES:
            raise ValueError(f"unknown breakage {breakage!r}; expected one of {', '.join(BREAKAGES)}")
        with self._lock:
            self._breakage = breakage

    def heal(self) -> None:
        with self._lock:
            self._failure = None
            self._breakage = None
            self.delay = 0.0

    def failure(self) -> tuple[int, bytes, str] | None:
        with self._lock:
            return self._failure

    def breakage(self, record_id: str | None) -> str | None:
        with self._lock:
            return self._breakage or (self.break_ids.get(record_id) if record_id else None)

    # -- observation ----------------------------------------------------------------------

    def _record(self, entry: dict) -> None:
        with self._lock:
            self._requests.append(entry)

    @property
    def requests(self) -> list[dict]:
        """Everything received, in order: method, path (with query), headers (lowercased),
        body (bytes), json (parsed body or None), at (time.monotonic() on arrival)."""
        with self._lock:
            return list(self._requests)

    def counts(self) -> Counter:
        """Requests per `METHOD path` (path with its query string)."""
        return Counter(f"{r['method']} {r['path']}" for r in self.requests)

    def count(self, path: str, method: str = "GET") -> int:
        """Requests received for this exact path (with its query string)."""
        return sum(1 for r in self.requests if r["method"] == method and r["path"] == path)

    def requests_for(self, path: str, method: str = "GET") -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def wait_for(self, path: str, n: int = 1, method: str = "GET", timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(path, method) >= n:
                return True
            time.sleep(0.02)
        return self.count(path, method) >= n

    def reset_counters(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- answers --------------------------------------------------------------------------

    def record_id_of(self, path: str) -> str | None:
        """The record id a GET path asks for (LiteLLM or plain API), else None."""
        url = urlsplit(path)
        if url.path in _LITELLM_INFO:
            _, param = _LITELLM_INFO[url.path]
            return parse_qs(url.query).get(param, [None])[-1]
        if self.plain_prefix and url.path.startswith(self.plain_prefix + "/"):
            _, _, record_id = url.path[len(self.plain_prefix) + 1:].partition("/")
            return unquote(record_id) or None
        return None

    def answer(self, method: str, path: str, headers: Mapping[str, str], body: Any) -> tuple[int, Any]:
        """(status, JSON document) for one request."""
        url = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if self.plain_prefix and url.path.startswith(self.plain_prefix + "/"):
            return self._answer_plain(method, url.path[len(self.plain_prefix) + 1:], headers)
        if self.master_key is not None and headers.get("authorization") != f"Bearer {self.master_key}":
            return 401, {"error": {"message": "Authentication Error, Invalid proxy server token passed. "
                                              "Received API Key = ****, Key Hash (Token) =...",
                                   "type": "auth_error", "param": "None", "code": "401"}}
        if method == "GET" and url.path in _LITELLM_INFO:
            kind, param = _LITELLM_INFO[url.path]
            record_id = query.get(param)
            if not record_id:
                return 422, {"detail": f"missing {param}"}
            return self._answer_litellm(kind, record_id)
        if method == "GET" and url.path in _LITELLM_ALIAS_LISTS:
            return self._answer_alias_list(url.path, query)
        if method == "POST" and url.path in ("/user/update", "/team/member_add", "/team/member_delete"):
            return self._sync(url.path, body)
        if method == "POST" and url.path in ("/team/new", "/user/new"):
            return self._create("team" if url.path == "/team/new" else "user", body)
        return 404, {"detail": "Not Found"}

    def _null_for(self, record_id: str) -> bool:
        nf = self.null_not_found
        return nf is True or (not isinstance(nf, bool) and record_id in nf)

    def _answer_litellm(self, kind: str, record_id: str) -> tuple[int, Any]:
        row = self.get(kind, record_id)
        if kind == "team":
            if row is None and not self._null_for(record_id):
                return 404, {"detail": {"error": f"Team not found, passed team_id={record_id}"}}
            return 200, {"team_id": record_id, "team_info": row, "keys": [], "team_memberships": []}
        if kind == "user":
            if row is None and not self._null_for(record_id):
                return 404, {"detail": {"error": f"User={record_id} not found"}}
            return 200, {"user_id": record_id, "user_info": row, "keys": [], "teams": []}
        if row is None:
            what = "Organization" if kind == "org" else "End User"
            return 404, {"detail": {"error": f"{what} not found, passed id={record_id}"}}
        return 200, row

    def _answer_alias_list(self, path: str, query: Mapping[str, str]) -> tuple[int, Any]:
        """LiteLLM's `/v2/team/list?team_alias=…` (`{"teams": [...], "total": …}`, one page) and
        `/organization/list?org_alias=…` (a bare list): rows whose alias contains the value,
        case-insensitively — LiteLLM's lists match partially."""
        kind, param, field = _LITELLM_ALIAS_LISTS[path]
        wanted = (query.get(param) or "").lower()
        page_size = int(query.get("page_size") or 10)
        with self._lock:
            rows = [dict(r) for r in self._tables[kind].values() if wanted in (r.get(field) or "").lower()]
        if kind == "org":
            return 200, rows
        return 200, {"teams": rows[:page_size], "total": len(rows), "page": 1, "page_size": page_size,
                     "total_pages": max(1, -(-len(rows) // page_size))}

    def _answer_plain(self, method: str, rest: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        for name, value in self.plain_headers.items():
            if headers.get(name) != value:
                return 401, {"error": f"missing or wrong {name} header"}
        collection, _, record_id = rest.partition("/")
        kind = _PLAIN.get(collection)
        if method != "GET" or kind is None or not record_id or "/" in record_id:
            return 404, {"error": "no such endpoint"}
        row = self.get(kind, unquote(record_id))
        return (200, row) if row is not None else (404, {"error": "not found"})

    def _sync(self, path: str, body: Any) -> tuple[int, Any]:
        """LiteLLM's `/user/update` (role), `/team/member_add` and `/team/member_delete`, as
        `sync_user_role_and_teams` uses them: the user row's `teams` and the team's members."""
        if not isinstance(body, dict):
            return 422, {"detail": "body must be a JSON object"}
        with self._lock:
            if path == "/user/update":
                row = self._tables["user"].get(body.get("user_id"))
                if row is None:
                    return 404, {"detail": {"error": "user not found"}}
                row.update({k: v for k, v in body.items() if k != "user_id"})
                return 200, dict(row)
            member = body.get("member") or {}
            user_id = member.get("user_id") if path == "/team/member_add" else body.get("user_id")
            team, user = self._tables["team"].get(body.get("team_id")), self._tables["user"].get(user_id)
            if team is None or user is None:
                return 404, {"detail": {"error": "team or user not found"}}
            if path == "/team/member_add":
                if user_id in user["teams"]:
                    return 400, {"detail": {"error": f"User={user_id} already in team"}}
                user["teams"] = [*user["teams"], team["team_id"]]
                team["members_with_roles"] = [*team["members_with_roles"], {"user_id": user_id, "role": "user"}]
            else:
                user["teams"] = [t for t in user["teams"] if t != team["team_id"]]
                team["members_with_roles"] = [m for m in team["members_with_roles"] if m.get("user_id") != user_id]
            return 200, {"team_id": team["team_id"], "updated_users": [dict(user)]}

    def _create(self, kind: str, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return 422, {"detail": "body must be a JSON object"}
        record_id = body.get("team_id" if kind == "team" else "user_id")
        if not isinstance(record_id, str) or not record_id:
            return 422, {"detail": "id missing"}
        if self.get(kind, record_id) is not None:
            return 400, {"detail": {"error": f"{kind} id = {record_id} already exists. Please use a different id."}}
        fields = {k: v for k, v in body.items() if k not in ("team_id", "user_id")}
        return 200, self.put(kind, record_id, **fields)


class _Handler(BaseHTTPRequestHandler):
    # Headers and body are separate writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "record-source/1"

    def log_message(self, fmt: str, *args: Any) -> None:
        if getattr(self.server, "verbose", False):
            sys.stderr.write("record-source: " + (fmt % args) + "\n")

    @property
    def source(self) -> RecordSource:
        return self.server.source  # type: ignore[attr-defined]

    def _handle(self) -> None:
        arrived = time.monotonic()
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        source = self.source
        source._record({"method": self.command, "path": self.path, "headers": headers, "body": raw,
                        "json": parsed, "at": arrived})
        record_id = source.record_id_of(self.path) if self.command == "GET" else None
        delay = max(source.delay, source.slow_ids.get(record_id, 0.0) if record_id else 0.0)
        if delay:
            time.sleep(delay)
        failure = source.failure() or (source.fail_ids.get(record_id) if record_id else None)
        content_type = "application/json"
        if failure:
            status, out = failure[0], failure[1]
            content_type = failure[2] if len(failure) > 2 else content_type
        else:
            status, doc = source.answer(self.command, self.path, headers, parsed)
            out = json.dumps(doc).encode()
        breakage = source.breakage(record_id)
        if breakage == "hang_up":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        if breakage == "truncate":
            self.wfile.write(out[: len(out) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(out)

    do_GET = do_POST = _handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--master-key", default="sk-master")
    parser.add_argument("--records", help="JSON file {\"team\": {id: {fields}}, \"user\": ..., \"org\": ..., "
                                          "\"customer\": ...} to preload")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    source = RecordSource(host=args.host, port=args.port, master_key=args.master_key)
    if args.records:
        with open(args.records) as fh:
            for kind, rows in json.load(fh).items():
                for record_id, fields in rows.items():
                    source.put(kind, record_id, **fields)
    source.start()
    assert source._httpd is not None
    source._httpd.verbose = args.verbose  # type: ignore[attr-defined]
    print(f"record-source: LiteLLM API at {source.url}, plain JSON at {source.plain_url}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    source.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
