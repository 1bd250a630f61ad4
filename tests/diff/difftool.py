"""Differential testing of llm-jwt-auth against LiteLLM itself.

For every generated case (tests/diff/cases.py) LiteLLM's answer comes from the oracle
(tests/oracle/litellm_oracle.py, run in its own venv as a JSON-lines subprocess) and the
filter's from a real Envoy running the built .wasm, configured with the same `general_settings`
and records; the two are compared on decision, status, message and resolved ids, and every
disagreement is classified.

    .venv/bin/python tests/diff/difftool.py [--n 300] [--seed 1] [--out tests/diff/last-run.md]

Environment: LLM_JWT_AUTH_WASM (the filter; default target/…/llm_jwt_auth.wasm), ENVOY,
ORACLE_PYTHON (default .venv-oracle/bin/python).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "tests" / "servers"))

import cases as casegen  # noqa: E402
import harness  # noqa: E402
import jwt_fixtures as jf  # noqa: E402
from demo_idp import IdPServer  # noqa: E402
from echo_upstream import EchoServer  # noqa: E402

ORACLE_SCRIPT = REPO / "tests" / "oracle" / "litellm_oracle.py"
KNOWN_FILE = HERE / "known_differences.json"
IDS = ("user_id", "team_id", "org_id", "end_user_id")
ID_HEADERS = {"user_id": "x-litellm-user-id", "team_id": "x-litellm-team-id", "org_id": "x-litellm-org-id",
              "end_user_id": "x-litellm-end-user-id", "user_role": "x-litellm-user-role",
              "user_email": "x-litellm-user-email"}


# -- LiteLLM side ---------------------------------------------------------------------------------


class Oracle:
    """The oracle subprocess (`litellm_oracle.py --serve`): one case a line, one answer a line."""

    def __init__(self, python: str | None = None) -> None:
        self.python = python or os.environ.get("ORACLE_PYTHON") or str(REPO / ".venv-oracle" / "bin" / "python")
        if not Path(self.python).exists():
            raise RuntimeError(f"oracle python not found at {self.python}: run `make oracle-venv` first")
        env = dict(os.environ, PYTHONHASHSEED="0", LITELLM_LOCAL_MODEL_COST_MAP="True")
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([self.python, str(ORACLE_SCRIPT), "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, text=True, env=env, bufsize=1)
        t0 = time.monotonic()
        ready = self._read()
        self.start_seconds = time.monotonic() - t0
        self.import_seconds = ready.get("import_seconds")
        self.version = ready.get("litellm")
        self.seconds = 0.0
        self.count = 0

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self._err.seek(0)
            raise RuntimeError("oracle exited: " + self._err.read().decode(errors="replace")[-4000:])
        return json.loads(line)

    def decide(self, case: dict) -> dict:
        assert self.proc.stdin is not None
        t0 = time.monotonic()
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        self.seconds += time.monotonic() - t0
        self.count += 1
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- filter side ----------------------------------------------------------------------------------


class UserInfoServer:
    """The IdP's UserInfo endpoint for the filter side: each opaque token's answer, as the case
    says (the oracle answers LiteLLM's call with the same)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler
        from loopback_server import LoopbackServer, TrackingHTTPServer

        answers: dict[str, dict] = {}
        self.answers = answers

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                auth = self.headers.get("authorization", "")
                answer = answers.get(auth.removeprefix("Bearer "), {"status": 401, "body": {"error": "invalid_token"}})
                body = json.dumps(answer.get("body", {})).encode()
                self.send_response(int(answer.get("status", 200)))
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = LoopbackServer(TrackingHTTPServer, Handler).start()

    @property
    def clusters(self) -> dict[str, tuple[str, int]]:
        """The endpoint's authority in the cases, mapped to this server."""
        from urllib.parse import urlsplit
        return {urlsplit(casegen.USERINFO_ENDPOINT).netloc: (self.server.host, self.server.port)}

    def stop(self) -> None:
        self.server.stop()


def plugin_config(cfg: casegen.Config, jwks_url: str) -> dict:
    out: dict[str, Any] = {"public_key_url": jwks_url, "general_settings": cfg.general_settings}
    for kind in ("teams", "users", "organizations", "end_users"):
        rows = cfg.records.get(kind) or []
        if rows:
            out[kind] = rows
    return out


class FilterSide:
    """Echo upstream + one loopback IdP, and one Envoy per configuration."""

    def __init__(self, workdir: Path | None = None) -> None:
        import requests

        self.wasm = harness.require_wasm()
        self.key = jf.generate_key("RS256", "diff-rsa")
        self.idp = IdPServer([self.key]).start()
        self.upstream = EchoServer().start()
        self.userinfo = UserInfoServer()
        self.session = requests.Session()
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="llm-jwt-auth-diff-"))
        self.envoy_seconds = 0.0
        self.request_seconds = 0.0
        self.requests = 0
        self.envoys = 0

    def run_config(self, cfg: casegen.Config) -> list[dict]:
        """The filter's answers for every request of `cfg` (or a config_refused answer for all)."""
        t0 = time.monotonic()
        envoy = harness.build_envoy(upstream_port=self.upstream.port, plugin_config=plugin_config(cfg, self.idp.jwks_url),
                                    wasm=self.wasm, jwks=[self.idp], clusters=self.userinfo.clusters, name=cfg.cid,
                                    workdir=self.workdir / cfg.cid)
        try:
            try:
                envoy.start(timeout=30)
            except harness.EnvoyFailed as exc:
                log = exc.log
                line = next((ln for ln in log.splitlines() if "invalid plugin configuration" in ln), "")
                msg = line.split("invalid plugin configuration", 1)[-1].strip(": ") or str(exc)
                return [{"config_refused": True, "allow": False, "status": 0, "message": msg, "type": None,
                         "param": None, "reason": "config_refused", **{k: None for k in ID_HEADERS}}
                        for _ in cfg.requests]
            self.envoys += 1
            self.envoy_seconds += time.monotonic() - t0
            return [self.send(envoy, r) for r in cfg.requests]
        finally:
            envoy.stop()

    def send(self, envoy: harness.Envoy, req: dict) -> dict:
        token = req.get("opaque") or self.key.sign(req["claims"])
        if req.get("opaque"):
            self.userinfo.answers[token] = req["userinfo"]
        headers = {**(req.get("headers") or {}), "authorization": f"Bearer {token}"}
        data = None
        if req["method"] not in ("GET", "HEAD"):
            body: dict[str, Any] = {}
            if req.get("model") is not None:
                body["model"] = req["model"]
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        t0 = time.monotonic()
        resp = self.session.request(req["method"], envoy.url + req["route"], headers=headers, data=data, timeout=30)
        self.request_seconds += time.monotonic() - t0
        self.requests += 1
        answer: dict[str, Any] = {"allow": False, "status": resp.status_code, "message": "", "type": None,
                                  "param": None, "reason": resp.headers.get("x-llm-jwt-auth-reason"),
                                  **{k: None for k in ID_HEADERS}}
        try:
            body_json = resp.json()
        except ValueError:
            body_json = None
        if resp.status_code == 200 and isinstance(body_json, dict) and "echo" in body_json:
            seen = body_json["echo"]["headers"]
            answer["allow"] = True
            for k, h in ID_HEADERS.items():
                answer[k] = seen.get(h)
        elif isinstance(body_json, dict) and isinstance(body_json.get("error"), dict):
            err = body_json["error"]
            answer.update(message=err.get("message"), type=err.get("type"), param=err.get("param"))
        else:
            answer["message"] = resp.text[:300]
        return answer

    def close(self) -> None:
        self.idp.stop()
        self.upstream.stop()
        self.userinfo.stop()


# -- comparing ------------------------------------------------------------------------------------


def _placeholders(case: dict) -> list[tuple[str, str]]:
    """Values of the case that appear in messages, longest first, with their placeholder."""
    vals: dict[str, str] = {}
    if case.get("route"):
        vals[case["route"]] = "<route>"
    if case.get("model"):
        vals[case["model"]] = "<model>"
    for kind, key in (("teams", "team_id"), ("users", "user_id"), ("organizations", "organization_id"),
                      ("end_users", "user_id")):
        for row in (case.get("records") or {}).get(kind) or []:
            vals.setdefault(str(row.get(key)), f"<{key}>")
    pool = casegen.TEAM_IDS + ["t-missing", "t-default"]
    for v in pool:
        vals.setdefault(v, "<team_id>")
    for v in casegen.USERS + casegen.EMAILS + ["dave"]:
        vals.setdefault(v, "<user>")
    for v in casegen.ORGS + ["initech"]:
        vals.setdefault(v, "<org>")
    for v in casegen.END_USERS + ["cust-9"]:
        vals.setdefault(v, "<end_user>")
    return sorted(vals.items(), key=lambda kv: -len(kv[0]))


def shape(message: str | None, case: dict) -> str:
    """A message with the case's own values replaced, for grouping (`Team=t1 is blocked` and
    `Team=t3 is blocked` are one class)."""
    text = message or ""
    for value, ph in _placeholders(case):
        if not value:
            continue
        text = re.sub(r"(?<![\w.@-])" + re.escape(value) + r"(?![\w@-])", ph, text)
    text = re.sub(r"\[[^\[\]]{60,}\]", "[…]", text)  # long lists (route groups, allow-lists)
    text = re.sub(r"models=\[[^\[\]]*\]", "models=[…]", text)  # a team's allow-list
    text = re.sub(r"user_id=\S*\*\S*?(?=[.,;]?(\s|$))", "user_id=<masked>", text)  # LiteLLM masks ids
    text = re.sub(r"(?<![\w.])\d+\.\d+(?![\w.])", "<float>", text)
    text = re.sub(r"(?<![\w.<-])\d+(?![\w.>-])", "<int>", text)
    return text[:220]


_SET_LITERAL = re.compile(r"\{('[^'{}]*'(?:, '[^'{}]*')+)\}")


def canonical(message: str | None) -> str:
    """A message with Python set literals (`{'t3', 't2'}`) in sorted order: LiteLLM prints sets,
    whose order depends on the interpreter's hash seed (random per process in production), so
    their order is not behaviour either side can be held to."""
    text = message or ""
    return _SET_LITERAL.sub(lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", text)


def compare(case: dict, lite: dict, filt: dict) -> list[dict]:
    """Differences between LiteLLM's and the filter's answers (empty: they agree)."""
    diffs: list[dict] = []
    if filt.get("config_refused"):
        return [{"aspect": "config", "lite": "accepted", "filter": f"refused: {filt['message']}"}]
    if lite.get("oracle_error"):
        return [{"aspect": "oracle_error", "lite": lite["oracle_error"], "filter": ""}]
    if lite["allow"] != filt["allow"]:
        return [{"aspect": "decision", "lite": lite["status"], "filter": filt["status"]}]
    if not lite["allow"]:
        if lite["status"] != filt["status"]:
            diffs.append({"aspect": "status", "lite": lite["status"], "filter": filt["status"]})
        if canonical(lite["message"]) != canonical(filt["message"]):
            diffs.append({"aspect": "message", "lite": lite["message"], "filter": filt["message"]})
        if lite.get("type") != filt.get("type"):
            diffs.append({"aspect": "type", "lite": lite.get("type"), "filter": filt.get("type")})
        return diffs
    for k in IDS + ("user_role",):
        lv, fv = lite.get(k), filt.get(k)
        if (lv or None) != (fv or None):
            diffs.append({"aspect": k, "lite": lv, "filter": fv})
    return diffs


def classify(case: dict, lite: dict, filt: dict, diffs: list[dict]) -> str:
    """A class id for a disagreeing case: what differs, LiteLLM's outcome, the filter's."""
    aspects = "+".join(d["aspect"] for d in diffs)

    def outcome(ans: dict) -> str:
        if ans.get("config_refused"):
            return "config refused"
        if ans.get("oracle_error"):
            return "oracle error"
        if ans["allow"]:
            return "200"
        return f"{ans['status']} {shape(ans.get('message'), case)}"

    if aspects in ("config", "oracle_error"):
        return f"{aspects} | {shape(filt.get('message') or lite.get('oracle_error'), case)}"
    if all(d["aspect"] in IDS + ("user_role",) for d in diffs):
        parts = []
        for d in diffs:
            def kind(v: Any) -> str:
                if v in (None, ""):
                    return "none"
                return "sub" if v == case["claims"].get("sub") else "value"
            parts.append(f"{d['aspect']}: litellm={kind(d['lite'])} filter={kind(d['filter'])}")
            if d["aspect"] == "user_role":
                parts[-1] = f"user_role: litellm={d['lite']} filter={d['filter']}"
        return "identity | " + "; ".join(parts)
    return f"{aspects} | litellm: {outcome(lite)} || filter: {outcome(filt)}"


# -- known differences ----------------------------------------------------------------------------


def load_known(path: Path = KNOWN_FILE) -> list[dict]:
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return data.get("known", []) if isinstance(data, dict) else data


def _get(d: dict, dotted: str) -> Any:
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def matches(entry: dict, case: dict, lite: dict, filt: dict, diffs: list[dict]) -> bool:
    """Whether an allow-list entry's `match` holds for this case. Every condition must hold:
    `litellm.<field>` / `filter.<field>` / `case.<dotted path>` equal to the value, or, with a
    `~` suffix on the key, matching it as a glob (fnmatch), with `^`, starting with it, with
    `@`, being one of the values of a list, or with `%`, matching it whole as a Python regular
    expression (back-references let an entry say "these two numbers are equal"). A value
    `{"$ref": "<root>.<path>"}` stands for that other field of the same case."""
    ctx = {"litellm": lite, "filter": filt, "case": case}
    for key, want in entry.get("match", {}).items():
        if isinstance(want, dict) and set(want) == {"$ref"}:
            r_root, _, r_rest = want["$ref"].partition(".")
            want = _get(ctx.get(r_root, {}), r_rest) if r_rest else ctx.get(r_root)
        op = "="
        if key[-1:] in ("~", "^", "@", "%"):
            op, key = key[-1], key[:-1]
        root, _, rest = key.partition(".")
        got = _get(ctx.get(root, {}), rest) if rest else ctx.get(root)
        if op == "=" and got != want:
            return False
        if op == "~" and not (isinstance(got, str) and fnmatch.fnmatchcase(got, want)):
            return False
        if op == "^" and not (isinstance(got, str) and got.startswith(want)):
            return False
        if op == "@" and got not in want:
            return False
        if op == "%" and not (isinstance(got, str) and re.fullmatch(want, got)):
            return False
    return True


def explain(known: list[dict], case: dict, lite: dict, filt: dict, diffs: list[dict]) -> list[str] | None:
    """The allow-list entries that explain this disagreement, or None when some differing aspect
    (decision, status, message, type, an id) is explained by no entry. An entry explains the
    aspects in its `explains` list, for the cases its `match` selects."""
    used: list[str] = []
    for d in diffs:
        entry = next((e for e in known if d["aspect"] in e.get("explains", []) and
                      matches(e, case, lite, filt, diffs)), None)
        if entry is None:
            return None
        if entry["id"] not in used:
            used.append(entry["id"])
    return used


# -- running --------------------------------------------------------------------------------------


@dataclass
class Result:
    case: dict
    lite: dict
    filt: dict
    diffs: list[dict]
    cls: str | None = None
    known: str | None = None


@dataclass
class Run:
    seed: int
    n: int
    results: list[Result] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    wasm: str = ""
    litellm: str = ""

    @property
    def disagreements(self) -> list[Result]:
        return [r for r in self.results if r.diffs]

    def classes(self) -> dict[str, list[Result]]:
        out: dict[str, list[Result]] = defaultdict(list)
        for r in self.disagreements:
            out[r.cls or "?"].append(r)
        return dict(sorted(out.items(), key=lambda kv: (-len(kv[1]), kv[0])))

    def unexplained(self) -> list[Result]:
        return [r for r in self.disagreements if r.known is None]


def judge(result: Run, case: dict, lite: dict, fa: dict, known: list[dict]) -> Result:
    diffs = compare(case, lite, fa)
    r = Result(case=case, lite=lite, filt=fa, diffs=diffs)
    if diffs:
        r.cls = classify(case, lite, fa, diffs)
        ids = explain(known, case, lite, fa, diffs)
        r.known = ", ".join(ids) if ids else None
    result.results.append(r)
    return r


def replay(path: Path, *, known: list[dict] | None = None) -> Run:
    """Re-judge a run saved with --json (no Envoy, no LiteLLM): for working on the allow-list or
    the comparison itself."""
    known = load_known() if known is None else known
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    meta = lines[0].get("meta", {}) if lines and "meta" in lines[0] else {}
    result = Run(seed=meta.get("seed", -1), n=meta.get("n", 0), timings=meta.get("timings", {}),
                 wasm=meta.get("wasm", ""), litellm=meta.get("litellm", ""))
    for row in lines:
        if "case" in row:
            judge(result, row["case"], row["litellm"], row["filter"], known)
    return result


def run(seed: int, n: int, *, known: list[dict] | None = None, per_config: int = 12,
        progress: bool = False) -> Run:
    known = load_known() if known is None else known
    cfgs = casegen.configs(seed, n, per_config=per_config)
    result = Run(seed=seed, n=n)
    t0 = time.monotonic()
    oracle = Oracle()
    filt = FilterSide()
    result.wasm = str(filt.wasm)
    result.litellm = oracle.version or "?"
    try:
        for i, cfg in enumerate(cfgs):
            lite_answers: list[dict] = []
            worker = threading.Thread(target=lambda: lite_answers.extend(oracle.decide(c) for c in cfg.cases()))
            worker.start()  # LiteLLM thinks while Envoy starts and answers
            filt_answers = filt.run_config(cfg)
            worker.join()
            for case, lite, fa in zip(cfg.cases(), lite_answers, filt_answers):
                case["config_id"] = cfg.cid
                judge(result, case, lite, fa, known)
            if progress:
                done = len(result.results)
                bad = len(result.disagreements)
                print(f"  [{i + 1}/{len(cfgs)}] {done} cases, {bad} disagreements", file=sys.stderr, flush=True)
    finally:
        oracle.close()
        filt.close()
    result.timings = {
        "total_s": round(time.monotonic() - t0, 1),
        "configs": len(cfgs),
        "envoys_started": filt.envoys,
        "oracle_start_s": round(oracle.start_seconds, 1),
        "oracle_import_s": oracle.import_seconds,
        "oracle_ms_per_case": round(1000 * oracle.seconds / max(oracle.count, 1), 1),
        "filter_ms_per_request": round(1000 * filt.request_seconds / max(filt.requests, 1), 1),
        "envoy_start_s_avg": round(filt.envoy_seconds / max(filt.envoys, 1), 2),
    }
    return result


# -- reporting ------------------------------------------------------------------------------------


def _example(r: Result) -> str:
    c = r.case
    lite = {k: v for k, v in r.lite.items() if k not in ("extra",) and v not in (None, [], "")}
    filt = {k: v for k, v in r.filt.items() if v not in (None, [], "")}
    return "\n".join([
        f"    - config `{c.get('config_id')}`: `general_settings` = `{json.dumps(c['general_settings'], sort_keys=True)}`",
        f"    - records: `{json.dumps(c.get('records') or {}, sort_keys=True)}`",
        f"    - claims: `{json.dumps({k: v for k, v in c['claims'].items() if k not in ('iat', 'exp')}, sort_keys=True)}`"
        + (f" (an opaque token: the UserInfo endpoint's answer, status {c['userinfo']['status']})" if c.get("opaque") else ""),
        f"    - request: `{c['method']} {c['route']}` model=`{c.get('model')}`",
        f"    - LiteLLM: `{json.dumps(lite, sort_keys=True)}`",
        f"    - filter:  `{json.dumps(filt, sort_keys=True)}`",
    ])


def report(run_: Run) -> str:
    total = len(run_.results)
    agree = total - len(run_.disagreements)
    known_n = sum(1 for r in run_.disagreements if r.known)
    lines = [
        f"# Differential run: llm-jwt-auth vs LiteLLM {run_.litellm}",
        "",
        f"- seed {run_.seed}, {total} cases in {run_.timings.get('configs')} configurations "
        f"({run_.timings.get('envoys_started')} Envoys started), wasm `{run_.wasm}`",
        f"- **agreements: {agree}**, disagreements: {len(run_.disagreements)} "
        f"({known_n} listed in known_differences.json, {len(run_.disagreements) - known_n} not)",
        f"- timings: {json.dumps(run_.timings)}",
        "",
        "Agreement = same decision; on a refusal the same status, message and type; on a pass the "
        "same user/team/org/end-user ids and user role.",
        "",
        "## Disagreements by class",
        "",
    ]
    for cls, rs in run_.classes().items():
        known_ids = sorted({r.known for r in rs if r.known})
        tag = f" — known: {', '.join(known_ids)}" if known_ids else ""
        lines.append(f"### {len(rs)} × {cls}{tag}")
        lines.append("")
        lines.append("  example:")
        lines.append(_example(rs[0]))
        lines.append("")
    if not run_.disagreements:
        lines.append("(none)")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--per-config", type=int, default=12)
    ap.add_argument("--out", default=str(HERE / "last-run.md"))
    ap.add_argument("--json", default=None, help="also write every case with both answers as JSON lines")
    ap.add_argument("--replay", default=None, help="re-judge a --json file instead of running")
    args = ap.parse_args(argv)
    if args.replay:
        r = replay(Path(args.replay))
    else:
        r = run(args.seed, args.n, per_config=args.per_config, progress=True)
    text = report(r)
    print(text)
    Path(args.out).write_text(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(json.dumps({"meta": {"seed": r.seed, "n": r.n, "timings": r.timings, "wasm": r.wasm,
                                          "litellm": r.litellm}}) + "\n")
            for res in r.results:
                fh.write(json.dumps({"case": res.case, "litellm": res.lite, "filter": res.filt, "diffs": res.diffs,
                                     "class": res.cls, "known": res.known}, default=str) + "\n")
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
